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
"""

from __future__ import annotations

import hmac

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

OPEN_PATHS = frozenset({"/healthz", "/metrics", "/projections/lag"})
"""Routes answered without a token: liveness, Prometheus text and the projections' lag (offsets per
partition, what the lag gauge of `/metrics` already says); never table data."""

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


def operator_auth(token: str) -> Middleware:
    """The middleware: every route but `OPEN_PATHS` asks for `Authorization: Bearer <token>`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_open(request):
            return await handler(request)
        if not token:
            return refusal("no OPERATOR_TOKEN is set on this worker: its views are closed")
        if not token_matches(bearer_token(request.headers.get("Authorization")), token):
            return refusal("this view needs Authorization: Bearer <OPERATOR_TOKEN>")
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return middleware
