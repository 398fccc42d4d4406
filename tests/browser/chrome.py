"""Headless Chromium sessions for the browser tests: Debian's `chromium` driven through Debian's
`chromedriver` by Selenium, at a phone's or a desktop's screen size, each step kept as a screenshot.

Nothing is downloaded at run time: Selenium is given the driver's path (so its driver manager never
runs) and `SE_OFFLINE` forbids that manager any download should something call it. `scripts/browser`
installs both packages (`make test` runs it); a machine without them fails the tests with that hint.

    with BrowserSessions(shots_dir) as browsers:
        alice = browsers.open("alice", PHONE)
        alice.get("http://127.0.0.1:8080/")
        alice.shot("signed-in")            # shots_dir/01-alice-phone-signed-in.png

Several sessions at once are independent browsers (own profile, cookies, storage), as two people.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

os.environ["SE_OFFLINE"] = "true"

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY") or "/usr/bin/chromium")
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER_PATH") or "/usr/bin/chromedriver")
INSTALL_HINT = "run scripts/browser as root (it installs Debian's chromium and chromium-driver; make test runs it)"
WAIT_S = 10.0
"""How long a step waits for the page to show what it expects."""

T = TypeVar("T")


@dataclass(frozen=True)
class Screen:
    name: str
    width: int
    height: int
    mobile: bool
    """Emulated as a phone: the page's meta viewport applies, touch-sized layout."""


PHONE = Screen("phone", 390, 844, mobile=True)
DESKTOP = Screen("desktop", 1366, 900, mobile=False)
SCREENS = (PHONE, DESKTOP)


class BrowserMissing(Exception):
    """Chromium or its driver is not installed; the message says how to install them."""


def refuse(problem: str) -> NoReturn:
    raise BrowserMissing(problem)


def missing_browser() -> str | None:
    """What is missing to start a session, with the command that installs it; None when all is there."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return None
    return f"{' and '.join(missing)} not found: {INSTALL_HINT}"


def chrome_options(screen: Screen, profile: Path) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-breakpad",  # no crash handler processes left behind
        "--disable-crash-reporter",
        "--no-first-run",
        "--no-default-browser-check",
        "--lang=en-US",
        "--force-device-scale-factor=1",
        f"--window-size={screen.width},{screen.height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "step"


@dataclass
class BrowserSession:
    """One browser (one person) at one screen size; `shot` saves what it shows."""

    label: str
    screen: Screen
    driver: webdriver.Chrome
    shots: ShotCounter
    profile: Path

    def get(self, url: str) -> None:
        self.driver.get(url)

    def resize(self, screen: Screen) -> None:
        """The viewport at `screen`'s size, as that device would show the page: at scale 1, as a phone
        opens a page (a page shrunk from a desktop's width would otherwise stay zoomed out to fit)."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": screen.width, "height": screen.height, "deviceScaleFactor": 1, "mobile": screen.mobile},
        )
        self.driver.execute_cdp_cmd("Emulation.setPageScaleFactor", {"pageScaleFactor": 1})
        self.screen = screen

    def overflow_px(self, screen: Screen | None = None) -> int:
        """How far the page is wider than the screen (0 when nothing needs a sideways scroll); at
        `screen`'s size if given (the session ends at its own size again)."""
        own = self.screen
        if screen is not None and screen != own:
            self.resize(screen)
        width = int(self.driver.execute_script("return document.documentElement.scrollWidth"))
        overflow = max(0, width - self.screen.width)
        if self.screen != own:
            self.resize(own)
        return overflow

    def shot(self, step: str, *, every_screen: bool = False) -> list[Path]:
        """A screenshot of the viewport named after the test's step; with `every_screen`, one at each
        size of SCREENS (the session ends at its own size again)."""
        own = self.screen
        paths = []
        for screen in SCREENS if every_screen else (own,):
            if screen != self.screen:
                self.resize(screen)
            path = self.shots.next_path(f"{self.label}-{screen.name}-{step}")
            self.driver.save_screenshot(str(path))
            paths.append(path)
        if self.screen != own:
            self.resize(own)
        return paths

    def find(self, css: str) -> WebElement:
        """The element `css` selects, once it is there (waits up to WAIT_S)."""
        return self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css), f"no element {css!r}")

    def wait_text(self, css: str, expected: str | Callable[[str], bool]) -> str:
        """The text of the element `css` selects once it is `expected` (or `expected(text)` holds)."""
        matches = expected if callable(expected) else expected.__eq__

        def text(driver: webdriver.Chrome) -> str | None:
            shown = str(driver.find_element(By.CSS_SELECTOR, css).text)
            return shown if matches(shown) else None

        return self.wait(text, f"{css!r} never showed {expected!r}")

    def follow(self, target: str | WebElement) -> None:
        """Click `target` (an element, or the element a CSS selector finds) and wait until the page it
        loads has replaced this one: what is read next is of the new page."""
        element = self.find(target) if isinstance(target, str) else target
        page = self.driver.find_element(By.TAG_NAME, "html")
        element.click()
        self.wait_gone(page)

    def wait_gone(self, element: WebElement) -> None:
        """Until `element` is no longer in the page: a click that loads another page has loaded it.
        (Chromium answers an element of a page being replaced with a stale reference or, at some
        moments, "does not belong to the document": both mean gone.)"""

        def gone(driver: Any) -> bool:
            try:
                element.is_enabled()
            except WebDriverException:
                return True
            return False

        WebDriverWait(self.driver, WAIT_S, poll_frequency=0.1).until(
            gone, f"{self.label}: still on {self.driver.current_url}"
        )

    def wait(self, condition: Callable[[webdriver.Chrome], T | None], message: str = "", timeout: float = WAIT_S) -> T:
        """The first truthy value of `condition(driver)` (exceptions count as not yet)."""

        def attempt(driver: Any) -> Any:
            try:
                return condition(driver)
            except WebDriverException:
                return False

        result: T = WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(
            attempt, f"{self.label}: {message} in {timeout} s at {self.driver.current_url}"
        )
        return result

    def contrast_failures(self) -> list[str]:
        """Visible text on the page whose contrast with what lies behind it is under WCAG 2.1 AA
        (4.5:1, or 3:1 for large text), each as `"text" ratio (color on background)`. Disabled
        controls are exempt, as in WCAG; the background is the first opaque one of the element and
        its ancestors, blended with the translucent ones on the way (white below all)."""
        found: list[str] = self.driver.execute_script(CONTRAST_AUDIT)
        return found

    def console_errors(self) -> list[str]:
        """The page's console messages of level SEVERE since the last call (errors, CSP refusals)."""
        entries: list[dict[str, Any]] = self.driver.execute(Command.GET_LOG, {"type": "browser"})["value"]
        return [str(entry["message"]) for entry in entries if entry.get("level") == "SEVERE"]

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


CONTRAST_AUDIT = """
const parse = (text) => {
  const m = text.match(/rgba?\\(([^)]+)\\)/);
  if (!m) return null;
  const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(parseFloat);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
};
const blend = (top, below) => below.map((v, i) => top[i] * top[3] + v * (1 - top[3]));
const behind = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  return layers.reverse().reduce((below, top) => blend(top, below), [255, 255, 255]);
};
const luminance = (rgb) => {
  const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const failures = [];
for (const el of document.body.querySelectorAll("*")) {
  const own = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join(" ").trim();
  if (!own || el.closest("[disabled]") || el.getClientRects().length === 0) continue;
  const style = getComputedStyle(el);
  if (style.visibility !== "visible" || parseFloat(style.opacity) === 0) continue;
  const bg = behind(el);
  const fg = blend(parse(style.color), bg);
  const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && parseInt(style.fontWeight, 10) >= 700);
  if (ratio < (large ? 3 : 4.5)) {
    failures.push(`"${own.slice(0, 40)}" ${ratio.toFixed(2)} (${style.color} on rgb(${bg.map(Math.round)}))`);
  }
}
return failures;
"""
"""The page's text below WCAG AA contrast (see `BrowserSession.contrast_failures`)."""


@dataclass
class ShotCounter:
    """Numbers a test's screenshots in the order they are taken, across all its sessions."""

    folder: Path
    taken: int = 0

    def next_path(self, name: str) -> Path:
        self.taken += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{self.taken:02d}-{slug(name)}.png"


@dataclass
class BrowserSessions:
    """Opens sessions for one test and quits every one of them on exit, whatever happened; a test that
    failed gets a last screenshot of each session (`failed`) first."""

    shots_dir: Path
    on_missing: Callable[[str], NoReturn] = refuse
    """Called with the install hint when Chromium or its driver is missing (the tests fail there)."""
    sessions: list[BrowserSession] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shots = ShotCounter(self.shots_dir)

    def open(self, label: str, screen: Screen = DESKTOP) -> BrowserSession:
        problem = missing_browser()
        if problem:
            self.on_missing(problem)
        profile = Path(tempfile.mkdtemp(prefix=f"chromium-{slug(label)}-"))
        service = Service(executable_path=str(CHROMEDRIVER), log_output=str(self.shots_dir.parent / "chromedriver.log"))
        self.shots_dir.mkdir(parents=True, exist_ok=True)
        try:
            driver = webdriver.Chrome(options=chrome_options(screen, profile), service=service)
        except BaseException:
            shutil.rmtree(profile, ignore_errors=True)
            raise
        session = BrowserSession(label, screen, driver, self.shots, profile)
        self.sessions.append(session)
        session.resize(screen)
        return session

    def close(self, failed: bool = False) -> None:
        errors: list[BaseException] = []
        for session in self.sessions:
            try:
                if failed:
                    session.shot("failed")
            except Exception:  # a browser that died cannot show its last page; quit it all the same
                pass
            try:
                session.quit()
            except Exception as error:
                errors.append(error)
        self.sessions.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> BrowserSessions:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close(failed=error is not None)
