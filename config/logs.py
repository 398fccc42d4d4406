"""How every process logs: one JSON object per line, with the ids of what it is handling.

`LOG_FORMAT=json` (the default) writes lines such as

    {"time": "2026-11-30T05:07:15.123+00:00", "level": "INFO", "logger": "gateway.access",
     "message": "GET /api/v1/chats 200", "request_id": "9f0c…", "user_id": "…", "status": 200, …}

(one line each; `exception` holds the traceback of a line logged with one). `LOG_FORMAT=text` writes
`time level logger message [id=value …]` for a person reading a terminal.

The ids come from a context variable, not from each call: the gateway binds the request id (and the
user once the token is verified), the command bus the command's `command_id` and `correlation_id`;
every line logged afterwards in the same task, or in the tasks it starts, carries them. An asyncio
task copies the context when it is created, so what a request or a frame binds never leaks into
another one. A line may add its own fields with `extra={"fields": {...}}`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

LogFormat = Literal["json", "text"]

_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar("log_context", default=MappingProxyType({}))
"""The ids of what the current task is handling. The mapping is replaced, never changed in place."""

BASE_KEYS = ("time", "level", "logger", "message")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_context() -> Mapping[str, object]:
    """The ids every line logged now would carry."""
    return _CONTEXT.get()


def bind(**ids: object) -> None:
    """Add ids to the context of the current task, for the rest of it (a request, a frame) and the
    tasks it starts from now on. `None` values are left out; others are written as JSON (a UUID as
    its string, a list of ids as a list)."""
    _CONTEXT.set({**_CONTEXT.get(), **{name: value for name, value in ids.items() if value is not None}})


@contextmanager
def log_scope(**ids: object) -> Iterator[None]:
    """Ids for the lines logged inside the block only (for loops that handle one thing at a time)."""
    token = _CONTEXT.set(_CONTEXT.get())
    bind(**ids)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def extra_fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ids in context, the record's
    own `fields`, and `exception`/`stack` when it has them."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in (*log_context().items(), *extra_fields(record).items()):
            if name not in BASE_KEYS:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger message`, then the ids in context and the record's fields as `name=value`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        pairs = {**log_context(), **extra_fields(record)}
        line = super().formatMessage(record)
        return line + "".join(f" {name}={value}" for name, value in pairs.items()) if pairs else line


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: LogFormat, level: str | int) -> None:
    """Send every record of the process at `level` and above to stderr in `log_format`, Python's
    warnings included (as `py.warnings` lines rather than bare text between them)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)


def faust_logging_config(log_format: LogFormat) -> dict[str, Any] | None:
    """What a Faust worker's logging gets (`faust.App(logging_config=…)`): the JSON formatter on the
    handler Faust makes (to stderr, as Faust's own), at the worker's `-l`; `None` (text) keeps Faust's.

    Merged into Faust's configuration, so that its `-l` keeps setting the root level, and loggers
    made before the worker starts (every module's `log`) are not disabled.
    """
    if log_format != "json":
        return None
    return {
        "merge": True,
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    }
