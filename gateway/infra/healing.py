"""How the gateway's long-lived connections heal: one backoff policy (`runtime.retry.Backoff`,
the one retry policy of every process), one metric and one log line per lost and regained
connection (design: "Healing").

Each connection has an owner (the LISTEN of `consistency`, the pub/sub of `ws.routing`, the
delivery consumer of `ws.delivery`) that notices its death and reopens it; this module is what
they share, so that every reconnect looks the same in `/metrics`, in the log and in `/healthz`.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge

from runtime.retry import Backoff

log = logging.getLogger(__name__)

RECONNECTS = Counter(
    "gateway_reconnects_total", "Connections reopened after their server or link failed", ["connection"]
)
CONNECTION_UP = Gauge(
    "gateway_connection_up", "1 while a long-lived connection is open, 0 while it is being reopened", ["connection"]
)

FIRST_PAUSE_S = 0.1
MAX_PAUSE_S = 5.0
"""A restarted server is usually back within seconds: retry fast at first, then every few
seconds at most, so that recovery never waits long after the server is back."""


def reconnect_backoff() -> Backoff:
    """The pauses of one connection's reconnect loop (`runtime.retry.Backoff`, the one retry policy)."""
    return Backoff(FIRST_PAUSE_S, MAX_PAUSE_S)


class ConnectionState:
    """Whether one named connection is up, for `/healthz`, with its metric and log lines."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = False
        self.lost_at: float | None = None
        self.error = ""
        CONNECTION_UP.labels(name).set(0)

    def opened(self) -> None:
        """The connection is (again) open; a reopen is counted and logged once."""
        if self.lost_at is not None:
            RECONNECTS.labels(self.name).inc()
            log.warning("%s: reconnected after %.1f s", self.name, time.monotonic() - self.lost_at)
        self.up = True
        self.lost_at = None
        self.error = ""
        CONNECTION_UP.labels(self.name).set(1)

    def lost(self, error: BaseException | str) -> None:
        """The connection failed; logged once per outage, not once per retry."""
        self.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        if self.lost_at is None:
            self.lost_at = time.monotonic()
            log.warning("%s: connection lost (%s); reconnecting", self.name, self.error)
        self.up = False
        CONNECTION_UP.labels(self.name).set(0)

    def health(self) -> str:
        return "up" if self.up else f"down: {self.error or 'connecting'}"
