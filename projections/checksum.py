"""Checksums of the read models: equal checksums, equal rows.

Each table's rows are rendered as text in primary-key order (timestamps in UTC, whatever the
session's time zone) and hashed with md5. `projection_offsets` and `schema_migrations` are
bookkeeping, not read models, and are left out. A rebuild compares its shadow schema's tables
with the live ones this way, both read in one snapshot (`checksums_in`).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from projections.catalogue import PROJECTIONS
from projections.model import Table

LIVE_SCHEMA = "public"


@dataclass(frozen=True)
class Checksum:
    table: str
    rows: int
    md5: str

    def line(self) -> str:
        return f"{self.table:<18} {self.rows:>9} rows  md5 {self.md5}"


def read_model_tables() -> list[Table]:
    return [t for p in PROJECTIONS.values() for t in p.tables]


def checksum_query(table: Table, schema: str = LIVE_SCHEMA) -> str:
    order = ", ".join(f"t.{column}" for column in table.key)
    return (
        f"SELECT count(*) AS rows, md5(coalesce(string_agg(t::text, ',' ORDER BY {order}), '')) AS md5"
        f" FROM {schema}.{table.name} AS t"
    )


async def checksums_in(conn: asyncpg.Connection, tables: list[Table], schema: str = LIVE_SCHEMA) -> list[Checksum]:
    """The checksum of each of `tables` in `schema`, in the caller's transaction (set `TimeZone`
    to UTC in it first)."""
    result = []
    for table in tables:
        row = await conn.fetchrow(checksum_query(table, schema))
        assert row is not None, "an aggregate query returns one row"
        result.append(Checksum(table.name, row["rows"], row["md5"]))
    return result


async def checksums(conn: asyncpg.Connection, tables: list[Table] | None = None) -> list[Checksum]:
    """The checksum of each live table (every read model by default), all from one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        return await checksums_in(conn, tables or read_model_tables())
