"""The contract's error answers: `ApiError`, its constructors, the middleware and `parse_body`.

Every non-2xx answer of the gateway has the body
`{"error": {"code": "<snake_case>", "message": "<human text>", "details"?: {...}}}` (contract v1,
Errors). Handlers raise `ApiError`, the use cases their one refusal (`gateway.usecases.refusal
.Refused`, given its status by `STATUS_BY_CODE`), aiohttp and pydantic theirs; `error_middleware`
turns all of them into that envelope, a dependency that cannot be reached (PostgreSQL, Redis,
Kafka restarting: `gateway.infra.resources.DEPENDENCY_DOWN`) into 503 `unavailable` with
`Retry-After`, and anything unexpected into a logged 500 whose body says nothing about the code.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, TypeVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from gateway.infra.resources import DEPENDENCY_DOWN
from gateway.usecases.refusal import RATE_LIMITED, UNAVAILABLE, Refused
from schemas.api import GROUP_FULL

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

BODY_FIELD = "body"
"""The name given in `details` when the problem is the body as a whole, not one of its fields."""

FORWARDED_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")
"""Headers of an aiohttp HTTPException worth keeping; its Content-Type and body are replaced."""

CODES_BY_STATUS = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
}

STATUS_BY_CODE = {
    "invalid_request": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "username_taken": 409,
    "group_full": 409,
    "rate_limited": 429,
    "unavailable": 503,
}
"""The status of a use case's refusal (`Refused`), by its code; any other code is a 409."""


class ApiError(Exception):
    """An answer the client deserves: its status, its code, a message and maybe details and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details) if details is not None else None
        self.headers = dict(headers) if headers is not None else {}

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r})"


def invalid_request(field: str, message: str, errors: list[dict[str, str]] | None = None) -> ApiError:
    """400 naming the offending field (`body` for the body as a whole), as the contract asks."""
    details: dict[str, Any] = {"field": field}
    if errors is not None:
        details["errors"] = errors
    return ApiError(400, "invalid_request", message, details=details)


def unauthenticated(message: str = "authentication required") -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


def invalid_credentials() -> ApiError:
    """401 for a wrong password and for an unknown user alike, so neither can be told apart."""
    return ApiError(401, "invalid_credentials", "invalid username or password")


def invalid_token(message: str = "invalid token") -> ApiError:
    return ApiError(401, "invalid_token", message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def token_expired() -> ApiError:
    return ApiError(
        401,
        "token_expired",
        "token expired",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token", error_description="token expired"'},
    )


def forbidden(message: str = "not allowed") -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(code: str = "conflict", message: str = "conflict") -> ApiError:
    """409 with a code that says what clashed, e.g. `conflict("username_taken", ...)`."""
    return ApiError(409, code, message)


def payload_too_large(message: str = "request body too large") -> ApiError:
    return ApiError(413, "payload_too_large", message)


def rate_limited(retry_after_seconds: int, message: str = "too many requests") -> ApiError:
    """429 with `Retry-After` in whole seconds, at least 1 (0 would invite an immediate retry)."""
    seconds = max(1, int(retry_after_seconds))
    return ApiError(
        429,
        "rate_limited",
        message,
        details={"retry_after": seconds},
        headers={"Retry-After": str(seconds)},
    )


UNAVAILABLE_RETRY_AFTER_S = 1
"""A dependency that restarts is usually back within seconds: retry soon, with the same ids."""


def unavailable(message: str, retry_after_seconds: int = UNAVAILABLE_RETRY_AFTER_S) -> ApiError:
    """503: the system could not do or confirm this now; the same request may be sent again."""
    return ApiError(503, "unavailable", message, headers={"Retry-After": str(retry_after_seconds)})


def from_refusal(refused: Refused) -> ApiError:
    """A use case's refusal as the contract's answer: its status from `STATUS_BY_CODE`,
    `Retry-After` for `rate_limited` and `unavailable`, the field of an `invalid_request`."""
    if refused.code == RATE_LIMITED:
        return rate_limited(math.ceil((refused.retry_after_ms or 0) / 1000), refused.message)
    if refused.code == UNAVAILABLE:
        return unavailable(refused.message)
    if refused.field is not None:
        return invalid_request(refused.field, refused.message)
    return ApiError(STATUS_BY_CODE.get(refused.code, 409), refused.code, refused.message)


def internal_error() -> ApiError:
    return ApiError(500, "internal_error", "internal server error")


def error_response(error: ApiError) -> web.Response:
    return web.Response(
        status=error.status,
        body=orjson.dumps(error.envelope()),
        content_type="application/json",
        headers=error.headers,
    )


def field_name(location: tuple[int | str, ...]) -> str:
    """`("members", 0, "user_id")` as `members.0.user_id`; the empty location is the body itself."""
    return ".".join(str(part) for part in location) or BODY_FIELD


def from_validation_error(error: ValidationError) -> ApiError:
    """400 naming every bad field; 409 `group_full` for a group's member list past its limit.

    Only the location, pydantic's message and its error type are kept: the offending `input` may
    be a password, and `ctx` may hold exception objects that are neither JSON nor meant for clients.
    """
    errors = [
        {"field": field_name(item["loc"]), "message": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False)
    ]
    first = errors[0]["field"] if errors else BODY_FIELD
    full = next((e for e in errors if e["type"] == GROUP_FULL), None)
    if full is not None:
        return ApiError(STATUS_BY_CODE[GROUP_FULL], GROUP_FULL, full["message"], details={"field": full["field"]})
    return invalid_request(first, f"invalid field: {first}", errors)


def from_http_exception(exception: web.HTTPException) -> ApiError:
    status = exception.status
    code = CODES_BY_STATUS.get(status) or _snake_case(_phrase(status))
    headers = {name: exception.headers[name] for name in FORWARDED_HEADERS if name in exception.headers}
    details = {"field": BODY_FIELD} if code == "invalid_request" else None
    return ApiError(status, code, _reason(exception), details=details, headers=headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _snake_case(phrase: str) -> str:
    return "_".join(phrase.lower().replace("-", " ").split())


def _reason(exception: web.HTTPException) -> str:
    """aiohttp's own short text (e.g. "Method Not Allowed"), lower-cased like our messages."""
    return (exception.reason or _phrase(exception.status)).lower()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except Refused as refused:
        return error_response(from_refusal(refused))
    except web.HTTPException as exception:
        if exception.status < 400:
            raise
        return error_response(from_http_exception(exception))
    except ValidationError as error:
        return error_response(from_validation_error(error))
    except DEPENDENCY_DOWN as error:
        log.warning("%s %s: a dependency is down: %r", request.method, request.path, error)
        return error_response(unavailable("a service the messenger needs is unavailable; retry"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(internal_error())


async def parse_body(request: web.Request, model: type[M], context: dict[str, Any] | None = None) -> M:
    """The request's JSON object validated by `model` (with the validation `context`, for limits
    that are settings), or an `ApiError` the client can act on.

    A body over the application's `client_max_size` makes aiohttp raise 413, which the middleware
    answers as `payload_too_large`.
    """
    raw = await request.read()
    if not raw.strip():
        raise invalid_request(BODY_FIELD, "a JSON object is required")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request(BODY_FIELD, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid_request(BODY_FIELD, "the body must be a JSON object")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as error:
        raise from_validation_error(error) from None
