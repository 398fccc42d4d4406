"""The benchmark's rebuild stage with a small log: it builds its own topics and database, loads,
runs the rebuild command, reports, and leaves nothing behind."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bench.rebuild import LogShape, measure_rebuild
from config.kafka import client_options
from config.settings import CommonSettings
from tests.conftest import ADMIN_DATABASE_URL
from tests.processes import ROOT

pytestmark = pytest.mark.integration


async def test_the_rebuild_stage_measures_the_loader_and_the_command() -> None:
    settings = CommonSettings()
    shape = LogShape().scaled(2_000)

    result = await measure_rebuild(ROOT, settings, ADMIN_DATABASE_URL, 2_000, progress=False)

    events = 2 * shape.users + shape.direct_chats + shape.groups + shape.message_events  # a credential a user
    assert result["log"]["message_events"] == 2_000
    assert result["bulk"]["events"] == events and result["bulk"]["events_per_s"] > 0
    assert "error" not in result["command"], result["command"]
    assert result["command"]["by_projection"] == {
        "users": shape.users,
        "chats": shape.direct_chats + shape.groups,
        "messages": 2_000,
        "credentials": shape.users,
    }
    assert result["events_per_s"] == result["command"]["events_per_s"]
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        assert not [t for t in await admin.list_topics() if t.startswith(result["prefix"])]
    finally:
        await admin.close()
    conn = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", result["database"]) == 0
    finally:
        await conn.close()
