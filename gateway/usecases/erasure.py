"""Erasing an account (contract v1.1, "Erasure"; docs/erasure.md, "Account erasure").

The user agent erases the account itself (`user.erase`: the name quarantined, the profile key
shredded, the account gone from the read models, so no login succeeds); then, chat by chat, the
chat agent deletes the account's messages and takes it out of the chat (`chat.erase_member`).
The gateway lists the messages from the read models: a message decided just before the removal
may not be projected at the first listing, so each chat is listed again once the removal is (the
projection takes a chat's events in order, so everything decided before it is there by then).

A gateway that stops between the two steps leaves an erased account with messages and
memberships, and its user can no longer sign in to ask again: every instance looks for such
erasures now and then and finishes them (`erasure_healing_ctx`; two at once is harmless).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Iterator

from aiohttp import web

from gateway.infra import read_store
from gateway.usecases.commands import execute
from gateway.usecases.ports import PORTS, Actor, Ports
from schemas.commands import ERASED_IDS_MAX, EraseAccount, EraseMember

log = logging.getLogger(__name__)

CHATS_AT_ONCE = 8
"""Chats swept concurrently: each is a round trip to the chat agent and a projection wait."""
SETTLE_S = 120.0
"""How long an erasure is left to the request that made it before `sweep_unfinished` takes it."""
SWEEP_EVERY_S = 60.0


async def erase_account(ports: Ports, actor: Actor, username: str) -> None:
    """Erase `actor`'s account, whose folded name is `username`; done when every message of it
    in every chat it was in is deleted and it is in no chat (the read models say so)."""
    await execute(ports, Actor(actor.user_id, prepaid=True), EraseAccount(user_id=actor.user_id, username=username))
    await finish_erasure(ports, actor.user_id)


async def finish_erasure(ports: Ports, user_id: uuid.UUID) -> None:
    """Sweep every chat an erased account is in, or has a message that is not deleted in. Run
    again it changes nothing; `sweep_unfinished` runs it for an erasure a crash cut short."""
    actor = Actor(user_id, prepaid=True)
    chat_ids = await read_store.chats_to_erase_in(ports.pool, user_id)
    gate = asyncio.Semaphore(CHATS_AT_ONCE)

    async def sweep(chat_id: uuid.UUID) -> None:
        async with gate:
            await erase_in_chat(ports, actor, chat_id, leave=True)
            await erase_in_chat(ports, actor, chat_id, leave=False)

    await asyncio.gather(*(sweep(chat_id) for chat_id in chat_ids))


async def sweep_unfinished(ports: Ports, settle_s: float = SETTLE_S) -> int:
    """Finish the erasures of the last day, older than `settle_s`, that left a membership or a
    message behind (the gateway that took the request stopped midway); how many it swept."""
    user_ids = await read_store.unfinished_erasures(ports.pool, settle_s)
    for user_id in user_ids:
        await finish_erasure(ports, user_id)
    return len(user_ids)


async def erase_in_chat(ports: Ports, actor: Actor, chat_id: uuid.UUID, *, leave: bool) -> None:
    """Delete `actor`'s live messages in `chat_id` (as the read model lists them) and, with
    `leave`, take the account out of the chat (a command is sent even with no message)."""
    message_ids = await read_store.live_message_ids(ports.pool, chat_id, actor.user_id)
    chunks = list(chunked(message_ids, ERASED_IDS_MAX)) or ([[]] if leave else [])
    for chunk in chunks:
        await execute(ports, actor, EraseMember(chat_id=chat_id, user_id=actor.user_id, message_ids=chunk))


def chunked(items: list[uuid.UUID], size: int) -> Iterator[list[uuid.UUID]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def erasure_healing_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(sweep_forever(app[PORTS]), name="erasure healing")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def sweep_forever(ports: Ports) -> None:
    while True:
        await asyncio.sleep(SWEEP_EVERY_S * random.uniform(0.5, 1.5))
        try:
            swept = await sweep_unfinished(ports)
        except Exception:
            log.exception("finishing unfinished account erasures failed; again in a minute")
            continue
        if swept:
            log.warning("finished %d account erasure(s) a stopped gateway had left midway", swept)
