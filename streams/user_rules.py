"""The rules of users, with no I/O: `decide` turns a user command into its event.

Registrations are keyed by the folded username, so one partition owner decides every claim of a
name, in order: the `usernames` state (folded name -> user id) makes names unique with no lock.
A registration decided again (after a crash between appending its event and writing the table)
names the same user and the same event id: it is accepted again, and the projection ignores the
copy; no other claim of the name can come first, since it sits behind it in the same partition.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from schemas.commands import Command, Register, UpdateProfile, UserResult
from schemas.events import ProfileUpdated, UserRegistered, event_id_for, new_event
from schemas.models import User, fold_username
from schemas.sealed import profile_key_id
from streams.decision import Decision, refuse


class UserStore(Protocol):
    """Who holds each folded username."""

    def get_owner(self, username: str) -> str | None: ...
    def set_owner(self, username: str, user_id: str) -> None: ...


def decide(store: UserStore, command: Command, now: datetime | None = None) -> Decision:
    """The outcome of `command`; an accepted registration's claim is already in `store`."""
    body = command.body
    if isinstance(body, Register):
        name = fold_username(body.username)
        owner = store.get_owner(name)
        if owner is not None and owner != str(body.user_id):
            return refused_registration(body)
        store.set_owner(name, str(body.user_id))
        registered = UserRegistered(
            user_id=body.user_id,
            username=name,
            display_name=body.display_name,
            sealed_display_name=body.sealed_display_name,
            password_hash=body.password_hash,
        )
        decision = accept(command, registered, now)
        user = User(
            id=registered.user_id,
            username=registered.username,
            display_name=registered.carried_display_name,
            bio=registered.bio,
            created_at=decision.events[0].occurred_at,
        )
        decision.result = UserResult(user=user)
        return decision
    if isinstance(body, UpdateProfile):
        if command.actor_id != body.user_id:
            return refuse("forbidden", "forbidden")
        return accept(command, profile_updated(body), now)
    return refuse("invalid_request", "invalid request")


def refused_registration(body: Register) -> Decision:
    """`username_taken`; a sealed display name's key, made for an account that will never exist
    (a fresh user id per registration), is shredded with the refusal (docs/erasure.md)."""
    decision = refuse("username_taken", "username taken")
    if body.sealed_display_name is not None:
        decision.shredded = [profile_key_id(body.user_id)]
    return decision


def profile_updated(body: UpdateProfile) -> ProfileUpdated:
    """The fields as the command carries them, plain or sealed with the account's profile key
    (which the account keeps: a profile change shreds nothing)."""
    return ProfileUpdated(
        user_id=body.user_id,
        display_name=body.display_name,
        bio=body.bio,
        sealed_display_name=body.sealed_display_name,
        sealed_bio=body.sealed_bio,
    )


def accept(command: Command, payload: UserRegistered | ProfileUpdated, now: datetime | None) -> Decision:
    """The one event of a user command, its id derived from the command's."""
    event = new_event(
        payload,
        aggregate_id=payload.user_id,
        event_id=event_id_for(command.command_id, 0),
        actor_id=command.actor_id,
        correlation_id=command.correlation_id,
        occurred_at=now or datetime.now(UTC),
    )
    return Decision(ok=True, events=[event])
