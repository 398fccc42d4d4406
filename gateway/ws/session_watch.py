"""Sockets follow their session (contract v1.1): each socket of this instance is closed with 4001
`session_ended` when its session ends or its access token expires.

A socket is opened with an access token, which names a user, a session (`sid`, a refresh family)
and an expiry (`exp`). The socket keeps the session and the expiry of the last token it was given:
the handshake's, then each `auth` frame's (a fresh token of the same user moves both). Three
things close it:

- its deadline (`exp`) passes: checked every `EXPIRY_TICK_S`;
- a "session end" message on its user's channel names its session (`gateway.auth.session_end`);
- its session's family is gone from Redis: checked every `FAMILY_CHECK_S` for all the sessions of
  this instance's sockets in one pipelined round trip. This is the net under pub/sub, whose
  messages can be lost while an instance reconnects to Redis, and under the races between a
  socket opening and its session ending.

A check that cannot reach Redis closes nothing: a Redis outage must not look like every session
ending at once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from redis.exceptions import RedisError

from gateway.auth.tokens import AccessClaims
from gateway.rest.errors import invalid_token, token_expired
from gateway.ws.connections import Connection
from gateway.ws.metrics import SESSION_CLOSES
from gateway.ws.routing import ALL_SESSIONS, Route
from schemas.frames import SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON

log = logging.getLogger(__name__)

EXPIRY_TICK_S = 1.0
FAMILY_CHECK_S = 2.0
"""With `EXPIRY_TICK_S`, and a close that takes at most `CLOSE_GRACE_S` (3 s) but is usually
instant, a socket is closed well within the contract's 5 s of its end however it is learned."""


class Deadlines:
    """When each key (a connection id) is due; a key set again is due at its latest time only.

    A heap with lazy deletion: moving or dropping a key leaves its old entry behind, skipped when
    it comes up, and the heap is rebuilt once stale entries outnumber live ones.
    """

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._at)

    def set(self, key: str, at: float) -> None:
        self._at[key] = at
        heapq.heappush(self._heap, (at, key))
        self._compact()

    def discard(self, key: str) -> None:
        self._at.pop(key, None)
        self._compact()

    def at(self, key: str) -> float | None:
        return self._at.get(key)

    def due(self, now: float) -> list[str]:
        """The keys due at or before `now`, each once; they are forgotten."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            if self._at.get(key) == at:
                del self._at[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self._at) + 64:
            self._heap = [(at, key) for key, at in self._at.items()]
            heapq.heapify(self._heap)


class LiveSessions(Protocol):
    """What the watch needs of `gateway.auth.refresh_tokens.RefreshTokenStore`."""

    async def live(self, session_ids: Iterable[str]) -> set[str]: ...


class SessionWatch:
    """The sessions and deadlines of this instance's open sockets."""

    def __init__(
        self,
        store: LiveSessions,
        *,
        clock: Callable[[], float] = time.time,
        tick_s: float = EXPIRY_TICK_S,
        check_s: float = FAMILY_CHECK_S,
    ) -> None:
        self._store = store
        self._clock = clock
        self._tick_s = tick_s
        self._check_s = check_s
        self._connections: dict[str, Connection] = {}
        self._deadlines = Deadlines()
        self._task: asyncio.Task[None] | None = None
        self._check_failing = False
        """Whether the last family check could not reach Redis (its failures are logged once)."""

    # --- sockets come, change and go --------------------------------------------------------------

    def track(self, connection: Connection) -> None:
        self._connections[connection.id] = connection
        self._deadlines.set(connection.id, connection.expires_at)

    def forget(self, connection: Connection) -> None:
        self._connections.pop(connection.id, None)
        self._deadlines.discard(connection.id)

    async def require_live(self, claims: AccessClaims) -> None:
        """For a token about to be given to a socket: 401 `token_expired` past its `exp` (no
        leeway: the socket would close at once), `invalid_token` if its session has ended."""
        if claims.expires_at <= self._clock():
            raise token_expired()
        if claims.session_id not in await self._store.live([claims.session_id]):
            raise invalid_token("this session has ended: log in again")

    def extend(self, connection: Connection, claims: AccessClaims) -> None:
        """An `auth` frame's token (checked: same user, live, not expired) takes over the socket."""
        connection.session_id = claims.session_id
        connection.expires_at = claims.expires_at
        if connection.id in self._connections:
            self._deadlines.set(connection.id, claims.expires_at)

    # --- what ends them ---------------------------------------------------------------------------

    def receive(self, route: Route) -> None:
        """A "session end" message for one of this instance's users."""
        for connection in self._of_user(route.user_id):
            if route.text in (ALL_SESSIONS, connection.session_id):
                self._end(connection, "ended")

    def expire_due(self) -> int:
        """Close the sockets whose token expired; how many."""
        closed = 0
        for connection_id in self._deadlines.due(self._clock()):
            connection = self._connections.get(connection_id)
            if connection is not None:
                closed += self._end(connection, "expired")
        return closed

    async def check_families(self) -> int:
        """Close the sockets whose session's family is gone; how many (`RedisError` if Redis
        cannot answer: nothing is closed then)."""
        sessions = {c.session_id for c in self._connections.values() if not c.closing}
        if not sessions:
            return 0
        dead = sessions - await self._store.live(sessions)
        closed = 0
        for connection in list(self._connections.values()):
            if connection.session_id in dead:
                closed += self._end(connection, "family_gone")
        return closed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self._check_s
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                self.expire_due()
                if loop.time() >= next_check:
                    next_check = loop.time() + self._check_s
                    await self._checked()
            except Exception:
                log.exception("session watch: unexpected error; going on")

    async def _checked(self) -> None:
        """`check_families`, its failures logged once per outage."""
        try:
            await self.check_families()
        except (RedisError, OSError) as error:
            if not self._check_failing:
                log.warning("cannot check the sessions of this instance's sockets (closing none meanwhile): %r", error)
            self._check_failing = True
            return
        if self._check_failing:
            log.info("the sessions of this instance's sockets are checked again")
        self._check_failing = False

    def _of_user(self, user_id: str) -> Iterable[Connection]:
        return [c for c in self._connections.values() if c.user_id == user_id]

    def _end(self, connection: Connection, cause: str) -> bool:
        if connection.closing:
            return False
        SESSION_CLOSES.labels(cause).inc()
        log.info("closing socket %s of user %s: session %s", connection.id, connection.user_id, cause)
        connection.close_soon(SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON)
        return True
