"""`/api/v1/chats*`: chats, their members and their messages (contract v1, "Chats", "Messages").

A chat the caller is not in answers 404, as if it did not exist.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from gateway import read_store
from gateway.errors import invalid_request, not_found, parse_body
from gateway.identity import caller, path_uuid
from gateway.limits import group_create_cost
from gateway.resources import PG_POOL, SETTINGS
from gateway.validation import query
from gateway.writes import write
from schemas import topics
from schemas.api import MAX_GROUP_MEMBERS_CONTEXT, AddMemberBody, CreateChatBody, MessagePage, PostMessageBody
from schemas.commands import AddMember, CreateChat, RemoveMember, SendMessage
from schemas.models import direct_chat_id

routes = web.RouteTableDef()


async def visible_chat(request: web.Request, user_id: uuid.UUID, chat_id: uuid.UUID) -> dict[str, Any]:
    chat = await read_store.chat_for(request.app[PG_POOL], user_id, chat_id)
    if chat is None:
        raise not_found("no such chat")
    return chat


@routes.post("/api/v1/chats")
async def create_chat(request: web.Request) -> web.Response:
    user_id = caller(request)
    limit = {MAX_GROUP_MEMBERS_CONTEXT: request.app[SETTINGS].max_group_members}
    body = await parse_body(request, CreateChatBody, limit)
    others = sorted({m for m in body.member_ids if m != user_id}, key=str)
    if body.type == "direct" and len(others) != 1:
        raise invalid_request("member_ids", "a direct chat has exactly one other member")
    missing = set(others) - await read_store.existing_user_ids(request.app[PG_POOL], others)
    if missing:
        raise invalid_request("member_ids", f"no such user: {sorted(map(str, missing))[0]}")
    key = request.app[SETTINGS].chat_id_key.encode()
    chat_id = direct_chat_id(key, user_id, others[0]) if body.type == "direct" else uuid.uuid4()
    command = CreateChat(chat_id=chat_id, type=body.type, title=body.title, member_ids=others)
    cost = group_create_cost(len(others) + 1) if body.type == "group" else 1
    reply = await write(request, topics.CHAT_COMMANDS, str(chat_id), command, user_id, cost=cost)
    chat = await visible_chat(request, user_id, chat_id)
    return web.json_response({"chat": chat}, status=200 if reply.duplicate else 201)


@routes.get("/api/v1/chats")
async def list_chats(request: web.Request) -> web.Response:
    chats = await read_store.chats_for(request.app[PG_POOL], caller(request))
    return web.json_response({"chats": chats})


@routes.get("/api/v1/chats/{id}")
async def get_chat(request: web.Request) -> web.Response:
    return web.json_response(await visible_chat(request, caller(request), path_uuid(request, "id")))


@routes.post("/api/v1/chats/{id}/members")
async def add_member(request: web.Request) -> web.Response:
    user_id = caller(request)
    chat_id = path_uuid(request, "id")
    body = await parse_body(request, AddMemberBody)
    await visible_chat(request, user_id, chat_id)
    if not await read_store.existing_user_ids(request.app[PG_POOL], [body.user_id]):
        raise invalid_request("user_id", "no such user")
    await write(request, topics.CHAT_COMMANDS, str(chat_id), AddMember(chat_id=chat_id, user_id=body.user_id), user_id)
    return web.json_response(await visible_chat(request, user_id, chat_id))


@routes.delete("/api/v1/chats/{id}/members/{user_id}")
async def remove_member(request: web.Request) -> web.Response:
    user_id = caller(request)
    chat_id = path_uuid(request, "id")
    target = path_uuid(request, "user_id")
    await visible_chat(request, user_id, chat_id)
    await write(request, topics.CHAT_COMMANDS, str(chat_id), RemoveMember(chat_id=chat_id, user_id=target), user_id)
    return web.Response(status=204)


@routes.get("/api/v1/chats/{id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    user_id = caller(request)
    chat_id = path_uuid(request, "id")
    page = query(request, MessagePage)
    if not await read_store.is_member(request.app[PG_POOL], chat_id, user_id):
        raise not_found("no such chat")
    messages = await read_store.messages_page(
        request.app[PG_POOL], chat_id, before=page.before, after=page.after, limit=page.limit
    )
    return web.json_response({"messages": messages})


@routes.post("/api/v1/chats/{id}/messages")
async def post_message(request: web.Request) -> web.Response:
    user_id = caller(request)
    chat_id = path_uuid(request, "id")
    body = await parse_body(request, PostMessageBody)
    command = SendMessage(chat_id=chat_id, client_msg_id=body.client_msg_id, text=body.text)
    reply = await write(request, topics.MESSAGE_SEND, str(chat_id), command, user_id)
    return web.json_response({"message": reply.result["message"]}, status=200 if reply.duplicate else 201)
