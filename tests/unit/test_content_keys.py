"""`content.keys`, the key store of crypto-shredding (docs/erasure.md): its records, its
tombstones and the compaction that makes the broker forget a shredded key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from config.kafka import replication_for
from config.settings import CONTENT_KEYS_COMPACTION_DEFAULT_MS, CommonSettings
from runtime.sealing import new_key
from schemas import topics
from schemas.content_keys import MalformedKeyRecord, decode_key_record, key_record, tombstone
from schemas.sealed import message_key_id, profile_key_id
from streams.topics import new_topic

KEY_ID = message_key_id(uuid.uuid4(), uuid.uuid4())
OWNER = uuid.uuid4()
AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_a_key_record_gives_back_its_key() -> None:
    key = new_key()
    record_key, value = key_record(KEY_ID, key, OWNER, AT)
    assert record_key == KEY_ID.encode()
    key_id, content_key = decode_key_record(record_key, value)
    assert key_id == KEY_ID and content_key is not None
    assert (content_key.key_bytes, content_key.owner_id, content_key.created_at) == (key, OWNER, AT)


def test_a_tombstone_is_a_null_value_that_reads_as_shredded() -> None:
    record_key, value = tombstone(KEY_ID)
    assert (record_key, value) == (KEY_ID.encode(), None)
    assert decode_key_record(record_key, value) == (KEY_ID, None)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (None, b"{}"),
        (b"", None),
        (b"\xff\xfe", None),
        (b"message:not-a-uuid", None),
        (KEY_ID.encode(), b"not json"),
        (KEY_ID.encode(), b'{"key_id": "x"}'),
        (KEY_ID.encode(), key_record(profile_key_id(OWNER), new_key(), OWNER, AT)[1]),
        (KEY_ID.encode(), key_record(KEY_ID, new_key(), OWNER, AT)[1].replace(b'"owner_id"', b'"owner"')),
    ],
)
def test_a_record_that_is_neither_key_nor_tombstone_is_malformed(key: bytes | None, value: bytes | None) -> None:
    with pytest.raises(MalformedKeyRecord):
        decode_key_record(key, value)


def test_a_key_of_the_wrong_length_is_refused_both_ways() -> None:
    with pytest.raises(ValidationError):
        key_record(KEY_ID, b"short", OWNER, AT)
    good_key, good = key_record(KEY_ID, new_key(), OWNER, AT)
    short = good.replace(good.split(b'"key":"')[1].split(b'"')[0], b"c2hvcnQ")
    with pytest.raises(MalformedKeyRecord):
        decode_key_record(good_key, short)


def test_no_tombstone_for_what_is_no_key_id() -> None:
    with pytest.raises(ValueError, match="not a key id"):
        tombstone("message.1")


def test_content_keys_is_compacted_and_forgets_within_its_setting() -> None:
    settings = CommonSettings(topic_prefix="p.", topic_partitions=4, content_keys_compaction_ms=2000)
    configs = new_topic(settings, topics.CONTENT_KEYS, replication_for(3)).topic_configs
    assert configs["cleanup.policy"] == "compact"
    assert configs["segment.ms"] == configs["max.compaction.lag.ms"] == "2000"
    assert float(configs["min.cleanable.dirty.ratio"]) <= 0.01
    assert configs["delete.retention.ms"] == str(topics.HOUR_MS)
    assert "retention.ms" not in configs
    assert configs["min.insync.replicas"] == "2", "a lost key is a lost text: it must survive a broker"


def test_the_default_compaction_bound_is_a_quarter_hour_and_other_topics_still_expire() -> None:
    settings = CommonSettings()
    assert settings.content_keys_compaction_ms == CONTENT_KEYS_COMPACTION_DEFAULT_MS == 15 * 60 * 1000
    assert new_topic(settings, topics.CONTENT_KEYS, replication_for(1)).topic_configs["segment.ms"] == "900000"
    compacted = {topics.CONTENT_KEYS, topics.USER_CREDENTIALS}
    for spec in topics.ALL:
        if spec in compacted:
            assert spec.compacted, spec.name
            assert new_topic(settings, spec, replication_for(1)).topic_configs["segment.ms"] == "900000"
        else:
            assert not spec.compacted, spec.name
            assert new_topic(settings, spec, replication_for(1)).topic_configs["cleanup.policy"] == "delete"
