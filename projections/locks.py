"""The advisory lock of a rebuild: one per projection, so two rebuilds of one projection never run
at once (a worker upgrading its projection and `python -m projections rebuild` included).

The live worker takes no lock of its own: a rebuild runs beside it, and the moment of the swap is
ordered by the `projection_offsets` rows both lock (`projections/swap.py`). The lock is a
session lock on a connection of the rebuild: a rebuild that dies (even `kill -9`) loses it with
its connection, and the next one finds and drops its leftover shadow.
"""

from __future__ import annotations

import asyncpg

from schemas.progress import REBUILD_LOCK_CLASS

__all__ = ["REBUILD_LOCK_CLASS", "release_rebuild", "try_rebuild"]


async def try_rebuild(conn: asyncpg.Connection, projection: str) -> bool:
    """Take the rebuild lock of `projection` on `conn` unless another session holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", REBUILD_LOCK_CLASS, projection))


async def release_rebuild(conn: asyncpg.Connection, projection: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", REBUILD_LOCK_CLASS, projection)
