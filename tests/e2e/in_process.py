"""A private system for one test module: a fresh database, topics under their own prefix, a real
streams and projections worker, and a gateway run in the test's own process (so a test can reach
its app: its ports, its locks), with an HTTP client to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientWebSocketResponse, web
from aiohttp.test_utils import TestServer

from config.settings import CommonSettings, GatewaySettings
from gateway.app import create_app
from projections.catalogue import PROJECTIONS
from projections.model import Projection
from projections.rebuild import Rebuilt, rebuild
from streams.topics import create_topics
from tests.conftest import cloned_database
from tests.e2e.workers import running_workers


@dataclass
class InProcessSystem:
    http: ClientSession
    base: str
    settings: GatewaySettings
    app: web.Application
    data_dir: Path
    """The workers' tables (RocksDB) live under it."""

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        """The status and the JSON body (None for another content type) of one request."""
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body

    async def socket(self, token: str) -> ClientWebSocketResponse:
        return await self.http.ws_connect(self.base + "/api/v1/ws", headers={"Authorization": f"Bearer {token}"})

    async def rebuild_agrees(self, projections: Sequence[Projection] = ()) -> dict[str, Rebuilt]:
        """Rebuild `projections` (all of them for none) from the topics; each is swapped in with
        checksums equal to the live ones. The outcomes, by projection."""
        settings = self.settings
        rebuilt = await rebuild(
            CommonSettings(
                topic_prefix=settings.topic_prefix,
                topic_partitions=settings.topic_partitions,
                database_url=settings.database_url,
            ),
            list(projections or PROJECTIONS.values()),
            progress=False,
        )
        for outcome in rebuilt.values():
            assert outcome.swapped and outcome.shadow_sums == outcome.live_sums, outcome.lines()
        return rebuilt


@asynccontextmanager
async def in_process_system(
    name: str,
    topic_prefix: str,
    template_database: str,
    log_dir: Path,
    jwt_secret: str,
    worker_settings: Mapping[str, str] | None = None,
    partitions: int = 2,
    **gateway_settings: Any,
) -> AsyncIterator[InProcessSystem]:
    """The system, its topics under `<topic_prefix><name>.`, `partitions` each."""
    prefix = f"{topic_prefix}{name}."
    async with cloned_database(template_database) as database_url:
        settings = GatewaySettings(
            topic_prefix=prefix,
            topic_partitions=partitions,
            jwt_secret=jwt_secret,
            database_url=database_url,
            gateway_instance_id=f"{name}-{uuid.uuid4().hex[:6]}",
            register_limit_per_address=1000,  # every test registers its users from 127.0.0.1
            **gateway_settings,
        )
        await create_topics(settings)
        with running_workers(prefix, database_url, log_dir, partitions=partitions, extra=worker_settings):
            server = TestServer(create_app(settings))
            await server.start_server()
            try:
                async with ClientSession() as http:
                    base = str(server.make_url("")).rstrip("/")
                    yield InProcessSystem(http, base, settings, server.app, log_dir / "faust")
            finally:
                await server.close()
