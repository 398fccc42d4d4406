"""Who may open a socket, decided before the upgrade so that a refusal is an ordinary HTTP answer.

The access token comes in `Authorization: Bearer <token>` or, for browsers (which cannot set
headers on a WebSocket), in the `token` query parameter. A browser's `Origin` must be one of
`ALLOWED_ORIGINS` or this gateway's own (the web client it serves at `/`, on whichever instance,
port or proxy the browser reached it): a page of another site never gets a socket; clients that
send no `Origin` (native apps, servers) are not browsers and cannot be used for cross-site
requests, so they pass. The token's session must still be live
(`gateway.ws.session_watch.SessionWatch.require_live`, checked by the endpoint).
"""

from __future__ import annotations

from aiohttp import hdrs, web

from config.settings import GatewaySettings
from gateway.auth.tokens import AccessClaims, verify_access_claims
from gateway.rest.errors import forbidden, invalid_token, unauthenticated
from gateway.usecases.refusal import FORBIDDEN, Refused
from gateway.ws.connections import Connection
from gateway.ws.session_watch import SessionWatch

BEARER = "bearer "


def check_origin(request: web.Request, settings: GatewaySettings) -> None:
    """403 `forbidden` for an `Origin` that is not allowed."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or origin in settings.origin_list or origin == f"{request.scheme}://{request.host}":
        return
    raise forbidden("origin not allowed")


def access_token(request: web.Request) -> str:
    """The token of the request: 401 `unauthenticated` without one, `invalid_token` if malformed."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is not None:
        if not header.lower().startswith(BEARER) or not header[len(BEARER) :].strip():
            raise invalid_token("expected `Authorization: Bearer <token>`")
        return header[len(BEARER) :].strip()
    token = request.query.get("token", "")
    if not token:
        raise unauthenticated("an access token is required")
    return token


def authenticate(request: web.Request, settings: GatewaySettings) -> AccessClaims:
    """Whom, in which session and until when the request's access token speaks for (401 otherwise)."""
    return verify_access_claims(settings, access_token(request))


class SocketAuth:
    """`auth` frames (v1.1): a socket moves to a fresh token of its user."""

    def __init__(self, settings: GatewaySettings, watch: SessionWatch) -> None:
        self._settings = settings
        self._watch = watch

    async def renew(self, connection: Connection, token: str) -> None:
        """The socket's session and deadline become the token's. Refused, it keeps both:
        `ApiError` `invalid_token`/`token_expired` for a token that is not valid (as over REST),
        `Refused` `forbidden` for a valid token of another user (a socket never changes hands)."""
        claims = verify_access_claims(self._settings, token)
        if str(claims.user_id) != connection.user_id:
            raise Refused(FORBIDDEN, "the token is another user's: a socket keeps its user")
        await self._watch.require_live(claims)
        self._watch.extend(connection, claims)
