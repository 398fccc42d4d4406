"""The gateway's aiohttp application, assembled from its route tables and resources."""

from __future__ import annotations

import socket

from aiohttp import web

from config.settings import GatewaySettings
from gateway import access_log, ws
from gateway.auth import routes as routes_auth
from gateway.infra import consistency, health, limits, resources
from gateway.infra.command_bus import command_bus_ctx
from gateway.infra.content_keys import content_keys_ctx
from gateway.rest import chats as routes_chats
from gateway.rest import docs, http_headers
from gateway.rest import users as routes_users
from gateway.rest.errors import error_middleware
from gateway.usecases.erasure import erasure_healing_ctx
from gateway.usecases.ports import ports_ctx
from gateway.web import routes as routes_web
from runtime.gc_pauses import freeze_survivors, measure_gc_pauses

MAX_BODY_BYTES = 64 * 1024


def instance_id(settings: GatewaySettings) -> str:
    """Names this instance's reply topic and Redis sessions; stable across restarts by default."""
    return settings.gateway_instance_id or f"{socket.gethostname()}-{settings.gateway_port}"


def create_app(settings: GatewaySettings) -> web.Application:
    measure_gc_pauses()
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[resources.SETTINGS] = settings
    app[resources.INSTANCE_ID] = instance_id(settings)
    app.cleanup_ctx.extend(
        [
            resources.pg_pool,
            resources.redis_client,
            resources.kafka_producer,
            content_keys_ctx,
            command_bus_ctx(app[resources.INSTANCE_ID]),
            consistency.watermarks_ctx,
            routes_auth.auth_ctx,
            limits.limits_ctx,
            ports_ctx,
            erasure_healing_ctx,
        ]
    )
    for table in (health.routes, routes_auth.routes, routes_users.routes, routes_chats.routes):
        app.add_routes(table)
    app.add_routes(docs.routes)
    app.add_routes(routes_web.routes)
    ws.setup(app)
    http_headers.setup(app)
    access_log.setup(app)
    app.on_startup.append(freeze_startup_objects)
    return app


async def freeze_startup_objects(app: web.Application) -> None:
    """What exists once the gateway has started (modules, schemas, pools) lives as long as the
    process: exempting it from collections keeps full collections, and their pauses, short.
    Only once: sockets and requests come and go, and their cycles must stay collectable."""
    freeze_survivors()
