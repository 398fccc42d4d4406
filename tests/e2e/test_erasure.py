"""Delete means deleted (issue 15, docs/erasure.md), end to end on the real services: after a
message is edited and deleted, or its sender's account erased, no store the system keeps holds its
texts (nor the account's profile and password hash), nor any key that opens a sealed copy of them:
not the raw records of any topic of the run (the events, the commands, the replies, the
deliveries, the dead letters, `content.keys`, the Faust tables' changelogs), not the Faust tables'
RocksDB files, not a PostgreSQL table, not Redis. A message left alone stays readable, which shows
the scan finds keys and texts where they are."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import ClientWebSocketResponse
from aiokafka.admin import AIOKafkaAdminClient

from config.kafka import client_options
from config.settings import GatewaySettings
from gateway.usecases.commands import execute
from gateway.usecases.erasure import sweep_unfinished
from gateway.usecases.ports import PORTS, Actor, Ports
from runtime.sealing import open_sealed
from schemas.commands import EraseAccount
from schemas.content_keys import MalformedKeyRecord, decode_key_record
from schemas.sealed import profile_key_id
from schemas.topics import USER_COMMANDS
from tests.e2e.in_process import InProcessSystem, in_process_system
from tests.kafka_tools import read_topic

pytestmark = pytest.mark.e2e

COMPACTION_MS = 1000
QUARANTINE_S = 20
FORGOTTEN_WITHIN_S = 150.0
"""Compaction (segment roll and lag, 1 s each; the cleaner's 15 s back-off), the mirror's 5 s
watch, margin."""
TOKEN = re.compile(rb"sealed\.v1\.(message:[0-9a-f-]{36}:[0-9a-f-]{36})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")


class System(InProcessSystem):
    @property
    def ports(self) -> Ports:
        ports: Ports = self.app[PORTS]
        return ports

    async def user(self, name: str | None = None, display_name: str | None = None) -> dict[str, Any]:
        name, password = name or f"u{uuid.uuid4().hex[:10]}", "correct horse"
        status, _ = await self.call(
            "POST",
            "/api/v1/auth/register",
            json={"username": name, "password": password, "display_name": display_name or name},
        )
        assert status == 201
        status, login = await self.call("POST", "/api/v1/auth/login", json={"username": name, "password": password})
        assert status == 200
        return {**login["user"], "token": login["access_token"], "password": password}


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, template_database: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str
) -> AsyncIterator[System]:
    quarantine = {"USERNAME_QUARANTINE": str(QUARANTINE_S)}
    logs = tmp_path_factory.mktemp("erase")
    async with in_process_system(
        "erase", topic_prefix, template_database, logs, jwt_secret, quarantine, content_keys_compaction_ms=COMPACTION_MS
    ) as made:
        yield System(**vars(made))


async def frame_of(socket: ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(socket.receive_json(), 10)
        if frame.get("type") == kind:
            return dict(frame)


# --- what every store holds ----------------------------------------------------------------------


TOMBSTONED: dict[str, int] = {}
"""Key id -> tombstones seen in the last scan (for the failure's message)."""


async def topic_bytes(settings: GatewaySettings, only: str | None = None) -> list[bytes]:
    """The key and value of every record of every topic of the run (or of the one named `only`),
    as the broker serves them."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
    finally:
        await admin.close()
    if only is not None:
        names = [settings.topic(only)]
    blobs = []
    for name in names:
        for record in await read_topic(settings, name):
            blobs += [record.key or b"", record.value or b""]
            if record.value is None and record.key:
                TOMBSTONED[record.key.decode(errors="replace")] = (
                    TOMBSTONED.get(record.key.decode(errors="replace"), 0) + 1
                )
    return blobs


async def table_bytes(database_url: str) -> list[bytes]:
    """Every row of every table of the database, as text."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        blobs = []
        for t in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{t["schemaname"]}"."{t["tablename"]}" AS t')
            blobs += [r["row"].encode() for r in rows]
        return blobs
    finally:
        await conn.close()


async def redis_bytes(settings: GatewaySettings) -> list[bytes]:
    """Every key of the run in Redis, with its value as Redis serializes it (DUMP)."""
    client = aioredis.from_url(settings.redis_url)
    try:
        blobs = []
        async for key in client.scan_iter(match=f"*{settings.topic_prefix}*"):
            blobs += [key, await client.dump(key) or b""]
        return blobs
    finally:
        await client.aclose()


def file_bytes(folder: Path) -> list[bytes]:
    """Every file the workers' tables (RocksDB) left under `folder`."""
    return [path.read_bytes() for path in folder.rglob("*") if path.is_file()]


def keys_in(blobs: list[bytes], mirror_rows: list[asyncpg.Record]) -> dict[str, set[bytes]]:
    """Every data key anywhere: in `content.keys` records (as JSON values) and in the mirror."""
    found: dict[str, set[bytes]] = {}
    for blob in blobs:
        match = re.search(rb'"key_id":"([^"]+)"', blob)
        if match is None:
            continue
        try:
            key_id, content_key = decode_key_record(match.group(1), blob)
        except MalformedKeyRecord:
            continue
        if content_key is not None:
            found.setdefault(key_id, set()).add(content_key.key_bytes)
    for row in mirror_rows:
        if row["key"] is not None:
            found.setdefault(row["key_id"], set()).add(bytes(row["key"]))
    return found


def openings(blobs: list[bytes], keys: dict[str, set[bytes]]) -> set[str]:
    """Every text that any sealed token anywhere opens to, with any key anywhere (tried with
    each key found, not only its own: a key moved or copied under another id would show)."""
    every_key = {key for found in keys.values() for key in found}
    texts = set()
    for blob in blobs:
        for match in TOKEN.finditer(blob):
            token = match.group(0).decode()
            key_id = match.group(1).decode()
            message_id = uuid.UUID(key_id.split(":")[1])
            for key in every_key:
                opened = open_sealed(token, "message", message_id, {key_id: key})
                if isinstance(opened, str):
                    texts.add(opened)
    return texts


def where(blobs: list[bytes], keys: dict[str, set[bytes]], erased: set[str]) -> list[str]:
    """The stores (a blob's first bytes) that hold a key opening one of the `erased` texts."""
    found = []
    for key_id, found_keys in keys.items():
        message = uuid.UUID(key_id.split(":")[1]) if key_id.startswith("message:") else None
        tokens = [m.group(0).decode() for b in blobs for m in TOKEN.finditer(b) if m.group(1).decode() == key_id]
        for key in found_keys:
            if message and any(open_sealed(t, "message", message, {key_id: key}) in erased for t in tokens):
                holders = [b[:80] for b in blobs if key_id.encode() in b and b'"key"' in b]
                found.append(f"{key_id}: in {holders or 'the mirror'}; tombstoned: {TOMBSTONED.get(key_id)}")
    return found


async def every_store(system: System) -> tuple[list[bytes], dict[str, set[bytes]]]:
    settings = system.settings
    blobs = [
        *await topic_bytes(settings),
        *await table_bytes(settings.database_url),
        *await redis_bytes(settings),
        *file_bytes(system.data_dir),
    ]
    conn = await asyncpg.connect(settings.database_url)
    try:
        mirror = await conn.fetch("SELECT key_id, key FROM content_keys")
    finally:
        await conn.close()
    return blobs, keys_in(blobs, mirror)


# --- the test ------------------------------------------------------------------------------------


async def test_a_deleted_message_and_its_earlier_text_are_in_no_store_and_a_rebuild_agrees(system: System) -> None:
    a, b = await system.user(), await system.user()
    status, body = await system.call(
        "POST", "/api/v1/chats", a["token"], json={"type": "group", "title": "t", "member_ids": [b["id"]]}
    )
    assert status == 201
    chat_id = body["chat"]["id"]
    first, second, kept = (f"{word} {uuid.uuid4().hex}" for word in ("first", "second", "kept"))
    status, sent = await system.call(
        "POST", f"/api/v1/chats/{chat_id}/messages", a["token"], json={"text": first, "client_msg_id": "m1"}
    )
    assert status == 201 and sent["message"]["text"] == first
    message_id = sent["message"]["id"]
    status, _ = await system.call(
        "POST", f"/api/v1/chats/{chat_id}/messages", b["token"], json={"text": kept, "client_msg_id": "m2"}
    )
    assert status == 201
    socket = await system.socket(a["token"])
    try:
        await socket.send_json({"type": "message.edit", "message_id": message_id, "text": second})
        assert (await frame_of(socket, "message.edited"))["message"]["text"] == second
        status, page = await system.call("GET", f"/api/v1/chats/{chat_id}/messages", b["token"])
        assert [m["text"] for m in page["messages"]] == [second, kept]
        await socket.send_json({"type": "message.delete", "message_id": message_id})
        await frame_of(socket, "message.deleted")
    finally:
        await socket.close()

    erased = {first, second}
    deadline = time.monotonic() + FORGOTTEN_WITHIN_S
    while True:
        blobs, keys = await every_store(system)
        readable = openings(blobs, keys)
        if not readable & erased:
            break
        assert time.monotonic() < deadline, f"still readable after {FORGOTTEN_WITHIN_S}s: {where(blobs, keys, erased)}"
        await asyncio.sleep(2)
    assert not any(text.encode() in blob for blob in blobs for text in erased), "no plain copy anywhere"
    assert kept in readable, "the message left alone opens with its key: the scan finds keys and tokens"
    assert not any(kept.encode() in blob for blob in await topic_bytes(system.settings)), "topics hold it sealed"
    status, page = await system.call("GET", f"/api/v1/chats/{chat_id}/messages", b["token"])
    assert [(m["text"], m["deleted"]) for m in page["messages"]] == [("", True), (kept, False)]

    await system.rebuild_agrees()
    status, again = await system.call("GET", f"/api/v1/chats/{chat_id}/messages", b["token"])
    assert again == page, "the rebuilt read models hold what the live ones did: the kept text, not the erased ones"


async def history(system: System, chat_id: str, token: str) -> list[tuple[str | None, bool]]:
    status, page = await system.call("GET", f"/api/v1/chats/{chat_id}/messages", token)
    assert status == 200
    return [(m["text"], m["deleted"]) for m in page["messages"]]


async def member_ids(system: System, chat_id: str, token: str) -> set[str]:
    status, body = await system.call("GET", f"/api/v1/chats/{chat_id}", token)
    assert status == 200
    return {m["user_id"] for m in body["members"]}


async def send(system: System, chat_id: str, token: str, text: str) -> None:
    status, _ = await system.call(
        "POST", f"/api/v1/chats/{chat_id}/messages", token, json={"text": text, "client_msg_id": uuid.uuid4().hex}
    )
    assert status == 201


async def chats_of(system: System, a: dict[str, Any], b: dict[str, Any]) -> tuple[str, str]:
    """A group `a` owns with `b`, and their direct chat."""
    status, group = await system.call(
        "POST", "/api/v1/chats", a["token"], json={"type": "group", "title": "g", "member_ids": [b["id"]]}
    )
    assert status == 201
    status, direct = await system.call(
        "POST", "/api/v1/chats", a["token"], json={"type": "direct", "member_ids": [b["id"]]}
    )
    assert status == 201
    return group["chat"]["id"], direct["chat"]["id"]


async def password_hash_of(system: System, user_id: str) -> str:
    conn = await asyncpg.connect(system.settings.database_url)
    try:
        found: str = await conn.fetchval(
            "SELECT password_hash FROM password_credentials WHERE user_id = $1", uuid.UUID(user_id)
        )
        return found
    finally:
        await conn.close()


async def test_an_erased_account_is_in_no_store_its_messages_stay_deleted_and_its_name_comes_back(
    system: System,
) -> None:
    display, bio = f"Display {uuid.uuid4().hex}", f"bio {uuid.uuid4().hex}"
    name = f"e{uuid.uuid4().hex[:10]}"
    a, b = await system.user(name, display_name=display), await system.user()
    status, _ = await system.call("PATCH", "/api/v1/users/me", a["token"], json={"bio": bio})
    assert status == 200
    group, direct = await chats_of(system, a, b)
    said = [f"group {uuid.uuid4().hex}", f"direct {uuid.uuid4().hex}"]
    await send(system, group, a["token"], said[0])
    await send(system, direct, a["token"], said[1])
    kept = f"kept {uuid.uuid4().hex}"
    await send(system, group, b["token"], kept)
    password_hash = await password_hash_of(system, a["id"])
    socket = await system.socket(a["token"])

    status, body = await system.call("DELETE", "/api/v1/users/me", a["token"], json={"password": "not the password"})
    assert (status, body["error"]["code"]) == (401, "invalid_credentials")
    status, _ = await system.call("DELETE", "/api/v1/users/me", a["token"], json={"password": a["password"]})
    assert status == 204
    erased_at = time.monotonic()  # the quarantine began before the answer
    closing = await asyncio.wait_for(socket.receive(), 5)
    assert (closing.data, closing.extra) == (4001, "session_ended")

    assert await history(system, group, b["token"]) == [(None, True), (kept, False)]
    assert await history(system, direct, b["token"]) == [(None, True)]
    assert await member_ids(system, group, b["token"]) == {b["id"]} == await member_ids(system, direct, b["token"])
    assert (await system.call("GET", f"/api/v1/users/{a['id']}", b["token"]))[0] == 404
    status, found = await system.call("GET", "/api/v1/users", b["token"], params={"q": name})
    assert found["users"] == []
    status, _ = await system.call("POST", "/api/v1/chats", a["token"], json={"type": "group", "member_ids": [b["id"]]})
    assert status == 403, "an access token of before the erasure makes no chat"
    status, listed = await system.call("GET", "/api/v1/chats", a["token"])
    assert (status, listed["chats"]) == (200, []), "nor reads one"
    login = {"username": name, "password": a["password"]}
    assert (await system.call("POST", "/api/v1/auth/login", json=login))[0] == 401
    again = {"username": name, "password": "another password"}
    status, body = await system.call("POST", "/api/v1/auth/register", json=again)
    assert (status, body["error"]["code"]) == (409, "username_taken"), "the name is quarantined"

    gone = {*said, display, bio, password_hash}
    profile_key = profile_key_id(uuid.UUID(a["id"]))
    commands = set(await topic_bytes(system.settings, only=USER_COMMANDS.name))
    assert any(password_hash.encode() in blob for blob in commands), "the registration's command carried it"
    deadline = time.monotonic() + FORGOTTEN_WITHIN_S
    while True:
        blobs, keys = await every_store(system)
        # the commands topic keeps the hash its commands carried for its retention (7 days), no longer
        blobs = [blob for blob in blobs if blob not in commands]
        plain = {text for text in gone if any(text.encode() in blob for blob in blobs)}
        readable = openings(blobs, keys) & gone
        if not plain and not readable and profile_key not in keys:
            break
        holders = [blob[:120] for blob in blobs for text in plain if text.encode() in blob]
        assert time.monotonic() < deadline, f"after {FORGOTTEN_WITHIN_S}s: plain {plain} in {holders}, " + (
            f"opened {readable}, profile key {TOMBSTONED.get(profile_key)}"
        )
        await asyncio.sleep(2)
    assert kept in openings(blobs, keys), "the other member's message opens with its key: the scan finds them"

    await asyncio.sleep(max(0.0, erased_at + QUARANTINE_S + 1.0 - time.monotonic()))
    status, _ = await system.call("POST", "/api/v1/auth/register", json=again)
    assert status == 201, "the name is free once its quarantine is over"
    await system.rebuild_agrees()
    assert await history(system, group, b["token"]) == [(None, True), (kept, False)]


async def test_an_erasure_a_stopped_gateway_left_midway_is_finished_by_the_sweep(system: System) -> None:
    a, b = await system.user(), await system.user()
    group, direct = await chats_of(system, a, b)
    text = f"left behind {uuid.uuid4().hex}"
    await send(system, group, a["token"], text)
    user_id = uuid.UUID(a["id"])
    await execute(system.ports, Actor(user_id, prepaid=True), EraseAccount(user_id=user_id, username=a["username"]))
    assert await history(system, group, b["token"]) == [(text, False)], "the gateway stopped here"
    assert a["id"] in await member_ids(system, direct, b["token"])

    assert await sweep_unfinished(system.ports, settle_s=0) == 1
    assert await history(system, group, b["token"]) == [(None, True)]
    assert await member_ids(system, group, b["token"]) == {b["id"]} == await member_ids(system, direct, b["token"])
    assert await sweep_unfinished(system.ports, settle_s=0) == 0, "nothing is left to finish"
