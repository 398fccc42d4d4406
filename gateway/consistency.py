"""Read-your-writes (contract, "Consistency") without polling.

A write's reply names where its events landed (topic, partition, offset). Projections commit, in
the same transaction as their rows, `pg_notify('projection_progress',
'<projection>:<topic>:<partition>:<next_offset>')`. This module LISTENs on one connection, keeps
the highest `next_offset` seen per (topic, partition), and wakes the requests waiting for it.
A write is answered once every one of its events is in the read models, so the caller's next read
sees it, whichever gateway instance serves it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from prometheus_client import Counter, Histogram

from schemas.commands import Position

log = logging.getLogger(__name__)

CHANNEL = "projection_progress"
WAIT_LIMIT_S = 10.0
"""A write is durable before we wait: past this, it is answered anyway and the timeout counted."""

RYW_WAIT = Histogram("gateway_read_your_writes_seconds", "Wait for projections after a write")
RYW_TIMEOUTS = Counter("gateway_read_your_writes_timeouts_total", "Writes answered before their projection")

Key = tuple[str, int]


class ProjectionWatermarks:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.applied: dict[Key, int] = defaultdict(int)
        self.waiters: dict[Key, list[tuple[int, int, asyncio.Future[None]]]] = defaultdict(list)
        """Per key, a heap of (offset, arrival number, future)."""
        self.arrivals = itertools.count()
        self.conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self.conn = await asyncpg.connect(self.database_url)
        await self.conn.add_listener(CHANNEL, self._on_notify)
        rows = await self.conn.fetch("SELECT topic, partition, next_offset FROM projection_offsets")
        for row in rows:
            self._advance((row["topic"], row["partition"]), row["next_offset"])

    async def stop(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        try:
            _, topic, partition, next_offset = payload.rsplit(":", 3)
            self._advance((topic, int(partition)), int(next_offset))
        except ValueError:
            log.warning("ignored a malformed %s notification: %r", CHANNEL, payload)

    def _advance(self, key: Key, next_offset: int) -> None:
        """Wake the waiters below `next_offset`: a heap per key, so a notification costs what it
        wakes, not what waits (under a backlog thousands of requests wait on each partition)."""
        if next_offset <= self.applied[key]:
            return
        self.applied[key] = next_offset
        waiting = self.waiters[key]
        while waiting and waiting[0][0] < next_offset:
            future = heapq.heappop(waiting)[2]
            if not future.done():
                future.set_result(None)

    async def wait_for(self, positions: list[Position], timeout: float = WAIT_LIMIT_S) -> bool:
        """Wait until every position is projected; False if `timeout` passed first."""
        loop = asyncio.get_running_loop()
        pending = []
        for p in positions:
            key = (p.topic, p.partition)
            if self.applied[key] <= p.offset:
                future: asyncio.Future[None] = loop.create_future()
                heapq.heappush(self.waiters[key], (p.offset, next(self.arrivals), future))
                pending.append(future)
        if not pending:
            return True
        with RYW_WAIT.time():
            done, not_done = await asyncio.wait(pending, timeout=timeout)
        for future in not_done:
            future.cancel()
        if not_done:
            RYW_TIMEOUTS.inc()
            return False
        return True


WATERMARKS = web.AppKey("watermarks", ProjectionWatermarks)


async def watermarks_ctx(app: web.Application) -> AsyncIterator[None]:
    from gateway.resources import SETTINGS

    watermarks = ProjectionWatermarks(app[SETTINGS].database_url)
    await watermarks.start()
    app[WATERMARKS] = watermarks
    yield
    await watermarks.stop()
