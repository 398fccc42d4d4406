"""A write from a REST handler: charge the user's write budget, ask the streams workers, map a
refusal to the contract's error, and wait until the read models hold the change (read-your-writes)."""

from __future__ import annotations

import uuid

from aiohttp import web

from gateway.commands import COMMAND_BUS, CommandTimeout
from gateway.consistency import WATERMARKS, NotProjected
from gateway.errors import ApiError, unavailable
from gateway.limits import spend_write
from gateway.resources import PG_POOL
from schemas import topics
from schemas.commands import Body, Reply

REFUSAL_STATUS = {
    "invalid_request": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "username_taken": 409,
    "group_full": 409,
}


def refusal(reply: Reply) -> ApiError:
    code = reply.code or "conflict"
    return ApiError(REFUSAL_STATUS.get(code, 409), code, reply.message or code.replace("_", " "))


async def write(
    request: web.Request, topic: topics.TopicSpec, key: str, body: Body, actor: uuid.UUID | None, *, cost: int = 1
) -> Reply:
    """The accepted reply of a command (its events projected), or the refusal as an ApiError.

    A user's write first takes `cost` units of their write budget (429 `rate_limited` without
    them); an anonymous one (registration) is throttled by its own route.
    """
    if actor is not None:
        await spend_write(request, str(actor), cost)
    try:
        reply = await request.app[COMMAND_BUS].ask(topic, key, body, actor)
    except CommandTimeout:
        raise unavailable("the system did not answer in time; retry") from None
    if not reply.ok:
        raise refusal(reply)
    try:
        await request.app[WATERMARKS].require_reply(reply, request.app[PG_POOL])
    except NotProjected:
        raise unavailable("the change is stored but not readable yet; retry the same request") from None
    return reply

