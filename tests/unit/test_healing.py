"""The gateway's reconnect policy (runtime.retry.Backoff, the one retry policy) and its connection
states (gateway.infra.healing)."""

from __future__ import annotations

from gateway.infra.healing import MAX_PAUSE_S, RECONNECTS, ConnectionState, reconnect_backoff
from runtime.retry import Backoff


def test_backoff_grows_to_its_cap_with_full_jitter_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(first_pause_s=0.1, max_pause_s=1.0)
    pauses = [backoff.next_pause() for _ in range(8)]
    ceilings = [min(1.0, 0.1 * 2**i) for i in range(8)]
    assert all(0 <= p <= c for p, c in zip(pauses, ceilings, strict=True))
    assert max(backoff.next_pause() for _ in range(50)) > 0.5, "the ceiling grew to the cap"
    assert len({round(backoff.next_pause(), 9) for _ in range(20)}) > 1, "jittered, not one fixed pause"
    backoff.reset()
    assert backoff.next_pause() <= 0.1


def test_the_gateway_reconnects_within_its_own_cap() -> None:
    backoff = reconnect_backoff()
    assert all(0 <= backoff.next_pause() <= MAX_PAUSE_S for _ in range(30))


def test_a_connection_state_counts_a_reopen_not_the_first_open() -> None:
    state = ConnectionState("test_listener")
    before = RECONNECTS.labels("test_listener")._value.get()
    assert state.health().startswith("down")
    state.opened()
    assert state.health() == "up"
    state.lost(ConnectionResetError("gone"))
    state.lost(ConnectionRefusedError("still gone"))
    assert state.health() == "down: ConnectionRefusedError: still gone"
    state.opened()
    assert state.health() == "up"
    assert RECONNECTS.labels("test_listener")._value.get() == before + 1
