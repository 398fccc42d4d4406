"""Frames per user: the token bucket, and the users' buckets kept across reconnects."""

from __future__ import annotations

import pytest

from gateway.ws.frame_rate import TokenBucket, UserBuckets


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drain(bucket: TokenBucket) -> int:
    """How many events the bucket lets through right now."""
    allowed = 0
    while bucket.allow():
        allowed += 1
        assert allowed < 10_000
    return allowed


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=10, burst=5, clock=FakeClock())
    assert drain(bucket) == 5
    assert not bucket.allow()


def test_tokens_come_back_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    drain(bucket)
    clock.advance(0.05)
    assert not bucket.allow()
    clock.advance(0.05)
    assert bucket.allow()
    assert not bucket.allow()
    clock.advance(0.3)
    assert drain(bucket) == 3


def test_a_long_pause_refills_no_more_than_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    drain(bucket)
    clock.advance(3600)
    assert drain(bucket) == 5


def test_a_clock_going_back_adds_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.allow()
    clock.advance(-100)
    assert not bucket.allow()
    clock.advance(1)
    assert bucket.allow()


def test_the_sustained_rate_is_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=1, clock=clock)
    allowed = 0
    for _ in range(1000):
        clock.advance(0.01)
        allowed += bucket.allow()
    assert allowed == 200


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_bucket_that_could_never_allow_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        TokenBucket(rate=rate, burst=burst)


def test_a_credit_for_a_stall_lets_the_frames_sent_meanwhile_through_above_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert all(bucket.allow() for _ in range(5))
    assert not bucket.allow()
    now[0] = 3.0  # the socket was not read for 3 s: 30 frames at the bucket's rate waited
    bucket.credit(3.0)
    taken = sum(bucket.allow() for _ in range(40))
    assert taken == 35, "the 5 of the normal refill plus the 30 credited"
    now[0] = 4.0
    assert sum(bucket.allow() for _ in range(20)) == 5, "after the credit is spent, the burst is the cap again"


def test_an_empty_bucket_says_how_long_until_its_next_token() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock)
    assert bucket.wait_seconds() == 0
    drain(bucket)
    assert bucket.wait_seconds() == pytest.approx(0.1)
    clock.advance(0.04)
    assert bucket.wait_seconds() == pytest.approx(0.06)


def test_a_users_bucket_survives_a_reconnect() -> None:
    """Row 8 of issue 10: closing the last socket and opening another must not refill it."""
    clock = FakeClock()
    buckets = UserBuckets(rate=10, burst=5, clock=clock)
    assert drain(buckets.get("u")) == 5
    buckets.left("u")
    buckets.arrived("u")
    assert drain(buckets.get("u")) == 0
    clock.advance(0.1)
    assert drain(buckets.get("u")) == 1


def test_a_bucket_is_forgotten_once_it_would_have_refilled() -> None:
    clock = FakeClock()
    buckets = UserBuckets(rate=10, burst=5, clock=clock)
    drain(buckets.get("u"))
    buckets.left("u")
    clock.advance(0.4)
    buckets.get("v")
    assert len(buckets) == 2, "still owed: 4 of 5 tokens refilled"
    clock.advance(0.1)
    buckets.get("v")
    assert len(buckets) == 1
    assert drain(buckets.get("u")) == 5, "a new bucket is what the old one would be by now"


def test_a_user_back_within_the_refill_keeps_their_bucket_however_long_they_stay() -> None:
    clock = FakeClock()
    buckets = UserBuckets(rate=10, burst=5, clock=clock)
    buckets.left("u")
    clock.advance(0.2)
    buckets.arrived("u")
    clock.advance(1.0)
    drain(buckets.get("u"))
    buckets.left("w")
    assert drain(buckets.get("u")) == 0, "emptied while connected, it is not replaced by a full one"
