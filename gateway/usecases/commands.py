"""The way every write goes: budget, topic, command, refusal, read-your-writes.

`TOPIC_OF` is the one place that says which topic each command goes to; the key is what the
topic is partitioned by (`schemas.topics`): the deciding agent of a chat, or of a username,
sees its commands in order.
"""

from __future__ import annotations

from gateway.infra.command_bus import CommandTimeout
from gateway.infra.consistency import NotProjected
from gateway.infra.limits import REFUSED as WRITES_REFUSED
from gateway.usecases.ports import Actor, Ports
from gateway.usecases.refusal import CONFLICT, RATE_LIMITED, Refused, unavailable
from schemas import topics
from schemas.commands import (
    AddMember,
    Body,
    ChangePassword,
    CreateChat,
    DeleteMessage,
    EditMessage,
    EraseAccount,
    EraseMember,
    MarkRead,
    Register,
    RemoveMember,
    Reply,
    SendMessage,
    UpdateProfile,
)

TOPIC_OF: dict[type[Body], topics.TopicSpec] = {
    Register: topics.USER_COMMANDS,
    UpdateProfile: topics.USER_COMMANDS,
    EraseAccount: topics.USER_COMMANDS,
    ChangePassword: topics.USER_COMMANDS,
    CreateChat: topics.CHAT_COMMANDS,
    AddMember: topics.CHAT_COMMANDS,
    RemoveMember: topics.CHAT_COMMANDS,
    EraseMember: topics.CHAT_COMMANDS,
    SendMessage: topics.MESSAGE_SEND,
    EditMessage: topics.MESSAGE_SEND,
    DeleteMessage: topics.MESSAGE_SEND,
    MarkRead: topics.MESSAGE_SEND,
}
"""A chat's messages (send, edit, delete, read) share one topic, so that the chat's deciding
agent takes them in the order one socket sent them; its membership changes have their own."""


def partition_key(body: Body) -> str:
    """What the command's topic is keyed by: the folded username of a registration (its
    uniqueness is decided by one partition owner), of an account's erasure and of a password change
    (that owner knows whether the user exists), the user of a profile change, else the chat."""
    if isinstance(body, (Register, EraseAccount, ChangePassword)):
        return body.username
    if isinstance(body, UpdateProfile):
        return str(body.user_id)
    return str(body.chat_id)


async def charge(ports: Ports, actor: Actor, cost: int = 1) -> None:
    """Take `cost` writes from the actor's budget (shared by REST, sockets and every instance),
    or refuse as `rate_limited` with the time until they are there."""
    wait_ms = await ports.budget.take(str(actor.user_id), cost)
    if wait_ms:
        WRITES_REFUSED.labels(actor.via).inc()
        raise Refused(RATE_LIMITED, "too many writes: slow down", retry_after_ms=wait_ms)


async def execute(ports: Ports, actor: Actor | None, body: Body, *, cost: int = 1) -> Reply:
    """The accepted reply to `body`, once the read models hold its change; `Refused` else.

    An anonymous command (a registration) is throttled by its adapter instead of a budget.
    An accepted repeat of a command (same client ids) is answered like the first (`duplicate`).
    """
    if actor is not None and not actor.prepaid:
        await charge(ports, actor, cost)
    try:
        reply = await ports.bus.ask(
            TOPIC_OF[type(body)],
            partition_key(body),
            body,
            actor.user_id if actor else None,
            origin=actor.origin if actor else None,
        )
    except CommandTimeout:
        raise unavailable("no answer in time; it may have been applied: retry the same request") from None
    if not reply.ok:
        code = reply.code or CONFLICT
        raise Refused(code, reply.message or code.replace("_", " "))
    try:
        await ports.watermarks.require_reply(reply, ports.pool)
    except NotProjected:
        raise unavailable("stored but not readable yet: retry the same request") from None
    return reply
