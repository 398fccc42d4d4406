"""The projections' Prometheus metrics, served by the worker's `/metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BAD_RECORDS = Counter(
    "projection_bad_records_total",
    "Records of an event topic skipped because they are no event this projection can apply",
    ["projection", "reason"],
)
APPLIED_EVENTS = Counter("projection_applied_events_total", "Events applied to the read models", ["projection"])
LAG = Gauge(
    "projection_lag_events",
    "Records of the topic partition not applied yet (end offset minus next_offset)",
    ["projection", "partition"],
)
