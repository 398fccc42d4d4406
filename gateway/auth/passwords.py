"""Password hashing with argon2id, off the event loop, with the same cost for unknown users.

Parameters: OWASP Password Storage Cheat Sheet
(https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id)
gives as its minimum for argon2id "m=19456 (19 MiB), t=2, p=1" and lists equivalent trade-offs
(m=47104/t=1, m=12288/t=3, ...). We take that row: one hash costs about 25 ms on the
development machine, a price paid once per login and per registration.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MEMORY_COST_KIB = 19456
TIME_COST = 2
PARALLELISM = 1
HASH_LENGTH = 32
SALT_LENGTH = 16

HASHING_THREADS = max(1, min(4, os.cpu_count() or 1))
"""Concurrent hashes are capped: each holds 19 MiB and a full core for ~25 ms, and a burst of logins
must queue rather than take every core (and the memory) from the rest of the gateway."""

_hasher = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_COST_KIB,
    parallelism=PARALLELISM,
    hash_len=HASH_LENGTH,
    salt_len=SALT_LENGTH,
    type=Type.ID,
)
_executor = ThreadPoolExecutor(max_workers=HASHING_THREADS, thread_name_prefix="argon2")
_dummy_hashes: list[str] = []
"""The dummy hash once made (the first, should two be made at once)."""


async def hash_password(password: str) -> str:
    """The encoded argon2id hash (`$argon2id$v=19$m=...`) of `password`, with a fresh salt."""
    return await asyncio.get_running_loop().run_in_executor(_executor, _hasher.hash, password)


async def verify_password(encoded_hash: str | None, password: str) -> bool:
    """Whether `password` matches `encoded_hash`.

    `None` stands for an unknown user: the password is then checked against a dummy hash of the
    same parameters and the answer is False, so the time taken does not tell whether the user exists.
    """
    target = encoded_hash if encoded_hash is not None else await _dummy()
    matches = await asyncio.get_running_loop().run_in_executor(_executor, _verify, target, password)
    return matches and encoded_hash is not None


def needs_rehash(encoded_hash: str) -> bool:
    """Whether `encoded_hash` was made with other parameters than today's (a login then hashes the
    password again: `gateway.auth.rehash`). A hash argon2-cffi cannot read is left alone."""
    try:
        return _hasher.check_needs_rehash(encoded_hash)
    except InvalidHashError:
        return False


def _verify(encoded_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(encoded_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def _dummy() -> str:
    """A hash of a random password with today's parameters, made once on first need."""
    if not _dummy_hashes:
        _dummy_hashes.append(await hash_password(secrets.token_urlsafe(16)))
    return _dummy_hashes[0]
