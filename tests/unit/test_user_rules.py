"""The rules of users, decided against a dict (no Kafka, no Faust)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.commands import Body, Command, Register, UpdateProfile
from schemas.events import ProfileUpdated, UserRegistered
from streams.decision import Decision
from streams.user_rules import decide


class Names:
    def __init__(self) -> None:
        self.owners: dict[str, str] = {}

    def get_owner(self, username: str) -> str | None:
        return self.owners.get(username)

    def set_owner(self, username: str, user_id: str) -> None:
        self.owners[username] = user_id


def wire(decision: Decision) -> dict[str, Any]:
    """A decision's result as its reply carries it."""
    return decision.result.model_dump(mode="json")


def run(store: Names, body: Body, actor: uuid.UUID | None = None, command_id: uuid.UUID | None = None) -> Decision:
    command = Command(
        command_id=command_id or uuid.uuid4(),
        correlation_id="c",
        actor_id=actor,
        reply_to=None,
        issued_at=datetime.now(UTC),
        body=body,
    )
    return decide(store, command)


def register(user_id: uuid.UUID, name: str) -> Register:
    return Register(user_id=user_id, username=name, display_name=name, password_hash="h")


def test_a_name_is_claimed_once_whatever_its_case() -> None:
    names, alice, other = Names(), uuid.uuid4(), uuid.uuid4()
    first = run(names, register(alice, "Alice"))
    assert first.ok and names.owners == {"alice": str(alice)}
    [event] = first.events
    assert isinstance(event.payload, UserRegistered) and event.payload.username == "alice"
    assert wire(first)["user"]["id"] == str(alice) and wire(first)["user"]["username"] == "alice"
    taken = run(names, register(other, "ALICE"))
    assert (taken.ok, taken.code, taken.message, taken.events) == (False, "username_taken", "username taken", [])


def test_a_registration_decided_again_names_the_same_event() -> None:
    names, alice, command_id = Names(), uuid.uuid4(), uuid.uuid4()
    first = run(names, register(alice, "alice"), command_id=command_id)
    again = run(names, register(alice, "alice"), command_id=command_id)
    assert again.ok and again.events[0].event_id == first.events[0].event_id


def test_only_the_user_updates_their_profile() -> None:
    names, alice = Names(), uuid.uuid4()
    body = UpdateProfile(user_id=alice, bio="hi")
    refused = run(names, body, actor=uuid.uuid4())
    assert (refused.ok, refused.code, refused.message) == (False, "forbidden", "forbidden")
    updated = run(names, body, actor=alice)
    assert updated.ok and wire(updated) == {}
    assert isinstance(updated.events[0].payload, ProfileUpdated) and updated.events[0].aggregate_id == alice
