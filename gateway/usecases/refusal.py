"""The one refusal of a use case: the contract's error code and a message for people.

REST renders it with a status from one table (`gateway.rest.errors.STATUS_BY_CODE`), a
WebSocket as an `error` frame carrying the frame's `ref`.
"""

from __future__ import annotations

INVALID_REQUEST = "invalid_request"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"


class Refused(Exception):
    """A request that was understood and not done.

    `field` names the offending field of an `invalid_request` (REST puts it in `details`);
    `retry_after_ms` says when a `rate_limited` request would be let through.
    """

    def __init__(self, code: str, message: str, *, field: str | None = None, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_ms = retry_after_ms

    def __repr__(self) -> str:
        return f"Refused({self.code!r}, {self.message!r})"


def unavailable(message: str) -> Refused:
    """The system could not do or confirm this now; the same request may be sent again."""
    return Refused(UNAVAILABLE, message)
