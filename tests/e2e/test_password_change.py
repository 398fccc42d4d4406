"""Credentials out of the log (issue 15, docs/erasure.md), end to end on the real services: a
password change through the gateway ends the user's other sessions (their sockets close with 4001)
and keeps the caller's; the old password is refused from then on and the new one works; no record
of `user.events` holds an argon2 hash (they are in the compacted `user.credentials`); a login with
a hash of older argon2 parameters upgrades the stored hash, with no event; the old password is
throttled like a login's; and a rebuild gives the live read models' checksums."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import ClientWebSocketResponse
from aiokafka import AIOKafkaProducer
from argon2 import PasswordHasher, Type

from config.kafka import client_options
from config.settings import CommonSettings
from gateway.auth.password_change import rehash
from gateway.auth.passwords import MEMORY_COST_KIB, TIME_COST, needs_rehash
from gateway.auth.routes import CREDENTIAL_LOCK
from gateway.usecases.ports import PORTS
from schemas import topics
from schemas.credentials import Credential, credential_record, decode_credential_record
from schemas.events import decode_event
from schemas.frames import SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON
from tests.e2e.in_process import InProcessSystem, in_process_system
from tests.kafka_tools import read_topic

pytestmark = pytest.mark.e2e

WITHIN_S = 5.0
"""The contract's bound on closing a socket after its session ended."""
PASSWORD, NEW_PASSWORD = "correct horse", "battery staple"


class System(InProcessSystem):
    async def register(self) -> str:
        name = f"p{uuid.uuid4().hex[:10]}"
        status, _ = await self.call("POST", "/api/v1/auth/register", json={"username": name, "password": PASSWORD})
        assert status == 201
        return name

    async def login(self, name: str, password: str) -> tuple[int, Any]:
        return await self.call("POST", "/api/v1/auth/login", json={"username": name, "password": password})

    async def change(self, token: str, old: str, new: str) -> tuple[int, Any]:
        body = {"old_password": old, "new_password": new}
        return await self.call("POST", "/api/v1/users/me/password", token, json=body)


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, template_database: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str
) -> AsyncIterator[System]:
    logs = tmp_path_factory.mktemp("cred")
    async with in_process_system("cred", topic_prefix, template_database, logs, jwt_secret) as made:
        yield System(**vars(made))


async def pong(socket: ClientWebSocketResponse) -> bool:
    await socket.send_json({"type": "ping"})
    while True:
        frame = await asyncio.wait_for(socket.receive_json(), 3)
        if frame.get("type") == "pong":
            return True


async def close_of(socket: ClientWebSocketResponse, timeout: float) -> tuple[int | None, str]:
    """The code and reason of the server's close frame (see tests/e2e/test_ws_session_end.py)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "the socket is still open"
        message = await socket.receive(left)
        if message.type is aiohttp.WSMsgType.CLOSE:
            return int(message.data), str(message.extra or "")
        if message.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return socket.close_code, ""


async def user_events(settings: CommonSettings) -> list[Any]:
    return await read_topic(settings, settings.topic(topics.USER_EVENTS.name))


async def credentials_of(settings: CommonSettings, user_id: str) -> list[Credential | None]:
    """The records of `user.credentials` for `user_id`, in log order (None: a tombstone)."""
    records = await read_topic(settings, settings.topic(topics.USER_CREDENTIALS.name))
    found = [decode_credential_record(r.key, r.value) for r in records if r.key == user_id.encode()]
    return [credential for _, credential in found]


async def stored_hash(database_url: str, user_id: str) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        value: str | None = await conn.fetchval(
            "SELECT password_hash FROM password_credentials WHERE user_id = $1", uuid.UUID(user_id)
        )
        return value
    finally:
        await conn.close()


async def test_a_password_change_ends_the_other_sessions_and_no_event_holds_a_hash(system: System) -> None:
    name = await system.register()
    status, first = await system.login(name, PASSWORD)
    assert status == 200
    status, second = await system.login(name, PASSWORD)
    assert status == 200
    user_id = first["user"]["id"]
    other, own = await system.socket(first["access_token"]), await system.socket(second["access_token"])
    try:
        assert await pong(other) and await pong(own)

        assert (await system.change(second["access_token"], "wrong password", NEW_PASSWORD))[0] == 401
        status, body = await system.change(second["access_token"], PASSWORD, "short")
        assert status == 400 and body["error"]["code"] == "invalid_request"
        assert await pong(other), "a refused change ends nothing"

        started = time.monotonic()
        status, _ = await system.change(second["access_token"], PASSWORD, NEW_PASSWORD)
        assert status == 204
        assert await close_of(other, WITHIN_S + 1) == (SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON)
        assert time.monotonic() - started <= WITHIN_S + 1
        assert await pong(own), "the caller's own session stays"
    finally:
        await other.close()
        await own.close()

    refresh = "/api/v1/auth/refresh"
    assert (await system.call("POST", refresh, json={"refresh_token": first["refresh_token"]}))[0] == 401
    assert (await system.call("POST", refresh, json={"refresh_token": second["refresh_token"]}))[0] == 200
    status, body = await system.login(name, PASSWORD)
    assert status == 401 and body["error"]["code"] == "invalid_credentials"
    assert (await system.login(name, NEW_PASSWORD))[0] == 200, "204 promised the new hash is readable"

    records = await user_events(system.settings)
    mine = [decode_event(r.value) for r in records if r.key == user_id.encode()]
    assert [e.type for e in mine] == ["user.registered", "user.password_changed"], "the scan finds the user"
    assert name.encode() in b"".join(r.value for r in records)
    assert not [r for r in records if b"$argon2" in (r.key or b"") + (r.value or b"")], "no hash in user.events"
    hashes = await credentials_of(system.settings, user_id)
    assert len(hashes) == 2 and all(c is not None and c.password_hash.startswith("$argon2id$") for c in hashes)
    latest = hashes[-1]
    assert latest is not None and PasswordHasher().verify(latest.password_hash, NEW_PASSWORD)


async def test_a_login_with_a_hash_of_older_parameters_upgrades_it_and_writes_no_event(system: System) -> None:
    name = await system.register()
    status, before = await system.login(name, PASSWORD)
    assert status == 200
    user_id = before["user"]["id"]
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)
    assert needs_rehash(old)
    producer = AIOKafkaProducer(**client_options(system.settings), acks="all")
    await producer.start()
    try:
        credential = Credential(user_id=uuid.UUID(user_id), password_hash=old, changed_at=datetime.now(UTC))
        key, value = credential_record(credential)
        await producer.send_and_wait(system.settings.topic(topics.USER_CREDENTIALS.name), value, key=key)
    finally:
        await producer.stop()
    deadline = time.monotonic() + 10
    while await stored_hash(system.settings.database_url, user_id) != old:
        assert time.monotonic() < deadline, "the older hash never reached the read models"
        await asyncio.sleep(0.1)

    assert (await system.login(name, PASSWORD))[0] == 200
    deadline = time.monotonic() + 10
    while (upgraded := await stored_hash(system.settings.database_url, user_id)) == old:
        assert time.monotonic() < deadline, "the login did not rehash"
        await asyncio.sleep(0.1)
    assert upgraded is not None and f"m={MEMORY_COST_KIB},t={TIME_COST}," in upgraded and not needs_rehash(upgraded)
    assert PasswordHasher().verify(upgraded, PASSWORD)
    assert (await system.login(name, PASSWORD))[0] == 200
    refreshed = await system.call("POST", "/api/v1/auth/refresh", json={"refresh_token": before["refresh_token"]})
    assert refreshed[0] == 200, "a rehash ends no session"
    types = [decode_event(r.value).type for r in await user_events(system.settings) if r.key == user_id.encode()]
    assert types == ["user.registered"], "a rehash is no event"
    assert [c.password_hash if c else None for c in await credentials_of(system.settings, user_id)][-2:] == [
        old,
        upgraded,
    ]


async def test_a_rehash_never_undoes_a_change_nor_writes_while_a_change_holds_the_lock(system: System) -> None:
    """The race a rehash could lose: a login verified the old hash, a change came in between; the
    login's rehash must write nothing (else the old password would log in again)."""
    name = await system.register()
    status, login = await system.login(name, PASSWORD)
    assert status == 200
    user_id = uuid.UUID(login["user"]["id"])
    verified = await stored_hash(system.settings.database_url, str(user_id))
    assert verified is not None
    assert (await system.change(login["access_token"], PASSWORD, NEW_PASSWORD))[0] == 204
    changed = await stored_hash(system.settings.database_url, str(user_id))
    ports, lock = system.app[PORTS], system.app[CREDENTIAL_LOCK]

    await rehash(ports, lock, user_id, name, verified, PASSWORD)
    async with lock.held(user_id, 1.0) as held:
        assert held
        await rehash(ports, lock, user_id, name, changed or "", NEW_PASSWORD)
        async with lock.held(user_id, 0.1) as again:
            assert not again, "one holder at a time"
    await asyncio.sleep(1.0)

    assert await stored_hash(system.settings.database_url, str(user_id)) == changed
    assert len(await credentials_of(system.settings, str(user_id))) == 2, "the registration's and the change's only"
    assert (await system.login(name, PASSWORD))[0] == 401
    async with lock.held(user_id, 1.0) as held:
        assert held, "released by its holders"


async def test_the_old_password_is_throttled_like_a_login(system: System) -> None:
    name = await system.register()
    status, login = await system.login(name, PASSWORD)
    assert status == 200
    token = login["access_token"]
    for _ in range(5):
        assert (await system.change(token, "not it at all", NEW_PASSWORD))[0] == 401
    status, body = await system.change(token, PASSWORD, NEW_PASSWORD)
    assert status == 429 and body["error"]["code"] == "rate_limited", "even the right one, once over the limit"
    assert (await system.login(name, PASSWORD))[0] == 429, "the login shares the username's count"
    assert (
        await system.call(
            "POST", "/api/v1/users/me/password", json={"old_password": PASSWORD, "new_password": NEW_PASSWORD}
        )
    )[0] == 401


async def test_a_rebuild_gives_the_live_checksums_credentials_included(system: System) -> None:
    rebuilt = await system.rebuild_agrees()
    sums = {c.table: c.rows for o in rebuilt.values() for c in o.live_sums}
    assert sums["password_credentials"] >= 3, sums
