"""The gateway's request id and access line (`gateway.access_log`), on a small aiohttp app served as
`python -m gateway` serves the real one (the same middleware, signal and access logger)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer

from config.logs import JsonFormatter, bind, log_context, log_scope
from config.settings import GatewaySettings
from gateway import access_log
from gateway.access_log import ACCESS_LOGGER, REQUEST_ID_HEADER, AccessLog
from gateway.infra.command_bus import CommandBus, CommandTimeout
from gateway.rest.errors import error_middleware, unauthenticated
from schemas import topics
from schemas.commands import MarkRead, decode_command

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"
USER_ID = "7d4c3f5e-0000-4000-8000-000000000001"

routes = web.RouteTableDef()
handler_log = logging.getLogger("gateway.tests")


@routes.get("/api/v1/ws")
async def socket_like(request: web.Request) -> web.Response:
    if request.query.get("token") != TOKEN:
        raise unauthenticated()
    bind(user_id=USER_ID)
    handler_log.warning("handling it")
    return web.json_response({"ok": True})


Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def served() -> AsyncIterator[tuple[Client, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [ACCESS_LOGGER, handler_log]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(routes)
    access_log.setup(app)
    server = TestServer(app)
    await server.start_server(access_log_class=AccessLog, access_log=ACCESS_LOGGER)
    try:
        async with TestClient(server) as client:
            yield client, stream
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_one_access_line_per_request_with_the_request_id_and_the_user(served: tuple[Client, io.StringIO]) -> None:
    client, stream = served
    response = await client.get("/api/v1/ws", params={"token": TOKEN}, headers={REQUEST_ID_HEADER: "req-42.a:b"})
    assert response.status == 200
    assert response.headers[REQUEST_ID_HEADER] == "req-42.a:b"
    body = await response.read()
    handled, access = lines(stream)
    assert handled["message"] == "handling it" and handled["request_id"] == "req-42.a:b"
    assert access["logger"] == "gateway.access"
    assert {k: access[k] for k in ("method", "path", "status", "request_id", "user_id")} == {
        "method": "GET",
        "path": "/api/v1/ws",
        "status": 200,
        "request_id": "req-42.a:b",
        "user_id": USER_ID,
    }
    assert access["bytes"] > len(body) and access["duration_ms"] >= 0, "bytes sent, the headers included"


async def test_the_token_query_parameter_never_reaches_a_log(served: tuple[Client, io.StringIO]) -> None:
    client, stream = served
    await client.get("/api/v1/ws", params={"token": TOKEN})
    await client.get("/api/v1/ws", params={"token": TOKEN + "x", "other": "1"})
    assert len(lines(stream)) == 3
    assert "token" not in stream.getvalue() and TOKEN not in stream.getvalue()


@pytest.mark.parametrize("given", ["", "a b", "x" * 129, "id;forged=1", "<script>"])
async def test_an_insane_request_id_is_replaced_by_a_new_one(served: tuple[Client, io.StringIO], given: str) -> None:
    client, stream = served
    response = await client.get("/api/v1/ws", headers={REQUEST_ID_HEADER: given} if given else {})
    assert response.status == 401, "an error envelope carries the id too"
    request_id = response.headers[REQUEST_ID_HEADER]
    assert request_id != given and len(request_id) == 32
    [access] = lines(stream)
    assert access["request_id"] == request_id and access["status"] == 401 and "user_id" not in access


async def test_each_request_gets_its_own_id(served: tuple[Client, io.StringIO]) -> None:
    client, stream = served
    ids = [(await client.get("/nowhere")).headers[REQUEST_ID_HEADER] for _ in range(3)]
    assert len(set(ids)) == 3
    assert [line["request_id"] for line in lines(stream)] == ids


class SentCommands:
    """A producer that keeps what it is given (the command bus's only use of it here)."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> None:
        self.values.append(value)


async def test_a_command_puts_its_ids_on_the_rest_of_the_request() -> None:
    """What the command bus binds stays for the lines after the send (waiting for the reply and the
    read models, the access line): those lines carry the ids the worker's lines and events carry."""
    producer = SentCommands()
    bus = CommandBus(GatewaySettings.model_construct(topic_prefix="t."), cast(AIOKafkaProducer, producer), "gw")
    with log_scope(request_id="r-1"):
        with pytest.raises(CommandTimeout):
            await bus.ask(topics.MESSAGE_SEND, "k", MarkRead(chat_id=uuid.uuid4(), seq=1), uuid.uuid4(), timeout=0.01)
        ids = dict(log_context())
    [sent] = [decode_command(value) for value in producer.values]
    assert ids == {"request_id": "r-1", "command_id": sent.command_id, "correlation_id": sent.correlation_id}


def test_no_access_line_is_made_below_info() -> None:
    quiet = logging.getLogger("tests.access.quiet")
    quiet.setLevel(logging.WARNING)
    assert not AccessLog(quiet, "").enabled
    quiet.setLevel(logging.INFO)
    assert AccessLog(quiet, "").enabled
