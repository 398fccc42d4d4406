"""Sealed profile fields (issue 15, docs/erasure.md), without services: the commands and events
carry each field plain or sealed (never both), the user agent keeps the token and shreds the key
of a refused registration only, the users projection opens what is sealed, and the gateway's
rule for a profile change's key (`profile_key_choice`) and the use case that follows it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from pydantic import ValidationError

from config.settings import GatewaySettings
from gateway.infra import read_store
from gateway.infra.content_keys import ProfileKeyChoice, profile_key_choice, seal_profile
from gateway.usecases.accounts import profile_change
from gateway.usecases.ports import Ports
from gateway.usecases.refusal import Refused
from projections.decoding import fast_params
from projections.sealed_texts import SealedParam
from projections.users import BIO_PARAM, DISPLAY_NAME_PARAM, USERS, params
from runtime.sealing import Unopened, new_key, open_sealed
from schemas.commands import Command, Register, UpdateProfile, UserResult
from schemas.events import ProfileUpdated, UserRegistered, decode_event, encode_event, new_event
from schemas.sealed import SEALED_FIELD_MAX, profile_key_id
from streams.user_rules import decide
from tests.unit.test_gateway_usecases import FakeBudget, FakeBus, FakeWatermarks
from tests.unit.test_user_rules import Names

USER = uuid.uuid4()
KEY = new_key()
KEY_ID = profile_key_id(USER)
NAME = seal_profile(KEY, USER, "display_name", "Alice")
BIO = seal_profile(KEY, USER, "bio", "likes tea")


def command(body: Register | UpdateProfile, actor: uuid.UUID | None = None) -> Command:
    return Command(
        command_id=uuid.uuid4(),
        correlation_id="c",
        actor_id=actor,
        reply_to=None,
        issued_at=datetime.now(UTC),
        body=body,
    )


def event_of(payload: UserRegistered | ProfileUpdated) -> Any:
    return new_event(payload, aggregate_id=USER, event_id=uuid.uuid4(), actor_id=None, correlation_id=None)


# --- the formats ---------------------------------------------------------------------------------


def test_a_registration_carries_exactly_one_display_name() -> None:
    assert Register(user_id=USER, username="alice", sealed_display_name=NAME, password_hash="h").display_name is None
    assert Register(user_id=USER, username="alice", display_name="Alice", password_hash="h").sealed_display_name is None
    with pytest.raises(ValidationError, match="display_name or sealed_display_name"):
        Register(user_id=USER, username="alice", password_hash="h")
    with pytest.raises(ValidationError, match="exclude each other"):
        Register(user_id=USER, username="alice", display_name="Alice", sealed_display_name=NAME, password_hash="h")
    with pytest.raises(ValidationError, match="display_name or sealed_display_name"):
        UserRegistered(user_id=USER, username="alice", password_hash="h")
    with pytest.raises(ValidationError, match="exclude each other"):
        UserRegistered(user_id=USER, username="alice", display_name="A", sealed_display_name=NAME, password_hash="h")


def test_a_profile_field_is_plain_or_sealed_never_both() -> None:
    for model in (UpdateProfile, ProfileUpdated):
        model(user_id=USER, display_name="A", sealed_bio=BIO)
        model(user_id=USER, sealed_display_name=NAME, bio="b")
        with pytest.raises(ValidationError, match="display_name and sealed_display_name exclude each other"):
            model(user_id=USER, display_name="A", sealed_display_name=NAME)
        with pytest.raises(ValidationError, match="bio and sealed_bio exclude each other"):
            model(user_id=USER, bio="b", sealed_bio=BIO)


def test_the_longest_bio_sealed_fits_its_field() -> None:
    longest = seal_profile(KEY, USER, "bio", "\U0001f600" * 500)
    assert len(longest) <= SEALED_FIELD_MAX
    UpdateProfile(user_id=USER, sealed_bio=longest)
    with pytest.raises(ValidationError):
        UpdateProfile(user_id=USER, sealed_bio="s" * (SEALED_FIELD_MAX + 1))


def test_an_event_of_before_sealing_is_read_as_it_was_written() -> None:
    plain = event_of(UserRegistered(user_id=USER, username="alice", display_name="Alice", password_hash="h"))
    old = encode_event(plain).replace(b',"sealed_display_name":null', b"")
    assert b"sealed" not in old
    assert decode_event(old).payload == plain.payload
    sealed = event_of(UserRegistered(user_id=USER, username="alice", sealed_display_name=NAME, password_hash="h"))
    assert decode_event(encode_event(sealed)).payload == sealed.payload


def test_a_field_opens_only_as_itself_of_its_own_user() -> None:
    """Bound to the field and the user: a display name moved into the bio, or to another user, does not open."""
    assert open_sealed(NAME, "profile.display_name", USER, {KEY_ID: KEY}) == "Alice"
    assert open_sealed(BIO, "profile.bio", USER, {KEY_ID: KEY}) == "likes tea"
    assert isinstance(open_sealed(NAME, "profile.bio", USER, {KEY_ID: KEY}), Unopened)
    assert isinstance(open_sealed(NAME, "profile.display_name", uuid.uuid4(), {KEY_ID: KEY}), Unopened)


# --- the user agent ------------------------------------------------------------------------------


def test_a_sealed_registration_keeps_its_token_in_the_event_and_the_reply() -> None:
    decision = decide(
        Names(), command(Register(user_id=USER, username="alice", sealed_display_name=NAME, password_hash="h"))
    )
    [event] = decision.events
    assert isinstance(event.payload, UserRegistered)
    assert (event.payload.display_name, event.payload.sealed_display_name) == (None, NAME)
    assert isinstance(decision.result, UserResult) and decision.result.user.display_name == NAME
    assert decision.shredded == []


def test_a_refused_registration_shreds_the_key_it_brought_and_only_that() -> None:
    names = Names()
    decide(names, command(Register(user_id=USER, username="alice", sealed_display_name=NAME, password_hash="h")))
    other = uuid.uuid4()
    token = seal_profile(new_key(), other, "display_name", "Mallory")
    refused = decide(
        names, command(Register(user_id=other, username="ALICE", sealed_display_name=token, password_hash="h"))
    )
    assert (refused.ok, refused.code, refused.shredded) == (False, "username_taken", [profile_key_id(other)])
    plain = decide(names, command(Register(user_id=other, username="alice", display_name="M", password_hash="h")))
    assert (plain.ok, plain.shredded) == (False, [])
    again = decide(
        names, command(Register(user_id=USER, username="alice", sealed_display_name=NAME, password_hash="h"))
    )
    assert (again.ok, again.shredded) == (True, []), "the same registration decided again keeps its key"


def test_a_profile_change_carries_its_sealed_fields_and_shreds_nothing() -> None:
    body = UpdateProfile(user_id=USER, sealed_display_name=NAME, sealed_bio=BIO)
    decision = decide(Names(), command(body, actor=USER))
    [event] = decision.events
    assert event.payload == ProfileUpdated(user_id=USER, sealed_display_name=NAME, sealed_bio=BIO)
    assert decision.shredded == []
    forbidden = decide(Names(), command(body, actor=uuid.uuid4()))
    assert (forbidden.code, forbidden.shredded) == ("forbidden", [])


# --- the users projection ------------------------------------------------------------------------


def test_the_users_projection_opens_sealed_fields_only() -> None:
    registered = params(
        event_of(UserRegistered(user_id=USER, username="alice", sealed_display_name=NAME, password_hash="h"))
    )
    name = registered[DISPLAY_NAME_PARAM]
    assert isinstance(name, SealedParam) and name == NAME
    assert (name.purpose, name.subject_id) == ("profile.display_name", USER)
    changed = params(event_of(ProfileUpdated(user_id=USER, display_name="plain", sealed_bio=BIO)))
    bio = changed[BIO_PARAM]
    assert type(changed[DISPLAY_NAME_PARAM]) is str and isinstance(bio, SealedParam)
    assert (bio.purpose, bio.subject_id) == ("profile.bio", USER)
    assert params(event_of(ProfileUpdated(user_id=USER, sealed_bio=BIO)))[DISPLAY_NAME_PARAM] is None
    assert USERS.sealed_params == (DISPLAY_NAME_PARAM, BIO_PARAM)


def test_the_rebuilds_fast_path_gives_the_same_sealed_parameters() -> None:
    event = event_of(ProfileUpdated(user_id=USER, sealed_display_name=NAME, sealed_bio=BIO))
    fast = fast_params(USERS, encode_event(event))
    assert fast is not None and fast == params(event)
    assert all(isinstance(fast[p], SealedParam) for p in USERS.sealed_params)


# --- the gateway's rule for a profile change's key ------------------------------------------------

OTHER_KEY = new_key()


@pytest.mark.parametrize(
    ("tail", "mirror", "complete", "choice"),
    [
        ({KEY_ID: KEY}, {}, False, KEY),
        ({}, {KEY_ID: KEY}, False, KEY),
        ({KEY_ID: KEY}, {KEY_ID: KEY}, True, KEY),
        ({KEY_ID: None}, {KEY_ID: KEY}, True, "erased"),
        ({KEY_ID: KEY}, {KEY_ID: None}, True, "erased"),
        ({}, {KEY_ID: None}, True, "erased"),
        ({}, {}, True, "plain"),
        ({}, {}, False, "not_known_yet"),
        ({profile_key_id(uuid.uuid4()): OTHER_KEY}, {}, True, "plain"),
    ],
)
def test_a_profile_change_seals_with_the_accounts_one_key_or_goes_plain_only_when_it_surely_has_none(
    tail: dict[str, bytes | None], mirror: dict[str, bytes | None], complete: bool, choice: ProfileKeyChoice
) -> None:
    assert profile_key_choice(KEY_ID, tail, mirror, complete) == choice


@dataclass
class FakeTexts:
    """The `Texts` port with a fixed answer for the account's key (the real one, on Kafka and
    PostgreSQL, is `tests/integration/test_profile_keys.py`)."""

    choice: ProfileKeyChoice
    asked: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)

    async def profile_key(self, db: read_store.Pool, user_id: uuid.UUID, registered_at: datetime) -> ProfileKeyChoice:
        self.asked.append((user_id, registered_at))
        return self.choice


@dataclass
class UserRow:
    """A pool whose `users` row is the account's."""

    created_at: datetime = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        return {"id": USER, "username": "alice", "display_name": "Alice", "bio": "", "created_at": self.created_at}


def ports_with(texts: FakeTexts | None) -> Ports:
    return Ports(
        bus=FakeBus(),
        watermarks=FakeWatermarks(),
        pool=cast(read_store.Pool, UserRow()),
        budget=FakeBudget(),
        settings=cast(GatewaySettings, None),
        texts=cast(Any, texts),
    )


async def test_a_profile_change_is_sealed_with_the_key_the_rule_gives() -> None:
    texts = FakeTexts(KEY)
    change = await profile_change(ports_with(texts), USER, "Bob", "tea")
    assert (change.display_name, change.bio) == (None, None)
    assert change.sealed_display_name is not None and change.sealed_bio is not None
    assert open_sealed(change.sealed_display_name, "profile.display_name", USER, {KEY_ID: KEY}) == "Bob"
    assert open_sealed(change.sealed_bio, "profile.bio", USER, {KEY_ID: KEY}) == "tea"
    assert texts.asked == [(USER, UserRow().created_at)]
    only_bio = await profile_change(ports_with(texts), USER, None, "")
    assert only_bio.sealed_display_name is None and only_bio.sealed_bio is not None


async def test_a_profile_change_goes_plain_or_is_refused_as_the_rule_says() -> None:
    assert await profile_change(ports_with(FakeTexts("plain")), USER, "Bob", None) == UpdateProfile(
        user_id=USER, display_name="Bob"
    )
    assert await profile_change(ports_with(None), USER, "Bob", "b") == UpdateProfile(
        user_id=USER, display_name="Bob", bio="b"
    )
    nothing = FakeTexts(KEY)
    assert await profile_change(ports_with(nothing), USER, None, None) == UpdateProfile(user_id=USER)
    assert nothing.asked == [], "a change of nothing needs no key"
    with pytest.raises(Refused) as erased:
        await profile_change(ports_with(FakeTexts("erased")), USER, "Bob", None)
    assert erased.value.code == "not_found"
    with pytest.raises(Refused) as unknown:
        await profile_change(ports_with(FakeTexts("not_known_yet")), USER, "Bob", None)
    assert unknown.value.code == "unavailable"
