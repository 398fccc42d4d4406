"""The foundation against the real services: migrations, topics, health."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from config.kafka import client_options
from config.settings import CommonSettings, GatewaySettings
from gateway.app import create_app
from projections.migrate import migrate, migration_files
from schemas import topics
from streams.topics import create_topics

pytestmark = pytest.mark.integration


async def test_migrations_are_recorded_and_safe_to_rerun(database_url: str) -> None:
    assert await migrate(database_url) == []
    conn = await asyncpg.connect(database_url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    finally:
        await conn.close()
    assert sorted(r["version"] for r in versions) == [f.stem for f in migration_files()]
    assert {"users", "chats", "chat_members", "messages", "read_markers", "projection_offsets"} <= tables


async def test_concurrent_migrations_apply_once(template_database: str) -> None:
    from tests.conftest import ADMIN_DATABASE_URL, database_url_for

    name = f"test_conc_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        results = await asyncio.gather(*(migrate(database_url_for(name)) for _ in range(3)))
        assert sorted(len(r) for r in results) == [0, 0, len(migration_files())]
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_topics_are_created_once_with_their_partitions_and_retention() -> None:
    settings = CommonSettings(topic_prefix=f"test.topics.{uuid.uuid4().hex[:6]}.", topic_partitions=3)
    created = await create_topics(settings)
    assert len(created) == len(topics.ALL)
    assert await create_topics(settings) == []
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([settings.topic(t.name) for t in topics.ALL])
        assert {len(d["partitions"]) for d in described} == {3}
        resources = [ConfigResource(ConfigResourceType.TOPIC, settings.topic(t.name)) for t in topics.EVENT_TOPICS]
        responses: list[Any] = await admin.describe_configs(resources)  # protocol responses built at run time
        retention = {
            res[3]: {entry[0]: entry[1] for entry in res[4]}["retention.ms"]
            for response in responses
            for res in response.resources
        }
        assert retention == {settings.topic(t.name): "-1" for t in topics.EVENT_TOPICS}
        await admin.delete_topics([settings.topic(t.name) for t in topics.ALL])
    finally:
        await admin.close()


async def gateway_health(settings: GatewaySettings) -> tuple[int, dict[str, object]]:
    await create_topics(settings)
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.get("/healthz")
        return response.status, await response.json()


async def test_healthz_reports_every_service_up(database_url: str, jwt_secret: str, topic_prefix: str) -> None:
    settings = GatewaySettings(database_url=database_url, jwt_secret=jwt_secret, topic_prefix=f"{topic_prefix}health.")
    status, body = await gateway_health(settings)
    assert status == 200, body
    assert body["services"] == {"kafka": "up", "postgresql": "up", "redis": "up"}
    assert body["connections"] == {
        "projection_progress": "up",
        "reply_consumer": "up",
        "user_channels": "up",
        "delivery_consumer": "up",
    }
    assert body["workers"] == {}, "no worker named in WORKER_HEALTH_URLS"


async def test_healthz_is_503_when_a_service_is_down(database_url: str, jwt_secret: str, topic_prefix: str) -> None:
    from tests.processes import free_port

    settings = GatewaySettings(
        database_url=database_url,
        jwt_secret=jwt_secret,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        topic_prefix=f"{topic_prefix}health.",
    )
    status, body = await gateway_health(settings)
    assert status == 503
    services = body["services"]
    assert isinstance(services, dict)
    assert services["redis"].startswith("down")
    assert services["kafka"] == "up" and services["postgresql"] == "up"
