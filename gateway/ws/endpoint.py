"""`GET /api/v1/ws`: the checks before the upgrade, then one socket's life from open to close."""

from __future__ import annotations

import logging
import math

from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from config.logs import bind
from gateway.infra.resources import SETTINGS
from gateway.rest.errors import ApiError, rate_limited, unavailable
from gateway.ws.connections import CLOSE_GRACE_S, Connection
from gateway.ws.handlers import FrameHandler
from gateway.ws.handshake import authenticate, check_origin
from gateway.ws.service import WS, WsService
from gateway.ws.sessions import TooManySessions

log = logging.getLogger(__name__)

PATH = "/api/v1/ws"
MAX_FRAME_BYTES = 64 * 1024
"""The contract's limit: a larger frame closes the socket with 1009 (aiohttp does it)."""
HEARTBEAT_S = 20.0
"""aiohttp pings every 20 s and drops a peer whose pong is 10 s late: a dead peer is gone within
half a minute, under the sessions' 30 s expiry."""


async def websocket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    check_origin(request, settings)
    claims = authenticate(request, settings)
    bind(user_id=claims.user_id)  # every line of the socket's life, and its access line at the close
    service = request.app[WS]
    if service.stopping:
        raise unavailable("this gateway is stopping; connect again")
    await service.watch.require_live(claims)
    socket = web.WebSocketResponse(
        max_msg_size=MAX_FRAME_BYTES, heartbeat=HEARTBEAT_S, timeout=CLOSE_GRACE_S, compress=False
    )
    if not socket.can_prepare(request).ok:
        raise ApiError(400, "invalid_request", "expected a WebSocket upgrade", details={"field": "headers"})
    connection = Connection(
        str(claims.user_id),
        socket,
        abort=lambda: abort(request),
        session_id=claims.session_id,
        expires_at=claims.expires_at,
    )
    try:
        came_online = await attach(service, connection)
        await socket.prepare(request)
        connection.start_writer()
        await service.presence.tell_who_is_online(connection)
        if came_online:
            await service.presence.announce(connection.user_id, True)
        await serve(service, connection, socket)
    finally:
        await connection.stop_writer()
        await detach(service, connection)
    return socket


async def attach(service: WsService, connection: Connection) -> bool:
    """Record the socket before the upgrade: over `MAX_SOCKETS_PER_USER` it is refused with 429
    `rate_limited`, `Retry-After` saying when one of the user's sessions could expire at the soonest."""
    try:
        return await service.attach(connection)
    except TooManySessions as refused:
        raise rate_limited(math.ceil(refused.retry_after_ms / 1000), "too many open sockets for this user") from None
    except (TimeoutError, RedisError, OSError) as error:
        log.warning("cannot route frames for user %s: %r", connection.user_id, error)
        raise unavailable("cannot open a socket now; retry") from None


async def detach(service: WsService, connection: Connection) -> None:
    try:
        await service.detach(connection)
    except (RedisError, OSError) as error:
        log.warning("cannot forget socket %s of user %s: %r", connection.id, connection.user_id, error)


async def serve(service: WsService, connection: Connection, socket: web.WebSocketResponse) -> None:
    """Read frames until the socket closes (by either side, or by aiohttp for a 1009)."""
    handler = FrameHandler(service.frames, connection)
    try:
        async for message in socket:
            if message.type is WSMsgType.TEXT:
                await handler.receive(message.data)
            elif message.type is WSMsgType.BINARY:
                await handler.refuse_binary()
            else:
                break
    finally:
        await handler.stop()


def abort(request: web.Request) -> None:
    """Drop a connection at once: for a client that takes no close frame (it does not read)."""
    if request.transport is not None:
        request.transport.abort()
