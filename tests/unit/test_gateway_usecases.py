"""The gateway's use cases without services: where a command goes, what it costs, how a refusal
reads, and how each side renders it (REST by status, a socket by an `error` frame)."""

from __future__ import annotations

import asyncio
import typing
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from config.settings import GatewaySettings
from gateway.infra import read_store
from gateway.infra.command_bus import CommandTimeout
from gateway.infra.consistency import NotProjected
from gateway.rest.errors import from_refusal
from gateway.usecases.commands import TOPIC_OF, execute, partition_key
from gateway.usecases.ports import Actor, Ports
from gateway.usecases.refusal import Refused
from gateway.ws.handlers import names_chat
from schemas import topics
from schemas.commands import Body, Origin, Register, Reply, SendMessage, UpdateProfile
from schemas.frames import DeleteFrame, EditFrame, ReadFrame, SendFrame, SyncFrame, TypingFrame

USER = uuid.UUID("00000000-0000-0000-0000-00000000000a")
CHAT = uuid.UUID("00000000-0000-0000-0000-0000000000c1")


@dataclass
class FakeBus:
    reply: Reply | None = None
    asked: list[tuple[str, str, Body, uuid.UUID | None, Origin | None]] = field(default_factory=list)

    async def ask(
        self,
        topic: topics.TopicSpec,
        key: str,
        body: Body,
        actor_id: uuid.UUID | None,
        origin: Origin | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        self.asked.append((topic.name, key, body, actor_id, origin))
        if self.reply is None:
            raise CommandTimeout("no reply")
        return self.reply


@dataclass
class FakeWatermarks:
    projected: bool = True
    waited: list[Reply] = field(default_factory=list)

    async def require_reply(self, reply: Reply, db: read_store.Pool, timeout: float = 10.0) -> None:
        self.waited.append(reply)
        if not self.projected:
            raise NotProjected("not yet")


@dataclass
class FakeBudget:
    wait_ms: int = 0
    taken: list[tuple[str, int]] = field(default_factory=list)

    async def take(self, user_id: str, cost: int = 1) -> int:
        self.taken.append((user_id, cost))
        return self.wait_ms


def ports(bus: FakeBus, watermarks: FakeWatermarks | None = None, budget: FakeBudget | None = None) -> Ports:
    return Ports(
        bus=bus,
        watermarks=watermarks or FakeWatermarks(),
        pool=cast(read_store.Pool, None),
        budget=budget or FakeBudget(),
        settings=cast(GatewaySettings, None),
    )


def accepted() -> Reply:
    return Reply(correlation_id="c", ok=True)


def refusal(code: str, message: str | None) -> Reply:
    return Reply(correlation_id="c", ok=False, code=code, message=message)


def send() -> SendMessage:
    return SendMessage(chat_id=CHAT, client_msg_id="m1", text="hi")


def test_every_command_has_a_topic() -> None:
    kinds = typing.get_args(typing.get_args(Body)[0])
    assert set(TOPIC_OF) == set(kinds)


def test_a_chats_messages_share_one_topic_keyed_by_the_chat() -> None:
    assert TOPIC_OF[SendMessage] is topics.MESSAGE_SEND
    assert partition_key(send()) == str(CHAT)
    register = Register(user_id=USER, username="alice", display_name="Alice", password_hash="x")
    assert partition_key(register) == "alice"
    assert partition_key(UpdateProfile(user_id=USER)) == str(USER)


def test_a_write_is_charged_sent_and_waited_for() -> None:
    bus, watermarks, budget = FakeBus(accepted()), FakeWatermarks(), FakeBudget()
    reply = asyncio.run(execute(ports(bus, watermarks, budget), Actor(USER), send()))
    assert reply.ok
    assert budget.taken == [(str(USER), 1)]
    assert bus.asked == [("message.send", str(CHAT), send(), USER, None)]
    assert watermarks.waited == [reply]


def test_a_sockets_write_is_not_charged_twice_and_names_its_socket() -> None:
    origin = Origin(instance_id="i", connection_id="s")
    bus, budget = FakeBus(accepted()), FakeBudget()
    asyncio.run(execute(ports(bus, budget=budget), Actor(USER, origin=origin, prepaid=True), send()))
    assert budget.taken == []
    assert bus.asked[0][4] == origin


def test_a_write_over_the_budget_is_refused_before_it_is_sent() -> None:
    bus = FakeBus(accepted())
    with pytest.raises(Refused) as refused:
        asyncio.run(execute(ports(bus, budget=FakeBudget(wait_ms=1500)), Actor(USER), send()))
    assert (refused.value.code, refused.value.retry_after_ms) == ("rate_limited", 1500)
    assert bus.asked == []


@pytest.mark.parametrize(
    ("bus", "watermarks", "code"),
    [
        (FakeBus(refusal("not_found", "no such chat")), FakeWatermarks(), "not_found"),
        (FakeBus(refusal("group_full", None)), FakeWatermarks(), "group_full"),
        (FakeBus(None), FakeWatermarks(), "unavailable"),
        (FakeBus(accepted()), FakeWatermarks(projected=False), "unavailable"),
    ],
    ids=["refused", "refused without a message", "no reply in time", "not projected in time"],
)
def test_every_failure_is_one_refusal_with_the_contracts_code(
    bus: FakeBus, watermarks: FakeWatermarks, code: str
) -> None:
    with pytest.raises(Refused) as refused:
        asyncio.run(execute(ports(bus, watermarks), Actor(USER), send()))
    assert refused.value.code == code
    assert refused.value.message


@pytest.mark.parametrize(
    ("refused", "status", "headers", "details"),
    [
        (Refused("not_found", "no such chat"), 404, {}, None),
        (Refused("forbidden", "no"), 403, {}, None),
        (Refused("username_taken", "taken"), 409, {}, None),
        (Refused("group_full", "full"), 409, {}, None),
        (Refused("something_new", "?"), 409, {}, None),
        (Refused("invalid_request", "no such user", field="user_id"), 400, {}, {"field": "user_id"}),
        (Refused("rate_limited", "slow down", retry_after_ms=1200), 429, {"Retry-After": "2"}, {"retry_after": 2}),
        (Refused("unavailable", "retry"), 503, {"Retry-After": "1"}, None),
    ],
)
def test_rest_renders_a_refusal_by_one_table(
    refused: Refused, status: int, headers: dict[str, str], details: dict[str, Any] | None
) -> None:
    error = from_refusal(refused)
    assert (error.status, error.code, error.message) == (status, refused.code, refused.message)
    assert error.headers == headers
    assert error.details == details


def test_a_socket_calls_a_chat_it_is_not_in_forbidden_where_the_frame_names_the_chat() -> None:
    message_id = uuid.uuid4()
    assert names_chat(SendFrame(type="message.send", chat_id=CHAT, client_msg_id="m", text="t"))
    assert names_chat(ReadFrame(type="read", chat_id=CHAT, seq=1))
    assert not names_chat(EditFrame(type="message.edit", message_id=message_id, text="t"))
    assert not names_chat(DeleteFrame(type="message.delete", message_id=message_id))
    assert not names_chat(SyncFrame(type="sync", chat_id=CHAT, after_seq=0))
    assert not names_chat(TypingFrame(type="typing", chat_id=CHAT))
