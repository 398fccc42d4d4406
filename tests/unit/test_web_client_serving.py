"""The web client's files as the gateway serves them (`gateway/web/routes.py`): the page at `/` with a
strict Content-Security-Policy, its modules and stylesheet under `/app/` with their media types, no
path trick reaching a file outside `gateway/web/static/`, and no file pointing at another origin.
The routes run in the gateway's own middleware and header setup; no service is needed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.rest import http_headers
from gateway.rest.errors import error_middleware
from gateway.web import routes

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(routes.routes)
    http_headers.setup(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


async def test_the_page_has_a_strict_policy_naming_only_its_own_origin(client: Client) -> None:
    response = await client.get("/", headers={"Host": "chat.example:8443"})
    assert response.status == 200 and response.content_type == "text/html"
    assert response.headers["Cache-Control"] == "no-cache"
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    for name in ("script-src", "style-src", "img-src"):
        assert policy[name] == ["'self'"], name
    assert policy["connect-src"] == ["'self'", "ws://chat.example:8443", "wss://chat.example:8443"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'none'"]
    assert not any("unsafe" in value for values in policy.values() for value in values)


async def test_a_host_that_could_rewrite_the_policy_is_left_out_of_it(client: Client) -> None:
    response = await client.get("/", headers={"Host": "evil.example; script-src *"})
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["connect-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]


async def test_every_file_is_served_with_its_media_type(client: Client) -> None:
    expected = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
    assert {"index.html", "main.js", "style.css"} <= set(routes.FILES)
    for name, path in routes.FILES.items():
        response = await client.get(f"/app/{name}")
        assert response.status == 200, name
        assert response.content_type == expected[path.suffix], name
        assert response.headers["Cache-Control"] == "no-cache", name
        assert await response.read() == path.read_bytes(), name
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_page_loads_every_module_it_imports_from_app(client: Client) -> None:
    page = await (await client.get("/")).text()
    loaded = set(re.findall(r'(?:src|href)="/app/([^"]+)"', page))
    assert {"main.js", "style.css", "icon.svg"} <= loaded
    imported = {
        (path.parent / target).resolve().relative_to(routes.STATIC_DIR).as_posix()
        for path in routes.STATIC_DIR.rglob("*.js")
        for target in re.findall(r"^\s*import [^;]*? from '(\.[^']+)';", path.read_text(), re.MULTILINE)
    }
    assert imported and imported <= set(routes.FILES), imported - set(routes.FILES)


@pytest.mark.parametrize(
    "path",
    [
        "/app/../routes.py",
        "/app/%2e%2e/routes.py",
        "/app/..%2froutes.py",
        "/app/views/../../routes.py",
        "/app/%2e%2e/%2e%2e/config/settings.py",
        "/app//etc/passwd",
        "/app/no-such-file.js",
        "/app/views",
    ],
)
async def test_no_path_reaches_outside_the_static_folder(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404, path
    assert (await response.json())["error"]["code"] == "not_found"


async def test_only_reads_are_answered(client: Client) -> None:
    assert (await client.head("/app/main.js")).status == 200
    response = await client.post("/app/main.js")
    assert response.status == 405


def test_no_file_loads_or_names_another_origin() -> None:
    for name, path in routes.FILES.items():
        text = path.read_text(encoding="utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
        assert "@import" not in text and "url(" not in text, name


def test_the_page_holds_no_inline_script_or_style() -> None:
    page = routes.FILES["index.html"].read_text(encoding="utf-8")
    assert "<style" not in page and " style=" not in page
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.DOTALL)
    assert scripts and all('src="/app/' in attributes and not body.strip() for attributes, body in scripts)
    assert not re.search(r"\son[a-z]+=", page), "no inline event handlers"
    for path in routes.STATIC_DIR.rglob("*.js"):
        source = path.read_text(encoding="utf-8")
        assert "innerHTML" not in source and "eval(" not in source and "new Function" not in source, path.name


async def test_a_kept_file_is_revalidated_not_sent_again(client: Client) -> None:
    first = await client.get("/app/main.js")
    etag = first.headers["ETag"]
    again = await client.get("/app/main.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
