"""`GET /healthz` (the state of Kafka, PostgreSQL and Redis) and `GET /metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.resources import PG_POOL, PRODUCER, REDIS

CHECK_TIMEOUT_S = 2.0

routes = web.RouteTableDef()


async def _check(probe: Callable[[], Awaitable[object]]) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except Exception as error:  # any failure of a probe is the state we report
        return f"down: {type(error).__name__}"
    return "up"


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    app = request.app
    kafka, postgres, redis = await asyncio.gather(
        _check(lambda: app[PRODUCER].client.fetch_all_metadata()),
        _check(lambda: app[PG_POOL].fetchval("SELECT 1")),
        _check(lambda: app[REDIS].ping()),
    )
    services = {"kafka": kafka, "postgresql": postgres, "redis": redis}
    healthy = all(state == "up" for state in services.values())
    return web.json_response(
        {"status": "ok" if healthy else "degraded", "services": services},
        status=200 if healthy else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
