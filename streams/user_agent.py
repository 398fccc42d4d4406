"""The user agent: registrations and profile changes from `user.commands`, decided by
`streams.user_rules` against the `usernames` table (folded username -> user id) through the
pipeline every agent shares (`streams.pipeline`): the events, and the password hashes they come
with (`user.credentials`), are durable before the table is written and the reply sent."""

from __future__ import annotations

import faust
from faust.types import TableT

from config.settings import StreamsSettings
from runtime import table_store
from schemas import topics
from schemas.commands import Command
from schemas.events import Event
from streams import user_rules
from streams.decision import Decision
from streams.outbox import Outbox, PendingEvent
from streams.pipeline import Decided, DecidingAgent, run_agent


class TableUserStore:
    """A `UserStore` over the `usernames` table that keeps its claims aside until `commit`."""

    def __init__(self, usernames: TableT[str, str]) -> None:
        self.usernames = usernames
        self.partition = 0
        self.claims: dict[str, tuple[int, str]] = {}

    def get_owner(self, username: str) -> str | None:
        if username in self.claims:
            return self.claims[username][1]
        owner: str | None = table_store.get(self.usernames, self.partition, username)
        return owner

    def set_owner(self, username: str, user_id: str) -> None:
        self.claims[username] = (self.partition, user_id)

    async def commit(self, outbox: Outbox) -> None:
        for name, (partition, user_id) in self.claims.items():
            await outbox.put(self.usernames, partition, name, user_id)
        self.claims = {}


class UserDecider(DecidingAgent[TableUserStore]):
    consumer = "user_decider"

    def __init__(self, app: faust.App, settings: StreamsSettings, usernames: TableT[str, str]) -> None:
        super().__init__(app, settings.topic(topics.DEAD_LETTERS.name))
        self.usernames = usernames
        self.events_topic = settings.topic(topics.USER_EVENTS.name)
        self.keys_topic = settings.topic(topics.CONTENT_KEYS.name)
        self.quarantine = settings.username_quarantine
        self.credentials_topic = settings.topic(topics.USER_CREDENTIALS.name)

    def new_store(self) -> TableUserStore:
        return TableUserStore(self.usernames)

    def decide(self, store: TableUserStore, command: Command) -> Decision:
        return user_rules.decide(store, command, quarantine=self.quarantine)

    def destination(self, decided: Decided, event: Event) -> PendingEvent:
        """`user.events` is keyed by user id (the commands by name): the key picks the partition."""
        return PendingEvent(self.events_topic, str(event.aggregate_id).encode(), None, event)


def register(app: faust.App, settings: StreamsSettings) -> UserDecider:
    """Declare the user agent and its table on `app`."""
    usernames = app.Table(
        "usernames",
        partitions=settings.topic_partitions,
        key_type=str,
        options=table_store.table_options(),
        help="folded (case-insensitive) username -> the user_id that registered it "
        "(`<user_id>|<free after>` once its account is erased: streams.user_rules.Claim)",
    )
    decider = UserDecider(app, settings, usernames)
    source = app.topic(
        settings.topic(topics.USER_COMMANDS.name),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )
    run_agent(app, decider, source)
    return decider
