"""`/api/v1/auth/*`: register, login, refresh, logout (contract v1, "Auth"); a password change,
`POST /api/v1/users/me/password` (`gateway.auth.password_change`); and the erasure of one's
account, `DELETE /api/v1/users/me` (v1.1, "Erasure"), which asks the password again.

Each login opens a session (a refresh family); its access tokens carry its id, and when it ends
(logout, the reuse of a retired refresh token) its sockets close everywhere (`gateway.auth.session_end`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway.auth.identity import caller, caller_claims
from gateway.auth.password_change import CredentialLock, change_password, rehash_if_needed
from gateway.auth.password_check import verified
from gateway.auth.refresh_tokens import REFRESH_TOKENS, FamilyReused, RefreshTokenStore, key_prefix
from gateway.auth.session_end import SESSION_ENDS, SessionEnds
from gateway.auth.throttle import LoginThrottle, RegisterThrottle
from gateway.auth.tokens import issue_access_token
from gateway.infra import read_store
from gateway.infra.resources import PG_POOL, REDIS, SETTINGS
from gateway.rest.errors import not_found, parse_body
from gateway.usecases import accounts, erasure
from gateway.usecases.ports import PORTS, Actor
from schemas.api import EraseAccountBody, LoginBody, PasswordChangeBody, RefreshBody, RegisterBody
from schemas.models import fold_username

LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
REGISTER_THROTTLE = web.AppKey("register_throttle", RegisterThrottle)
CREDENTIAL_LOCK = web.AppKey("credential_lock", CredentialLock)

routes = web.RouteTableDef()


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    topic_prefix = app[SETTINGS].topic_prefix
    prefix = f"{topic_prefix}auth:"
    store = RefreshTokenStore(app[REDIS], app[SETTINGS].refresh_token_ttl_seconds, prefix=key_prefix(topic_prefix))
    app[REFRESH_TOKENS] = store
    app[SESSION_ENDS] = SessionEnds(app[REDIS], store, topic_prefix)
    app[LOGIN_THROTTLE] = LoginThrottle(app[REDIS], prefix=f"{prefix}throttle:")
    app[CREDENTIAL_LOCK] = CredentialLock(app[REDIS], prefix=f"{prefix}credential:")
    settings = app[SETTINGS]
    app[REGISTER_THROTTLE] = RegisterThrottle(
        app[REDIS],
        prefix=f"{prefix}register:",
        limit=settings.register_limit_per_address,
        window_seconds=settings.register_window_seconds,
    )
    yield


def client_address(request: web.Request) -> str:
    """The peer's address, which the throttles count by (no proxy header is trusted)."""
    return request.remote or "unknown"


def token_pair(request: web.Request, user_id: uuid.UUID, session_id: str, refresh_token: str) -> dict[str, Any]:
    access_token, expires_in = issue_access_token(request.app[SETTINGS], user_id, session_id)
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }


@routes.post("/api/v1/auth/register")
async def register(request: web.Request) -> web.Response:
    body = await parse_body(request, RegisterBody)
    await request.app[REGISTER_THROTTLE].reserve(client_address(request))
    user = await accounts.register(request.app[PORTS], body.username, body.password, body.display_name)
    return web.json_response({"user": user}, status=201)


@routes.post("/api/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, LoginBody)
    username = fold_username(body.username)
    found = await read_store.credentials(request.app[PG_POOL], username)
    user, stored = await verified(request.app[LOGIN_THROTTLE], username, client_address(request), body.password, found)
    lock = request.app[CREDENTIAL_LOCK]
    rehash_if_needed(request.app[PORTS], lock, uuid.UUID(user["id"]), username, stored, body.password)
    grant = await request.app[REFRESH_TOKENS].issue(uuid.UUID(user["id"]))
    pair = token_pair(request, uuid.UUID(user["id"]), grant.session_id, grant.token)
    return web.json_response({**pair, "user": user})


@routes.delete("/api/v1/users/me")
async def erase_account(request: web.Request) -> web.Response:
    """Erase the caller's account (docs/erasure.md): its password again; then its sessions end
    (4001) and its messages are deleted chat by chat; 204 once the read models say so. Sessions
    end before and again after: a login between the check and the erasure's projection ends too."""
    user_id = caller(request)
    body = await parse_body(request, EraseAccountBody)
    found = await read_store.credentials_by_id(request.app[PG_POOL], user_id)
    if found is None:
        raise not_found()
    username = found[0]["username"]
    await verified(request.app[LOGIN_THROTTLE], username, client_address(request), body.password, found)
    await request.app[SESSION_ENDS].end_user_sessions(user_id)
    await erasure.erase_account(request.app[PORTS], Actor(user_id), username)
    await request.app[SESSION_ENDS].end_user_sessions(user_id)
    return web.Response(status=204)


@routes.post("/api/v1/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    body = await parse_body(request, RefreshBody)
    try:
        rotation = await request.app[REFRESH_TOKENS].rotate(body.refresh_token)
    except FamilyReused as reused:
        await request.app[SESSION_ENDS].announce(reused.ended)
        raise
    return web.json_response(token_pair(request, rotation.user_id, rotation.session_id, rotation.token))


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    body = await parse_body(request, RefreshBody)
    ended = await request.app[REFRESH_TOKENS].revoke(body.refresh_token)
    if ended is not None:
        await request.app[SESSION_ENDS].announce(ended)
    return web.Response(status=204)


@routes.post("/api/v1/users/me/password")
async def password(request: web.Request) -> web.Response:
    """204 once the read models hold the new hash; the caller's other sessions have ended then."""
    claims = caller_claims(request)
    body = await parse_body(request, PasswordChangeBody)
    app = request.app
    await change_password(
        app[PORTS],
        app[LOGIN_THROTTLE],
        app[SESSION_ENDS],
        app[CREDENTIAL_LOCK],
        claims,
        client_address(request),
        body.old_password,
        body.new_password,
    )
    return web.Response(status=204)
