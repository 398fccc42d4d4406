"""Streams workers as processes, and a command bus to talk to them, for the decision tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer

from config.kafka import client_options
from config.settings import GatewaySettings
from gateway.infra.command_bus import CommandBus
from streams.topics import create_topics
from tests.processes import Process, free_port, start, wait_http


@dataclass
class StreamsSystem:
    settings: GatewaySettings
    log_dir: Path
    bus: CommandBus
    producer: AIOKafkaProducer
    workers: list[Process] = field(default_factory=list)

    def start_worker(self, wait: bool = True) -> Process:
        port = free_port()
        env = {
            "TOPIC_PREFIX": self.settings.topic_prefix,
            "TOPIC_PARTITIONS": str(self.settings.topic_partitions),
            "WORKER_WEB_PORT": str(port),
            "WORKER_DATA_DIR": str(self.log_dir / "faust"),
            "DATABASE_URL": self.settings.database_url,
        }
        worker = start(
            f"streams-{len(self.workers)}",
            ["streams", "worker", "-l", "info", "--web-port", str(port)],
            env,
            self.log_dir,
        )
        worker.env["port"] = str(port)
        self.workers.append(worker)
        if wait:
            wait_http(worker, f"http://127.0.0.1:{port}/healthz", timeout=90)
        return worker


@asynccontextmanager
async def streams_system(
    prefix: str, log_dir: Path, jwt_secret: str, partitions: int = 4, database_url: str | None = None
) -> AsyncIterator[StreamsSystem]:
    settings = GatewaySettings(topic_prefix=prefix, topic_partitions=partitions, jwt_secret=jwt_secret)
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    await create_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    bus = CommandBus(settings, producer, f"test-{uuid.uuid4().hex[:6]}")
    await bus.start()
    system = StreamsSystem(settings, log_dir, bus, producer)
    try:
        yield system
    finally:
        await bus.stop()
        await producer.stop()
        for worker in system.workers:
            worker.stop()
