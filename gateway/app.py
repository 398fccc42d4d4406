"""The gateway's aiohttp application, assembled from its route tables and resources."""

from __future__ import annotations

from aiohttp import web

from config.settings import GatewaySettings
from gateway import health, resources


def create_app(settings: GatewaySettings) -> web.Application:
    app = web.Application()
    app[resources.SETTINGS] = settings
    app.cleanup_ctx.extend([resources.pg_pool, resources.redis_client, resources.kafka_producer])
    app.add_routes(health.routes)
    return app
