"""The operator token in front of the workers' web views (contract v1.1, "Operators").

Faust's views (`/table/`, `/router/`, `/stats/`, …) and the workers' own pages show what the
tables hold: message texts, members, usernames. Every view answers only a request carrying
`Authorization: Bearer <OPERATOR_TOKEN>`, except the ones in `OPEN_PATHS`, which tell whether the
worker runs and how far behind it is (no table data). Deny by default: a view Faust adds in a later version, or one
the project adds, is closed until it is listed here.

The check is an aiohttp middleware installed through Faust's `web_application_options` (its
aiohttp driver hands them to `aiohttp.web.Application`). It looks at the route the request
matched, not at the path as written, so `/healthz/../table/` cannot pass for `/healthz`.
Faust forwards a routed table request to the worker owning the key with the request's headers,
so every worker of a deployment shares one token.

With no token set, the closed views are refused to everyone: a worker on loopback without a
token still runs, and table contents stay behind a token that must first be set.
`config.settings.WorkerSettings` refuses a worker bound beyond loopback without a token.

A person's browser cannot send a Bearer header: the console's login page (`console.login`) takes the
token once and sets a session cookie (`SESSION_COOKIE`, HttpOnly, SameSite=Strict) holding an expiry
and an HMAC of it keyed by the token, never the token itself; the middleware accepts that cookie as
it accepts the header. Changing the token ends every session. A console page asked for by a browser
without either is sent to the login page instead of a 401.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

OPEN_PATHS = frozenset(
    {"/healthz", "/metrics", "/projections/lag", "/console/login", "/console/logout", "/console/static/{file}"}
)
"""Routes answered without a token: liveness, Prometheus text and the projections' lag (offsets per
partition, what the lag gauge of `/metrics` already says), the console's login and logout and its
style sheet and icon (`console.pages.STATIC`, nothing else); never table data."""

SESSION_COOKIE = "operator_session"
SESSION_TTL_S = 12 * 3600
SESSION_PURPOSE = b"messenger operator console session v1"
CONSOLE_PREFIX = "/console/"
LOGIN_PATH = "/console/login"

REALM = "operator"


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison; nothing matches an empty expected token."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def session_signature(token: str, expires_at: int) -> str:
    message = SESSION_PURPOSE + b":" + str(expires_at).encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def session_cookie_value(token: str, now: float | None = None) -> str:
    """`<expiry>.<HMAC-SHA256(token, purpose:expiry)>`: proves the token was typed, without holding it."""
    expires_at = int(now if now is not None else time.time()) + SESSION_TTL_S
    return f"{expires_at}.{session_signature(token, expires_at)}"


def session_is_valid(cookie: str | None, token: str, now: float | None = None) -> bool:
    """A cookie made by `session_cookie_value` with this token and not expired; constant-time."""
    if not token or not cookie:
        return False
    expiry, _, signature = cookie.partition(".")
    if not expiry.isdigit() or len(expiry) > 12:
        return False
    expected = session_signature(token, int(expiry))
    fresh = int(expiry) > (now if now is not None else time.time())
    return hmac.compare_digest(signature.encode(), expected.encode()) and fresh


def is_open(request: web.Request) -> bool:
    route = request.match_info.route
    resource = route.resource
    return resource is not None and resource.canonical.rstrip("/") in OPEN_PATHS


def refusal(message: str) -> web.Response:
    """401 with the contract's error envelope, as the gateway's."""
    body = {"error": {"code": "unauthenticated", "message": message}}
    return web.Response(
        body=orjson.dumps(body),
        status=401,
        content_type="application/json",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}"', "Cache-Control": "no-store"},
    )


def is_authenticated(request: web.Request, token: str) -> bool:
    return token_matches(bearer_token(request.headers.get("Authorization")), token) or session_is_valid(
        request.cookies.get(SESSION_COOKIE), token
    )


def wants_login_page(request: web.Request) -> bool:
    """A person's browser asking for a console page (not its JSON): sent to the login page."""
    return (
        request.method == "GET"
        and request.path.startswith(CONSOLE_PREFIX)
        and request.query.get("format") != "json"
        and "text/html" in request.headers.get("Accept", "")
    )


def to_login(request: web.Request) -> web.Response:
    location = f"{LOGIN_PATH}?next={quote(request.path_qs, safe='')}"
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def operator_auth(token: str) -> Middleware:
    """The middleware: every route but `OPEN_PATHS` asks for `Authorization: Bearer <token>` or the
    console's session cookie."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_open(request):
            return await handler(request)
        if not token:
            return refusal("no OPERATOR_TOKEN is set on this worker: its views are closed")
        if not is_authenticated(request, token):
            if wants_login_page(request):
                return to_login(request)
            return refusal("this view needs Authorization: Bearer <OPERATOR_TOKEN>")
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return middleware
