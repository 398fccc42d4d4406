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
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from prometheus_client import Counter

from gateway.auth.passwords import hash_password, needs_rehash, verify_password
from gateway.auth.session_end import SessionEnds
from gateway.auth.throttle import LoginThrottle
from gateway.auth.tokens import AccessClaims
from gateway.infra import read_store
from gateway.rest.errors import invalid_credentials
from gateway.usecases.commands import execute
from gateway.usecases.ports import Actor, Ports
from schemas import topics
from schemas.commands import ChangePassword

log = logging.getLogger(__name__)

REHASHES = Counter("gateway_password_rehashes_total", "Rehashes of old argon2 parameters at login", ["outcome"])

REHASHING: set[asyncio.Task[None]] = set()
"""Rehashes under way, held until done (the loop keeps only weak references to tasks)."""


async def change_password(
    ports: Ports,
    throttle: LoginThrottle,
    ends: SessionEnds,
    claims: AccessClaims,
    address: str,
    old_password: str,
    new_password: str,
) -> list[str]:
    """Check `old_password`, store `new_password`'s hash, end the user's other sessions; their ids.
    401 `invalid_credentials` for a wrong old password, 429 once the throttle says so."""
    found = await read_store.credentials_by_id(ports.pool, claims.user_id)
    username = found[0]["username"] if found else str(claims.user_id)
    await throttle.reserve(username, address)
    try:
        right = await verify_password(found[1] if found else None, old_password)
    except Exception:
        await throttle.undecided(username, address)
        raise
    if not right or found is None:
        raise invalid_credentials()
    await throttle.succeeded(username, address)
    command = ChangePassword(user_id=claims.user_id, username=username, password_hash=await hash_password(new_password))
    await execute(ports, Actor(claims.user_id), command)
    return await ends.end_other_sessions(claims.user_id, claims.session_id)


def rehash_if_needed(ports: Ports, user_id: uuid.UUID, username: str, stored_hash: str, password: str) -> None:
    """After a successful login: if `stored_hash` has old parameters, hash `password` again and
    store it, in the background."""
    if not needs_rehash(stored_hash):
        return
    task = asyncio.create_task(rehash(ports, user_id, username, password), name=f"rehash {user_id}")
    REHASHING.add(task)
    task.add_done_callback(REHASHING.discard)


async def rehash(ports: Ports, user_id: uuid.UUID, username: str, password: str) -> None:
    """Best effort: the login is answered already; a failure is counted and logged, and the next
    login tries again. The write budget is not charged: the user did not ask for this write."""
    try:
        command = ChangePassword(
            user_id=user_id, username=username, password_hash=await hash_password(password), rehash=True
        )
        reply = await ports.bus.ask(topics.USER_COMMANDS, username, command, user_id)
    except Exception as error:
        REHASHES.labels("failed").inc()
        log.warning("rehashing the password of user %s failed (the next login tries again): %r", user_id, error)
        return
    REHASHES.labels("written" if reply.ok else reply.code or "refused").inc()
    if not reply.ok:
        log.warning("rehashing the password of user %s was refused: %s", user_id, reply.code)
