"""`/api/v1/users*`: the caller's profile, other users, search by username prefix."""

from __future__ import annotations

from aiohttp import web

from gateway.auth.identity import caller, path_uuid
from gateway.infra import read_store
from gateway.rest.errors import parse_body
from gateway.rest.validation import query
from gateway.usecases import accounts
from gateway.usecases.ports import PORTS, Actor
from schemas.api import ProfilePatch, UserSearch

routes = web.RouteTableDef()


@routes.get("/api/v1/users/me")
async def me(request: web.Request) -> web.Response:
    return web.json_response(await accounts.user(request.app[PORTS], caller(request)))


@routes.patch("/api/v1/users/me")
async def update_me(request: web.Request) -> web.Response:
    actor = Actor(caller(request))
    body = await parse_body(request, ProfilePatch)
    return web.json_response(await accounts.update_profile(request.app[PORTS], actor, body.display_name, body.bio))


@routes.get("/api/v1/users/{id}")
async def user(request: web.Request) -> web.Response:
    caller(request)
    return web.json_response(await accounts.user(request.app[PORTS], path_uuid(request, "id")))


@routes.get("/api/v1/users")
async def search(request: web.Request) -> web.Response:
    caller(request)
    params = query(request, UserSearch)
    users = await read_store.search_users(request.app[PORTS].pool, params.q.casefold(), params.limit)
    return web.json_response({"users": users})
