"""What deciding one command gives, whatever the rules (`chat_rules`, `user_rules`): accepted or
refused, the events to append, the result for the reply, the frames to deliver."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.commands import Delivery
from schemas.events import Event


@dataclass
class Decision:
    ok: bool
    code: str | None = None
    message: str | None = None
    duplicate: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)


def refuse(code: str, message: str) -> Decision:
    return Decision(ok=False, code=code, message=message)
