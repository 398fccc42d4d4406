"""What deciding one command gives, whatever the rules (`chat_rules`, `user_rules`): accepted or
refused, the events to append, the result for the reply, the frames to deliver."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.commands import DeliveryRecord, NoResult, Result
from schemas.credentials import CredentialRecord
from schemas.events import Event


@dataclass
class Decision:
    ok: bool
    code: str | None = None
    message: str | None = None
    duplicate: bool = False
    result: Result = field(default_factory=NoResult)
    events: list[Event] = field(default_factory=list)
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    shredded: list[str] = field(default_factory=list)
    """Data keys to tombstone in `content.keys`, with the events (`streams.shredding`)."""
    credentials: list[CredentialRecord] = field(default_factory=list)
    """Records of `user.credentials` (a new hash, or a tombstone), appended with the events; the
    reply names where they landed too, so that the gateway waits until the read models hold them."""


def refuse(code: str, message: str) -> Decision:
    return Decision(ok=False, code=code, message=message)
