"""The projections of the system, by name."""

from __future__ import annotations

from projections.chats import CHATS
from projections.credentials import CREDENTIALS
from projections.messages import MESSAGES
from projections.model import Projection
from projections.users import USERS

PROJECTIONS: dict[str, Projection] = {p.name: p for p in (USERS, CHATS, MESSAGES, CREDENTIALS)}


def selected(names: list[str] | None) -> list[Projection]:
    """The projections named (all of them for none), in catalogue order."""
    if not names:
        return list(PROJECTIONS.values())
    return [p for name, p in PROJECTIONS.items() if name in names]
