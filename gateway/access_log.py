"""The request id of every HTTP request, and one access line per request.

The id is the client's `X-Request-Id` when it is a sane token (letters, digits, `._:-`, at most 128),
else a new one; it is bound to the log context (`config.logs.bind`) before any other middleware
runs, so every line logged while the request is handled carries it, and it is echoed in the
response's `X-Request-Id`. aiohttp runs each request in a task of its own, so the ids bound while
handling it (the user, the command's ids) are still there when the access line is written, once the
response is sent, and never reach another request.

The access line (`gateway.access`, INFO) says method, path, status, duration and bytes sent. The path
is logged without its query string: the WebSocket's `token` query parameter is an access token and
must never reach a log. A WebSocket's line is written when the socket closes (status 101, its life
as duration).
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from time import perf_counter

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from config.logs import bind, log_context

REQUEST_ID_HEADER = "X-Request-Id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
ACCESS_LOGGER = logging.getLogger("gateway.access")


def request_id_of(request: web.BaseRequest) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


_STARTED: ContextVar[float] = ContextVar("request_started")
"""When the current task's request reached the application (`perf_counter`): the loop's clock that
aiohttp gives the access logger counts in whole milliseconds under uvloop."""


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    _STARTED.set(perf_counter())
    bind(request_id=request_id_of(request))
    return await handler(request)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = log_context().get("request_id")
    if isinstance(request_id, str):
        response.headers[REQUEST_ID_HEADER] = request_id


class AccessLog(AbstractAccessLogger):
    """aiohttp's access logger, called once the response is sent, in the request's own task."""

    @property
    def enabled(self) -> bool:
        """aiohttp skips the call (and its clock) when the level hides the line."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        started = _STARTED.get(None)
        duration_ms = round((perf_counter() - started if started is not None else time) * 1000, 1)
        self.logger.info(
            "%s %s %d %.1f ms",
            request.method,
            request.path,
            response.status,
            duration_ms,
            extra={
                "fields": {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "duration_ms": duration_ms,
                    "bytes": response.body_length,  # sent, the headers included
                }
            },
        )


def setup(app: web.Application) -> None:
    """The request id first among the middlewares, and in every response's headers (the error
    envelopes and the WebSocket's upgrade included: the signal sees every prepared response)."""
    app.middlewares.insert(0, request_id_middleware)
    app.on_response_prepare.append(echo_request_id)
