"""Read-your-writes (contract, "Consistency") without polling.

A write's reply names where its events landed (topic, partition, offset). Projections commit, in
the same transaction as their rows, a NOTIFY of their progress (`schemas.progress`). This module
LISTENs on one connection, keeps the highest `next_offset` seen per (topic, partition), and
wakes the requests waiting for it.
A write is answered once every one of its events is in the read models, so the caller's next read
sees it, whichever gateway instance serves it; if they are not there within `WAIT_LIMIT_S`, the
write is answered 503 `unavailable` instead (an ack promises read-your-writes).

The LISTEN connection heals: a keeper task notices its death (asyncpg's termination callback, or
a ping that fails) and reopens it with backoff; after each (re)open it reads `projection_offsets`
again, so whatever was applied while it was down wakes its waiters at once.
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

from gateway.infra import read_store
from gateway.infra.healing import ConnectionState, reconnect_backoff
from schemas.commands import Position, Reply
from schemas.progress import CHANNEL, SNAPSHOT_SQL, ProjectionProgress

log = logging.getLogger(__name__)

WAIT_LIMIT_S = 10.0
"""How long a durable write waits for the read models before it is answered 503 `unavailable`
(the client retries with the same `client_msg_id`, which is deduplicated)."""
PING_INTERVAL_S = 5.0
"""How often the keeper checks the LISTEN connection that no callback said was lost (a link that
died without a FIN)."""
PING_TIMEOUT_S = 2.0
CONNECTION_NAME = "projection_progress_listener"
APPLICATION_NAME = "messenger-gateway-progress"
"""How the LISTEN connection shows in `pg_stat_activity`."""
CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
"""What a LISTEN connection whose server went away (or never answers) raises."""
DUPLICATE_POLL_FIRST_S = 0.02
DUPLICATE_POLL_MAX_S = 0.5

RYW_WAIT = Histogram("gateway_read_your_writes_seconds", "Wait for projections after a write")
RYW_TIMEOUTS = Counter(
    "gateway_read_your_writes_timeouts_total", "Writes answered 503 because their projection did not come in time"
)

Key = tuple[str, int]


class ProjectionWatermarks:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.applied: dict[Key, int] = defaultdict(int)
        self.waiters: dict[Key, list[tuple[int, int, asyncio.Future[None]]]] = defaultdict(list)
        """Per key, a heap of (offset, arrival number, future)."""
        self.arrivals = itertools.count()
        self.conn: asyncpg.Connection | None = None
        self.state = ConnectionState(CONNECTION_NAME)
        self._lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the LISTEN connection (failing if PostgreSQL cannot be reached at start), then
        keep it open in the background."""
        await self._open()
        self._keeper = asyncio.create_task(self._keep(), name="projection progress keeper")

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self.conn is not None and not self.conn.is_closed():
            await self.conn.close()

    async def _open(self) -> None:
        conn = await asyncpg.connect(self.database_url, server_settings={"application_name": APPLICATION_NAME})
        try:
            conn.add_termination_listener(self._on_terminated)
            await conn.add_listener(CHANNEL, self._on_notify)
            rows = await conn.fetch(SNAPSHOT_SQL)
        except BaseException:
            conn.terminate()
            raise
        self.conn = conn
        self._lost.clear()
        for row in rows:
            self._advance((row["topic"], row["partition"]), row["next_offset"])
        self.state.opened()

    def _on_terminated(self, conn: object) -> None:
        """Only the current connection's end counts: an old one's may be reported late."""
        if conn is self.conn:
            self._lost.set()

    async def _keep(self) -> None:
        """Reopen the connection whenever it is lost, for the life of the gateway."""
        backoff = reconnect_backoff()
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), PING_INTERVAL_S)
            except TimeoutError:
                if await self._alive():
                    continue
            self.state.lost(self.state.error or "the connection closed")
            if self.conn is not None:
                self.conn.terminate()
            while True:
                try:
                    await self._open()
                    backoff.reset()
                    break
                except CONNECTION_ERRORS as error:
                    self.state.lost(error)
                    await asyncio.sleep(backoff.next_pause())

    async def _alive(self) -> bool:
        assert self.conn is not None
        try:
            await self.conn.fetchval("SELECT 1", timeout=PING_TIMEOUT_S)
        except CONNECTION_ERRORS as error:
            self.state.lost(error)
            return False
        return True

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            progress = ProjectionProgress.decode(str(payload))
            self._advance((progress.topic, progress.partition), progress.next_offset)
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
            _, not_done = await asyncio.wait(pending, timeout=timeout)
        for future in not_done:
            future.cancel()
        if not_done:
            RYW_TIMEOUTS.inc()
            return False
        return True

    async def require(self, positions: list[Position], timeout: float = WAIT_LIMIT_S) -> None:
        """Return once every position is projected; `NotProjected` if `timeout` passed first."""
        if not await self.wait_for(positions, timeout):
            raise NotProjected(f"the read models did not reach this write within {timeout:g} s")

    async def require_reply(self, reply: Reply, db: read_store.Pool, timeout: float = WAIT_LIMIT_S) -> None:
        """Return once the read models hold what an accepted `reply` reports.

        A fresh decision names the positions of its events. A duplicate (an idempotent retry)
        names none: its events were written by the first attempt, which may still be on its way
        to the read models (that attempt may have been answered `unavailable`), so the rows its
        result names are looked for instead, until they are there.
        """
        if reply.positions or not reply.duplicate:
            await self.require(reply.positions, timeout)
            return
        deadline = asyncio.get_running_loop().time() + timeout
        pause = DUPLICATE_POLL_FIRST_S
        while not await read_store.holds_result(db, reply.result):
            if asyncio.get_running_loop().time() + pause > deadline:
                RYW_TIMEOUTS.inc()
                raise NotProjected(f"the read models did not reach this write within {timeout:g} s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, DUPLICATE_POLL_MAX_S)


class NotProjected(Exception):
    """A durable write the read models did not reach in time: it must not be acked (the client
    retries it with the same id, and the retry is deduplicated)."""


WATERMARKS = web.AppKey("watermarks", ProjectionWatermarks)


async def watermarks_ctx(app: web.Application) -> AsyncIterator[None]:
    from gateway.infra.resources import SETTINGS

    watermarks = ProjectionWatermarks(app[SETTINGS].database_url)
    await watermarks.start()
    app[WATERMARKS] = watermarks
    yield
    await watermarks.stop()
