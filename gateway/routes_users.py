"""`/api/v1/users*`: the caller's profile, other users, search by username prefix."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from gateway import read_store
from gateway.errors import not_found, parse_body
from gateway.identity import caller, path_uuid
from gateway.resources import PG_POOL
from gateway.validation import query
from gateway.writes import write
from schemas import topics
from schemas.api import ProfilePatch, UserSearch
from schemas.commands import UpdateProfile

routes = web.RouteTableDef()


async def existing_user(request: web.Request, user_id: uuid.UUID) -> dict[str, Any]:
    user = await read_store.user_by_id(request.app[PG_POOL], user_id)
    if user is None:
        raise not_found("no such user")
    return user


@routes.get("/api/v1/users/me")
async def me(request: web.Request) -> web.Response:
    return web.json_response(await existing_user(request, caller(request)))


@routes.patch("/api/v1/users/me")
async def update_me(request: web.Request) -> web.Response:
    user_id = caller(request)
    body = await parse_body(request, ProfilePatch)
    command = UpdateProfile(user_id=user_id, display_name=body.display_name, bio=body.bio)
    await write(request, topics.USER_COMMANDS, str(user_id), command, user_id)
    return web.json_response(await existing_user(request, user_id))


@routes.get("/api/v1/users/{id}")
async def user(request: web.Request) -> web.Response:
    caller(request)
    return web.json_response(await existing_user(request, path_uuid(request, "id")))


@routes.get("/api/v1/users")
async def search(request: web.Request) -> web.Response:
    caller(request)
    params = query(request, UserSearch)
    users = await read_store.search_users(request.app[PG_POOL], params.q.casefold(), params.limit)
    return web.json_response({"users": users})
