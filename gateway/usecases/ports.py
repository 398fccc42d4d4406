"""What the use cases use of the running gateway, and who asks.

    app[PORTS]   # set by `ports_ctx`, a cleanup_ctx registered after the bus, watermarks and budget
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from config.settings import GatewaySettings
from gateway.infra import read_store
from gateway.infra.command_bus import COMMAND_BUS, CommandBus
from gateway.infra.consistency import WATERMARKS, ProjectionWatermarks
from gateway.infra.limits import WRITE_BUDGET, WriteBudget
from gateway.infra.resources import PG_POOL, SETTINGS
from schemas.commands import Origin


@dataclass(frozen=True)
class Ports:
    """The command bus to the deciding agents, the read models and their progress (for
    read-your-writes), the users' write budget, and the settings that shape commands."""

    bus: CommandBus
    watermarks: ProjectionWatermarks
    pool: read_store.Pool
    budget: WriteBudget
    settings: GatewaySettings


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
        bus=app[COMMAND_BUS], watermarks=app[WATERMARKS], pool=app[PG_POOL],
        budget=app[WRITE_BUDGET], settings=app[SETTINGS],
    )
    yield
