"""The WebSocket side of one gateway instance, assembled: local sockets, per-user channels,
sessions and presence, the delivery consumer, and what a socket needs to go through them.

It starts after the resources it uses (PostgreSQL, Redis, the producer, the command bus, the
watermarks) and stops before them. On shutdown every socket is closed with 1001 first, so that
clients reconnect elsewhere while this instance finishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from config.settings import GatewaySettings
from gateway.auth.refresh_tokens import REFRESH_TOKENS
from gateway.infra.consistency import WATERMARKS
from gateway.infra.content_keys import CONTENT_KEYS
from gateway.infra.resources import INSTANCE_ID, PG_POOL, REDIS, SETTINGS
from gateway.usecases.ports import PORTS
from gateway.ws.connections import GOING_AWAY_CODE, Connection, ConnectionRegistry
from gateway.ws.delivery import DeliveryConsumer
from gateway.ws.frame_rate import UserBuckets
from gateway.ws.handlers import FrameServices
from gateway.ws.handshake import SocketAuth
from gateway.ws.members import MembersCache, TypingRelay
from gateway.ws.presence import Presence
from gateway.ws.resync import Resyncer, read_models_caught_up
from gateway.ws.routing import Route, UserChannels
from gateway.ws.session_watch import SessionWatch
from gateway.ws.sessions import Session, SessionStore
from gateway.ws.sync import SyncReader

log = logging.getLogger(__name__)

FRAME_RATE_PER_S = 40.0
FRAME_BURST = 80
"""Per user and instance, every frame counted, malformed ones too, before anything else is done
with it; the writes among them also take from the user's write budget in Redis (`gateway.infra.limits`),
shared with REST and every instance. A person types far slower; a client that sends 20 to 25
messages a second (the benchmark's busiest pairs), plus its read and typing frames, stays under it
with room to catch up after a stall (two seconds of burst); a runaway loop does not."""
GOING_AWAY_REASON = "going away"


@dataclass
class WsService:
    settings: GatewaySettings
    registry: ConnectionRegistry
    channels: UserChannels
    presence: Presence
    delivery: DeliveryConsumer
    resyncer: Resyncer
    watch: SessionWatch
    frames: FrameServices
    """What every socket's `FrameHandler` is given."""
    stopping: bool = False

    async def attach(self, connection: Connection) -> bool:
        """Before a socket opens: register it, subscribe to its user's channel (confirmed) and
        record its session, so that the client never sees an open socket the others do not know
        of. True if the user just came online (announce it once the socket is open).
        `TooManySessions` if the user already holds `MAX_SOCKETS_PER_USER` sockets anywhere."""
        self.registry.add(connection)
        self.frames.rates.arrived(connection.user_id)
        self.watch.track(connection)
        await self.channels.acquire(connection.user_id)
        return await self.presence.record(
            Session(connection.user_id, connection.id), self.settings.max_sockets_per_user
        )

    async def detach(self, connection: Connection) -> None:
        self.watch.forget(connection)
        if self.registry.remove(connection):
            self.frames.rates.left(connection.user_id)
        await self.channels.release(connection.user_id)
        await self.presence.closed(Session(connection.user_id, connection.id))

    async def shutdown(self) -> None:
        """Close every socket with 1001 and stop consuming; each close is bounded, all run at once."""
        self.stopping = True
        await asyncio.gather(
            self.registry.close_all(GOING_AWAY_CODE, GOING_AWAY_REASON),
            self.delivery.stop(),
            return_exceptions=True,
        )

    async def stop(self) -> None:
        await self.watch.stop()
        await self.resyncer.stop()
        await self.presence.stop()
        await self.channels.stop()


WS = web.AppKey("ws", WsService)


async def ws_ctx(app: web.Application) -> AsyncIterator[None]:
    """A cleanup_ctx: registered after the resources and the use cases' ports it uses."""
    settings = app[SETTINGS]
    registry = ConnectionRegistry()
    resyncer = Resyncer(app[PG_POOL], registry, read_models_caught_up(settings, app[WATERMARKS]))
    watch = SessionWatch(app[REFRESH_TOKENS])

    def receive(route: Route) -> None:
        (watch.receive if route.session_end else resyncer.receive)(route)

    channels = UserChannels(
        app[REDIS],
        settings.topic_prefix,
        app[INSTANCE_ID],
        receive,
        on_reopened=lambda: resyncer.resync_all("pubsub_reconnect"),
    )
    await channels.start()
    sessions = SessionStore(app[REDIS], settings.topic_prefix, app[INSTANCE_ID])
    presence = Presence(sessions, channels, app[PG_POOL])
    delivery = DeliveryConsumer(settings, channels, sessions.online_among, app[CONTENT_KEYS])
    await delivery.start()
    presence.start()
    watch.start()
    frames = FrameServices(
        ports=app[PORTS],
        rates=UserBuckets(FRAME_RATE_PER_S, FRAME_BURST),
        history=SyncReader(app[PG_POOL]),
        typing=TypingRelay(MembersCache(app[PG_POOL]), channels),
        auth=SocketAuth(settings, watch),
        instance_id=app[INSTANCE_ID],
    )
    app[WS] = WsService(
        settings=settings,
        registry=registry,
        channels=channels,
        presence=presence,
        delivery=delivery,
        resyncer=resyncer,
        watch=watch,
        frames=frames,
    )
    try:
        yield
    finally:
        service = app[WS]
        if not service.stopping:
            await service.shutdown()
        await service.stop()


async def on_shutdown(app: web.Application) -> None:
    if WS in app:
        await app[WS].shutdown()
