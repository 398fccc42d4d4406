"""Dead letters against real Kafka and PostgreSQL, with a streams and a projections worker running:
what they skip lands on `dead.letters` with its exact bytes, `python -m streams dead-letters list`
shows it, and `replay` feeds a record again once it reads, once, and refuses while it does not."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from config.kafka import client_options
from config.settings import CommonSettings
from runtime.topic_log import read_topic
from schemas import topics
from schemas.commands import Command, SendMessage, encode_command
from schemas.dead_letters import (
    DeadLetter,
    DeadLetterEntry,
    ReplayOutcome,
    ReplayRequest,
    encode_letter,
    key_of,
    page_of,
)
from schemas.events import BadRecord, Event, MessageSent, decode_event, encode_event, event_id_for, new_event
from tests.conftest import cloned_database
from tests.e2e.workers import start_worker, worker_env
from tests.integration.streams_harness import StreamsSystem, streams_system
from tests.integration.test_streams_resilience import new_group, send_until_acked
from tests.kafka_tools import eventually
from tests.processes import ROOT, Process

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PARTITIONS = 2
NOT_JSON = b'{"command_id": \xff\x00 broken'
UNKNOWN_EVENT = orjson.dumps(
    {
        "event_id": str(uuid.uuid4()),
        "type": "message.reacted",
        "version": 1,
        "aggregate_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-30T08:00:00+00:00",
        "actor_id": None,
        "correlation_id": None,
        "payload": {},
    }
)


@dataclass
class Deployment:
    system: StreamsSystem
    database_url: str
    projections: Process

    @property
    def settings(self) -> CommonSettings:
        return self.system.settings

    def topic(self, spec: topics.TopicSpec) -> str:
        return self.settings.topic(spec.name)


@pytest.fixture(scope="module")
async def deployment(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, template_database: str
) -> AsyncIterator[Deployment]:
    log_dir = tmp_path_factory.mktemp("dead_letters")
    prefix = f"{topic_prefix}dl{uuid.uuid4().hex[:4]}."
    async with (
        cloned_database(template_database) as database_url,
        streams_system(prefix, log_dir, jwt_secret, partitions=PARTITIONS, database_url=database_url) as system,
    ):
        env = worker_env(prefix, database_url, PARTITIONS, log_dir / "faust")
        projections, _ = await asyncio.gather(
            asyncio.to_thread(start_worker, "projections", env, log_dir),
            asyncio.to_thread(system.start_worker),
        )
        try:
            yield Deployment(system, database_url, projections)
        finally:
            projections.stop()


async def dead_letters(deployment: Deployment) -> list[DeadLetterEntry]:
    records = await read_topic(deployment.settings, deployment.topic(topics.DEAD_LETTERS))
    return page_of(records, limit=1000).entries


async def letter_at(deployment: Deployment, consumer: str, topic: str, partition: int, offset: int) -> DeadLetterEntry:
    wanted = f"{consumer}|{topic}|{partition}|{offset}"

    async def found() -> DeadLetterEntry | None:
        return next((e for e in await dead_letters(deployment) if e.id == wanted), None)

    entry: DeadLetterEntry = await eventually(found, timeout=30)
    return entry


def cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m streams dead-letters ...` as an operator runs it, on this deployment's topics."""
    env = {
        **os.environ,
        "TOPIC_PREFIX": deployment.settings.topic_prefix,
        "TOPIC_PARTITIONS": str(PARTITIONS),
        "DATABASE_URL": deployment.database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "streams", "dead-letters", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


async def end_offsets(deployment: Deployment, *specs: topics.TopicSpec) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(**client_options(deployment.settings), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(deployment.topic(s), p) for s in specs for p in range(PARTITIONS)]
        return {(tp.topic, tp.partition): o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def test_a_malformed_command_is_dead_lettered_with_its_bytes_and_the_agent_goes_on(
    deployment: Deployment,
) -> None:
    system = deployment.system
    alice = uuid.uuid4()
    chat_id = await new_group(system, alice, [uuid.uuid4()])
    topic = deployment.topic(topics.MESSAGE_SEND)
    sent = await system.producer.send_and_wait(topic, NOT_JSON, key=str(chat_id).encode())

    message = await send_until_acked(system, chat_id, alice, "after the bad one")
    assert message["seq"] == 1

    entry = await letter_at(deployment, "chat_decider", topic, sent.partition, sent.offset)
    letter = entry.letter
    assert (letter.reason, letter.value, letter.key) == ("malformed", NOT_JSON, str(chat_id).encode())
    assert letter.detail and letter.occurred_at is not None and entry.status == "dead"
    assert abs((letter.occurred_at - datetime.fromtimestamp(sent.timestamp / 1000, UTC)).total_seconds()) < 0.01


async def test_bad_events_skipped_by_a_projection_are_dead_lettered(deployment: Deployment) -> None:
    producer = deployment.system.producer
    topic = deployment.topic(topics.MESSAGE_EVENTS)
    not_json = await producer.send_and_wait(topic, b"\xff not json", key=b"k1")
    unknown = await producer.send_and_wait(topic, UNKNOWN_EVENT, key=b"k2")

    malformed = await letter_at(deployment, "messages", topic, not_json.partition, not_json.offset)
    assert (malformed.letter.reason, malformed.letter.value, malformed.letter.key) == (
        "malformed",
        b"\xff not json",
        b"k1",
    )
    of_unknown = await letter_at(deployment, "messages", topic, unknown.partition, unknown.offset)
    assert (of_unknown.letter.reason, of_unknown.letter.value) == ("unknown_type", UNKNOWN_EVENT)


async def test_list_shows_what_agents_and_projections_skipped(deployment: Deployment) -> None:
    producer = deployment.system.producer
    command = await producer.send_and_wait(deployment.topic(topics.USER_COMMANDS), b"nope", key=b"someone")
    event = await producer.send_and_wait(deployment.topic(topics.USER_EVENTS), b"nope either", key=b"u")
    command_id = (await letter_at(deployment, "user_decider", command.topic, command.partition, command.offset)).id
    event_id = (await letter_at(deployment, "users", event.topic, event.partition, event.offset)).id

    as_json = await asyncio.to_thread(cli, deployment, "list", "--json", "--limit", "500")
    assert as_json.returncode == 0, as_json.stderr
    page = orjson.loads(as_json.stdout)
    listed = {e["id"]: e for e in page["entries"]}
    assert {command_id, event_id} <= set(listed)
    assert listed[event_id]["letter"]["reason"] == "malformed" and listed[event_id]["status"] == "dead"

    for_people = await asyncio.to_thread(cli, deployment, "list", "--consumer", "users")
    assert for_people.returncode == 0, for_people.stderr
    assert event_id in for_people.stdout and command_id not in for_people.stdout


async def test_a_replay_of_a_record_still_bad_is_refused_and_changes_nothing(deployment: Deployment) -> None:
    topic = deployment.topic(topics.MESSAGE_SEND)
    sent = await deployment.system.producer.send_and_wait(topic, b"still broken", key=b"c")
    entry = await letter_at(deployment, "chat_decider", topic, sent.partition, sent.offset)
    before = await end_offsets(deployment, topics.MESSAGE_SEND, topics.DEAD_LETTERS)

    refused = await asyncio.to_thread(cli, deployment, "replay", entry.id)

    assert refused.returncode == 1
    assert "still no command" in refused.stderr and entry.id in refused.stderr
    assert await end_offsets(deployment, topics.MESSAGE_SEND, topics.DEAD_LETTERS) == before
    assert next(e for e in await dead_letters(deployment) if e.id == entry.id).status == "dead"


async def good_events(deployment: Deployment, spec: topics.TopicSpec) -> list[Event]:
    """The events of the topic, past the bad records the other tests wrote there."""
    events = []
    for record in await read_topic(deployment.settings, deployment.topic(spec)):
        try:
            events.append(decode_event(record.value))
        except BadRecord:
            continue
    return events


async def put_letter(deployment: Deployment, letter: DeadLetter) -> None:
    await deployment.system.producer.send_and_wait(
        deployment.topic(topics.DEAD_LETTERS), encode_letter(letter), key=key_of(letter)
    )


async def test_a_command_that_reads_now_is_decided_once_though_replayed_twice(deployment: Deployment) -> None:
    system = deployment.system
    alice = uuid.uuid4()
    chat_id = await new_group(system, alice, [uuid.uuid4()])
    topic = deployment.topic(topics.MESSAGE_SEND)
    command = Command(
        command_id=uuid.uuid4(),
        correlation_id="replayed",
        actor_id=alice,
        reply_to=deployment.settings.topic("gateway.replies.long-gone"),
        issued_at=datetime.now(UTC),
        body=SendMessage(chat_id=chat_id, client_msg_id="fixed", text="skipped by an older agent"),
    )
    partition = DefaultPartitioner()(str(chat_id).encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))
    letter = DeadLetter(
        consumer="chat_decider",
        reason="malformed",
        detail="what an older agent could not read",
        topic=topic,
        partition=partition,
        offset=1_000_000,
        key=str(chat_id).encode(),
        value=encode_command(command),
        occurred_at=None,
        dead_at=datetime.now(UTC),
    )
    await put_letter(deployment, letter)

    first = await asyncio.to_thread(cli, deployment, "replay", letter.id)
    assert first.returncode == 0, first.stderr
    assert f"produced again to {topic}[{partition}]@" in first.stdout
    assert "without reply_to" in first.stdout  # the agent is not left replying to a topic that is gone

    async def decided() -> list[MessageSent]:
        events = await good_events(deployment, topics.MESSAGE_EVENTS)
        return [
            e.payload
            for e in events
            if isinstance(e.payload, MessageSent)
            and e.payload.chat_id == chat_id
            and e.payload.client_msg_id == "fixed"
        ]

    assert len(await eventually(decided, timeout=30)) == 1
    before = await end_offsets(deployment, topics.MESSAGE_SEND)

    second = await asyncio.to_thread(cli, deployment, "replay", f"{topic}:{partition}:1000000")
    assert second.returncode == 0, second.stderr
    assert "already" in second.stdout
    assert await end_offsets(deployment, topics.MESSAGE_SEND) == before
    await asyncio.sleep(1)
    assert len(await decided()) == 1
    entry = next(e for e in await dead_letters(deployment) if e.id == letter.id)
    assert entry.status == "replayed" and "produced again" in entry.outcome


async def test_an_event_that_reads_now_is_applied_once_though_asked_twice(deployment: Deployment) -> None:
    chat_id, sender, reader = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    message_id = uuid.uuid4()
    payload = MessageSent(
        message_id=message_id,
        chat_id=chat_id,
        seq=1,
        sender_id=sender,
        text="hello again",
        client_msg_id="c1",
        recipients=[sender, reader],
    )
    event = new_event(
        payload, aggregate_id=chat_id, event_id=event_id_for(message_id), actor_id=sender, correlation_id=None
    )
    letter = DeadLetter(
        consumer="messages",
        reason="unknown_type",
        detail="what an older worker could not read",
        topic=deployment.topic(topics.MESSAGE_EVENTS),
        partition=0,
        offset=2_000_000,
        key=str(chat_id).encode(),
        value=encode_event(event),
        occurred_at=None,
        dead_at=datetime.now(UTC),
    )
    await put_letter(deployment, letter)

    replayed = await asyncio.to_thread(cli, deployment, "replay", letter.id)
    assert replayed.returncode == 0, replayed.stderr
    assert "applied to the messages projection" in replayed.stdout

    conn = await asyncpg.connect(deployment.database_url)
    try:
        assert await conn.fetchval("SELECT text FROM messages WHERE id = $1", message_id) == "hello again"
        # Asked again past the command's own check (a redelivered or repeated request): applied once.
        request = ReplayRequest(letter=letter, requested_at=datetime.now(UTC))
        asked = await deployment.system.producer.send_and_wait(
            deployment.topic(topics.DEAD_LETTERS), encode_letter(request), key=key_of(request)
        )

        async def answers() -> list[ReplayOutcome]:
            records = await read_topic(deployment.settings, deployment.topic(topics.DEAD_LETTERS))
            return [
                ReplayOutcome.model_validate_json(r.value or b"")
                for r in records
                if r.partition == asked.partition and r.offset > asked.offset and b'"replayed"' in (r.value or b"")
            ]

        [again] = await eventually(answers, timeout=30)
        assert again.id == letter.id and "already" in again.detail
        unread = await conn.fetchval(
            "SELECT unread_count FROM read_markers WHERE chat_id = $1 AND user_id = $2", chat_id, reader
        )
        assert unread == 1
        assert await conn.fetchval("SELECT count(*) FROM dead_letter_replays WHERE id = $1", letter.id) == 1
    finally:
        await conn.close()


async def test_an_event_the_chat_agent_skipped_while_catching_up_is_not_replayed(deployment: Deployment) -> None:
    letter = DeadLetter(
        consumer="chat_decider",
        reason="malformed",
        detail="read by the catch-up",
        topic=deployment.topic(topics.CHAT_EVENTS),
        partition=1,
        offset=3_000_000,
        key=b"c",
        value=b"{}",
        occurred_at=None,
        dead_at=datetime.now(UTC),
    )
    await put_letter(deployment, letter)
    before = await end_offsets(deployment, topics.CHAT_EVENTS, topics.DEAD_LETTERS)

    refused = await asyncio.to_thread(cli, deployment, "replay", letter.id)

    assert refused.returncode == 1 and "catching up its tables" in refused.stderr
    assert await end_offsets(deployment, topics.CHAT_EVENTS, topics.DEAD_LETTERS) == before
