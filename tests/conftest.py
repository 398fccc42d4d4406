"""Fixtures shared by every kind of test.

The integration and end-to-end tests run against the real Kafka, PostgreSQL and Redis that
`scripts/services up` starts (`make test` does it first). Each test run gets its own topic
prefix, so runs never see each other's records, and each test that asks for `database_url`
gets a fresh database cloned from a migrated template (a file copy, a few tens of ms).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from dotenv import dotenv_values

from config.kafka import client_options
from config.settings import CommonSettings, GatewaySettings, WorkerSettings
from projections.migrate import migrate
from projections.sealed_texts import OPENER

ROOT = Path(__file__).resolve().parents[1]


def env_setting(name: str) -> str:
    """A variable of the tests themselves (not of the processes' settings): from the environment,
    else from the project's `.env`, as the processes read theirs."""
    return os.environ.get(name) or dotenv_values(ROOT / ".env").get(name) or ""


ADMIN_DATABASE_URL = env_setting("TEST_ADMIN_DATABASE_URL")
"""The tests' own role (CREATEDB, not superuser; `make env` writes it, `scripts/services up` creates
it): it creates the test databases, owns them, and the processes under test connect as it."""
RUN_ID = uuid.uuid4().hex[:8]
TEMPLATE_DB = f"test_{RUN_ID}_template"


def database_url_for(name: str) -> str:
    return ADMIN_DATABASE_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
async def topic_prefix() -> AsyncIterator[str]:
    """This run's topic prefix; every topic under it (and the workers' internal ones) is deleted
    at the end, so that the broker does not collect thousands of partitions across runs."""
    prefix = f"test.{RUN_ID}."
    yield prefix
    await delete_topics(prefix)


async def delete_topics(prefix: str) -> None:
    admin = AIOKafkaAdminClient(**client_options(CommonSettings()))
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        for start in range(0, len(doomed), 100):
            await admin.delete_topics(doomed[start : start + 100])
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="session")
async def template_database() -> AsyncIterator[str]:
    """A database migrated once per run, cloned by `database_url`."""
    if not ADMIN_DATABASE_URL:
        pytest.fail("TEST_ADMIN_DATABASE_URL is not set (environment or .env): run make env", pytrace=False)
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        await migrate(database_url_for(TEMPLATE_DB))
        yield TEMPLATE_DB
    finally:
        await drop_databases(admin, f"test_{RUN_ID}_%")
        await admin.close()


DROP_ATTEMPTS = 20
DROP_PAUSE_S = 0.5


async def drop_databases(admin: asyncpg.Connection, pattern: str) -> None:
    names = await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", pattern)
    for row in names:
        await drop_database(admin, row["datname"])


async def drop_database(admin: asyncpg.Connection, name: str) -> None:
    """Drop a test database, waiting out what may hold it for a moment: `WITH (FORCE)` ends the
    test's own connections, but not an autovacuum worker (only a superuser may end those), and
    a dying backend may still be listed. A database that cannot be dropped is reported, not
    failed on: it is a leftover of the run, not a fault of the code under test."""
    for attempt in range(1, DROP_ATTEMPTS + 1):
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError) as error:
            if attempt == DROP_ATTEMPTS:
                warnings.warn(f"test database {name} left behind: {error}", stacklevel=1)
                return
            await asyncio.sleep(DROP_PAUSE_S)


@asynccontextmanager
async def cloned_database(template: str) -> AsyncIterator[str]:
    """A fresh, migrated database cloned from `template`, dropped on exit."""
    name = f"test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield database_url_for(name)
        await drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture
async def database_url(template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test (modules that need one for all their tests use
    `cloned_database`; the template itself is never written)."""
    async with cloned_database(template_database) as url:
        yield url


@pytest.fixture
def common_settings(topic_prefix: str, database_url: str) -> CommonSettings:
    return CommonSettings(topic_prefix=topic_prefix, database_url=database_url)


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(CommonSettings().redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test alone, and every key under it deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No messenger variable of the developer's shell or `.env` leaks into a settings test."""
    names = set(GatewaySettings.model_fields) | set(WorkerSettings.model_fields)
    for name in list(os.environ):
        if name.lower() in names:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def opener_restored() -> Iterator[None]:
    """Each test leaves the process's text opener as it found it: a `projections.runtime.Runtime`
    points it at its own database for good (as a worker's process needs), and a later test's
    rebuild or bulk load would otherwise catch up a mirror in a database dropped since."""
    before, recent = OPENER.catch_up, OPENER.recent
    yield
    OPENER.follow(before)
    OPENER.recent = recent
