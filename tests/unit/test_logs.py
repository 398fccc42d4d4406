"""The log lines of every process (`config.logs`): one JSON object each, with the ids in context."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from config.logs import JsonFormatter, TextFormatter, bind, configure, faust_logging_config, log_context, log_scope


@pytest.fixture
def output() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own whose lines go, JSON-formatted, to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_time_level_logger_and_message(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = output
    logger.warning("replayed %d events of %s", 3, 'chat "α"\nnext')
    [line] = lines(stream)
    assert line["level"] == "WARNING" and line["logger"] == "tests.logs"
    assert line["message"] == 'replayed 3 events of chat "α"\nnext'
    assert line["time"].endswith("+00:00") and "T" in line["time"]
    assert stream.getvalue().count("\n") == 1, "a message with a newline is still one line"


def test_the_ids_in_context_are_on_every_line_of_the_scope_only(output: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = output
    with log_scope(request_id="r-1"):
        logger.info("first")
        with log_scope(command_id="c-1", correlation_id="k-1", ignored=None):
            logger.info("second")
        logger.info("third")
    logger.info("outside")
    first, second, third, outside = lines(stream)
    assert first["request_id"] == "r-1" and "command_id" not in first
    assert {k: second[k] for k in ("request_id", "command_id", "correlation_id")} == {
        "request_id": "r-1",
        "command_id": "c-1",
        "correlation_id": "k-1",
    }
    assert "ignored" not in second
    assert third["request_id"] == "r-1" and "command_id" not in third
    assert "request_id" not in outside


def test_ids_keep_their_json_shape(output: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = output
    command_id = uuid.uuid4()
    with log_scope(command_id=command_id, correlation_ids=["k-1", "k-2"]):
        logger.info("appending events failed")
    [line] = lines(stream)
    assert line["command_id"] == str(command_id) and line["correlation_ids"] == ["k-1", "k-2"]


def test_a_line_adds_its_own_fields_but_cannot_replace_the_base_keys(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = output
    logger.info("GET / 200", extra={"fields": {"status": 200, "message": "forged", "level": "DEBUG"}})
    [line] = lines(stream)
    assert line["status"] == 200
    assert line["message"] == "GET / 200" and line["level"] == "INFO"


def test_the_exception_is_serialized_in_the_line(output: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = output
    try:
        raise ValueError("no such partition")
    except ValueError:
        logger.exception("cannot apply")
    [line] = lines(stream)
    assert line["message"] == "cannot apply" and line["level"] == "ERROR"
    assert line["exception"].startswith("Traceback") and "ValueError: no such partition" in line["exception"]


async def test_what_a_task_binds_stays_in_that_task() -> None:
    """A request or a frame is a task: what it binds reaches the tasks it starts, not its siblings
    or the task that started it."""

    async def handle(request_id: str) -> dict[str, object]:
        bind(request_id=request_id)
        await asyncio.sleep(0)
        inner = asyncio.create_task(asyncio.sleep(0, result=dict(log_context())))
        return await inner

    seen = await asyncio.gather(handle("a"), handle("b"))
    assert [s["request_id"] for s in seen] == ["a", "b"]
    assert "request_id" not in log_context()


def test_text_lines_end_with_the_ids() -> None:
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "GET /healthz 200", None, None)
    with log_scope(request_id="r-9"):
        text = TextFormatter().format(record)
    assert text.endswith("INFO gateway.access GET /healthz 200 request_id=r-9")


def test_faust_gets_the_json_formatter_without_losing_its_level_or_the_existing_loggers() -> None:
    config = faust_logging_config("json")
    assert config is not None
    assert config["merge"] is True and config["disable_existing_loggers"] is False
    assert "root" not in config, "the root level is Faust's -l"
    assert config["formatters"]["json"]["()"] is JsonFormatter
    assert faust_logging_config("text") is None


def test_a_configured_process_writes_only_json_lines_to_stderr_warnings_included(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("json", "INFO")
        logging.getLogger("tests.configured").info("up")
        logging.getLogger("tests.configured").debug("not at INFO")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("old call", DeprecationWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = saved
    err = capsys.readouterr().err
    up, warned = (json.loads(line) for line in err.splitlines())
    assert up["message"] == "up" and up["logger"] == "tests.configured"
    assert warned["logger"] == "py.warnings" and "DeprecationWarning: old call" in warned["message"]
