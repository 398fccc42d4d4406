"""Security headers on every response (issue 10, row 11), and a `/docs` page that passes its own
Content-Security-Policy. The gateway's own app is checked end to end in tests/e2e/test_rest_api.py;
here an app of the docs routes, the error middleware and a few stand-in API routes suffices."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from html.parser import HTMLParser

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.rest import docs, http_headers
from gateway.rest.errors import error_middleware, unauthenticated

Client = TestClient[web.Request, web.Application]


async def login(request: web.Request) -> web.Response:
    return web.json_response({"access_token": "secret", "token_type": "Bearer"})


async def refused(request: web.Request) -> web.Response:
    raise unauthenticated()


async def socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close()
    return ws


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(
        [
            web.post("/api/v1/auth/login", login),
            web.get("/api/v1/users/me", refused),
            web.get("/api/v1/ws", socket),
        ]
    )
    app.add_routes(docs.routes)
    http_headers.setup(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def assert_always_there(headers: Mapping[str, str]) -> None:
    get = headers.get
    assert get("X-Content-Type-Options") == "nosniff"
    assert get("Referrer-Policy") == "no-referrer"
    assert get("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in get("Content-Security-Policy", "")
    assert get("Server") == "messenger", "aiohttp's version is not announced"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/v1/auth/login", 200),
        ("GET", "/api/v1/users/me", 401),
        ("GET", "/api/v1/no-such-route", 404),
        ("DELETE", "/api/v1/auth/login", 405),
        ("GET", "/docs/swagger.json", 200),
    ],
)
async def test_every_api_answer_and_error_is_not_stored_sniffed_or_framed(
    client: Client, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status == status
    assert_always_there(response.headers)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"] == http_headers.DEFAULT_CSP


async def test_the_websocket_upgrade_carries_them_too(client: Client) -> None:
    ws = await client.ws_connect("/api/v1/ws")
    assert_always_there(ws._response.headers)
    await ws.close()


async def test_swagger_ui_files_may_be_cached_but_are_revalidated(client: Client) -> None:
    response = await client.get("/docs/static/swagger-ui-bundle.js")
    assert response.status == 200
    assert_always_there(response.headers)
    assert response.headers["Cache-Control"] == docs.ASSET_CACHE_CONTROL


# --- the docs page and its policy -------------------------------------------------------------------


class PageParts(HTMLParser):
    """What a page loads and what it holds inline (which a policy without 'unsafe-inline' blocks)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []
        self.inline: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if "style" in named or any(name.startswith("on") for name in named):
            self.inline.append(f"<{tag}> attribute")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self.in_script = True
            if not named.get("src"):
                self.inline.append("<script> without src")
        for attribute in ("src", "href"):
            if named.get(attribute):
                self.loads.append((tag, str(named[attribute])))

    def handle_endtag(self, tag: str) -> None:
        self.in_script = self.in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.inline.append("script text")


def directives(policy: str) -> dict[str, list[str]]:
    parts = (part.split() for part in policy.split(";") if part.strip())
    return {words[0]: words[1:] for words in parts}


async def test_the_docs_page_has_a_strict_policy(client: Client) -> None:
    response = await client.get("/docs")
    assert response.status == 200
    assert_always_there(response.headers)
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    for sources in policy.values():
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:"} & set(sources), policy
    assert "script-src" not in policy and "style-src" not in policy, "scripts and styles fall back to 'self'"


async def test_the_docs_page_loads_only_what_its_policy_allows(client: Client) -> None:
    """No inline script, style or handler; every script and style same-origin, served with the
    media type `nosniff` demands (a stylesheet as text/css, a script as JavaScript)."""
    page = PageParts()
    page.feed(await (await client.get("/docs")).text())
    assert page.inline == []
    assert page.loads, "the page loads Swagger UI"
    for tag, url in page.loads:
        assert re.fullmatch(r"/docs/[\w./-]+", url), f"{tag} loads {url}: not the gateway's own"
        answer = await client.get(url)
        assert answer.status == 200, url
        if tag == "script":
            assert answer.content_type in ("text/javascript", "application/javascript"), (url, answer.content_type)
        if url.endswith(".css"):
            assert answer.content_type == "text/css", url


async def test_swagger_ui_is_started_without_the_online_validator(client: Client) -> None:
    """Swagger UI's default badge is an image from validator.swagger.io that sends it the spec's
    address; the policy would refuse it (a violation in every browser's console)."""
    script = await (await client.get(docs.INIT_URL)).text()
    assert "validatorUrl: null" in script and docs.SPEC_URL in script


def test_swagger_ui_css_needs_nothing_but_data_images() -> None:
    """The one kind of source the page's policy adds to 'self'."""
    css = (docs.ASSETS_DIR / "swagger-ui.css").read_text()
    urls = set(re.findall(r"url\(\s*['\"]?([a-z]+:)?", css))
    assert urls <= {"data:", ""}, urls
    assert "@import" not in css
