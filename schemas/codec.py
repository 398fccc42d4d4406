"""JSON (de)serialization with orjson, the one codec of every topic, frame and body."""

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
