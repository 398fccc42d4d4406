"""The gateway's connections to the real services, opened and closed with the application.

Each is a `cleanup_ctx` generator and lives under a typed `web.AppKey`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from prometheus_client import Counter
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.kafka import client_options
from config.settings import GatewaySettings
from schemas import topics

SETTINGS = web.AppKey("settings", GatewaySettings)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
INSTANCE_ID = web.AppKey("instance_id", str)

DEPENDENCY_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    RedisConnectionError,
    RedisTimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
)
"""Errors that mean a service is (re)starting or unreachable, not that the request was wrong."""

PG_POOL_MAX = 20
REDIS_POOL_MAX = 64
REDIS_POOL_WAIT_S = 10.0
REDIS_RETRIES = 3
REDIS_RETRY_BASE_S = 0.05
REDIS_RETRY_CAP_S = 1.0
PRODUCER_LINGER_MS = 0
"""A lone command goes out at once; under load, sends made while a produce request is in flight
share the next one (aiokafka keeps one request in flight per broker), so batches still grow with
the rate. A 2 ms linger made every lone command wait for it and bought no CPU (docs/benchmarks.md,
"The night round")."""


PG_CONNECTIONS_OPENED = Counter(
    "gateway_pg_pool_connections_opened_total",
    "Connections the PostgreSQL pool opened: past its first, each one replaces a lost one or grows the pool",
)


async def count_opened(connection: asyncpg.Connection) -> None:
    PG_CONNECTIONS_OPENED.inc()


async def pg_pool(app: web.Application) -> AsyncIterator[None]:
    """A pool that heals by itself: a connection that fails is discarded and the next acquire
    opens a new one (the request that met the failure is answered 503)."""
    pool = await asyncpg.create_pool(app[SETTINGS].database_url, min_size=2, max_size=PG_POOL_MAX, init=count_opened)
    app[PG_POOL] = pool
    yield
    await pool.close()


async def redis_client(app: web.Application) -> AsyncIterator[None]:
    """A blocking pool: under a burst (hundreds of sockets opening at once) a command waits for a
    free connection instead of failing as redis-py's default pool does past its limit. A command
    that meets a dead connection (Redis restarted) is retried on a new one, with backoff: a pool
    of its own takes no retry policy from the client, and would fail the first command after a
    restart on every pooled connection."""
    pool = aioredis.BlockingConnectionPool.from_url(
        app[SETTINGS].redis_url,
        max_connections=REDIS_POOL_MAX,
        timeout=REDIS_POOL_WAIT_S,
        retry=Retry(ExponentialWithJitterBackoff(base=REDIS_RETRY_BASE_S, cap=REDIS_RETRY_CAP_S), REDIS_RETRIES),
    )
    client = aioredis.Redis(connection_pool=pool)
    app[REDIS] = client
    yield
    await client.aclose()


async def kafka_producer(app: web.Application) -> AsyncIterator[None]:
    producer = AIOKafkaProducer(
        **client_options(app[SETTINGS]),
        acks="all",
        enable_idempotence=True,
        linger_ms=PRODUCER_LINGER_MS,
    )
    await producer.start()
    await know_command_topics(producer, app[SETTINGS])
    app[PRODUCER] = producer
    yield
    await producer.stop()


async def know_command_topics(producer: AIOKafkaProducer, settings: GatewaySettings) -> None:
    """Fetch the partitions of every topic the gateway sends commands to before it takes requests.

    A producer that has not seen a topic yet fetches its metadata on the first send to it, and
    sends made meanwhile may leave in another order than they were made: one socket's first
    messages then reached the deciding agent, and got their `seq`, out of the order they were sent.
    """
    for spec in topics.COMMAND_TOPICS:
        await producer.partitions_for(settings.topic(spec.name))
