"""The operator token of the workers' web views (`runtime.operator_auth`) and the settings that
refuse to expose them without one. The real workers are tested in tests/e2e/test_worker_views.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from config.settings import WorkerSettings, is_loopback
from runtime.operator_auth import bearer_token, operator_auth, token_matches

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
