"""Sockets follow their session: the deadline bookkeeping, and which sockets each ending closes
(the family check is given a store that answers from a set; tests/e2e/test_ws_session_end.py
runs it against the real Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.auth.tokens import AccessClaims
from gateway.ws.connections import Connection, OutgoingQueue
from gateway.ws.routing import ALL_SESSIONS, Route
from gateway.ws.session_watch import Deadlines, SessionWatch
from schemas.frames import SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON
from tests.unit.test_ws_connections import FakeSocket, until

ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())
S1, S2, S3 = "1" * 32, "2" * 32, "3" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Families:
    """The families that still live, as a set."""

    def __init__(self, *live: str) -> None:
        self.alive = set(live)
        self.asked: list[set[str]] = []

    async def live(self, session_ids: Iterable[str]) -> set[str]:
        ids = set(session_ids)
        self.asked.append(ids)
        return ids & self.alive


class Unreachable:
    async def live(self, session_ids: Iterable[str]) -> set[str]:
        raise RedisConnectionError("Redis is down")


def test_keys_come_due_once_in_time_order() -> None:
    deadlines = Deadlines()
    deadlines.set("b", 20)
    deadlines.set("a", 10)
    deadlines.set("c", 30)
    assert deadlines.due(5) == []
    assert deadlines.due(20) == ["a", "b"]
    assert deadlines.due(20) == []
    assert len(deadlines) == 1 and deadlines.at("c") == 30


def test_a_key_set_again_is_due_at_its_latest_time_only() -> None:
    deadlines = Deadlines()
    deadlines.set("a", 10)
    deadlines.set("a", 50)
    assert deadlines.due(40) == []
    deadlines.set("a", 30)
    assert deadlines.due(40) == ["a"], "moved earlier: due at the new time"
    assert deadlines.due(100) == [], "the older entries are stale"


def test_a_dropped_key_never_comes_due() -> None:
    deadlines = Deadlines()
    deadlines.set("a", 10)
    deadlines.discard("a")
    deadlines.discard("never-set")
    assert deadlines.due(100) == [] and len(deadlines) == 0


def test_many_moves_keep_the_heap_small_and_the_answers_right() -> None:
    deadlines = Deadlines()
    for n in range(10_000):
        deadlines.set(f"k{n % 10}", float(n))
    assert len(deadlines._heap) < 200
    assert sorted(deadlines.due(9_994)) == ["k0", "k1", "k2", "k3", "k4"]
    assert sorted(deadlines.due(1e9)) == ["k5", "k6", "k7", "k8", "k9"]


def socket_of(watch: SessionWatch, user: str, session: str, expires_at: float) -> tuple[Connection, FakeSocket]:
    fake = FakeSocket()
    conn = Connection(
        user, fake, fake.abort, OutgoingQueue(8, 4), close_grace=0.2, session_id=session, expires_at=expires_at
    )
    watch.track(conn)
    return conn, fake


async def closed_for_session(*fakes: FakeSocket) -> None:
    await until(lambda: all(f.closed_with is not None for f in fakes))
    for fake in fakes:
        assert fake.closed_with == (SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_REASON.encode())


async def test_a_socket_closes_when_its_token_expires_and_an_auth_frame_moves_that() -> None:
    clock = Clock()
    watch = SessionWatch(Families(S1), clock=clock)
    _, expiring_fake = socket_of(watch, ALICE, S1, clock.now + 10)
    extended, extended_fake = socket_of(watch, ALICE, S1, clock.now + 10)
    watch.extend(extended, AccessClaims(uuid.UUID(ALICE), S2, int(clock.now) + 100))
    assert (extended.session_id, extended.expires_at) == (S2, int(clock.now) + 100)
    clock.now += 9
    assert watch.expire_due() == 0
    clock.now += 1
    assert watch.expire_due() == 1
    await closed_for_session(expiring_fake)
    assert not extended.closing
    clock.now += 90
    assert watch.expire_due() == 1
    await closed_for_session(extended_fake)


async def test_a_forgotten_socket_is_not_closed_at_its_deadline() -> None:
    clock = Clock()
    watch = SessionWatch(Families(), clock=clock)
    conn, fake = socket_of(watch, ALICE, S1, clock.now + 1)
    watch.forget(conn)
    clock.now += 2
    assert watch.expire_due() == 0 and fake.closed_with is None


async def test_a_session_end_closes_that_sessions_sockets_only() -> None:
    watch = SessionWatch(Families())
    _, ended = socket_of(watch, ALICE, S1, 2e9)
    _, ended_too = socket_of(watch, ALICE, S1, 2e9)
    other_session, _ = socket_of(watch, ALICE, S2, 2e9)
    other_user, _ = socket_of(watch, BOB, S1, 2e9)
    watch.receive(Route(ALICE, S1, session_end=True))
    await closed_for_session(ended, ended_too)
    assert not other_session.closing and not other_user.closing


async def test_the_end_of_all_sessions_closes_every_socket_of_the_user() -> None:
    watch = SessionWatch(Families())
    _, first = socket_of(watch, ALICE, S1, 2e9)
    _, second = socket_of(watch, ALICE, S2, 2e9)
    bobs, _ = socket_of(watch, BOB, S3, 2e9)
    watch.receive(Route(ALICE, ALL_SESSIONS, session_end=True))
    await closed_for_session(first, second)
    assert not bobs.closing


async def test_the_family_check_asks_once_for_all_sessions_and_closes_the_dead_ones() -> None:
    families = Families(S2)
    watch = SessionWatch(families)
    _, dead = socket_of(watch, ALICE, S1, 2e9)
    _, dead_too = socket_of(watch, BOB, S1, 2e9)
    alive, _ = socket_of(watch, ALICE, S2, 2e9)
    assert await watch.check_families() == 2
    assert families.asked == [{S1, S2}]
    await closed_for_session(dead, dead_too)
    assert not alive.closing
    await asyncio.sleep(0)
    assert await watch.check_families() == 0


async def test_a_check_that_cannot_reach_redis_closes_nothing_and_the_watch_goes_on() -> None:
    clock = Clock()
    watch = SessionWatch(Unreachable(), clock=clock, tick_s=0.01, check_s=0.01)
    conn, fake = socket_of(watch, ALICE, S1, clock.now + 1)
    with pytest.raises(RedisConnectionError):
        await watch.check_families()
    watch.start()
    try:
        await asyncio.sleep(0.1)
        assert not conn.closing, "an outage is not every session ending"
        clock.now += 2
        await closed_for_session(fake)
    finally:
        await watch.stop()
