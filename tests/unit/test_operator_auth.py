"""The operator token of the workers' web views (`runtime.operator_auth`), the console's login and
session cookie (`console.login`), and the settings that refuse to expose them without one. The real
workers are tested in tests/e2e/test_worker_views.py and tests/e2e/test_console.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from config.settings import WorkerSettings, is_loopback
from console.login import log_in, log_out, safe_next, same_origin, show_login
from runtime.operator_auth import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    bearer_token,
    operator_auth,
    session_cookie_value,
    session_is_valid,
    token_matches,
)

TOKEN = "0123456789abcdefghijABCDEFGHIJ-_xyz"
SERVICES = {
    "database_url": "postgresql://u:p@127.0.0.1:5432/db",
    "redis_url": "redis://:p@127.0.0.1:6379/0",
    "kafka_password": "a-kafka-password-0123456789",
    "_env_file": None,
}
"""Every other required setting, and no `.env`: these tests read nothing of the machine's."""


def worker_settings(**values: Any) -> WorkerSettings:
    return WorkerSettings(**SERVICES, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "streams", "localhost.example.com"])
def test_addresses_beyond_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("Bearer  abc ", "abc"),
        ("Basic abc", None),
        ("abc", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_nothing_matches_an_empty_token() -> None:
    assert not token_matches("", "") and not token_matches(None, "")
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN[:-1], TOKEN) and not token_matches(None, TOKEN)


# --- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.2"])
@pytest.mark.parametrize("token", ["", "too-short-a-token"])
def test_a_worker_beyond_loopback_needs_a_real_token(host: str, token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        worker_settings(worker_web_host=host, operator_token=token)
    assert [error["loc"] for error in caught.value.errors()] == [("operator_token",)]


def test_a_worker_beyond_loopback_with_a_token_is_allowed() -> None:
    assert worker_settings(worker_web_host="0.0.0.0", operator_token=TOKEN).operator_token == TOKEN


def test_a_worker_on_loopback_may_have_no_token() -> None:
    assert worker_settings(worker_web_host="127.0.0.1", operator_token="").operator_token == ""


@pytest.mark.parametrize("token", ["short", "change-me-change-me-change-me-change-me", "a" * 40])
def test_a_token_set_at_all_is_a_real_one(token: str) -> None:
    with pytest.raises(ValidationError):
        worker_settings(operator_token=token)


# --- the middleware --------------------------------------------------------------------------------------


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"secret": "table contents"})


async def client_for(token: str) -> TestClient[web.Request, web.Application]:
    app = web.Application(middlewares=[operator_auth(token)])
    app.add_routes(
        [
            web.get("/healthz", ok),
            web.get("/metrics", ok),
            web.get("/projections/lag", ok),
            web.get("/table/", ok),
            web.get("/table/{name}/{key}/", ok),
            web.get("/router/", ok),
        ]
    )
    return TestClient(TestServer(app))


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with await client_for(TOKEN) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/table/", "/table/chat_state/abc/", "/router/", "/no-such-view", "/healthz/x"])
async def test_closed_views_need_the_token(client: TestClient[web.Request, web.Application], path: str) -> None:
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN}):
        response = await client.get(path, headers=headers)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status in (200, 404)


async def test_the_operator_reads_a_table(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/table/chat_state/abc/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200 and (await response.json()) == {"secret": "table contents"}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/projections/lag"])
async def test_health_metrics_and_lag_are_open(client: TestClient[web.Request, web.Application], path: str) -> None:
    assert (await client.get(path)).status == 200


async def test_without_a_token_set_closed_views_refuse_everyone() -> None:
    async with await client_for("") as test_client:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            assert (await test_client.get("/table/", headers=headers)).status == 401
        assert (await test_client.get("/healthz")).status == 200


# --- the console's session cookie and login ------------------------------------------------------------


def test_a_session_cookie_proves_the_token_without_holding_it() -> None:
    cookie = session_cookie_value(TOKEN, now=1_000)
    assert TOKEN not in cookie
    assert session_is_valid(cookie, TOKEN, now=1_001)
    assert not session_is_valid(cookie, TOKEN + "x", now=1_001)
    assert not session_is_valid(cookie, TOKEN, now=1_000 + SESSION_TTL_S)
    assert not session_is_valid(cookie, "", now=1_001)


@pytest.mark.parametrize("forged", ["", ".", "abc", "99999999999.x", "-5.abc", "1e9.abc", f"{10**13}.abc"])
def test_forged_cookies_are_refused(forged: str) -> None:
    assert not session_is_valid(forged, TOKEN, now=0)


def test_a_cookie_cannot_be_moved_to_another_expiry() -> None:
    expiry, _, signature = session_cookie_value(TOKEN, now=1_000).partition(".")
    assert not session_is_valid(f"{int(expiry) + SESSION_TTL_S}.{signature}", TOKEN, now=1_001)


@pytest.mark.parametrize(
    ("origin", "referer", "same"),
    [
        ("http://127.0.0.1:6066", None, True),
        ("http://127.0.0.1:6066/", None, True),
        ("http://127.0.0.1:6067", None, False),
        ("https://127.0.0.1:6066", None, False),
        ("http://evil.example", "http://127.0.0.1:6066/console/login", False),
        ("null", None, False),
        (None, "http://127.0.0.1:6066/console/login?next=x", True),
        (None, "http://evil.example/console/login", False),
        (None, None, False),
    ],
)
def test_the_login_form_must_come_from_this_worker(origin: str | None, referer: str | None, same: bool) -> None:
    assert same_origin(origin, referer, "http", "127.0.0.1:6066") is same


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/console/keys?x=1", "/console/keys?x=1"),
        (None, "/console/tables"),
        ("https://evil.example/console/", "/console/tables"),
        ("//evil.example/console/", "/console/tables"),
        ("/console/\\evil", "/console/tables"),
        ("/table/", "/console/tables"),
    ],
)
def test_after_login_only_console_pages_of_this_worker(target: str | None, safe: str) -> None:
    assert safe_next(target) == safe


async def console_client(token: str) -> TestClient[web.Request, web.Application]:
    app = web.Application(middlewares=[operator_auth(token)])
    app.add_routes(
        [
            web.get("/console/login", show_login),
            web.post("/console/login", partial(log_in, token=token)),
            web.post("/console/logout", log_out),
            web.get("/console/tables", ok),
        ]
    )
    return TestClient(TestServer(app))


async def test_a_browser_logs_in_with_the_token_and_reads_with_the_cookie() -> None:
    async with await console_client(TOKEN) as client:
        page = await client.get("/console/tables", headers={"Accept": "text/html"}, allow_redirects=False)
        assert page.status == 303 and page.headers["Location"].startswith("/console/login?next=%2Fconsole%2Ftables")
        assert (await client.get("/console/tables?format=json", headers={"Accept": "text/html"})).status == 401
        form = await client.get("/console/login")
        assert form.status == 200 and 'id="login-form"' in await form.text()
        assert "script-src" not in form.headers["Content-Security-Policy"]
        origin = {"Origin": str(client.make_url("/")).rstrip("/")}
        wrong = await client.post("/console/login", data={"token": TOKEN + "x"}, headers=origin, allow_redirects=False)
        assert wrong.status == 401 and 'id="login-error"' in await wrong.text()
        good = await client.post(
            "/console/login", data={"token": TOKEN, "next": "/console/tables"}, headers=origin, allow_redirects=False
        )
        assert good.status == 303 and good.headers["Location"] == "/console/tables"
        set_cookie = good.headers["Set-Cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and TOKEN not in set_cookie
        assert (await client.get("/console/tables")).status == 200
        out = await client.post("/console/logout", headers=origin, allow_redirects=False)
        assert out.status == 303
        assert (await client.get("/console/tables")).status == 401


async def test_a_login_posted_from_another_site_is_refused() -> None:
    async with await console_client(TOKEN) as client:
        for headers in ({"Origin": "http://evil.example"}, {}):
            answer = await client.post("/console/login", data={"token": TOKEN}, headers=headers, allow_redirects=False)
            assert answer.status == 403 and "Set-Cookie" not in answer.headers


async def test_without_a_token_set_no_login_opens_anything() -> None:
    async with await console_client("") as client:
        origin = {"Origin": str(client.make_url("/")).rstrip("/")}
        answer = await client.post("/console/login", data={"token": ""}, headers=origin, allow_redirects=False)
        assert answer.status == 401 and "no OPERATOR_TOKEN" in await answer.text()
        assert (await client.get("/console/tables", cookies={SESSION_COOKIE: session_cookie_value("")})).status == 401
