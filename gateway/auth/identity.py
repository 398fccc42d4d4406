"""Who is calling: the user id of a request's bearer access token."""

from __future__ import annotations

import uuid

from aiohttp import web

from config.logs import bind
from gateway.auth.tokens import AccessClaims, verify_access_claims, verify_access_token
from gateway.infra.resources import SETTINGS
from gateway.rest.errors import not_found, unauthenticated


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def caller(request: web.Request) -> uuid.UUID:
    """The authenticated user, or 401 (`unauthenticated`, `invalid_token`, `token_expired`)."""
    token = bearer_token(request)
    if token is None:
        raise unauthenticated()
    user_id = verify_access_token(request.app[SETTINGS], token)
    bind(user_id=user_id)  # on every line of the request, its access line included
    return user_id


def caller_claims(request: web.Request) -> AccessClaims:
    """`caller`, with the session the token belongs to."""
    token = bearer_token(request)
    if token is None:
        raise unauthenticated()
    claims = verify_access_claims(request.app[SETTINGS], token)
    bind(user_id=claims.user_id)
    return claims


def path_uuid(request: web.Request, name: str) -> uuid.UUID:
    """A UUID from the path; anything else names nothing that exists."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise not_found() from None
