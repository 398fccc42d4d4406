"""The WebSocket protocol end to end: real workers, two gateways, real sockets (contract v1,
"WebSocket"). Users on different gateway instances talk both ways; a user with a socket on each
instance gets every frame on both. Tests run in file order; the last one stops a gateway."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.infra.consistency import APPLICATION_NAME, PING_INTERVAL_S
from schemas import codec, topics
from schemas.commands import AddMember, Delivery, RemoveMember
from tests.e2e.gateway_harness import Client, Frame, GatewaySystem, module_system, small_receive_buffer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, template_database: str
) -> AsyncIterator[GatewaySystem]:
    async with module_system("ws", topic_prefix, tmp_path_factory, jwt_secret, template_database) as system:
        yield system


def cid() -> str:
    return uuid.uuid4().hex[:12]


def send(chat_id: uuid.UUID, text: str, client_msg_id: str | None = None) -> dict[str, Any]:
    return {"type": "message.send", "chat_id": str(chat_id), "client_msg_id": client_msg_id or cid(), "text": text}


def is_message(client_msg_id: str) -> Callable[[Frame], bool]:
    return lambda f: f["message"]["client_msg_id"] == client_msg_id


def is_ack(client_msg_id: str) -> Callable[[Frame], bool]:
    return lambda f: f["client_msg_id"] == client_msg_id


async def close_all(*clients: Client) -> None:
    await asyncio.gather(*(c.close() for c in clients))


# --- the handshake ------------------------------------------------------------------------------


async def test_a_bad_or_missing_token_is_refused_with_401_before_the_upgrade(system: GatewaySystem) -> None:
    gateway = system.gateways[0]
    for headers, params, code in [
        ({}, {}, "unauthenticated"),
        ({"Authorization": "Bearer not-a-jwt"}, {}, "invalid_token"),
        ({"Authorization": "Basic abc"}, {}, "invalid_token"),
        ({}, {"token": "not-a-jwt"}, "invalid_token"),
    ]:
        async with system.http.get(gateway.ws_url, headers=headers, params=params) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == code
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await system.http.ws_connect(gateway.ws_url, headers={"Authorization": "Bearer nope"})
    assert caught.value.status == 401


async def test_an_expired_token_is_refused_with_401(system: GatewaySystem) -> None:
    from gateway.auth.tokens import issue_access_token

    token, _ = issue_access_token(system.settings, uuid.uuid4(), uuid.uuid4().hex, now=time.time() - 3600)
    async with system.http.get(system.gateways[0].ws_url, params={"token": token}) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "token_expired"


async def test_a_token_in_the_query_opens_a_socket(system: GatewaySystem) -> None:
    client = await system.connect(system.gateways[1], uuid.uuid4(), via_query=True)
    await client.send({"type": "ping"})
    await client.expect("pong")
    await client.close()


async def test_a_foreign_origin_is_refused_with_403_allowed_and_own_origins_pass(system: GatewaySystem) -> None:
    gateway = system.gateways[0]
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await system.connect(gateway, uuid.uuid4(), headers={"Origin": "https://evil.example"})
    assert caught.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await system.connect(gateway, uuid.uuid4(), headers={"Origin": f"https://127.0.0.1:{gateway.port}"})
    assert caught.value.status == 403, "another scheme is another origin"
    for allowed in (system.settings.origin_list[0], gateway.url):
        client = await system.connect(gateway, uuid.uuid4(), headers={"Origin": allowed})
        await client.send({"type": "ping"})
        await client.expect("pong")
        await client.close()


# --- bad frames ---------------------------------------------------------------------------------


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(system: GatewaySystem) -> None:
    client = await system.connect(system.gateways[0], uuid.uuid4())
    chat = str(uuid.uuid4())
    cases = [
        ("not json", "invalid_request", None),
        ("[1, 2]", "invalid_request", None),
        ('{"chat_id": "x"}', "invalid_request", None),
        ('{"type": "message.shout", "client_msg_id": "u1"}', "unknown_type", "u1"),
        (
            json.dumps({"type": "message.send", "chat_id": chat, "client_msg_id": "t1", "text": ""}),
            "invalid_request",
            "t1",
        ),
        (
            json.dumps({"type": "message.send", "chat_id": chat, "client_msg_id": "t2", "text": "x" * 4001}),
            "invalid_request",
            "t2",
        ),
        (json.dumps({"type": "read", "chat_id": chat, "seq": "3"}), "invalid_request", None),
    ]
    for text, code, ref in cases:
        await client.send_raw(text)
        error = await client.expect("error")
        assert (error["code"], error["ref"]) == (code, ref), text
        assert error["message"]
    await client.socket.send_bytes(b"\x00\x01")
    assert (await client.expect("error"))["code"] == "invalid_request"
    await client.send({"type": "ping"})
    await client.expect("pong")
    await client.close()


async def test_a_frame_over_64_kib_closes_the_socket_with_1009(system: GatewaySystem) -> None:
    client = await system.connect(system.gateways[1], uuid.uuid4())
    await client.send_raw('{"type": "ping", "pad": "%s"}' % ("x" * (64 * 1024)))
    assert await client.close_code() == 1009


async def test_a_flood_of_frames_is_rate_limited_and_the_socket_stays_open(system: GatewaySystem) -> None:
    client = await system.connect(system.gateways[0], uuid.uuid4())
    for _ in range(150):
        await client.send({"type": "ping", "client_msg_id": "p"})
    frames = await client.drain()
    limited = [f for f in frames if f["type"] == "error"]
    assert limited and all((f["code"], f["ref"]) == ("rate_limited", "p") for f in limited)
    assert 50 <= sum(f["type"] == "pong" for f in frames) < 150
    await asyncio.sleep(0.2)
    await client.send({"type": "ping"})
    await client.expect("pong")
    await client.close()


# --- conversations ------------------------------------------------------------------------------


async def test_users_on_different_instances_talk_both_ways(system: GatewaySystem) -> None:
    a_gw, b_gw = system.gateways[:2]
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id], direct=True)
    alice = await system.connect(a_gw, alice_id, label="alice@A")
    bob = await system.connect(b_gw, bob_id, label="bob@B")

    await alice.send(send(chat, "hello bob", "a-1"))
    ack = await alice.expect("message.ack")
    assert ack["client_msg_id"] == "a-1" and ack["message"]["text"] == "hello bob"
    assert ack["message"]["seq"] == 1 and ack["message"]["sender_id"] == str(alice_id)
    new = await bob.expect("message.new")
    assert new["message"] == ack["message"]

    await bob.send(send(chat, "hi alice", "b-1"))
    assert (await bob.expect("message.ack"))["message"]["seq"] == 2
    assert (await alice.expect("message.new"))["message"]["text"] == "hi alice"

    assert not [f for f in await alice.drain() if f["type"] == "message.new"], "the sender gets the ack only"
    await close_all(alice, bob)


async def test_a_send_is_idempotent_by_client_msg_id(system: GatewaySystem) -> None:
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    alice = await system.connect(system.gateways[0], alice_id)
    await alice.send(send(chat, "once", "same"))
    first = await alice.expect("message.ack")
    await alice.send(send(chat, "once", "same"))
    again = await alice.expect("message.ack")
    assert again["message"] == first["message"]
    await alice.close()


async def test_a_user_with_a_socket_on_each_instance_gets_every_frame_on_both(system: GatewaySystem) -> None:
    a_gw, b_gw = system.gateways[:2]
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    alice_a = await system.connect(a_gw, alice_id, label="alice@A")
    alice_b = await system.connect(b_gw, alice_id, label="alice@B")
    bob = await system.connect(a_gw, bob_id, label="bob@A")

    await alice_a.send(send(chat, "from A", "x-1"))
    ack = await alice_a.expect("message.ack")
    assert (await alice_b.expect("message.new"))["message"] == ack["message"]
    assert (await bob.expect("message.new"))["message"] == ack["message"]

    await bob.send(send(chat, "to both", "y-1"))
    for client in (alice_a, alice_b):
        assert (await client.expect("message.new"))["message"]["text"] == "to both"

    await alice_b.send(send(chat, "from B", "x-2"))
    await alice_b.expect("message.ack")
    assert (await alice_a.expect("message.new", is_message("x-2")))["message"]["seq"] == 3
    await bob.expect("message.new", is_message("x-2"))

    own_news = [
        f for f in await alice_a.drain() if f["type"] == "message.new" and f["message"]["client_msg_id"] == "x-1"
    ]
    assert own_news == [], "the sending socket gets message.ack, not message.new"
    await close_all(alice_a, alice_b, bob)


async def test_a_group_message_reaches_every_member_s_sockets_once_across_instances(system: GatewaySystem) -> None:
    """One `message.delivered` record names every member; each gets the frame on each socket,
    the sending socket the ack instead, the sender's other socket the frame (issue 14)."""
    a_gw, b_gw = system.gateways[:2]
    alice_id, bob_id, carol_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id, carol_id])
    alice_a = await system.connect(a_gw, alice_id, label="alice@A")
    alice_b = await system.connect(b_gw, alice_id, label="alice@B")
    bob = await system.connect(a_gw, bob_id, label="bob@A")
    carol = await system.connect(b_gw, carol_id, label="carol@B")

    await alice_a.send(send(chat, "to the group", "g-1"))
    ack = await alice_a.expect("message.ack")
    for client in (alice_b, bob, carol):
        assert (await client.expect("message.new", is_message("g-1")))["message"] == ack["message"]
    await bob.send(send(chat, "and back", "g-2"))
    for client in (alice_a, alice_b, carol):
        await client.expect("message.new", is_message("g-2"))
    for client in (alice_a, alice_b, bob, carol):
        news = [f["message"]["client_msg_id"] for f in await client.drain(0.5) if f["type"] == "message.new"]
        assert news == [], f"{client.label} got a frame twice or its own: {news}"
    await close_all(alice_a, alice_b, bob, carol)


async def test_a_record_of_one_recipient_as_older_workers_wrote_is_still_delivered(system: GatewaySystem) -> None:
    """A rolling upgrade: the v1 `Delivery` (one recipient, keyed by its id) left in the topic by
    a streams worker of before is pushed as before."""
    bob_id = uuid.uuid4()
    bob = await system.connect(system.gateways[0], bob_id, label="bob@A")
    frame = {"type": "message.new", "message": {"chat_id": str(uuid.uuid4()), "seq": 1, "client_msg_id": "v1"}}
    topic = system.settings.topic(topics.MESSAGE_DELIVERED.name)
    await system.producer.send(topic, codec.dumps(Delivery(recipient_id=bob_id, frame=frame)), key=str(bob_id).encode())
    await system.producer.flush()
    assert (await bob.expect("message.new", is_message("v1")))["message"] == frame["message"]
    await close_all(bob)


async def test_edit_delete_and_read_reach_every_member(system: GatewaySystem) -> None:
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    alice = await system.connect(system.gateways[0], alice_id, label="alice")
    bob = await system.connect(system.gateways[1], bob_id, label="bob")
    await alice.send(send(chat, "typo", "e-1"))
    message = (await alice.expect("message.ack"))["message"]
    await bob.expect("message.new")

    await bob.send({"type": "message.edit", "message_id": message["id"], "text": "not mine", "client_msg_id": "nope"})
    assert (await bob.expect("error"))["code"] == "forbidden"

    await alice.send({"type": "message.edit", "message_id": message["id"], "text": "fixed"})
    for client in (alice, bob):
        edited = (await client.expect("message.edited"))["message"]
        assert (edited["id"], edited["text"], edited["seq"]) == (message["id"], "fixed", 1)
        assert edited["edited_at"] is not None

    await bob.send({"type": "read", "chat_id": str(chat), "seq": 1})
    for client in (alice, bob):
        read = await client.expect("read")
        assert read == {"type": "read", "chat_id": str(chat), "user_id": str(bob_id), "seq": 1}

    await alice.send({"type": "message.delete", "message_id": message["id"]})
    for client in (alice, bob):
        deleted = await client.expect("message.deleted")
        assert deleted == {"type": "message.deleted", "chat_id": str(chat), "message_id": message["id"], "seq": 1}

    await alice.send({"type": "message.edit", "message_id": str(uuid.uuid4()), "text": "ghost"})
    assert (await alice.expect("error"))["code"] == "not_found"
    await close_all(alice, bob)


async def test_typing_reaches_the_other_members_and_is_not_stored(system: GatewaySystem) -> None:
    alice_id, bob_id, carol_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id, carol_id])
    alice = await system.connect(system.gateways[0], alice_id, label="alice")
    bob = await system.connect(system.gateways[1], bob_id, label="bob")
    carol = await system.connect(system.gateways[0], carol_id, label="carol")
    await alice.send({"type": "typing", "chat_id": str(chat)})
    expected = {"type": "typing", "chat_id": str(chat), "user_id": str(alice_id)}
    assert await bob.expect("typing") == expected
    assert await carol.expect("typing") == expected
    assert not [f for f in await alice.drain() if f["type"] == "typing"]
    await alice.send({"type": "sync", "chat_id": str(chat), "after_seq": 0})
    assert (await alice.expect("sync.done"))["last_seq"] == 0
    await close_all(alice, bob, carol)


async def test_a_new_chat_reaches_its_members_as_chat_updated(system: GatewaySystem) -> None:
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    alice = await system.connect(system.gateways[0], alice_id)
    bob = await system.connect(system.gateways[1], bob_id)
    chat = await system.create_chat(alice_id, [bob_id])
    for client in (alice, bob):
        updated = (await client.expect("chat.updated"))["chat"]
        assert updated["id"] == str(chat)
        assert {m["user_id"]: m["role"] for m in updated["members"]} == {str(alice_id): "owner", str(bob_id): "member"}
    await close_all(alice, bob)


async def test_member_changes_arrive_as_deltas_and_the_chat_follows_its_members(system: GatewaySystem) -> None:
    """v1.1: the members get `chat.member_added`/`chat.member_removed`, the added member alone the
    whole chat; from then on the added member gets the chat's messages, the removed one no more."""
    alice_id, bob_id, carol_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    alice = await system.connect(system.gateways[0], alice_id, label="alice")
    bob = await system.connect(system.gateways[1], bob_id, label="bob")
    carol = await system.connect(system.gateways[1], carol_id, label="carol")

    assert (
        await system.bus.ask(topics.CHAT_COMMANDS, str(chat), AddMember(chat_id=chat, user_id=carol_id), alice_id)
    ).ok
    added = {"type": "chat.member_added", "chat_id": str(chat), "user_id": str(carol_id), "role": "member"}
    assert await alice.expect("chat.member_added") == added
    assert await bob.expect("chat.member_added") == added
    whole = (await carol.expect("chat.updated"))["chat"]
    assert (whole["id"], len(whole["members"])) == (str(chat), 3)
    await alice.send(send(chat, "welcome", "join-1"))
    await alice.expect("message.ack")
    await carol.expect("message.new", is_message("join-1"))

    assert (
        await system.bus.ask(topics.CHAT_COMMANDS, str(chat), RemoveMember(chat_id=chat, user_id=carol_id), alice_id)
    ).ok
    removed = {"type": "chat.member_removed", "chat_id": str(chat), "user_id": str(carol_id)}
    for client in (alice, bob, carol):
        assert await client.expect("chat.member_removed") == removed
    await alice.send(send(chat, "after carol", "join-2"))
    await alice.expect("message.ack")
    await bob.expect("message.new", is_message("join-2"))
    assert not [f for f in await carol.drain() if f["type"] == "message.new"], "a removed member gets no more messages"
    for client in (alice, bob):
        assert not [f for f in await client.drain() if f["type"] == "chat.updated"], "members get deltas, not the chat"
    await close_all(alice, bob, carol)


async def test_presence_follows_the_first_and_the_last_socket_across_instances(system: GatewaySystem) -> None:
    dave_id, erin_id = uuid.uuid4(), uuid.uuid4()
    await system.create_chat(dave_id, [erin_id])
    dave = await system.connect(system.gateways[0], dave_id, label="dave")

    def erin_is(online: bool) -> Callable[[Frame], bool]:
        return lambda f: f["user_id"] == str(erin_id) and f["online"] is online

    erin_a = await system.connect(system.gateways[0], erin_id)
    await dave.expect("presence", erin_is(True))
    erin_b = await system.connect(system.gateways[1], erin_id)
    await erin_a.close()
    await asyncio.sleep(0.5)
    flips = [f for f in await dave.drain() if f["type"] == "presence" and f["online"] is False]
    assert not flips, "erin was online all along (an introduction may repeat that she is online)"
    await erin_b.close()
    await dave.expect("presence", erin_is(False))
    await dave.close()


async def test_a_socket_that_opens_is_told_which_partners_are_online_now(system: GatewaySystem) -> None:
    frank_id, gina_id, hal_id, ivy_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await system.create_chat(frank_id, [gina_id, hal_id])
    await system.create_chat(ivy_id, [gina_id])
    gina = await system.connect(system.gateways[1], gina_id, label="gina")
    frank = await system.connect(system.gateways[0], frank_id, label="frank")
    told = await frank.expect("presence")
    assert (told["user_id"], told["online"]) == (str(gina_id), True)
    others = [f for f in await frank.drain() if f["type"] == "presence" and f["user_id"] != str(gina_id)]
    assert not others, "hal is offline; ivy is no partner"
    await asyncio.gather(frank.close(), gina.close())


async def test_members_of_a_new_chat_and_an_added_member_learn_who_of_them_is_online(system: GatewaySystem) -> None:
    jay_id, kim_id, lou_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    jay = await system.connect(system.gateways[0], jay_id, label="jay")
    kim = await system.connect(system.gateways[1], kim_id, label="kim")
    lou = await system.connect(system.gateways[1], lou_id, label="lou")
    chat = await system.create_chat(jay_id, [kim_id])
    for viewer, partner in ((jay, kim_id), (kim, jay_id)):
        told = await viewer.expect("presence", lambda f, p=partner: f["user_id"] == str(p))  # type: ignore[misc]
        assert told["online"] is True, f"{viewer.label} learns that a new partner is online"
    reply = await system.bus.ask(topics.CHAT_COMMANDS, str(chat), AddMember(chat_id=chat, user_id=lou_id), jay_id)
    assert reply.ok, reply
    told = await jay.expect("presence", lambda f: f["user_id"] == str(lou_id))
    assert told["online"] is True
    assert {f["user_id"] for f in [await lou.expect("presence") for _ in range(2)]} == {str(jay_id), str(kim_id)}
    await close_all(jay, kim, lou)


async def test_a_non_member_is_forbidden(system: GatewaySystem) -> None:
    alice_id, bob_id, mallory_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    mallory = await system.connect(system.gateways[1], mallory_id)
    frames: list[dict[str, Any]] = [
        send(chat, "let me in", "m-1"),
        {"type": "read", "chat_id": str(chat), "seq": 1, "client_msg_id": "m-2"},
        {"type": "typing", "chat_id": str(chat), "client_msg_id": "m-3"},
        {"type": "sync", "chat_id": str(chat), "after_seq": 0, "client_msg_id": "m-4"},
    ]
    for frame in frames:
        await mallory.send(frame)
        error = await mallory.expect("error")
        assert (error["code"], error["ref"]) == ("forbidden", frame["client_msg_id"])
    await mallory.close()


async def test_reconnect_and_sync_returns_every_missed_message_in_order_once(system: GatewaySystem) -> None:
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    alice = await system.connect(system.gateways[0], alice_id)
    bob = await system.connect(system.gateways[1], bob_id)
    await alice.send(send(chat, "seen"))
    await alice.expect("message.ack")
    seen = (await bob.expect("message.new"))["message"]["seq"]
    await bob.close()

    sent = []
    for i in range(12):
        await alice.send(send(chat, f"missed {i}", f"m{i}"))
    for _ in range(12):
        sent.append((await alice.expect("message.ack"))["message"])

    bob = await system.connect(system.gateways[1], bob_id)
    await bob.send({"type": "sync", "chat_id": str(chat), "after_seq": seen})
    done = await bob.expect("sync.done")
    synced = [f["message"] for f in bob.inbox if f["type"] == "message.new"]
    assert [m["seq"] for m in synced] == list(range(seen + 1, seen + 13))
    assert sorted(synced, key=lambda m: m["seq"]) == sorted(sent, key=lambda m: m["seq"])
    assert done == {"type": "sync.done", "chat_id": str(chat), "last_seq": seen + 12}
    await close_all(alice, bob)


async def test_after_redis_drops_the_pubsub_connections_every_socket_gets_every_message_once(
    system: GatewaySystem,
) -> None:
    """Messages sent while the gateways' subscribers reconnect are published to nobody (pub/sub is
    at-most-once): the gateways resync their sockets from the read models once they are back,
    so the recipient still gets each message once and in order, and the sender none of its own."""
    a_gw, b_gw = system.gateways[:2]
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    alice = await system.connect(b_gw, alice_id, label="alice@B")
    bob = await system.connect(a_gw, bob_id, label="bob@A")
    resyncs_before = a_gw.metric("gateway_ws_resyncs_total")
    redis = aioredis.from_url(system.settings.redis_url)
    try:
        assert await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 2  # type: ignore[no-untyped-call]
    finally:
        await redis.aclose()
    sent = [cid() for _ in range(10)]
    for client_msg_id in sent:
        await alice.send(send(chat, "during the drop", client_msg_id))
    acks = [await alice.expect("message.ack", is_ack(c)) for c in sent]
    got = [(await bob.expect("message.new", is_message(c), timeout=15))["message"] for c in sent]
    assert [m["seq"] for m in got] == [a["message"]["seq"] for a in acks]
    assert [m["seq"] for m in got] == sorted(m["seq"] for m in got)
    left_over = await bob.drain(quiet=1.0) + await alice.drain(quiet=0.2)
    assert [f for f in left_over if f["type"] == "message.new"] == [], "a message came twice"
    assert a_gw.metric("gateway_ws_resyncs_total") > resyncs_before, "the gateway did not resync its sockets"
    await close_all(alice, bob)


async def test_a_stall_of_the_server_does_not_turn_a_steady_client_into_rate_limited(system: GatewaySystem) -> None:
    """The streams worker stalls for 6 s while a client sends 30 frames a second (under the
    40/s budget): 32 commands wait in flight, the gateway stops reading the socket, and the rest
    wait in its buffers. Read in one burst once the stall ends, they are still within budget."""
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    alice = await system.connect(system.gateways[0], alice_id)
    streams = next(w for w in system.workers if w.name == "streams")
    sent = [f"steady-{i}" for i in range(180)]
    streams.popen.send_signal(signal.SIGSTOP)
    try:
        for client_msg_id in sent:
            await alice.send(send(chat, "steady", client_msg_id))
            await asyncio.sleep(1 / 30)
    finally:
        streams.popen.send_signal(signal.SIGCONT)
    answers = [await first_of(alice, ("message.ack", "error"), timeout=30) for _ in sent]
    refused = [a for a in answers if a["type"] == "error"]
    assert refused == [], refused[:3]
    assert sorted(a["client_msg_id"] for a in answers) == sorted(sent)
    await alice.close()


async def test_a_lost_listen_connection_is_reopened_and_writes_stay_fast(system: GatewaySystem) -> None:
    """PostgreSQL ends the gateways' LISTEN connections (as a restart does): each gateway notices,
    reopens it and counts it; the next writes are acked as fast as before, not after a timeout."""
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    alice = await system.connect(system.gateways[0], alice_id)
    reopened_before = system.gateways[0].metric('gateway_reconnects_total{connection="projection_progress_listener"}')
    admin = await asyncpg.connect(system.settings.database_url)
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
    finally:
        await admin.close()
    assert ended >= 2, "each gateway has its LISTEN connection"
    for i in range(5):
        started = time.monotonic()
        await alice.send(send(chat, f"after the drop {i}", f"drop-{i}"))
        await alice.expect("message.ack", is_ack(f"drop-{i}"))
        assert time.monotonic() - started < 3.0, "a write waited for a LISTEN that was gone"
    reopened = 'gateway_reconnects_total{connection="projection_progress_listener"}'
    await until_true(lambda: system.gateways[0].metric(reopened) > reopened_before)
    await asyncio.sleep(PING_INTERVAL_S + 1)
    assert system.gateways[0].metric(reopened) == reopened_before + 1, "reopened once, and then kept"
    await alice.close()


async def until_true(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.1)


async def test_a_write_the_read_models_do_not_reach_in_time_is_refused_not_acked(system: GatewaySystem) -> None:
    """With the projections worker stalled, a send is durable but cannot be read back: the client
    gets `unavailable` (REST: 503 with Retry-After), never an ack, and `/healthz` names the
    worker. Retried with the same `client_msg_id` once it runs again, it is acked and stored once."""
    gateway = system.gateways[0]
    alice_id, bob_id = uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    alice = await system.connect(gateway, alice_id, label="alice")
    projections = next(w for w in system.workers if w.name == "projections")
    projections.popen.send_signal(signal.SIGSTOP)
    try:
        await alice.send(send(chat, "stalled", "stall-1"))
        error = await alice.expect("error", timeout=30)
        assert (error["code"], error["ref"]) == ("unavailable", "stall-1")
        assert not [f for f in alice.inbox if f["type"] == "message.ack"]
        headers = {"Authorization": f"Bearer {await system.token(alice_id)}"}
        body = {"text": "stalled too", "client_msg_id": "stall-2"}
        async with system.http.post(
            f"{gateway.url}/api/v1/chats/{chat}/messages", json=body, headers=headers
        ) as response:
            assert response.status == 503 and response.headers["Retry-After"] == "1"
            assert (await response.json())["error"]["code"] == "unavailable"
        async with system.http.get(f"{gateway.url}/healthz") as response:
            health = await response.json()
            assert response.status == 503 and health["workers"]["projections"].startswith("down"), health
    finally:
        projections.popen.send_signal(signal.SIGCONT)
    for _ in range(8):
        await alice.send(send(chat, "stalled", "stall-1"))
        frame = await first_of(alice, ("message.ack", "error"), timeout=25)
        if frame["type"] == "message.ack":
            break
        assert frame["code"] == "unavailable", frame
    else:
        raise AssertionError("the retried send was never acked")
    async with system.http.get(f"{gateway.url}/api/v1/chats/{chat}/messages", headers=headers) as response:
        history = await response.json()
        stored = [m for m in history["messages"] if m["client_msg_id"] == "stall-1"]
    assert len(stored) == 1, (history, frame)
    assert len(stored) == 1 and stored[0]["id"] == frame["message"]["id"]
    await alice.close()


async def first_of(client: Client, types: tuple[str, ...], timeout: float) -> Frame:
    """The next frame of any of `types` (others stay in the inbox)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for i, frame in enumerate(client.inbox):
            if frame["type"] in types:
                return client.inbox.pop(i)
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"{client.label}: none of {types} in {timeout} s")
        try:
            client.inbox.append(await client.receive(left))
        except TimeoutError:
            continue


# --- a slow consumer, and stopping -------------------------------------------------------------


async def flood(system: GatewaySystem, user_id: uuid.UUID, records: int, size: int) -> None:
    """`records` big frames for `user_id`, written to message.delivered as the streams would."""
    topic = system.settings.topic(topics.MESSAGE_DELIVERED.name)
    for i in range(records):
        frame = {"type": "message.new", "message": {"text": uuid.uuid4().hex * (size // 32), "n": i}}
        value = codec.dumps(Delivery(recipient_id=user_id, frame=frame))
        await system.producer.send(topic, value, key=str(user_id).encode())
    await system.producer.flush()


async def test_a_socket_that_never_reads_is_closed_and_delays_nobody(system: GatewaySystem) -> None:
    a_gw, b_gw = system.gateways[:2]
    slow_id, alice_id, bob_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    chat = await system.create_chat(alice_id, [bob_id])
    connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer(4096))
    async with aiohttp.ClientSession(connector=connector) as slow_http:
        socket = await slow_http.ws_connect(
            a_gw.ws_url, headers={"Authorization": f"Bearer {await system.token(slow_id)}"}
        )
        slow = Client(slow_id, socket, "slow")
        bob = await system.connect(a_gw, bob_id, label="bob@A")
        alice = await system.connect(b_gw, alice_id, label="alice@B")
        closes_before = a_gw.metric("gateway_ws_slow_closes_total")

        for _ in range(20):
            await flood(system, slow_id, 200, 8192)
            started = time.perf_counter()
            await alice.send(send(chat, "still fast?"))
            await bob.expect("message.new")
            assert time.perf_counter() - started < 2.0, "another user's delivery was held up"
            if a_gw.metric("gateway_ws_slow_closes_total") > closes_before:
                break
        else:
            raise AssertionError("the slow socket was never closed")
        assert await slow.close_code() == 4008
        await close_all(alice, bob)


async def test_sigterm_closes_sockets_with_1001_and_the_gateway_exits_within_10_s(system: GatewaySystem) -> None:
    gateway = await system.start_gateway("gw-stop")
    clients = [await system.connect(gateway, uuid.uuid4()) for _ in range(3)]
    started = time.monotonic()
    gateway.process.popen.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(c.close_code() for c in clients))
    assert codes == [1001, 1001, 1001]
    code = await asyncio.to_thread(gateway.process.popen.wait, 10)
    assert time.monotonic() - started < 10
    assert code == 0, gateway.process.log()[-3000:]
    system.gateways.remove(gateway)


def test_logs_hold_no_traceback(system: GatewaySystem) -> None:
    for gateway in system.gateways:
        assert "Traceback" not in gateway.process.log(), gateway.process.log()[-4000:]
