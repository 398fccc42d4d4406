from __future__ import annotations

from schemas import topics


def test_contract_topic_names_are_kept() -> None:
    names = {t.name for t in topics.ALL}
    assert {"message.send", "message.delivered", "user.events", "chat.events", "message.events"} <= names


def test_event_topics_are_kept_forever() -> None:
    for spec in topics.EVENT_TOPICS:
        assert spec.retention_ms == topics.FOREVER, spec.name


def test_chat_keyed_topics_can_be_copartitioned() -> None:
    chat_keyed = [t for t in topics.ALL if t.key == "chat_id"]
    assert {t.name for t in chat_keyed} == {"chat.commands", "message.send", "chat.events", "message.events"}
    assert all(t.partitioned for t in chat_keyed)
