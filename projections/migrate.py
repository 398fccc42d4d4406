"""Applies the numbered SQL files of `migrations/` in order, once each.

Each file runs in its own transaction and is recorded in `schema_migrations`; an advisory lock
keeps two processes from migrating at once, so running it again (or twice at once) is safe.
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
MIGRATION_LOCK = 7_000_001


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The migration files, in the order of their numbers; a misnamed .sql file is an error."""
    files = sorted(directory.glob("*.sql"))
    for f in files:
        if not MIGRATION_FILE.match(f.name):
            raise ValueError(f"migration file {f.name} is not named NNNN_lower_case.sql")
    numbers = [f.name[:4] for f in files]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"two migrations share a number: {numbers}")
    return files


async def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not applied yet; return the names applied now."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for path in migration_files(directory):
            if path.stem in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.stem)
            applied.append(path.stem)
        return applied
    finally:
        await conn.close()
