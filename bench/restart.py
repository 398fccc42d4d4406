"""A streams worker with history: its memory and its restart (`python -m bench --restart-only`).

The stage never touches the running system: it runs its own streams worker (`python -m streams
worker`) on topics under a private prefix, with its own data dir, and deletes both at the end.

1. **fill**: `CHATS` groups of two are created through `chat.commands` (with replies), then
   `messages` sends are produced straight to `message.send` (no reply asked) in whole record
   batches; the stage waits until `message.events` holds them all (the worker's decision rate).
   Then the worker's RSS (`VmRSS`, and its peak `VmHWM`).
2. **restart**: SIGTERM, and the worker started again on the same data dir: the seconds from the
   new process's start to the reply of its first command (a send to a chat of the log), how many
   changelog records its recovery read (Faust's start-of-recovery tables in its log), and its RSS
   once it has decided.
3. **from nothing** (`--restart-from-nothing`): the same with an empty data dir, as a worker on a
   new machine (or with `TABLE_STORE=memory`, every start) recovers: the whole changelogs.

`--restart-store memory` runs the same stage on the memory store, for the comparison.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from tqdm import tqdm

from bench.rebuild import produce_log
from config.kafka import client_options
from config.settings import GatewaySettings
from gateway.infra.command_bus import CommandBus
from runtime.topic_log import end_offsets
from schemas import topics
from schemas.commands import Command, CreateChat, MessageResult, SendMessage, encode_command
from streams.topics import create_topics

CHATS = 1000
"""Groups of two in the log (fewer for a log of under 10,000 sends: ten sends a chat at least)."""
TEXT = "ok see you at the station tomorrow morning did you get the files I sent yesterday"
FIRST_DECISION_TIMEOUT_S = 900.0


def changelog_table(log: str, title: str) -> dict[tuple[str, int], int]:
    """The (changelog, partition) -> offset table Faust logs at the start of its recovery under `title`."""
    for line in log.splitlines():
        message = str(json.loads(line).get("message", "")) if line.startswith("{") else ""
        if title in message:
            found: dict[tuple[str, int], int] = {}
            topic = ""
            for name, partition, offset in re.findall(r"\|\s*(\S+)\s*\|\s*(\d+)\s*\|\s*(-?\d+)\s*\|", message):
                topic = topic if name == "〃" else name
                found[(topic, int(partition))] = int(offset)
            return found
    raise ValueError(f"no {title!r} in the log")


def changelog_records_to_read(log: str) -> int:
    """How many changelog records a worker's recovery had to read: from where it started (its
    local state's offset, else the beginning) to each changelog partition's highwater."""
    highwaters = changelog_table(log, "Highwater - Active")
    starts = changelog_table(log, "Reading Starts At - Active")
    return sum(max(0, highwater - max(starts[tp], 0)) for tp, highwater in highwaters.items())


def memory_of(pid: int) -> dict[str, float]:
    """The process's resident memory now and at its peak, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return {"rss_mb": round(int(found["VmRSS"]) / 1024, 1), "peak_rss_mb": round(int(found["VmHWM"]) / 1024, 1)}


class Worker:
    """`python -m streams worker` on the stage's topics and data dir, its log in a file."""

    def __init__(self, settings: GatewaySettings, data_dir: Path, log: Path, store: str) -> None:
        env = {
            **os.environ,
            "TOPIC_PREFIX": settings.topic_prefix,
            "TOPIC_PARTITIONS": str(settings.topic_partitions),
            "WORKER_DATA_DIR": str(data_dir),
            "WORKER_WEB_PORT": str(free_port()),
            "TABLE_STORE": store,
            "LOG_FORMAT": "json",
        }
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker", "-l", "info"], env=env, stdout=out, stderr=out
            )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def records_recovered(self) -> int | None:
        try:
            return changelog_records_to_read(self.log.read_text(errors="replace"))
        except ValueError:
            return None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sends(chats: list[uuid.UUID], owner: uuid.UUID, messages: int) -> Iterator[tuple[topics.TopicSpec, bytes, bytes]]:
    """`messages` send commands over `chats`, as the gateway would write them but asking no reply."""
    now = datetime.now(UTC)
    for i in range(messages):
        chat_id = chats[i % len(chats)]
        body = SendMessage(chat_id=chat_id, client_msg_id=f"fill-{i}", text=f"{TEXT} {i}")
        command = Command(
            command_id=uuid.uuid4(), correlation_id=f"fill-{i}", actor_id=owner, reply_to=None, issued_at=now, body=body
        )
        yield topics.MESSAGE_SEND, str(chat_id).encode(), encode_command(command)


async def events_held(settings: GatewaySettings) -> int:
    return sum((await end_offsets(settings, settings.topic(topics.MESSAGE_EVENTS.name))).values())


async def first_decision(bus: CommandBus, chat_id: uuid.UUID, owner: uuid.UUID, name: str, started: float) -> float:
    """Seconds from `started` to the reply of a new send to `chat_id`."""
    body = SendMessage(chat_id=chat_id, client_msg_id=name, text=name)
    reply = await bus.ask(topics.MESSAGE_SEND, str(chat_id), body, owner, timeout=FIRST_DECISION_TIMEOUT_S)
    assert reply.ok and reply.result_as(MessageResult).message.seq > 0, reply
    return time.monotonic() - started


async def restarted(
    bus: CommandBus, settings: GatewaySettings, data_dir: Path, log: Path, store: str, chat: uuid.UUID, owner: uuid.UUID
) -> dict[str, Any]:
    started = time.monotonic()
    worker = Worker(settings, data_dir, log, store)
    try:
        seconds = await first_decision(bus, chat, owner, f"probe-{uuid.uuid4().hex[:6]}", started)
        return {
            "first_decision_s": round(seconds, 2),
            "changelog_records_read": worker.records_recovered(),
            **memory_of(worker.process.pid),
        }
    finally:
        worker.stop()


async def delete_private(settings: GatewaySettings) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def measure_restart(
    base: GatewaySettings, messages: int, store: str = "rocksdb", from_nothing: bool = False, progress: bool = True
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    settings = base.model_copy(update={"topic_prefix": f"bench.restart.{tag}."})
    folder = Path(tempfile.mkdtemp(prefix=f"bench-restart-{tag}-"))
    chat_count = max(2, min(CHATS, messages // 10))
    result: dict[str, Any] = {
        "messages": messages,
        "chats": chat_count,
        "store": store,
        "prefix": settings.topic_prefix,
    }
    await create_topics(settings)
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    bus = CommandBus(settings, producer, f"bench-restart-{tag}")
    await bus.start()
    try:
        owner = uuid.uuid4()
        worker = Worker(settings, folder / "kept", folder / "fill.log", store)
        try:
            chats = [uuid.uuid4() for _ in range(chat_count)]
            for chat_id in chats:
                body = CreateChat(chat_id=chat_id, type="group", title="bench", member_ids=[uuid.uuid4()])
                assert (await bus.ask(topics.CHAT_COMMANDS, str(chat_id), body, owner, timeout=120)).ok
            started = time.monotonic()
            with tqdm(total=messages, desc="fill", unit=" sends", unit_scale=True, disable=not progress) as bar:
                await produce_log(settings, sends(chats, owner, messages), lambda: None)
                held = 0
                while held < messages:
                    await asyncio.sleep(1)
                    now = await events_held(settings)
                    bar.update(now - held)
                    held = now
            seconds = time.monotonic() - started
            result["fill"] = {
                "seconds": round(seconds, 1),
                "decided_per_s": round(messages / seconds),
                **memory_of(worker.process.pid),
            }
        finally:
            worker.stop()
        print("restart on the kept data dir", flush=True)
        result["restart"] = await restarted(
            bus, settings, folder / "kept", folder / "restart.log", store, chats[0], owner
        )
        if from_nothing:
            print("restart from nothing (an empty data dir)", flush=True)
            result["from_nothing"] = await restarted(
                bus, settings, folder / "empty", folder / "from-nothing.log", store, chats[1], owner
            )
        result["data_dir_mb"] = round(
            sum(f.stat().st_size for f in (folder / "kept").rglob("*") if f.is_file()) / 2**20, 1
        )
    finally:
        await bus.stop()
        await producer.stop()
        await delete_private(settings)
        shutil.rmtree(folder, ignore_errors=True)
    return result
