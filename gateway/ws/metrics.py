"""Prometheus metrics of the WebSocket side, served by the gateway's `GET /metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OPEN_SOCKETS = Gauge("gateway_ws_open_sockets", "WebSockets open on this instance")
FRAMES_IN = Counter("gateway_ws_frames_in_total", "Client frames received, by type", ["type"])
FRAMES_OUT = Counter("gateway_ws_frames_out_total", "Frames written to sockets")
ERRORS_OUT = Counter("gateway_ws_error_frames_total", "Error frames sent, by code", ["code"])
DELIVERIES = Counter(
    "gateway_ws_deliveries_total",
    "Deliveries consumed by this instance (a recipient of a message.delivered record; a malformed record is one)",
    ["outcome"],
)
DELIVERY_PARTITIONS = Gauge("gateway_ws_delivery_partitions", "Partitions of message.delivered this instance consumes")
ROUTED = Counter("gateway_ws_routed_total", "Frames received from the per-user Redis channels")
DUPLICATES_DROPPED = Counter(
    "gateway_ws_duplicates_dropped_total", "message.new frames not pushed because the socket had that seq already"
)
RESYNCS = Counter(
    "gateway_ws_resyncs_total", "Sockets made whole from the read models after a possible gap, by cause", ["cause"]
)
RESYNCED = Counter("gateway_ws_resynced_messages_total", "Messages pushed by server-side resyncs")
SESSION_CLOSES = Counter(
    "gateway_ws_session_closes_total",
    "Sockets closed with 4001 because their session ended or their token expired, by how it was learned",
    ["cause"],
)
SLOW_CLOSES = Counter("gateway_ws_slow_closes_total", "Sockets closed because their outgoing queue overflowed")
PRESENCE_CHANGES = Counter("gateway_ws_presence_changes_total", "Presence changes announced", ["online"])
ACK_SECONDS = Histogram(
    "gateway_ws_ack_seconds",
    "From a message.send frame to its message.ack",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
