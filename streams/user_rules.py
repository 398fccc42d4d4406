"""The rules of users, with no I/O: `decide` turns a user command into its event.

Registrations are keyed by the folded username, so one partition owner decides every claim of a
name, in order: the `usernames` state (folded name -> user id) makes names unique with no lock.
A registration decided again (after a crash between appending its event and writing the table)
names the same user and the same event id: it is accepted again, and the projection ignores the
copy; no other claim of the name can come first, since it sits behind it in the same partition.

Password hashes are no part of any event (docs/erasure.md, "Credentials out of the log"): an
accepted registration or password change writes the hash to `user.credentials`
(`Decision.credentials`), appended with the event. A password change is keyed, like a
registration, by the folded username, so the partition that owns the name tells whether its user
exists; one decided again after a crash writes the same hash again, which changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol

from schemas.commands import ChangePassword, Command, Register, UpdateProfile, UserResult
from schemas.credentials import Credential, CredentialRecord, credential_record
from schemas.events import PasswordChanged, ProfileUpdated, UserRegistered, event_id_for, new_event
from schemas.models import User, fold_username
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
            return refuse("username_taken", "username taken")
        store.set_owner(name, str(body.user_id))
        registered = UserRegistered(
            user_id=body.user_id,
            username=name,
            display_name=body.display_name,
        )
        decision = accept(command, registered, now)
        decision.credentials.append(new_credential(body.user_id, body.password_hash, decision.events[0].occurred_at))
        user = User(
            id=registered.user_id,
            username=registered.username,
            display_name=registered.display_name,
            bio=registered.bio,
            created_at=decision.events[0].occurred_at,
        )
        decision.result = UserResult(user=user)
        return decision
    if isinstance(body, UpdateProfile):
        if command.actor_id != body.user_id:
            return refuse("forbidden", "forbidden")
        return accept(command, ProfileUpdated(user_id=body.user_id, display_name=body.display_name, bio=body.bio), now)
    if isinstance(body, ChangePassword):
        return change_password(store, command, body, now)
    return refuse("invalid_request", "invalid request")


def change_password(store: UserStore, command: Command, body: ChangePassword, now: datetime | None) -> Decision:
    """A new credential for a user who exists, asked by that user.

    A rehash (the same password hashed again with today's argon2 parameters, at a login) writes
    the credential and no event: nothing the user did changed, no reader of `user.events` has
    anything to do with it (sessions do not end, the read models' users do not change), and an
    event per parameter upgrade would keep, forever, only the fact that someone logged in. A real
    change is a `user.password_changed` (no hash in it): the account's history shows it."""
    if command.actor_id != body.user_id:
        return refuse("forbidden", "forbidden")
    if store.get_owner(fold_username(body.username)) != str(body.user_id):
        return refuse("not_found", "no such user")
    at = now or datetime.now(UTC)
    decision = Decision(ok=True) if body.rehash else accept(command, PasswordChanged(user_id=body.user_id), at)
    decision.credentials.append(new_credential(body.user_id, body.password_hash, at))
    return decision


def new_credential(user_id: uuid.UUID, password_hash: str, at: datetime) -> CredentialRecord:
    return credential_record(Credential(user_id=user_id, password_hash=password_hash, changed_at=at))


def accept(
    command: Command, payload: UserRegistered | ProfileUpdated | PasswordChanged, now: datetime | None
) -> Decision:
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
