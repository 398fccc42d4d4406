"""The sealed form of personal content (docs/erasure.md): a ciphertext opens only with its key, in
its place; every other case is a named reason, never text."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.sealing import Unopened, new_key, open_sealed, seal
from schemas.sealed import (
    NONCE_BYTES,
    MalformedSealed,
    SealedToken,
    message_key_id,
    parse,
    profile_key_id,
)

MESSAGE = uuid.UUID("11111111-1111-4111-8111-111111111111")
OTHER_MESSAGE = uuid.UUID("22222222-2222-4222-8222-222222222222")
COMMAND = uuid.UUID("33333333-3333-4333-8333-333333333333")
KEY_ID = message_key_id(MESSAGE, COMMAND)
KEY = new_key()


def sealed(text: str = "meet me at noon", key: bytes = KEY, key_id: str = KEY_ID) -> str:
    return seal(key, key_id, "message", MESSAGE, text)


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_a_sealed_text_opens_with_its_key_in_its_place() -> None:
    token = sealed("héllo 👋 " * 400)
    assert open_sealed(token, "message", MESSAGE, {KEY_ID: KEY}) == "héllo 👋 " * 400


def test_the_token_is_ascii_names_its_key_and_holds_no_plain_text() -> None:
    token = sealed("meet me at noon")
    assert token.isascii() and token.startswith(f"sealed.v1.{KEY_ID}.")
    assert "meet" not in token and "noon" not in token
    parsed = parse(token)
    assert parsed.key_id == KEY_ID and len(parsed.nonce) == NONCE_BYTES


def test_every_sealing_takes_a_fresh_nonce() -> None:
    assert sealed() != sealed()
    assert parse(sealed()).nonce != parse(sealed()).nonce


def test_new_keys_are_32_random_bytes() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100 and {len(k) for k in keys} == {32}


def test_a_missing_key_and_a_shredded_key_are_told_apart() -> None:
    missing = open_sealed(sealed(), "message", MESSAGE, {})
    shredded = open_sealed(sealed(), "message", MESSAGE, {KEY_ID: None})
    assert missing == Unopened(KEY_ID, "key_missing") and not missing.erased
    assert shredded == Unopened(KEY_ID, "shredded") and shredded.erased


def test_a_ciphertext_moved_to_another_message_or_field_does_not_open() -> None:
    token = sealed()
    assert open_sealed(token, "message", OTHER_MESSAGE, {KEY_ID: KEY}) == Unopened(KEY_ID, "not_authentic")
    assert open_sealed(token, "profile.bio", MESSAGE, {KEY_ID: KEY}) == Unopened(KEY_ID, "not_authentic")


def test_a_ciphertext_moved_to_another_version_does_not_open() -> None:
    """The key id is bound too: naming another version's key id (holding the same key) fails."""
    other_version = message_key_id(MESSAGE, uuid.uuid4())
    moved = parse(sealed())._replace(key_id=other_version).encode()
    assert open_sealed(moved, "message", MESSAGE, {other_version: KEY}) == Unopened(other_version, "not_authentic")


def test_a_wrong_or_corrupt_key_is_reported_never_read() -> None:
    token = sealed()
    assert open_sealed(token, "message", MESSAGE, {KEY_ID: new_key()}) == Unopened(KEY_ID, "not_authentic")
    assert open_sealed(token, "message", MESSAGE, {KEY_ID: flip(KEY, 5)}) == Unopened(KEY_ID, "not_authentic")
    assert open_sealed(token, "message", MESSAGE, {KEY_ID: KEY[:16]}) == Unopened(KEY_ID, "corrupt_key")


@given(st.text(max_size=200), st.data())
def test_any_text_round_trips_and_any_flipped_bit_fails(text: str, data: st.DataObject) -> None:
    token = seal(KEY, KEY_ID, "message", MESSAGE, text)
    assert open_sealed(token, "message", MESSAGE, {KEY_ID: KEY}) == text
    parts = parse(token)
    index = data.draw(st.integers(0, len(parts.nonce) + len(parts.ciphertext) - 1))
    if index < len(parts.nonce):
        corrupt = parts._replace(nonce=flip(parts.nonce, index))
    else:
        corrupt = parts._replace(ciphertext=flip(parts.ciphertext, index - len(parts.nonce)))
    assert open_sealed(corrupt.encode(), "message", MESSAGE, {KEY_ID: KEY}) == Unopened(KEY_ID, "not_authentic")


@pytest.mark.parametrize(
    "token",
    [
        "meet me at noon",
        "",
        "sealed.v2.message:x.AAAA.AAAA",
        f"sealed.v1.{KEY_ID}.AAAA",
        f"sealed.v1.not-a-key-id.{'A' * 16}.{'A' * 24}",
        f"sealed.v1.{KEY_ID}.{'A' * 15}.{'A' * 24}",
        f"sealed.v1.{KEY_ID}.{'A' * 16}.{'A' * 20}",
        f"sealed.v1.{KEY_ID}.{'A' * 16}.{'A' * 23}=",
        f"sealed.v1.{KEY_ID}.{'A' * 16}.{'A' * 23}+",
    ],
)
def test_what_is_no_token_is_malformed(token: str) -> None:
    with pytest.raises(MalformedSealed):
        parse(token)
    assert open_sealed(token, "message", MESSAGE, {KEY_ID: KEY}) == Unopened("", "malformed")


def test_key_ids_have_no_dot_and_name_their_subject() -> None:
    user = uuid.uuid4()
    assert profile_key_id(user) == f"profile:{user}"
    assert "." not in KEY_ID and "." not in profile_key_id(user)
    assert SealedToken(profile_key_id(user), b"n" * 12, b"c" * 16).encode().count(".") == 4
