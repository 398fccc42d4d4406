"""Access tokens: short-lived JWTs signed with HS256 and the gateway's secret.

The algorithm is pinned on both sides, so a token that names another one (`none`, RS256 with the
secret as a "public key", ...) is refused before its signature is even looked at. Every claim we
issue is required when verifying: a token without `exp` would otherwise live forever.

`sid` names the token's session: the refresh-token family (`gateway.auth.refresh_tokens`) it was
issued with, at login or at a refresh (a rotation keeps the family). Sockets follow it: when the
session ends, the sockets opened with its tokens close. A token without one is refused like any
token missing a claim (none was ever handed out to clients that could still hold one).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import jwt

from gateway.rest.errors import ApiError, invalid_token, token_expired

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "sid", "iat", "exp", "iss", "aud", "jti"]
SESSION_ID = re.compile(r"[0-9a-f]{32}")
"""A refresh family id (`uuid4().hex`)."""
LEEWAY_SECONDS = 10
"""Room for clock skew between gateway instances; small next to the access token's lifetime."""


class TokenSettings(Protocol):
    """What signing needs of `config.settings.GatewaySettings`, which satisfies it as it is."""

    @property
    def jwt_secret(self) -> str: ...
    @property
    def jwt_issuer(self) -> str: ...
    @property
    def jwt_audience(self) -> str: ...
    @property
    def access_token_ttl_seconds(self) -> int: ...


@dataclass(frozen=True)
class AccessClaims:
    """What a valid access token says: who, in which session, until when (epoch seconds)."""

    user_id: UUID
    session_id: str
    expires_at: int


def issue_access_token(
    settings: TokenSettings, user_id: UUID, session_id: str, *, now: float | None = None
) -> tuple[str, int]:
    """A signed access token for `user_id` in the session `session_id` (its refresh family), and
    its lifetime in seconds (the login's `expires_in`)."""
    if not SESSION_ID.fullmatch(session_id):
        raise ValueError("a session id is a refresh family id (32 hex digits)")
    issued_at = int(time.time() if now is None else now)
    lifetime = settings.access_token_ttl_seconds
    claims = {
        "sub": str(user_id),
        "sid": session_id,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM), lifetime


def verify_access_token(settings: TokenSettings, token: str) -> UUID:
    """The user id a valid token speaks for.

    Raises `ApiError` 401: `token_expired` only for a token that is genuine and would be valid but
    for its age (the client should refresh), `invalid_token` for anything else.
    """
    return verify_access_claims(settings, token).user_id


def verify_access_claims(settings: TokenSettings, token: str) -> AccessClaims:
    """The claims of a valid token (`ApiError` 401 as `verify_access_token` says)."""
    try:
        claims = _decode(settings, token, verify_exp=True)
    except jwt.ExpiredSignatureError:
        _raise_if_otherwise_invalid(settings, token)
        raise token_expired() from None
    except jwt.PyJWTError:
        raise invalid_token() from None
    return _claims(claims)


def _decode(settings: TokenSettings, token: str, *, verify_exp: bool) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        settings.jwt_secret,
        algorithms=[ALGORITHM],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway=LEEWAY_SECONDS,
        options={"require": REQUIRED_CLAIMS, "verify_exp": verify_exp},
    )
    return claims


def _raise_if_otherwise_invalid(settings: TokenSettings, token: str) -> None:
    """PyJWT checks `exp` before `iss` and `aud`: check those again so that a token of another
    audience says `invalid_token`, not `token_expired`."""
    try:
        _claims(_decode(settings, token, verify_exp=False))
    except (jwt.PyJWTError, ApiError):
        raise invalid_token() from None


def _claims(claims: dict[str, Any]) -> AccessClaims:
    session_id, expires_at = claims["sid"], claims["exp"]
    if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id) or not isinstance(expires_at, int):
        raise invalid_token()
    try:
        return AccessClaims(UUID(claims["sub"]), session_id, expires_at)
    except (ValueError, TypeError, AttributeError):
        raise invalid_token() from None
