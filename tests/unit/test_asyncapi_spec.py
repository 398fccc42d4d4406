"""docs/asyncapi.yaml agrees with the code: the Kafka topics of `schemas/topics.py`, the event
envelope and every event type of `schemas/events.py`, the commands, replies and deliveries of
`schemas/commands.py`, and the WebSocket frames of contract v1 and `schemas/frames.py`."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from schemas import commands, events, frames, topics
from schemas.models import Chat, Member, Message
from tests.unit.test_openapi_spec import deref, schema_differences

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_YAML = ROOT / "docs" / "asyncapi.yaml"

CONTRACT_CLIENT_FRAMES = {"message.send", "message.edit", "message.delete", "read", "typing", "sync", "ping"}
CONTRACT_SERVER_FRAMES = {
    "message.ack",
    "message.new",
    "message.edited",
    "message.deleted",
    "read",
    "typing",
    "presence",
    "chat.updated",
    "sync.done",
    "pong",
    "error",
    "chat.member_added",
    "chat.member_removed",  # v1.1
}
EVENT_CHANNELS = {
    topics.USER_EVENTS.name: "user.",
    topics.CHAT_EVENTS.name: "chat.",
    topics.MESSAGE_EVENTS.name: "message.",
}
"""Each event topic and the prefix of the types it carries (how `streams/` routes them)."""

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def doc() -> Doc:
    loaded = yaml.safe_load(ASYNCAPI_YAML.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def channels_by_address(doc: Doc) -> dict[str, Doc]:
    return {channel["address"]: channel for channel in doc["channels"].values()}


def messages_of(doc: Doc, channel: Mapping[str, Any]) -> list[Doc]:
    return [dict(deref(message, doc)) for message in channel.get("messages", {}).values()]


def operation_messages(doc: Doc, operation_id: str) -> list[Doc]:
    return [dict(deref(message, doc)) for message in doc["operations"][operation_id].get("messages", [])]


def frame_type(doc: Doc, message: Mapping[str, Any]) -> str:
    payload = deref(message["payload"], doc)
    return str(payload["properties"]["type"]["const"])


def all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_refs(item)


def component_model_differences(doc: Doc, pairs: Mapping[str, type[BaseModel]]) -> list[str]:
    problems: list[str] = []
    for name, model in pairs.items():
        schema = doc["components"]["schemas"].get(name)
        if schema is None:
            problems.append(f"components.schemas.{name} (for {model.__module__}.{model.__name__}) is missing")
        else:
            problems += schema_differences(model, schema, doc, name)
    return problems


# --- the document as a whole ----------------------------------------------------------------------


def test_it_is_asyncapi_3_and_every_reference_resolves(doc: Doc) -> None:
    assert doc["asyncapi"].startswith("3.")
    broken = []
    for ref in set(all_refs(doc)):
        try:
            deref({"$ref": ref}, doc)
        except (KeyError, TypeError):
            broken.append(ref)
    assert not broken, f"references to nothing: {sorted(broken)}"


def test_every_operation_sends_messages_of_its_own_channel(doc: Doc) -> None:
    for name, operation in doc["operations"].items():
        assert operation["action"] in {"send", "receive"}, name
        channel_ref = operation["channel"]["$ref"]
        for message in operation.get("messages", []):
            assert message["$ref"].startswith(channel_ref + "/messages/"), f"{name}: {message['$ref']}"


# --- Kafka ----------------------------------------------------------------------------------------


def test_every_topic_is_a_channel_with_its_retention(doc: Doc) -> None:
    by_address = channels_by_address(doc)
    catalogue = [*topics.ALL, topics.GATEWAY_REPLIES]
    for spec in catalogue:
        address = spec.name if spec.partitioned else f"{spec.name}.{{instance_id}}"
        assert address in by_address, f"topic {spec.name} of schemas/topics.py has no channel in docs/asyncapi.yaml"
        kafka = by_address[address]["bindings"]["kafka"]
        assert kafka["topicConfiguration"]["retention.ms"] == spec.retention_ms, spec.name
        for message in messages_of(doc, by_address[address]):
            assert "key" in message["bindings"]["kafka"], f"{spec.name}: {message['name']} does not say its key"


def test_every_event_type_is_a_message_of_its_topic_at_its_version(doc: Doc) -> None:
    by_address = channels_by_address(doc)
    documented: dict[str, tuple[str, Doc]] = {}
    for address, prefix in EVENT_CHANNELS.items():
        for message in messages_of(doc, by_address[address]):
            assert message["name"].startswith(prefix), f"{message['name']} does not belong on {address}"
            documented[message["name"]] = (address, message)
    assert set(documented) == set(events.EVENT_TYPES), (
        f"event types missing from docs/asyncapi.yaml: {sorted(set(events.EVENT_TYPES) - set(documented))}; "
        f"documented but unknown to schemas/events.py: {sorted(set(documented) - set(events.EVENT_TYPES))}"
    )
    for name, (version, _) in events.EVENT_TYPES.items():
        specific = documented[name][1]["payload"]["allOf"][1]["properties"]
        assert specific["type"]["const"] == name and specific["version"]["const"] == version, name


def test_event_payloads_and_the_envelope_match_schemas_events(doc: Doc) -> None:
    pairs: dict[str, type[BaseModel]] = {model.__name__: model for _, model in events.EVENT_TYPES.values()}
    problems = component_model_differences(doc, pairs)
    # The code reads any string `type` (and refuses unknown ones as a BadRecord); the doc lists them.
    envelope = copy.deepcopy(doc["components"]["schemas"]["Envelope"])
    envelope_types = envelope["properties"]["type"].pop("enum")
    problems += schema_differences(events.Envelope, envelope, doc, "Envelope")
    if set(envelope_types) != set(events.EVENT_TYPES):
        problems.append(f"Envelope.type enum {sorted(envelope_types)} != {sorted(events.EVENT_TYPES)}")
    assert not problems, "docs/asyncapi.yaml disagrees with schemas/events.py:\n  " + "\n  ".join(problems)


def test_commands_replies_and_deliveries_match_schemas_commands(doc: Doc) -> None:
    bodies = get_args(get_args(commands.Body)[0])
    pairs: dict[str, type[BaseModel]] = {model.__name__: model for model in bodies}
    pairs.update(Command=commands.Command, Reply=commands.Reply, Delivery=commands.Delivery, Origin=commands.Origin)
    pairs.update(SharedDelivery=commands.SharedDelivery)
    problems = component_model_differences(doc, pairs)
    assert not problems, "docs/asyncapi.yaml disagrees with schemas/commands.py:\n  " + "\n  ".join(problems)


# --- WebSocket ------------------------------------------------------------------------------------


def test_every_client_frame_type_is_received(doc: Doc) -> None:
    received = {frame_type(doc, message) for message in operation_messages(doc, "receiveClientFrames")}
    expected = CONTRACT_CLIENT_FRAMES | set(frames.CLIENT_FRAME_TYPES)
    assert received == expected, (
        f"client frames missing: {sorted(expected - received)}; unknown: {sorted(received - expected)}"
    )


def test_every_server_frame_type_is_sent(doc: Doc) -> None:
    sent = {frame_type(doc, message) for message in operation_messages(doc, "sendServerFrames")}
    assert sent == CONTRACT_SERVER_FRAMES, (
        f"missing: {sorted(CONTRACT_SERVER_FRAMES - sent)}; unknown: {sorted(sent - CONTRACT_SERVER_FRAMES)}"
    )


def test_client_frame_schemas_match_schemas_frames(doc: Doc) -> None:
    models = get_args(get_args(frames.ClientFrame)[0])
    pairs = {model.__name__: model for model in models}
    problems = component_model_differences(doc, pairs)
    assert not problems, "docs/asyncapi.yaml disagrees with schemas/frames.py:\n  " + "\n  ".join(problems)


def sample_server_frames() -> dict[str, dict[str, Any]]:
    """One frame of each kind, built by the code that builds them for real."""
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    message = Message(
        id=ids[0],
        chat_id=ids[1],
        seq=1,
        sender_id=ids[2],
        text="hi",
        client_msg_id="c1",
        created_at=now,
    ).model_dump(mode="json")
    chat = Chat(
        id=ids[1],
        type="group",
        title=None,
        created_at=now,
        members=[Member(user_id=ids[2], role="owner")],
        last_message=None,
    ).model_dump(mode="json")
    return {
        "AckFrame": frames.ack_frame("c1", message),
        "MessageNewFrame": frames.message_new_frame(message),
        "MessageEditedFrame": frames.message_edited_frame(message),
        "MessageDeletedFrame": frames.message_deleted_frame(ids[1], ids[0], 1),
        "ReadServerFrame": frames.read_frame(ids[1], ids[2], 1),
        "TypingServerFrame": frames.typing_frame(ids[1], ids[2]),
        "PresenceFrame": frames.presence_frame(ids[2], True),
        "ChatUpdatedFrame": frames.chat_updated_frame(chat),
        "ChatMemberAddedFrame": frames.chat_member_added_frame(ids[1], ids[2], "member"),
        "ChatMemberRemovedFrame": frames.chat_member_removed_frame(ids[1], ids[2]),
        "SyncDoneFrame": frames.sync_done_frame(ids[1], 0),
        "PongFrame": dict(frames.PONG),
        "ErrorFrame": frames.error_frame(frames.UNKNOWN_TYPE, "unknown frame type 'x'", None),
    }


@pytest.mark.parametrize("name", sorted(sample_server_frames()))
def test_server_frames_built_by_the_code_fit_their_schema(doc: Doc, name: str) -> None:
    frame = sample_server_frames()[name]
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(frame)
    required = set(doc["components"]["schemas"][name]["required"])
    assert set(frame) == required, f"{name}: the code sends {sorted(frame)}, the doc lists {sorted(required)}"


def test_resources_have_the_fields_of_schemas_models(doc: Doc) -> None:
    for model in (Chat, Member, Message):
        schema = doc["components"]["schemas"][model.__name__]
        assert set(schema["properties"]) == set(model.model_fields), model.__name__
        assert set(schema["required"]) == set(model.model_fields), model.__name__


def test_a_rate_limited_error_frame_fits_its_schema(doc: Doc) -> None:
    """v1.1: `retry_after_ms` rides on `rate_limited` errors and nowhere else."""
    frame = frames.error_frame("rate_limited", "too many writes: slow down", "c1", 1250)
    schema = {"$ref": "#/components/schemas/ErrorFrame", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(frame)
    assert set(frame) - set(doc["components"]["schemas"]["ErrorFrame"]["required"]) == {"retry_after_ms"}
    assert "retry_after_ms" not in frames.error_frame("forbidden", "not a member", None)
