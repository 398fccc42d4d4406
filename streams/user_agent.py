"""The user agent: registrations and profile changes from `user.commands`.

Registrations are keyed by the folded username, so one partition owner decides every claim of a
name, in order: the `usernames` table (folded name -> user id) makes names unique with no lock,
however many gateways and workers there are. As in the chat agent, the events are durable before
the table is written and the reply sent. A crash between the two makes the worker decide the
command again; it then writes the same event again (same event id, same user): the projection
ignores the copy, and no other claim of the name can come first, since it sits behind it in the
same partition.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime

from typing import Any, cast

import faust
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from faust.exceptions import ProducerSendError
from faust.types import EventT, TableT

from config.settings import WorkerSettings
from schemas import topics
from schemas.commands import Command, Register, UpdateProfile
from schemas.events import ProfileUpdated, UserRegistered, event_id_for, new_event
from schemas.models import User, fold_username
from streams.chat_agent import BATCH_MAX, BATCH_WITHIN_S, EXIT_CANNOT_APPLY, PRODUCE_ATTEMPTS, parse_commands
from streams.outbox import Outbox, PendingEvent, produce_durable, reply_for

log = logging.getLogger(__name__)


class UserDecider:
    def __init__(self, app: faust.App, settings: WorkerSettings, usernames: TableT[str, Any]) -> None:
        self.app = app
        self.usernames = usernames
        self.events_topic = settings.topic(topics.USER_EVENTS.name)

    async def process(self, batch: Sequence[EventT[bytes]]) -> None:
        claimed: dict[str, tuple[int, str]] = {}
        pending: list[PendingEvent] = []
        outcomes: list[tuple[Command, PendingEvent | None, str | None]] = []
        for partition, command in parse_commands(batch):
            event, refusal = self.decide(command, partition, claimed)
            if event is not None:
                pending.append(event)
            outcomes.append((command, event, refusal))
        metadata = iter(await self.append(pending))
        outbox = Outbox(self.app)
        for name, (partition, user_id) in claimed.items():
            await outbox.put(self.usernames, partition, name, user_id)
        for command, event, refusal in outcomes:
            if refusal is not None:
                await outbox.reply(command, reply_for(command, False, code=refusal, message=refusal.replace("_", " ")))
            else:
                assert event is not None
                result = user_result(event)
                await outbox.reply(command, reply_for(command, True, result=result, metadata=[next(metadata)]))
        await outbox.wait()

    async def append(self, pending: list[PendingEvent]) -> list[RecordMetadata]:
        """Append with bounded retries; a retry may write an event twice, which projections ignore."""
        for attempt in range(1, PRODUCE_ATTEMPTS + 1):
            try:
                return await produce_durable(self.app, pending)
            except (KafkaError, ProducerSendError) as error:
                log.warning("appending user events failed (attempt %d): %r", attempt, error)
                await asyncio.sleep(0.2 * 2**attempt)
        log.critical("cannot append user events after %d attempts; stopping the worker", PRODUCE_ATTEMPTS)
        os._exit(EXIT_CANNOT_APPLY)

    def decide(
        self, command: Command, partition: int, claimed: dict[str, tuple[int, str]]
    ) -> tuple[PendingEvent | None, str | None]:
        body = command.body
        if isinstance(body, Register):
            name = fold_username(body.username)
            owner = claimed[name][1] if name in claimed else self.usernames.get(name)
            if owner is not None and owner != str(body.user_id):
                return None, "username_taken"
            claimed[name] = (partition, str(body.user_id))
            payload: UserRegistered | ProfileUpdated = UserRegistered(
                user_id=body.user_id, username=name, display_name=body.display_name, password_hash=body.password_hash,
            )
            user_id = body.user_id
        elif isinstance(body, UpdateProfile):
            if command.actor_id != body.user_id:
                return None, "forbidden"
            payload = ProfileUpdated(user_id=body.user_id, display_name=body.display_name, bio=body.bio)
            user_id = body.user_id
        else:
            return None, "invalid_request"
        event = new_event(
            payload, aggregate_id=user_id, event_id=event_id_for(command.command_id, 0),
            actor_id=command.actor_id, correlation_id=command.correlation_id, occurred_at=datetime.now(UTC),
        )
        return PendingEvent(self.events_topic, str(user_id).encode(), None, event), None


def user_result(pending: PendingEvent) -> dict[str, object]:
    payload = pending.event.payload
    if not isinstance(payload, UserRegistered):
        return {}
    user = User(
        id=payload.user_id, username=payload.username, display_name=payload.display_name,
        bio=payload.bio, created_at=pending.event.occurred_at,
    )
    return {"user": user.model_dump(mode="json")}


def register(app: faust.App, settings: WorkerSettings) -> UserDecider:
    usernames = app.Table("usernames", partitions=settings.topic_partitions, key_type=str)
    decider = UserDecider(app, settings, usernames)
    source = app.topic(
        settings.topic(topics.USER_COMMANDS.name),
        key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions,
    )

    @app.agent(source, name="user_decider", concurrency=1)
    async def user_decider(stream: faust.StreamT[bytes]) -> None:
        async for batch in cast(faust.Stream[bytes], stream).take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            await decider.process(batch)

    return decider

