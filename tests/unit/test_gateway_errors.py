"""The error envelope of contract v1, through a tiny app behind `error_middleware`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.rest import errors
from gateway.rest.errors import ApiError, error_middleware, parse_body

MAX_BODY = 1024


class Register(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(min_length=3, max_length=32, pattern=r"^[a-z0-9_.]+$")
    password: str = Field(min_length=8, max_length=256)
    display_name: str | None = Field(None, max_length=64)

    @field_validator("display_name")
    @classmethod
    def not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value


routes = web.RouteTableDef()


@routes.post("/register")
async def register(request: web.Request) -> web.Response:
    body = await parse_body(request, Register)
    return web.json_response({"username": body.username}, status=201)


@routes.get("/taken")
async def taken(request: web.Request) -> web.Response:
    raise errors.conflict("username_taken", "username already taken")


@routes.get("/slow-down")
async def slow_down(request: web.Request) -> web.Response:
    raise errors.rate_limited(42)


@routes.get("/expired")
async def expired(request: web.Request) -> web.Response:
    raise errors.token_expired()


@routes.get("/raw-validation")
async def raw_validation(request: web.Request) -> web.Response:
    Register.model_validate({"username": "x"})
    return web.Response()


@routes.get("/boom")
async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals /etc/passwd")


@routes.get("/redirect")
async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/taken")


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
    app.add_routes(routes)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


Client = TestClient[web.Request, web.Application]


async def error_of(response: Any, status: int) -> dict[str, Any]:
    """The `error` object of a response, after checking its status, media type and envelope shape."""
    assert response.status == status
    assert response.content_type == "application/json"
    body = orjson.loads(await response.read())
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


async def test_a_valid_body_reaches_the_handler(client: Client) -> None:
    response = await client.post("/register", json={"username": "alice", "password": "correct horse"})
    assert response.status == 201
    assert await response.json() == {"username": "alice"}


async def test_api_error_keeps_its_status_and_code(client: Client) -> None:
    error = await error_of(await client.get("/taken"), 409)
    assert error["code"] == "username_taken"


async def test_rate_limited_carries_retry_after(client: Client) -> None:
    response = await client.get("/slow-down")
    error = await error_of(response, 429)
    assert error["code"] == "rate_limited"
    assert response.headers["Retry-After"] == "42"


async def test_expired_token_is_401_with_a_bearer_challenge(client: Client) -> None:
    response = await client.get("/expired")
    assert (await error_of(response, 401))["code"] == "token_expired"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_invalid_field_is_named_without_echoing_the_input(client: Client) -> None:
    response = await client.post("/register", json={"username": "alice", "password": "hunter2"})
    error = await error_of(response, 400)
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == "password"
    assert [e["field"] for e in error["details"]["errors"]] == ["password"]
    assert b"hunter2" not in await response.read()


async def test_every_bad_field_is_listed(client: Client) -> None:
    response = await client.post("/register", json={"username": "A!", "extra": 1})
    error = await error_of(response, 400)
    assert {e["field"] for e in error["details"]["errors"]} == {"username", "password", "extra"}


async def test_a_validator_exception_is_plain_json(client: Client) -> None:
    body = {"username": "alice", "password": "correct horse", "display_name": "  "}
    error = await error_of(await client.post("/register", json=body), 400)
    assert error["details"]["field"] == "display_name"
    assert "must not be blank" in error["details"]["errors"][0]["message"]


@pytest.mark.parametrize("payload", [b"{not json", b"", b"   ", b"[1, 2]", b'"text"', b"null", b"\xff\xfe"])
async def test_a_body_that_is_not_a_json_object_is_400(client: Client, payload: bytes) -> None:
    response = await client.post("/register", data=payload, headers={"Content-Type": "application/json"})
    error = await error_of(response, 400)
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == "body"


async def test_a_validation_error_escaping_a_handler_is_400(client: Client) -> None:
    error = await error_of(await client.get("/raw-validation"), 400)
    assert error["details"]["field"] == "username"


async def test_unknown_route_is_not_found(client: Client) -> None:
    error = await error_of(await client.get("/nowhere"), 404)
    assert error["code"] == "not_found"


async def test_wrong_method_is_405_with_allow(client: Client) -> None:
    response = await client.get("/register")
    assert (await error_of(response, 405))["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "POST"


async def test_a_body_over_the_limit_is_payload_too_large(client: Client) -> None:
    response = await client.post("/register", data=b"x" * (MAX_BODY + 1))
    assert (await error_of(response, 413))["code"] == "payload_too_large"


async def test_an_unexpected_exception_is_a_logged_500_without_details(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.rest.errors"):
        response = await client.get("/boom")
    raw = await response.read()
    assert await error_of(response, 500) == {"code": "internal_error", "message": "internal server error"}
    assert b"secret" not in raw and b"Traceback" not in raw
    assert any(record.exc_info and "GET /boom" in record.getMessage() for record in caplog.records)


async def test_redirects_pass_through(client: Client) -> None:
    response = await client.get("/redirect", allow_redirects=False)
    assert response.status == 302


def test_rate_limited_never_says_retry_after_zero() -> None:
    assert errors.rate_limited(0).headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.invalid_request("username", "too short"), 400, "invalid_request"),
        (errors.unauthenticated(), 401, "unauthenticated"),
        (errors.invalid_credentials(), 401, "invalid_credentials"),
        (errors.invalid_token(), 401, "invalid_token"),
        (errors.token_expired(), 401, "token_expired"),
        (errors.forbidden(), 403, "forbidden"),
        (errors.not_found(), 404, "not_found"),
        (errors.conflict(), 409, "conflict"),
        (errors.conflict("username_taken", "username already taken"), 409, "username_taken"),
        (errors.payload_too_large(), 413, "payload_too_large"),
        (errors.rate_limited(5), 429, "rate_limited"),
    ],
)
def test_constructors_match_the_contract(error: ApiError, status: int, code: str) -> None:
    assert (error.status, error.code) == (status, code)
    assert error.envelope()["error"]["code"] == code
