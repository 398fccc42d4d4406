"""The pages other parts feed: the dead letters (`schemas.dead_letters`, read with
`runtime.topic_log`) and the rebuilds' progress (`projections.rebuild_progress`). A source that
cannot be read makes the page say so, never an empty list that looks like "nothing wrong"."""

from __future__ import annotations

import asyncpg

from config.settings import CommonSettings
from runtime.topic_log import read_topic
from schemas import topics
from schemas.console import BadRecordsPage, RebuildPage
from schemas.dead_letters import page_of

BAD_RECORDS_LIMIT = 50
CONNECT_TIMEOUT_S = 5.0


def failure(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:300]


async def bad_records(
    settings: CommonSettings, served_by: str, after: str | None, limit: int, consumer: str | None
) -> BadRecordsPage:
    """ValueError for a cursor that is none of the list's."""
    common = {"served_by": served_by, "consumer": consumer, "after": after}
    try:
        records = await read_topic(settings, settings.topic(topics.DEAD_LETTERS.name))
    except Exception as error:  # Kafka: the page says it cannot read the list
        return BadRecordsPage(**common, available=False, reason=f"cannot read the dead letters: {failure(error)}")
    return BadRecordsPage(**common, available=True, page=page_of(records, after=after, limit=limit, consumer=consumer))


async def rebuilds(settings: CommonSettings, served_by: str) -> RebuildPage:
    from projections.rebuild_progress import read_rebuild_progress

    try:
        conn = await asyncpg.connect(settings.database_url, timeout=CONNECT_TIMEOUT_S)
        try:
            progress = await read_rebuild_progress(conn)
        finally:
            await conn.close()
    except Exception as error:  # PostgreSQL: the page says it cannot read the progress
        return RebuildPage(served_by=served_by, available=False, reason=f"cannot read the progress: {failure(error)}")
    return RebuildPage(served_by=served_by, available=True, rebuilds=progress)
