"""The schemas of a blue/green rebuild: `rebuild_<projection>` (the shadow being built) and
`retired_<projection>` (the read model the last swap replaced).

The shadow holds the projection's tables under their live names, created from the projection's
declaration (`projections.model.Table`), and a `projection_offsets` of its own: the statement
and the apply code run unchanged on a connection whose search path is the shadow schema alone (no
`public`: a table missing from the shadow is an error, never a write to the live model). The swap
(`projections/swap.py`) moves the live tables to the retired schema and the shadow's to `public`;
the retired tables stay until the next rebuild of that projection, for a look or a hand-made
swap back.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from projections.model import Projection

SHADOW_PREFIX = "rebuild_"
RETIRED_PREFIX = "retired_"
LIVE_SCHEMA = "public"

CREATE_OFFSETS = f"CREATE TABLE projection_offsets (LIKE {LIVE_SCHEMA}.projection_offsets INCLUDING ALL)"


def shadow_schema(projection: Projection) -> str:
    return SHADOW_PREFIX + projection.name


def retired_schema(projection: Projection) -> str:
    return RETIRED_PREFIX + projection.name


async def connect_shadow(database_url: str, projection: Projection) -> asyncpg.Connection:
    """A connection whose unqualified names are the shadow's tables."""
    conn: asyncpg.Connection = await asyncpg.connect(
        database_url, server_settings={"search_path": shadow_schema(projection)}
    )
    return conn


async def drop_leftovers(conn: asyncpg.Connection, projection: Projection) -> None:
    """Drop the shadow a dead or failed rebuild left, and the tables the last swap retired."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {shadow_schema(projection)} CASCADE")
    await conn.execute(f"DROP SCHEMA IF EXISTS {retired_schema(projection)} CASCADE")


async def create_shadow(conn: asyncpg.Connection, projection: Projection) -> None:
    """The empty shadow: tables with their columns and primary keys, and its `projection_offsets`."""
    schema = shadow_schema(projection)
    async with conn.transaction():
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"SET LOCAL search_path = {schema}")
        for table in projection.tables:
            await conn.execute(table.create_sql())
        await conn.execute(CREATE_OFFSETS)


def after_load_statements(projection: Projection) -> list[str]:
    return [ddl for table in projection.tables for ddl in table.after_load]


async def finish_tables(shadow: asyncpg.Connection, projection: Projection, done: Callable[[int], None]) -> None:
    """Constraints and indexes on the loaded shadow tables (on a shadow connection), then fresh
    planner statistics, so that the first queries after the swap are planned on real numbers."""
    for ddl in after_load_statements(projection):
        await shadow.execute(ddl)
        done(1)
    await shadow.execute(f"ANALYZE {', '.join(projection.table_names)}")


async def offsets(conn: asyncpg.Connection, schema: str, projection: Projection, topic: str) -> dict[int, int]:
    """`next_offset` per partition of the projection's `projection_offsets` in `schema`."""
    rows = await conn.fetch(
        f"SELECT partition, next_offset FROM {schema}.projection_offsets WHERE projection = $1 AND topic = $2",
        projection.name,
        topic,
    )
    return {r["partition"]: r["next_offset"] for r in rows}
