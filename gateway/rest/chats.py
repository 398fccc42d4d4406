"""`/api/v1/chats*`: chats, their members and their messages (contract v1, "Chats", "Messages").

A chat the caller is not in answers 404, as if it did not exist.
"""

from __future__ import annotations

from aiohttp import web

from gateway.auth.identity import caller, path_uuid
from gateway.infra import read_store
from gateway.infra.resources import SETTINGS
from gateway.rest.errors import not_found, parse_body
from gateway.rest.validation import query
from gateway.usecases import chats, messaging
from gateway.usecases.ports import PORTS, Actor
from schemas.api import MAX_GROUP_MEMBERS_CONTEXT, AddMemberBody, CreateChatBody, MessagePage, PostMessageBody

routes = web.RouteTableDef()


@routes.post("/api/v1/chats")
async def create_chat(request: web.Request) -> web.Response:
    actor = Actor(caller(request))
    limit = {MAX_GROUP_MEMBERS_CONTEXT: request.app[SETTINGS].max_group_members}
    body = await parse_body(request, CreateChatBody, limit)
    written = await chats.create_chat(request.app[PORTS], actor, body.type, body.title, body.member_ids)
    return web.json_response({"chat": written.chat}, status=200 if written.duplicate else 201)


@routes.get("/api/v1/chats")
async def list_chats(request: web.Request) -> web.Response:
    found = await read_store.chats_for(request.app[PORTS].pool, caller(request))
    return web.json_response({"chats": found})


@routes.get("/api/v1/chats/{id}")
async def get_chat(request: web.Request) -> web.Response:
    return web.json_response(await chats.visible_chat(request.app[PORTS], caller(request), path_uuid(request, "id")))


@routes.post("/api/v1/chats/{id}/members")
async def add_member(request: web.Request) -> web.Response:
    actor = Actor(caller(request))
    chat_id = path_uuid(request, "id")
    body = await parse_body(request, AddMemberBody)
    return web.json_response(await chats.add_member(request.app[PORTS], actor, chat_id, body.user_id))


@routes.delete("/api/v1/chats/{id}/members/{user_id}")
async def remove_member(request: web.Request) -> web.Response:
    actor = Actor(caller(request))
    await chats.remove_member(request.app[PORTS], actor, path_uuid(request, "id"), path_uuid(request, "user_id"))
    return web.Response(status=204)


@routes.get("/api/v1/chats/{id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    user_id = caller(request)
    chat_id = path_uuid(request, "id")
    page = query(request, MessagePage)
    pool = request.app[PORTS].pool
    if not await read_store.is_member(pool, chat_id, user_id):
        raise not_found("no such chat")
    messages = await read_store.messages_page(pool, chat_id, before=page.before, after=page.after, limit=page.limit)
    return web.json_response({"messages": messages})


@routes.get("/api/v1/chats/{id}/read-markers")
async def list_read_markers(request: web.Request) -> web.Response:
    """*(addition)* Where each member has read up to: what a client shows as "seen" before any
    live `read` frame has come. Every member has one, so the caller's own tells membership."""
    markers = await read_store.read_markers(request.app[PORTS].pool, path_uuid(request, "id"))
    if str(caller(request)) not in {m["user_id"] for m in markers}:
        raise not_found("no such chat")
    return web.json_response({"read_markers": markers})


@routes.post("/api/v1/chats/{id}/messages")
async def post_message(request: web.Request) -> web.Response:
    actor = Actor(caller(request))
    chat_id = path_uuid(request, "id")
    body = await parse_body(request, PostMessageBody)
    sent = await messaging.send_message(request.app[PORTS], actor, chat_id, body.client_msg_id, body.text)
    return web.json_response({"message": sent.message}, status=200 if sent.duplicate else 201)
