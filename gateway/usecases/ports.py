"""What the use cases use of the running gateway, and who asks.

app[PORTS]   # set by `ports_ctx`, a cleanup_ctx registered after the bus, watermarks and budget
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from config.settings import GatewaySettings
from gateway.infra import read_store
from gateway.infra.command_bus import COMMAND_BUS, REPLY_TIMEOUT_S
from gateway.infra.consistency import WAIT_LIMIT_S, WATERMARKS
from gateway.infra.content_keys import CONTENT_KEYS, ProfileKeyChoice
from gateway.infra.limits import WRITE_BUDGET
from gateway.infra.resources import PG_POOL, SETTINGS
from schemas import topics
from schemas.commands import Body, Origin, Reply


class Commands(Protocol):
    """`gateway.infra.command_bus.CommandBus`: a command out, its reply back."""

    async def ask(
        self,
        topic: topics.TopicSpec,
        key: str,
        body: Body,
        actor_id: uuid.UUID | None,
        origin: Origin | None = None,
        timeout: float = REPLY_TIMEOUT_S,
    ) -> Reply: ...


class ReadYourWrites(Protocol):
    """`gateway.infra.consistency.ProjectionWatermarks`: wait until the read models hold a reply's change."""

    async def require_reply(self, reply: Reply, db: read_store.Pool, timeout: float = WAIT_LIMIT_S) -> None: ...


class Budget(Protocol):
    """`gateway.infra.limits.WriteBudget`: the users' writes, shared by every instance."""

    async def take(self, user_id: str, cost: int = 1) -> int: ...


class Texts(Protocol):
    """`gateway.infra.content_keys.ContentKeys`: message texts sealed under keys of their own,
    profiles under one key per account."""

    async def seal_message(
        self, message_id: uuid.UUID, owner_id: uuid.UUID, text: str
    ) -> tuple[str, asyncio.Future[Any]]: ...
    async def open_message(self, message: dict[str, Any]) -> dict[str, Any]: ...
    async def seal_new_profile(self, user_id: uuid.UUID, display_name: str) -> tuple[str, asyncio.Future[Any]]: ...
    async def profile_key(
        self, db: read_store.Pool, user_id: uuid.UUID, registered_at: datetime
    ) -> ProfileKeyChoice: ...
    async def open_user(self, user: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Ports:
    """The command bus to the deciding agents, the read models and their progress (for
    read-your-writes), the users' write budget, and the settings that shape commands."""

    bus: Commands
    watermarks: ReadYourWrites
    pool: read_store.Pool
    budget: Budget
    settings: GatewaySettings
    texts: Texts | None = None
    """Seals the texts of the commands and opens those of the replies (docs/erasure.md); None:
    texts go plain (a gateway whose deployment does not seal yet, the use cases' tests)."""


@dataclass(frozen=True)
class Actor:
    """The user a request speaks for, and how it came."""

    user_id: uuid.UUID
    origin: Origin | None = None
    """The socket a command comes from: the deciding agent leaves it out of the frames it sends to
    the members, and the socket gets the use case's answer instead (`message.ack`, ...)."""
    prepaid: bool = False
    """True when the adapter already took the write from the budget: a socket does, in its read
    loop, so that its frames reach the deciding agent in the order they came."""

    @property
    def via(self) -> str:
        """`ws` or `rest`, for the metrics."""
        return "ws" if self.origin is not None else "rest"


PORTS = web.AppKey("ports", Ports)


async def ports_ctx(app: web.Application) -> AsyncIterator[None]:
    app[PORTS] = Ports(
        bus=app[COMMAND_BUS],
        watermarks=app[WATERMARKS],
        pool=app[PG_POOL],
        budget=app[WRITE_BUDGET],
        settings=app[SETTINGS],
        texts=app[CONTENT_KEYS] if app[SETTINGS].seal_texts else None,
    )
    yield
