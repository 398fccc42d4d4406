"""The advisory lock between the projections worker and the rebuild.

A running worker holds it in shared mode for its whole life (several workers may run at once); a
rebuild takes it exclusively, so it refuses while a worker runs, and a worker started during a
rebuild waits for it to end.
"""

from __future__ import annotations

import logging

import asyncpg

log = logging.getLogger(__name__)

READ_MODELS_LOCK = 7_000_002
"""Next to `projections.migrate.MIGRATION_LOCK`, so the two are told apart in `pg_locks`."""


async def hold_shared(database_url: str) -> asyncpg.Connection:
    """A connection holding the lock in shared mode (waiting for a rebuild to finish if one runs)."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock_shared($1)", READ_MODELS_LOCK):
            log.warning("a rebuild of the read models is running: waiting for it to finish")
            await conn.execute("SELECT pg_advisory_lock_shared($1)", READ_MODELS_LOCK)
    except BaseException:
        await conn.close()
        raise
    return conn


async def try_exclusive(conn: asyncpg.Connection) -> bool:
    """Take the lock exclusively on `conn` if no worker holds it; it lasts as long as `conn`."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", READ_MODELS_LOCK))
