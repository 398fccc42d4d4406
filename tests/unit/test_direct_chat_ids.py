"""Direct-chat ids are keyed (issue 10, row 12): one id per pair, from either side, that nobody
without the deployment's CHAT_ID_KEY can compute."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from config.settings import GatewaySettings, StreamsSettings
from schemas.models import direct_chat_id

KEY = b"0123456789abcdefghijABCDEFGHIJ-_xyz"
A, B, C = (uuid.uuid4() for _ in range(3))
UNKEYED_NAMESPACE = uuid.UUID("0b6a1d2e-8f3c-4b7e-9d41-2c5e7a9f1b03")
"""The namespace of the old ids (uuid5 of the sorted pair), which anyone could compute."""
SERVICES = {
    "database_url": "postgresql://u:p@127.0.0.1:5432/db",
    "redis_url": "redis://:p@127.0.0.1:6379/0",
    "kafka_password": "a-kafka-password-0123456789",
    "_env_file": None,
}
"""Every other required setting, and no `.env`: these tests read nothing of the machine's."""


def test_one_id_per_pair_from_either_side() -> None:
    assert direct_chat_id(KEY, A, B) == direct_chat_id(KEY, B, A)
    assert len({direct_chat_id(KEY, A, B), direct_chat_id(KEY, A, C), direct_chat_id(KEY, B, C)}) == 3


def test_the_id_is_a_version_8_uuid_of_the_rfc_variant() -> None:
    chat_id = direct_chat_id(KEY, A, B)
    assert chat_id.version == 8 and chat_id.variant == uuid.RFC_4122


def test_the_id_cannot_be_computed_from_the_pair_alone() -> None:
    first, second = sorted((str(A), str(B)))
    assert direct_chat_id(KEY, A, B) != uuid.uuid5(UNKEYED_NAMESPACE, f"{first}|{second}")
    assert direct_chat_id(KEY, A, B) != direct_chat_id(KEY + b"!", A, B)


def test_no_key_no_id() -> None:
    with pytest.raises(ValueError, match="CHAT_ID_KEY"):
        direct_chat_id(b"", A, B)


@pytest.mark.parametrize("settings_class", [GatewaySettings, StreamsSettings])
@pytest.mark.parametrize("key", ["", "short", "change-me-change-me-change-me-change-me", "ab" * 20])
def test_the_key_is_required_and_strong(settings_class: type[GatewaySettings | StreamsSettings], key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings_class(**SERVICES, jwt_secret=KEY.decode() + "jwt", chat_id_key=key)  # type: ignore[arg-type]
    assert [error["loc"] for error in caught.value.errors()] == [("chat_id_key",)]


@pytest.mark.parametrize("settings_class", [GatewaySettings, StreamsSettings])
def test_a_strong_key_is_taken(settings_class: type[GatewaySettings | StreamsSettings]) -> None:
    settings = settings_class(**SERVICES, jwt_secret=KEY.decode() + "jwt", chat_id_key=KEY.decode())  # type: ignore[arg-type]
    assert settings.chat_id_key == KEY.decode()
