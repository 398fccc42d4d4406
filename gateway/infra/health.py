"""`GET /healthz`: whether this gateway can do its job now, and if not, which part is missing;
`GET /metrics` (Prometheus).

Three groups, each part `up` or `down: <reason>`: the services it talks to (Kafka, PostgreSQL,
Redis, each probed), its own long-lived connections (the projection-progress LISTEN, the per-user
pub/sub, the delivery consumer: each kept open by its owner, see `gateway.infra.healing`) and the
workers named in `WORKER_HEALTH_URLS` (their `/healthz`). Any part down makes the answer 503, so
a load balancer or supervisor stops sending clients to an instance that would only time out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.infra.command_bus import COMMAND_BUS
from gateway.infra.consistency import WATERMARKS
from gateway.infra.resources import PG_POOL, PRODUCER, REDIS, SETTINGS
from gateway.ws.service import WS

CHECK_TIMEOUT_S = 2.0

routes = web.RouteTableDef()


async def _check(probe: Callable[[], Awaitable[object]]) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except Exception as error:  # any failure of a probe is the state we report
        return f"down: {type(error).__name__}"
    return "up"


async def _services(app: web.Application) -> dict[str, str]:
    kafka, postgres, redis = await asyncio.gather(
        _check(app[PRODUCER].client.fetch_all_metadata),
        _check(lambda: app[PG_POOL].fetchval("SELECT 1")),
        _check(app[REDIS].ping),
    )
    return {"kafka": kafka, "postgresql": postgres, "redis": redis}


def _connections(app: web.Application) -> dict[str, str]:
    connections = {
        "projection_progress": app[WATERMARKS].state.health(),
        "reply_consumer": app[COMMAND_BUS].state.health(),
    }
    if WS in app:
        service = app[WS]
        connections["user_channels"] = service.channels.state.health()
        connections["delivery_consumer"] = service.delivery.state.health()
    return connections


async def _worker(session: aiohttp.ClientSession, url: str) -> str:
    try:
        async with session.get(url) as response:
            return "up" if response.status == 200 else f"down: HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError) as error:
        return f"down: {type(error).__name__}"


async def _workers(app: web.Application) -> dict[str, str]:
    named = app[SETTINGS].worker_health
    if not named:
        return {}
    timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        states = await asyncio.gather(*(_worker(session, url) for url in named.values()))
    return dict(zip(named, states, strict=True))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    app = request.app
    services, workers = await asyncio.gather(_services(app), _workers(app))
    report = {"services": services, "connections": _connections(app), "workers": workers}
    healthy = all(state == "up" for group in report.values() for state in group.values())
    return web.json_response(
        {"status": "ok" if healthy else "degraded", **report},
        status=200 if healthy else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
