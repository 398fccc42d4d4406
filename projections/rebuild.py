"""Rebuilds read models from their topics: truncate, reset the offsets, replay, with the same apply code.

The replay reads each partition from the start of its log to the end it has when the rebuild of
that projection begins, with a plain consumer (no group, so the worker's committed offsets are
left alone), and applies it in batches that each commit with their offsets: a rebuild that dies
half-way leaves read models consistent with `projection_offsets`, and a worker started afterwards
goes on from there. The exclusive advisory lock keeps it from running beside a worker.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import NoReturn

import asyncpg
from tqdm import tqdm

from config.settings import CommonSettings
from projections.apply import apply_records
from projections.locks import try_exclusive
from projections.model import Projection
from projections.topic_reader import Span, TopicReader

BATCH_SIZE = 2000
PARALLEL_APPLIERS = 4

REFUSAL = (
    "rebuild refused: a projections worker is running (it holds the read-models lock); "
    "stop it first (`scripts/system down` stops the processes `make run` started), then rebuild again"
)


class RebuildRefused(Exception):
    pass


async def reset(conn: asyncpg.Connection, projection: Projection) -> None:
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {', '.join(projection.table_names)}")
        await conn.execute("DELETE FROM projection_offsets WHERE projection = $1", projection.name)


async def replay(
    conn: asyncpg.Connection,
    reader: TopicReader,
    projection: Projection,
    topic: str,
    progress: bool,
    database_url: str,
) -> int:
    """Reset `projection` and apply its topic up to its current end; the number of records read.

    The partitions are shared out over `PARALLEL_APPLIERS` connections: a partition's records
    touch only its own chats' (or users') rows and its own `projection_offsets` rows, so the
    appliers never wait for each other, and PostgreSQL works on every core instead of one.
    """
    spans = await reader.spans(topic)
    await reset(conn, projection)
    total = sum(s.size for s in spans.values())
    with tqdm(total=total, desc=projection.name, unit=" events", disable=not progress) as bar:
        counts = await asyncio.gather(
            *(
                apply_share(database_url, reader, projection, topic, share, bar)
                for share in shares(spans, PARALLEL_APPLIERS)
                if share
            )
        )
    return sum(counts)


def shares(spans: dict[int, Span], count: int) -> list[dict[int, Span]]:
    """`spans` dealt out into `count` groups of about the same number of records."""
    groups: list[dict[int, Span]] = [{} for _ in range(count)]
    sizes = [0] * count
    for partition, span in sorted(spans.items(), key=lambda item: -item[1].size):
        smallest = sizes.index(min(sizes))
        groups[smallest][partition] = span
        sizes[smallest] += span.size
    return groups


async def apply_share(
    database_url: str,
    reader: TopicReader,
    projection: Projection,
    topic: str,
    spans: dict[int, Span],
    bar: tqdm[NoReturn],
) -> int:
    conn = await asyncpg.connect(database_url)
    done = 0
    try:
        async with aclosing(reader.read(topic, spans, BATCH_SIZE)) as batches:
            async for batch in batches:
                await apply_records(conn, projection, topic, batch)
                done += len(batch)
                bar.update(len(batch))
    finally:
        await conn.close()
    return done


async def rebuild(settings: CommonSettings, projections: list[Projection], progress: bool = True) -> dict[str, int]:
    """Rebuild `projections` one after the other; the records replayed for each.

    Raises `RebuildRefused` while a projections worker runs.
    """
    conn = await asyncpg.connect(settings.database_url)
    try:
        if not await try_exclusive(conn):
            raise RebuildRefused(REFUSAL)
        async with TopicReader(settings) as reader:
            return {
                p.name: await replay(conn, reader, p, settings.topic(p.topic.name), progress, settings.database_url)
                for p in projections
            }
    finally:
        await conn.close()
