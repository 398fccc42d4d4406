"""The rules of users, with no I/O: `decide` turns a user command into its event.

Registrations are keyed by the folded username, so one partition owner decides every claim of a
name, in order: the `usernames` state (folded name -> its claim) makes names unique with no lock.
A registration decided again (after a crash between appending its event and writing the table)
names the same user and the same event id: it is accepted again, and the projection ignores the
copy; no other claim of the name can come first, since it sits behind it in the same partition.

An erased account's name stays claimed until its quarantine ends (`Claim.free_after`): then a
registration may take it.

Password hashes are no part of any event (docs/erasure.md, "Credentials out of the log"): an
accepted registration or password change writes the hash to `user.credentials`
(`Decision.credentials`), appended with the event. A password change is keyed, like a
registration, by the folded username, so the partition that owns the name tells whether its user
exists; one decided again after a crash writes the same hash again, which changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from schemas.commands import ChangePassword, Command, EraseAccount, Register, UpdateProfile, UserResult
from schemas.credentials import Credential, CredentialRecord, credential_record
from schemas.credentials import tombstone as credential_tombstone
from schemas.events import PasswordChanged, ProfileUpdated, UserErased, UserRegistered, event_id_for, new_event
from schemas.models import User, fold_username
from schemas.sealed import profile_key_id
from streams.decision import Decision, refuse

QUARANTINE_DEFAULT = timedelta(days=30)


@dataclass(frozen=True)
class Claim:
    """Who holds a name: its user, and for an erased account when the name is free again."""

    user_id: str
    free_after: datetime | None = None

    def encode(self) -> str:
        """As the `usernames` table holds it: the user id alone, as it always did, for a live
        account; `<user id>|<ISO 8601>` for an erased one."""
        return self.user_id if self.free_after is None else f"{self.user_id}|{self.free_after.isoformat()}"

    @classmethod
    def decode(cls, value: str) -> Claim:
        user_id, _, free_after = value.partition("|")
        return cls(user_id, datetime.fromisoformat(free_after) if free_after else None)

    def holds_at(self, now: datetime) -> bool:
        return self.free_after is None or now < self.free_after


class UserStore(Protocol):
    """Who holds each folded username (`Claim.encode`)."""

    def get_owner(self, username: str) -> str | None: ...
    def set_owner(self, username: str, user_id: str) -> None: ...


def claim_of(store: UserStore, name: str) -> Claim | None:
    value = store.get_owner(name)
    return Claim.decode(value) if value is not None else None


def decide(
    store: UserStore, command: Command, now: datetime | None = None, quarantine: timedelta = QUARANTINE_DEFAULT
) -> Decision:
    """The outcome of `command`; an accepted registration's or erasure's claim is already in `store`."""
    body = command.body
    at = now or datetime.now(UTC)
    if isinstance(body, Register):
        return _register(store, command, body, at)
    if isinstance(body, UpdateProfile):
        if command.actor_id != body.user_id:
            return refuse("forbidden", "forbidden")
        return accept(command, profile_updated(body), at)
    if isinstance(body, ChangePassword):
        return change_password(store, command, body, at)
    if isinstance(body, EraseAccount):
        return _erase(store, command, body, at, quarantine)
    return refuse("invalid_request", "invalid request")


def _register(store: UserStore, command: Command, body: Register, now: datetime) -> Decision:
    name = fold_username(body.username)
    claim = claim_of(store, name)
    if claim is not None and claim.user_id != str(body.user_id) and claim.holds_at(now):
        return refused_registration(body)
    if claim is not None and claim.user_id == str(body.user_id) and claim.free_after is not None:
        return refuse("not_found", "the account was erased")
    store.set_owner(name, str(body.user_id))
    registered = UserRegistered(
        user_id=body.user_id,
        username=name,
        display_name=body.display_name,
        sealed_display_name=body.sealed_display_name,
    )
    decision = accept(command, registered, now)
    decision.credentials.append(new_credential(body.user_id, body.password_hash, decision.events[0].occurred_at))
    user = User(
        id=registered.user_id,
        username=registered.username,
        display_name=registered.carried_display_name,
        bio=registered.bio,
        created_at=decision.events[0].occurred_at,
    )
    decision.result = UserResult(user=user)
    return decision


def _erase(store: UserStore, command: Command, body: EraseAccount, now: datetime, quarantine: timedelta) -> Decision:
    """The account's name quarantined, `user.erased`, its profile key shredded and its credential
    tombstoned (`user.credentials`). Decided again
    (a crash, a retry) it is accepted again with the same event and the same quarantine."""
    if command.actor_id != body.user_id:
        return refuse("forbidden", "only the account's owner erases it")
    name = fold_username(body.username)
    claim = claim_of(store, name)
    if claim is None or claim.user_id != str(body.user_id):
        return refuse("not_found", "no such account")
    free_after = claim.free_after or now + quarantine
    store.set_owner(name, Claim(claim.user_id, free_after).encode())
    decision = accept(command, UserErased(user_id=body.user_id, free_after=free_after), now)
    decision.shredded.append(profile_key_id(body.user_id))
    decision.credentials.append(credential_tombstone(body.user_id))
    return decision


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


def change_password(store: UserStore, command: Command, body: ChangePassword, now: datetime) -> Decision:
    """A new credential for a user who exists, asked by that user.

    A rehash (the same password hashed again with today's argon2 parameters, at a login) writes
    the credential and no event: nothing the user did changed, no reader of `user.events` has
    anything to do with it (sessions do not end, the read models' users do not change), and an
    event per parameter upgrade would keep, forever, only the fact that someone logged in. A real
    change is a `user.password_changed` (no hash in it): the account's history shows it."""
    if command.actor_id != body.user_id:
        return refuse("forbidden", "forbidden")
    claim = claim_of(store, fold_username(body.username))
    if claim is None or claim.user_id != str(body.user_id) or claim.free_after is not None:
        return refuse("not_found", "no such user")
    decision = Decision(ok=True) if body.rehash else accept(command, PasswordChanged(user_id=body.user_id), now)
    decision.credentials.append(new_credential(body.user_id, body.password_hash, now))
    return decision


def new_credential(user_id: uuid.UUID, password_hash: str, at: datetime) -> CredentialRecord:
    return credential_record(Credential(user_id=user_id, password_hash=password_hash, changed_at=at))


def accept(
    command: Command, payload: UserRegistered | ProfileUpdated | UserErased | PasswordChanged, now: datetime
) -> Decision:
    """The one event of a user command, its id derived from the command's."""
    event = new_event(
        payload,
        aggregate_id=payload.user_id,
        event_id=event_id_for(command.command_id, 0),
        actor_id=command.actor_id,
        correlation_id=command.correlation_id,
        occurred_at=now,
    )
    return Decision(ok=True, events=[event])
