"""The WebSocket side of the gateway (contract v1, "WebSocket"); docs/websocket.md tells the story.

    ws.setup(app)   # from create_app, after the resources, command bus and watermarks

Modules: `endpoint` (the route and one socket's life), `handshake` (token and origin),
`handlers` (what each frame does), `connections` (local sockets, their queues and writers),
`routing` (per-user Redis channels between instances), `delivery` (the `message.delivered`
consumer group), `sessions` and `presence` (who is online, in Redis), `members` (a cache for
typing), `service` (all of it assembled, started and stopped), `metrics`.
"""

from __future__ import annotations

from aiohttp import web

from gateway.ws import endpoint, service


def setup(app: web.Application) -> None:
    """Add `GET /api/v1/ws`, the WebSocket service (a cleanup_ctx, appended after those already
    registered) and its shutdown step (every socket closed with 1001)."""
    app.router.add_get(endpoint.PATH, endpoint.websocket)
    app.cleanup_ctx.append(service.ws_ctx)
    app.on_shutdown.append(service.on_shutdown)
