"""A password change (`POST /api/v1/users/me/password`) and the rehash of an old hash at login.

Both write the user's new hash to `user.credentials` through the user agent (`ChangePassword`),
never to an event topic (docs/erasure.md, "Credentials out of the log"). The old password is
checked like a login's, counted by the same throttle under the same folded username, so this
route is no second door to guess a password through. A change is answered once the read models
hold the new hash (its reply names where the credential landed); then every other session of the
user ends, the caller's own stays.

A login whose stored hash was made with other argon2 parameters than today's hashes the password
it was just given again and writes that (`rehash`): in the background, after the login is
answered, and a failure is only logged, never the login's.

A rehash must never undo a change: a login with the old password, then a change, then the
login's rehash decided last would bring the old password back. So both hold the user's
credential lock in Redis (`CredentialLock`, shared by every gateway instance) from before they
send their command until it is decided (a change: until the read models hold it), and a rehash,
once it holds the lock, reads the stored hash again and writes nothing if it is no longer the one
its login verified.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from prometheus_client import Counter

from gateway.auth.password_check import verified
from gateway.auth.passwords import hash_password, needs_rehash
from gateway.auth.session_end import SessionEnds
from gateway.auth.throttle import LoginThrottle
from gateway.auth.tokens import AccessClaims
from gateway.infra import read_store
from gateway.usecases.commands import execute
from gateway.usecases.ports import Actor, Ports
from gateway.usecases.refusal import unavailable
from schemas import topics
from schemas.commands import ChangePassword

log = logging.getLogger(__name__)

REHASHES = Counter("gateway_password_rehashes_total", "Rehashes of old argon2 parameters at login", ["outcome"])

REHASHING: set[asyncio.Task[None]] = set()
"""Rehashes under way, held until done (the loop keeps only weak references to tasks)."""

LOCK_TTL_MS = 30_000
"""Longer than a change holds the lock (a reply within 10 s, then the read models within 10 s):
a gateway that dies holding it frees it after this."""
LOCK_WAIT_S = 5.0
"""How long a change waits for a rehash (tens of ms) or another change to let go."""
LOCK_POLL_S = 0.02
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class CredentialLock:
    """One writer of a user's credential at a time, across the gateway instances (Redis `SET NX PX`)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._release = redis.register_script(_RELEASE)

    @asynccontextmanager
    async def held(self, user_id: uuid.UUID, wait_s: float) -> AsyncIterator[bool]:
        """Holds the lock of `user_id` inside (True), or gives False after `wait_s` without it."""
        key, token = f"{self._prefix}{user_id}", secrets.token_hex(16)
        deadline = asyncio.get_running_loop().time() + wait_s
        while not await self._redis.set(key, token, nx=True, px=LOCK_TTL_MS):
            if asyncio.get_running_loop().time() >= deadline:
                yield False
                return
            await asyncio.sleep(LOCK_POLL_S)
        try:
            yield True
        finally:
            await self._release(keys=[key], args=[token])


async def change_password(
    ports: Ports,
    throttle: LoginThrottle,
    ends: SessionEnds,
    lock: CredentialLock,
    claims: AccessClaims,
    address: str,
    old_password: str,
    new_password: str,
) -> list[str]:
    """Check `old_password`, store `new_password`'s hash, end the user's other sessions; their ids.
    401 `invalid_credentials` for a wrong old password, 429 once the throttle says so."""
    found = await read_store.credentials_by_id(ports.pool, claims.user_id)
    username = found[0]["username"] if found else str(claims.user_id)
    await verified(throttle, username, address, old_password, found)
    command = ChangePassword(user_id=claims.user_id, username=username, password_hash=await hash_password(new_password))
    async with lock.held(claims.user_id, LOCK_WAIT_S) as locked:
        if not locked:
            raise unavailable("the password is being written: retry")
        await execute(ports, Actor(claims.user_id), command)
    return await ends.end_other_sessions(claims.user_id, claims.session_id)


def rehash_if_needed(
    ports: Ports, lock: CredentialLock, user_id: uuid.UUID, username: str, stored_hash: str, password: str
) -> None:
    """After a successful login: if `stored_hash` has old parameters, hash `password` again and
    store it, in the background."""
    if not needs_rehash(stored_hash):
        return
    rehashing = rehash(ports, lock, user_id, username, stored_hash, password)
    task = asyncio.create_task(rehashing, name=f"rehash {user_id}")
    REHASHING.add(task)
    task.add_done_callback(REHASHING.discard)


async def rehash(
    ports: Ports, lock: CredentialLock, user_id: uuid.UUID, username: str, verified_hash: str, password: str
) -> None:
    """Best effort: the login is answered already; a failure is counted and logged, and the next
    login tries again. The write budget is not charged: the user did not ask for this write.
    Nothing is written when the lock is busy or the stored hash changed since the login (a
    password change came in between: its hash must stay)."""
    try:
        command = ChangePassword(
            user_id=user_id, username=username, password_hash=await hash_password(password), rehash=True
        )
        async with lock.held(user_id, 0.0) as locked:
            found = await read_store.credentials_by_id(ports.pool, user_id) if locked else None
            if found is None or found[1] != verified_hash:
                REHASHES.labels("skipped").inc()
                return
            reply = await ports.bus.ask(topics.USER_COMMANDS, username, command, user_id)
    except Exception as error:
        REHASHES.labels("failed").inc()
        log.warning("rehashing the password of user %s failed (the next login tries again): %r", user_id, error)
        return
    REHASHES.labels("written" if reply.ok else reply.code or "refused").inc()
    if not reply.ok:
        log.warning("rehashing the password of user %s was refused: %s", user_id, reply.code)
