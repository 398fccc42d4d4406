"""The WebSocket side of the gateway (contract v1, "WebSocket"); docs/websocket.md tells the story.

    ws.setup(app)   # from create_app, after the resources and the use cases' ports

Modules: `endpoint` (the route and one socket's life), `handshake` (token and origin, and `auth`
frames), `handlers` (what each frame does: commands through `gateway.usecases`), `frame_rate`
(frames per user), `sync` (`sync` frames from the read models), `members` (`typing` frames, with a
cache of members), `connections` (local sockets, their queues and writers), `routing` (per-user
Redis channels between instances), `delivery` (the `message.delivered` consumer group), `resync`
(making sockets whole after a possible gap), `session_watch` (sockets follow their session),
`sessions` and `presence` (who is online, in Redis), `service` (all of it assembled, started and
stopped), `metrics`.
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
