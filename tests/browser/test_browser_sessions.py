"""The browser tests' own machinery against a static page served here (no services needed): Debian's
Chromium starts headless through its driver, at a phone's and a desktop's size, runs the page's script,
takes numbered screenshots of the right size, keeps two sessions apart, and quits every session
(after a last screenshot) when a test fails. A missing browser fails with the install hint."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import chrome
from tests.browser.chrome import DESKTOP, PHONE, BrowserMissing, BrowserSession, BrowserSessions

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fixture page</title></head>
<body>
<form id="form"><label>Name <input id="name"></label> <button id="go">Go</button></form>
<p id="out"></p>
<script>
document.getElementById("form").addEventListener("submit", (event) => {
  event.preventDefault();
  document.getElementById("out").textContent = "hello " + document.getElementById("name").value;
});
console.error("fixture page says hello");
</script>
</body></html>
"""


WIDEN = "document.body.insertAdjacentHTML('beforeend', '<pre>' + 'x'.repeat(200) + '</pre>')"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static page on a loopback port of its own."""
    root = tmp_path_factory.mktemp("static")
    (root / "index.html").write_text(PAGE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_a_phone_and_a_desktop_session_show_and_use_the_page(browsers: BrowserSessions, page_url: str) -> None:
    phone = browsers.open("phone-user", PHONE)
    desktop = browsers.open("desktop-user", DESKTOP)
    for session, screen in ((phone, PHONE), (desktop, DESKTOP)):
        session.get(page_url)
        assert session.driver.execute_script("return [window.innerWidth, window.innerHeight]") == [
            screen.width,
            screen.height,
        ]
        session.find("#name").send_keys(session.label)
        session.find("#go").click()
        assert session.wait_text("#out", f"hello {session.label}") == f"hello {session.label}"
        [shot] = session.shot("greeted")
        assert png_size(shot) == (screen.width, screen.height)
        assert any("fixture page says hello" in line for line in session.console_errors())
    names = sorted(p.name for p in browsers.shots_dir.glob("*.png"))
    assert names == ["01-phone-user-phone-greeted.png", "02-desktop-user-desktop-greeted.png"]


def test_a_step_is_shot_at_every_size_and_sessions_are_apart(browsers: BrowserSessions, page_url: str) -> None:
    first = browsers.open("first", PHONE)
    second = browsers.open("second", DESKTOP)
    first.get(page_url)
    second.get(page_url)
    first.driver.execute_script("localStorage.setItem('who', 'first')")
    assert second.driver.execute_script("return localStorage.getItem('who')") is None
    shots = first.shot("both", every_screen=True)
    assert [png_size(p) for p in shots] == [(PHONE.width, PHONE.height), (DESKTOP.width, DESKTOP.height)]
    assert first.screen == PHONE and first.driver.execute_script("return window.innerWidth") == PHONE.width
    assert first.overflow_px() == 0


def test_a_page_wider_than_a_phone_is_seen_as_a_phone_shows_it(browsers: BrowserSessions, page_url: str) -> None:
    """At scale 1 whether the session was opened at a phone's size or shrunk to it; the overflow measured."""
    native, shrunk = browsers.open("native", PHONE), browsers.open("shrunk", DESKTOP)
    for session in (native, shrunk):
        session.get(page_url)
        session.driver.execute_script(WIDEN)
    shrunk.resize(PHONE)
    for session in (native, shrunk):
        assert session.driver.execute_script("return visualViewport.scale") == 1
        assert session.overflow_px() > 500


FAINT = """document.body.insertAdjacentHTML('beforeend',
  '<p id="faint">faint grey</p><p id="large">large grey</p><p id="dark">on dark</p><button disabled>off</button>');
document.getElementById('faint').style.color = '#999';
Object.assign(document.getElementById('large').style, {color: '#888', fontSize: '24px'});
Object.assign(document.getElementById('dark').style, {color: '#fff', background: 'rgba(0, 0, 0, 0.9)'});
document.querySelector('button[disabled]').style.color = '#ddd';"""


def test_text_below_wcag_contrast_is_found(browsers: BrowserSessions, page_url: str) -> None:
    """#999 on white is 2.85:1 (under 4.5); #888 at 24px is 3.54:1, enough for large text; white on
    90% black passes; a disabled control is exempt."""
    session = browsers.open("contrast", DESKTOP)
    session.get(page_url)
    assert session.contrast_failures() == []
    session.driver.execute_script(FAINT)
    [failure] = session.contrast_failures()
    assert failure.startswith('"faint grey" 2.85 ')


def test_a_failing_test_leaves_a_last_screenshot_and_no_browser(tmp_path: Path, page_url: str) -> None:
    opened: list[BrowserSession] = []

    def failing_test() -> None:
        with BrowserSessions(tmp_path / "shots") as sessions:
            opened.append(sessions.open("doomed", DESKTOP))
            opened[0].get(page_url)
            raise RuntimeError("the test failed here")

    with pytest.raises(RuntimeError, match="failed here"):
        failing_test()
    assert [p.name for p in (tmp_path / "shots").glob("*.png")] == ["01-doomed-desktop-failed.png"]
    assert opened[0].driver.service.process.poll() is not None
    assert not opened[0].profile.exists()


def test_a_missing_driver_is_a_failure_that_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chrome, "CHROMEDRIVER", tmp_path / "no-chromedriver")
    with pytest.raises(BrowserMissing, match="scripts/browser"):
        BrowserSessions(tmp_path).open("nobody")
    from tests.browser.conftest import fail_missing

    with pytest.raises(pytest.fail.Exception, match="no-chromedriver not found: run scripts/browser as root"):
        BrowserSessions(tmp_path, on_missing=fail_missing).open("nobody")
