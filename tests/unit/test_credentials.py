"""Credentials out of the log: the records of `user.credentials`, the user agent's rules that write
them (never a hash in an event), and the credentials projection's parameters (docs/erasure.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from projections.apply import Skipped, to_params
from projections.credentials import CREDENTIALS
from projections.model import Record
from schemas import codec
from schemas.commands import ChangePassword, Register
from schemas.credentials import (
    Credential,
    MalformedCredentialRecord,
    credential_record,
    decode_credential_record,
    tombstone,
)
from schemas.events import PasswordChanged, UserRegistered, decode_event, encode_event, new_event
from tests.unit.test_user_rules import Names, run

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
NEW_HASH = "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0c2FsdA$bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3"
AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_a_credential_record_is_keyed_by_its_user_and_reads_back() -> None:
    user = uuid.uuid4()
    key, value = credential_record(Credential(user_id=user, password_hash=HASH, changed_at=AT))
    assert key == str(user).encode() and value is not None
    assert decode_credential_record(key, value) == (user, Credential(user_id=user, password_hash=HASH, changed_at=AT))
    assert tombstone(user) == (str(user).encode(), None)
    assert decode_credential_record(*tombstone(user)) == (user, None)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (None, None),
        (b"", None),
        (b"not a uuid", None),
        (b"\xff", None),
        (str(uuid.uuid4()).encode(), b"not json"),
        (str(uuid.uuid4()).encode(), b'{"user_id": "x"}'),
    ],
)
def test_a_record_that_is_no_credential_is_malformed(key: bytes | None, value: bytes | None) -> None:
    with pytest.raises(MalformedCredentialRecord):
        decode_credential_record(key, value)


def test_a_record_under_another_users_key_is_malformed() -> None:
    _, value = credential_record(Credential(user_id=uuid.uuid4(), password_hash=HASH, changed_at=AT))
    with pytest.raises(MalformedCredentialRecord, match="holds the credential of"):
        decode_credential_record(str(uuid.uuid4()).encode(), value)


def test_a_registration_writes_its_hash_to_the_credentials_and_none_to_its_event() -> None:
    names, alice = Names(), uuid.uuid4()
    decision = run(names, Register(user_id=alice, username="alice", display_name="Alice", password_hash=HASH))
    [event] = decision.events
    assert isinstance(event.payload, UserRegistered) and event.payload.password_hash is None
    assert b"argon2" not in encode_event(event)
    [(key, value)] = decision.credentials
    assert decode_credential_record(key, value) == (
        alice,
        Credential(user_id=alice, password_hash=HASH, changed_at=event.occurred_at),
    )
    taken = run(names, Register(user_id=uuid.uuid4(), username="ALICE", display_name="A", password_hash=HASH))
    assert not taken.ok and taken.credentials == []


def test_an_old_registration_with_its_hash_is_still_read() -> None:
    alice = uuid.uuid4()
    old = new_event(
        UserRegistered(user_id=alice, username="alice", display_name="Alice", password_hash=HASH),
        aggregate_id=alice,
        event_id=uuid.uuid4(),
        actor_id=None,
        correlation_id=None,
    )
    payload = decode_event(encode_event(old)).payload
    assert isinstance(payload, UserRegistered) and payload.password_hash == HASH


def registered(names: Names, name: str = "alice") -> uuid.UUID:
    user = uuid.uuid4()
    assert run(names, Register(user_id=user, username=name, display_name=name, password_hash=HASH)).ok
    return user


def test_a_password_change_writes_a_credential_and_an_event_without_the_hash() -> None:
    names = Names()
    alice = registered(names)
    decision = run(names, ChangePassword(user_id=alice, username="alice", password_hash=NEW_HASH), actor=alice)
    assert decision.ok
    [event] = decision.events
    assert event.type == "user.password_changed" and event.payload == PasswordChanged(user_id=alice)
    assert b"argon2" not in encode_event(event)
    [(key, value)] = decision.credentials
    credential = decode_credential_record(key, value)[1]
    assert credential is not None and credential.password_hash == NEW_HASH


def test_a_rehash_writes_the_credential_and_no_event() -> None:
    names = Names()
    alice = registered(names)
    body = ChangePassword(user_id=alice, username="alice", password_hash=NEW_HASH, rehash=True)
    decision = run(names, body, actor=alice)
    assert decision.ok and decision.events == []
    [(_, value)] = decision.credentials
    assert value is not None and NEW_HASH.encode() in value


def test_a_password_change_of_someone_else_or_of_nobody_is_refused() -> None:
    names = Names()
    alice, bob = registered(names, "alice"), registered(names, "bob")
    change = ChangePassword(user_id=alice, username="alice", password_hash=NEW_HASH)
    by_bob = run(names, change, actor=bob)
    assert (by_bob.ok, by_bob.code, by_bob.credentials) == (False, "forbidden", [])
    ghost = uuid.uuid4()
    nobody = run(names, ChangePassword(user_id=ghost, username="ghost", password_hash=NEW_HASH), actor=ghost)
    assert (nobody.ok, nobody.code, nobody.credentials) == (False, "not_found", [])
    wrong_name = run(names, ChangePassword(user_id=alice, username="bob", password_hash=NEW_HASH), actor=alice)
    assert (wrong_name.ok, wrong_name.code, wrong_name.credentials) == (False, "not_found", [])


def test_a_change_command_carries_an_argon2_hash_only() -> None:
    with pytest.raises(ValueError, match="argon2"):
        ChangePassword(user_id=uuid.uuid4(), username="alice", password_hash="plain text")


def test_the_credentials_projection_upserts_a_hash_and_deletes_at_a_tombstone() -> None:
    user = uuid.uuid4()
    key, value = credential_record(Credential(user_id=user, password_hash=HASH, changed_at=AT))
    assert to_params(CREDENTIALS, Record(0, 1, value, key)) == (user, HASH, AT)
    assert to_params(CREDENTIALS, Record(0, 2, None, key)) == (user, None, None)
    bad = to_params(CREDENTIALS, Record(0, 3, codec.dumps({"user_id": str(user)}), key))
    assert isinstance(bad, Skipped) and bad.reason == "malformed"
    keyless = to_params(CREDENTIALS, Record(0, 4, value, None))
    assert isinstance(keyless, Skipped) and keyless.reason == "malformed"
