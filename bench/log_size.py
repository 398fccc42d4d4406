"""How much history the system held when a stage ran: the records of its `message.events` topic.

Latency and memory grow with the state the streams worker keeps (docs/benchmarks.md), so a figure
means little without the size of the log it was measured on: every stage records it at its start.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from config.settings import CommonSettings
from runtime.topic_log import end_offsets
from schemas import topics


async def messages_in_log(settings: CommonSettings) -> int:
    """The sum of the end offsets of `message.events` (every send, edit, delete and read marker
    ever decided; 0 when the topic does not exist)."""
    return sum((await end_offsets(settings, settings.topic(topics.MESSAGE_EVENTS.name))).values())


async def counted(settings: CommonSettings, stage: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """Run `stage` (not started yet), adding `log_messages`: the log's size just before it."""
    held = await messages_in_log(settings)
    result = await stage
    result["log_messages"] = held
    return result
