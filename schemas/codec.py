"""JSON (de)serialization with orjson, the one codec of every topic, frame and body; and text
from a client that may answer bytes."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON; pydantic models are dumped in their JSON mode."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def as_str(value: object) -> str:
    """`value` as text: bytes are UTF-8 (Redis replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else str(value)
