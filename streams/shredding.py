"""Which data keys a decision shreds (docs/erasure.md): pure functions over the chat state, the
command and the events, so that the pipeline can write the tombstones to `content.keys` in the
same durable append as the events.

Every key is born with the command that brought its text (the gateway wrote it first), and the
deciding agent settles its fate: an accepted send adopts it; an edit adopts the new key and shreds
the previous version's; a delete shreds the current one; a refused command, or a repeat of a send
already made, shreds the key it brought unless that key is the one the message already has (the
same command decided again after a crash).
"""

from __future__ import annotations

from schemas.commands import Command, EditMessage, SendMessage
from schemas.events import Event, MessageDeleted, MessageEdited
from schemas.sealed import MalformedSealed, parse
from streams.chat_state import StoredMessage


def key_id_of(text: str | None) -> str | None:
    """The key id of a sealed token; None for a plain text (a message of before sealing) or none."""
    if not text:
        return None
    try:
        return parse(text).key_id
    except MalformedSealed:
        return None


def brought_key(command: Command) -> str | None:
    """The key of the text `command` carries sealed, if it carries one."""
    body = command.body
    if isinstance(body, (SendMessage, EditMessage)):
        return key_id_of(body.sealed_text)
    return None


def shredded_by(before: StoredMessage | None, event: Event) -> list[str]:
    """The keys `event` shreds, given the message as it was before it (None: not known)."""
    payload = event.payload
    if before is None or before.deleted or not isinstance(payload, (MessageEdited, MessageDeleted)):
        return []
    previous = key_id_of(before.text)
    if previous is None:
        return []
    if isinstance(payload, MessageEdited) and key_id_of(payload.sealed_text) == previous:
        return []
    return [previous]


def unadopted(brought: str | None, kept: StoredMessage | None) -> list[str]:
    """`brought` (the key of a refused or repeated command) unless the message `kept` holds it."""
    if brought is None or (kept is not None and key_id_of(kept.text) == brought):
        return []
    return [brought]
