"""A streams worker restarted on its local state (RocksDB under its data dir) decides at once, and
decides as a worker that recovered its tables from nothing (the whole changelogs)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.restart import changelog_records_to_read
from schemas import topics
from schemas.commands import DeleteMessage, EditMessage, MessageResult, Reply, SendMessage
from tests.integration.streams_harness import StreamsSystem, streams_system
from tests.integration.test_streams_resilience import new_group
from tests.processes import Process, free_port, start, wait_http

pytestmark = pytest.mark.integration

MESSAGES = 3000
CHATS = 10
FIRST_DECISION_BUDGET_S = 10.0
"""From starting the restarted worker's process to the answer of its first command: the Python
start, Faust's start and group join, and the recovery of the changelogs' tail (nothing here)."""


def start_streams(system: StreamsSystem, name: str, data_dir: Path, wait: bool = True) -> Process:
    port = free_port()
    env = {
        "TOPIC_PREFIX": system.settings.topic_prefix,
        "TOPIC_PARTITIONS": str(system.settings.topic_partitions),
        "WORKER_WEB_PORT": str(port),
        "WORKER_DATA_DIR": str(data_dir),
        "DATABASE_URL": system.settings.database_url,
    }
    worker = start(name, ["streams", "worker", "-l", "info", "--web-port", str(port)], env, system.log_dir)
    if wait:
        wait_http(worker, f"http://127.0.0.1:{port}/healthz", timeout=90)
    return worker


MessageCommand = SendMessage | EditMessage | DeleteMessage


async def ask(system: StreamsSystem, body: MessageCommand, actor: uuid.UUID, timeout: float = 30.0) -> Reply:
    return await system.bus.ask(topics.MESSAGE_SEND, str(body.chat_id), body, actor, timeout=timeout)


async def fill(system: StreamsSystem, chats: list[uuid.UUID], sender: uuid.UUID) -> dict[str, dict[str, Any]]:
    """`MESSAGES` sends over `chats`, by client_msg_id -> the message the reply carried."""
    window = asyncio.Semaphore(200)
    sent: dict[str, dict[str, Any]] = {}

    async def one(i: int) -> None:
        cmid = f"m{i}"
        body = SendMessage(chat_id=chats[i % len(chats)], client_msg_id=cmid, text=f"text {i}")
        async with window:
            reply = await ask(system, body, sender, timeout=60.0)
        assert reply.ok, reply
        sent[cmid] = reply.result_as(MessageResult).message.model_dump(mode="json")

    await asyncio.gather(*(one(i) for i in range(MESSAGES)))
    return sent


def probes(
    chats: list[uuid.UUID], sent: dict[str, dict[str, Any]], alice: uuid.UUID, bob: uuid.UUID
) -> list[tuple[MessageCommand, uuid.UUID]]:
    """Commands whose answers depend on everything the tables hold: new sends (the next seq of
    each chat), repeated client_msg_ids (the first message, edited or deleted since), edits and
    deletes by the sender, by another member, of a deleted message, of an unknown one."""
    found: list[tuple[MessageCommand, uuid.UUID]] = []
    for n, chat_id in enumerate(chats):
        found.append((SendMessage(chat_id=chat_id, client_msg_id=f"new-{n}", text=f"new {n}"), alice))
    for i in (0, 1, 2, 50, 51, MESSAGES - 1):
        m = sent[f"m{i}"]
        chat_id = uuid.UUID(m["chat_id"])
        found.append((SendMessage(chat_id=chat_id, client_msg_id=f"m{i}", text="another text"), alice))
        found.append((EditMessage(chat_id=chat_id, message_id=uuid.UUID(m["id"]), text="by bob"), bob))
    for i, actor in ((3, alice), (2, bob)):  # deleted before the restart; not bob's, and bob manages nothing
        m = sent[f"m{i}"]
        found.append((DeleteMessage(chat_id=uuid.UUID(m["chat_id"]), message_id=uuid.UUID(m["id"])), actor))
    found.append((EditMessage(chat_id=chats[0], message_id=uuid.uuid4(), text="nothing"), alice))
    return found


def answer(reply: Reply) -> dict[str, Any]:
    """A reply without its correlation id, its log positions and whether it was a repeat."""
    return {"ok": reply.ok, "code": reply.code, "result": reply.result.model_dump(mode="json")}


async def test_a_restarted_worker_decides_within_budget_and_like_one_recovered_from_nothing(
    topic_prefix: str, tmp_path: Path, jwt_secret: str
) -> None:
    async with streams_system(f"{topic_prefix}restart.", tmp_path, jwt_secret) as system:
        kept, empty = tmp_path / "kept", tmp_path / "empty"
        worker = start_streams(system, "streams-kept", kept)
        alice, bob = uuid.uuid4(), uuid.uuid4()
        chats = [await new_group(system, alice, [bob]) for _ in range(CHATS)]
        sent = await fill(system, chats, alice)
        for i in (0, 3, 4):
            m = sent[f"m{i}"]
            edit = EditMessage(chat_id=uuid.UUID(m["chat_id"]), message_id=uuid.UUID(m["id"]), text=f"edited {i}")
            assert (await ask(system, edit, alice)).ok
        for i in (1, 3):
            m = sent[f"m{i}"]
            delete = DeleteMessage(chat_id=uuid.UUID(m["chat_id"]), message_id=uuid.UUID(m["id"]))
            assert (await ask(system, delete, alice)).ok
        assert worker.stop() == 0, worker.log()[-3000:]
        assert list(kept.rglob("*.db")), "the tables are kept under the worker's data dir"

        begun = time.monotonic()
        worker = start_streams(system, "streams-restarted", kept, wait=False)
        system.workers.append(worker)
        checks = probes(chats, sent, alice, bob)
        first = await ask(system, checks[0][0], checks[0][1], timeout=60.0)
        first_decision_s = time.monotonic() - begun
        restarted = [first] + [await ask(system, body, actor) for body, actor in checks[1:]]
        assert first_decision_s <= FIRST_DECISION_BUDGET_S, f"first decision after {first_decision_s:.1f} s"
        assert worker.stop() == 0, worker.log()[-3000:]
        assert changelog_records_to_read(worker.log()) <= 20, "recovery reads only the tail after the local state"

        fresh = start_streams(system, "streams-from-nothing", empty)
        system.workers.append(fresh)
        from_nothing = [await ask(system, body, actor) for body, actor in checks]
        assert (
            changelog_records_to_read(fresh.log()) > MESSAGES
        )  # every changelog (message_index alone: a key per message)
        print(f"restart to first decision: {first_decision_s:.1f} s")  # shown with -s

        assert [answer(r) for r in restarted] == [answer(r) for r in from_nothing]
        new_sends = restarted[:CHATS]
        assert [r.duplicate for r in new_sends] == [False] * CHATS
        assert [r.duplicate for r in from_nothing[:CHATS]] == [True] * CHATS  # the restarted worker's sends
        next_seqs = [r.result_as(MessageResult).message.seq for r in new_sends]
        assert next_seqs == [MESSAGES // CHATS + 1] * CHATS
        codes = [r.code for r in restarted[CHATS:]]
        repeated_then_edited_by_bob = [None, "forbidden", None, "not_found"] + [None, "forbidden"] * 4
        assert codes == [*repeated_then_edited_by_bob, "not_found", "forbidden", "not_found"], codes
        repeat_of_edited = restarted[CHATS].result_as(MessageResult).message
        assert (repeat_of_edited.text, repeat_of_edited.edited_at is not None) == ("edited 0", True)


CHANGELOG_RECORDS = 60_000
"""Enough for a recovery that lasts seconds, far longer than the 50 ms between two health polls."""


async def test_a_worker_answers_recovering_until_its_tables_are_recovered(
    topic_prefix: str, jwt_secret: str, tmp_path: Path
) -> None:
    """The fault: a worker that answered `/healthz` 200 while it read its changelogs, deciding
    nothing (the gateway reported it up, clients got 503s). A worker with an empty data dir must
    read a long `message_index` changelog: it answers 503 `recovering` meanwhile, then 200."""
    async with streams_system(f"{topic_prefix}recovering.", tmp_path, jwt_secret) as system:
        first = start_streams(system, "streams-first", tmp_path / "first")  # creates the changelogs
        assert first.stop() == 0, first.log()[-3000:]
        changelog = f"{system.settings.topic_prefix}messenger-streams-message_index-changelog"
        for n in range(CHANGELOG_RECORDS):
            key = f'"{uuid.uuid4()}"'.encode()
            await system.producer.send(changelog, value=b'{"text": "' + b"x" * 100 + b'"}', key=key, partition=n % 4)
        await system.producer.flush()

        worker = start_streams(system, "streams-recovering", tmp_path / "empty", wait=False)
        system.workers.append(worker)
        url = f"http://127.0.0.1:{worker.env['WORKER_WEB_PORT']}/healthz"
        answers = await asyncio.to_thread(health_answers_until_ok, worker, url, 120.0)
        assert '503 {"status":"recovering"' in "\n".join(answers), answers[-5:]
        assert answers[-1].startswith("200 "), answers[-5:]
        assert changelog_records_to_read(worker.log()) > CHANGELOG_RECORDS // 2, "it read the changelog"


def health_answers_until_ok(worker: Process, url: str, timeout: float) -> list[str]:
    """Every `/healthz` answer (status and body), polled every 50 ms until one is 200."""
    answers: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, worker.log()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                answers.append(f"{response.status} {response.read().decode()}")
                return answers
        except urllib.error.HTTPError as error:
            answers.append(f"{error.code} {error.read().decode()}")
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered 200: {answers[-5:]}")
