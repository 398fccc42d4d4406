"""Every REST call of contract v1 with a real HTTP client, against real workers and services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.e2e.in_process import InProcessSystem, in_process_system

pytestmark = pytest.mark.e2e


class Api(InProcessSystem):
    async def user(self, name: str | None = None, password: str = "correct horse") -> dict[str, Any]:
        """A registered, logged-in user: its User plus `token` and `refresh_token`."""
        name = name or f"u{uuid.uuid4().hex[:10]}"
        status, body = await self.call("POST", "/api/v1/auth/register", json={"username": name, "password": password})
        assert status == 201, body
        status, login = await self.call("POST", "/api/v1/auth/login", json={"username": name, "password": password})
        assert status == 200, login
        return {**login["user"], "token": login["access_token"], "refresh_token": login["refresh_token"]}


@pytest.fixture(scope="module")
async def api(
    topic_prefix: str, template_database: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str
) -> AsyncIterator[Api]:
    logs = tmp_path_factory.mktemp("rest")
    async with in_process_system("rest", topic_prefix, template_database, logs, jwt_secret, partitions=4) as system:
        yield Api(system.http, system.base, system.settings, system.app, system.data_dir)


def error_code(body: Any) -> str:
    return str(body["error"]["code"])


async def test_register_login_and_me(api: Api) -> None:
    name = f"Mixed{uuid.uuid4().hex[:6]}"
    status, body = await api.call(
        "POST", "/api/v1/auth/register", json={"username": name, "password": "password1", "display_name": "Ann"}
    )
    assert status == 201
    user = body["user"]
    assert user["username"] == name.lower() and user["display_name"] == "Ann" and user["bio"] == ""
    status, body = await api.call(
        "POST", "/api/v1/auth/register", json={"username": name.upper(), "password": "password1"}
    )
    assert status == 409 and error_code(body) == "username_taken"
    status, login = await api.call(
        "POST", "/api/v1/auth/login", json={"username": name.upper(), "password": "password1"}
    )
    assert status == 200 and login["token_type"] == "Bearer" and login["expires_in"] == 900
    status, me = await api.call("GET", "/api/v1/users/me", login["access_token"])
    assert status == 200 and me == user


async def test_register_validates_fields(api: Api) -> None:
    for body, field in [
        ({"username": "ab", "password": "password1"}, "username"),
        ({"username": "has space", "password": "password1"}, "username"),
        ({"username": "okname", "password": "short"}, "password"),
        ({"username": "okname", "password": "password1", "display_name": "x" * 65}, "display_name"),
    ]:
        status, answer = await api.call("POST", "/api/v1/auth/register", json=body)
        assert status == 400 and error_code(answer) == "invalid_request"
        assert answer["error"]["details"]["field"] == field


async def test_wrong_password_and_unknown_user_answer_alike_then_throttle(api: Api) -> None:
    user = await api.user()
    wrong = await api.call("POST", "/api/v1/auth/login", json={"username": user["username"], "password": "nope nope"})
    unknown = await api.call("POST", "/api/v1/auth/login", json={"username": "nobody_here", "password": "nope nope"})
    assert wrong == unknown == (401, wrong[1]) and error_code(wrong[1]) == "invalid_credentials"
    for _ in range(5):
        status, body = await api.call(
            "POST", "/api/v1/auth/login", json={"username": user["username"], "password": "bad password"}
        )
    assert status == 429 and error_code(body) == "rate_limited"


async def test_refresh_rotates_and_reuse_kills_the_family(api: Api) -> None:
    user = await api.user()
    status, first = await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert status == 200 and first["refresh_token"] != user["refresh_token"]
    status, body = await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert status == 401 and error_code(body) == "invalid_token"
    status, body = await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert status == 401
    status, _ = await api.call("GET", "/api/v1/users/me", first["access_token"])
    assert status == 200  # access tokens live until they expire


async def test_logout_kills_the_refresh_token(api: Api) -> None:
    user = await api.user()
    assert (await api.call("POST", "/api/v1/auth/logout", json={"refresh_token": user["refresh_token"]}))[0] == 204
    status, body = await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert status == 401 and error_code(body) == "invalid_token"


async def test_calls_without_or_with_a_bad_token_are_refused(api: Api) -> None:
    assert (await api.call("GET", "/api/v1/users/me"))[0] == 401
    status, body = await api.call("GET", "/api/v1/chats", "not-a-token")
    assert status == 401 and error_code(body) == "invalid_token"


async def test_profile_update_is_read_back_at_once(api: Api) -> None:
    user = await api.user()
    status, body = await api.call(
        "PATCH", "/api/v1/users/me", user["token"], json={"display_name": "New", "bio": "hello"}
    )
    assert status == 200 and body["display_name"] == "New" and body["bio"] == "hello"
    status, body = await api.call("PATCH", "/api/v1/users/me", user["token"], json={"bio": "x" * 501})
    assert status == 400 and body["error"]["details"]["field"] == "bio"


async def test_user_lookup_and_prefix_search(api: Api) -> None:
    tag = uuid.uuid4().hex[:6]
    a = await api.user(f"srch{tag}_a")
    b = await api.user(f"srch{tag}_b")
    status, body = await api.call("GET", f"/api/v1/users/{b['id']}", a["token"])
    assert status == 200 and body["username"] == b["username"]
    assert (await api.call("GET", f"/api/v1/users/{uuid.uuid4()}", a["token"]))[0] == 404
    status, body = await api.call("GET", f"/api/v1/users?q=SRCH{tag}&limit=1", a["token"])
    assert status == 200 and [u["username"] for u in body["users"]] == [a["username"]]
    assert (await api.call("GET", "/api/v1/users?q=x&limit=101", a["token"]))[0] == 400


async def test_direct_chat_is_one_per_pair_and_private(api: Api) -> None:
    a, b, c = await api.user(), await api.user(), await api.user()
    status, body = await api.call("POST", "/api/v1/chats", a["token"], json={"type": "direct", "member_ids": [b["id"]]})
    assert status == 201
    chat = body["chat"]
    assert chat["type"] == "direct" and sorted(m["user_id"] for m in chat["members"]) == sorted([a["id"], b["id"]])
    status, again = await api.call(
        "POST", "/api/v1/chats", b["token"], json={"type": "direct", "member_ids": [a["id"]]}
    )
    assert status == 200 and again["chat"]["id"] == chat["id"]
    first, second = sorted((a["id"], b["id"]))
    unkeyed = uuid.uuid5(uuid.UUID("0b6a1d2e-8f3c-4b7e-9d41-2c5e7a9f1b03"), f"{first}|{second}")
    assert chat["id"] != str(unkeyed), "the id of a direct chat must not be computable from the pair alone"
    assert (await api.call("GET", f"/api/v1/chats/{chat['id']}", c["token"]))[0] == 404
    assert (await api.call("GET", f"/api/v1/chats/{chat['id']}/messages", c["token"]))[0] == 404
    status, body = await api.call(
        "POST", f"/api/v1/chats/{chat['id']}/messages", c["token"], json={"text": "hi", "client_msg_id": "x"}
    )
    assert status in (403, 404)
    status, body = await api.call(
        "POST", "/api/v1/chats", a["token"], json={"type": "direct", "member_ids": [b["id"], c["id"]]}
    )
    assert status == 400 and body["error"]["details"]["field"] == "member_ids"


async def test_group_members_roles_and_removal(api: Api) -> None:
    owner, m1, m2 = await api.user(), await api.user(), await api.user()
    status, body = await api.call(
        "POST", "/api/v1/chats", owner["token"], json={"type": "group", "title": "G", "member_ids": [m1["id"]]}
    )
    assert status == 201
    chat = body["chat"]
    roles = {m["user_id"]: m["role"] for m in chat["members"]}
    assert roles == {owner["id"]: "owner", m1["id"]: "member"}
    status, body = await api.call(
        "POST", f"/api/v1/chats/{chat['id']}/members", m1["token"], json={"user_id": m2["id"]}
    )
    assert status == 403 and error_code(body) == "forbidden"
    status, body = await api.call(
        "POST", f"/api/v1/chats/{chat['id']}/members", owner["token"], json={"user_id": m2["id"]}
    )
    assert status == 200 and m2["id"] in {m["user_id"] for m in body["members"]}
    status, _ = await api.call("GET", f"/api/v1/chats/{chat['id']}", m2["token"])
    assert status == 200
    assert (await api.call("DELETE", f"/api/v1/chats/{chat['id']}/members/{m2['id']}", m1["token"]))[0] == 403
    assert (await api.call("DELETE", f"/api/v1/chats/{chat['id']}/members/{m2['id']}", owner["token"]))[0] == 204
    assert (await api.call("GET", f"/api/v1/chats/{chat['id']}", m2["token"]))[0] == 404
    assert (await api.call("DELETE", f"/api/v1/chats/{chat['id']}/members/{m1['id']}", m1["token"]))[
        0
    ] == 204  # leaving


async def users_in_read_model(api: Api, count: int) -> list[str]:
    """Ids of `count` users the gateway finds (it checks members against the read model); the
    rows are written directly, since registering hundreds costs an argon2id hash each."""
    ids = [uuid.uuid4() for _ in range(count)]
    db = await asyncpg.connect(api.settings.database_url)
    try:
        await db.executemany(
            "INSERT INTO users (id, username, display_name, created_at) VALUES ($1, $2, 'g', now())",
            [(i, f"g{i.hex[:20]}") for i in ids],
        )
    finally:
        await db.close()
    return [str(i) for i in ids]


async def test_a_group_holds_at_most_max_group_members(api: Api) -> None:
    """v1.1: a group beyond MAX_GROUP_MEMBERS is 409 `group_full`: more ids than it holds (refused
    before any work), one over the limit with its creator, or an add to a full group."""
    limit = api.settings.max_group_members
    owner = await api.user()
    others = await users_in_read_model(api, limit + 1)
    create = "/api/v1/chats"
    status, body = await api.call("POST", create, owner["token"], json={"type": "group", "member_ids": others})
    assert status == 409 and error_code(body) == "group_full" and body["error"]["details"]["field"] == "member_ids"
    status, body = await api.call("POST", create, owner["token"], json={"type": "group", "member_ids": others[:limit]})
    assert status == 409 and error_code(body) == "group_full", "the creator is a member too"
    status, body = await api.call(
        "POST", create, owner["token"], json={"type": "group", "member_ids": others[: limit - 1]}
    )
    assert status == 201 and len(body["chat"]["members"]) == limit
    add = f"/api/v1/chats/{body['chat']['id']}/members"
    status, body = await api.call("POST", add, owner["token"], json={"user_id": others[limit]})
    assert status == 409 and error_code(body) == "group_full"


async def test_messages_history_idempotency_and_chat_list(api: Api) -> None:
    a, b = await api.user(), await api.user()
    _, body = await api.call("POST", "/api/v1/chats", a["token"], json={"type": "direct", "member_ids": [b["id"]]})
    chat_id = body["chat"]["id"]
    sent = []
    for i in range(1, 61):
        status, body = await api.call(
            "POST",
            f"/api/v1/chats/{chat_id}/messages",
            a["token"] if i % 2 else b["token"],
            json={"text": f"m{i}", "client_msg_id": f"c{i}"},
        )
        assert status == 201
        sent.append(body["message"])
    assert [m["seq"] for m in sent] == list(range(1, 61))
    status, again = await api.call(
        "POST", f"/api/v1/chats/{chat_id}/messages", a["token"], json={"text": "other", "client_msg_id": "c1"}
    )
    assert status == 200 and again["message"] == sent[0]
    status, page = await api.call("GET", f"/api/v1/chats/{chat_id}/messages", b["token"])
    assert status == 200 and [m["seq"] for m in page["messages"]] == list(range(11, 61))
    _, page = await api.call("GET", f"/api/v1/chats/{chat_id}/messages?before=11&limit=5", b["token"])
    assert [m["seq"] for m in page["messages"]] == [6, 7, 8, 9, 10]
    _, page = await api.call("GET", f"/api/v1/chats/{chat_id}/messages?after=58", b["token"])
    assert [m["text"] for m in page["messages"]] == ["m59", "m60"]
    assert (await api.call("GET", f"/api/v1/chats/{chat_id}/messages?limit=201", b["token"]))[0] == 400
    status, body = await api.call(
        "POST", f"/api/v1/chats/{chat_id}/messages", a["token"], json={"text": "", "client_msg_id": "e"}
    )
    assert status == 400 and body["error"]["details"]["field"] == "text"
    status, chats = await api.call("GET", "/api/v1/chats", b["token"])
    listed = chats["chats"][0]
    assert listed["id"] == chat_id and listed["last_message"]["seq"] == 60


async def test_unread_count_follows_messages_of_others(api: Api) -> None:
    a, b = await api.user(), await api.user()
    _, body = await api.call(
        "POST", "/api/v1/chats", a["token"], json={"type": "group", "title": "u", "member_ids": [b["id"]]}
    )
    chat_id = body["chat"]["id"]
    for i in range(3):
        await api.call(
            "POST", f"/api/v1/chats/{chat_id}/messages", a["token"], json={"text": "x", "client_msg_id": f"u{i}"}
        )

    async def unread(user: dict[str, Any]) -> int:
        return int((await api.call("GET", f"/api/v1/chats/{chat_id}", user["token"]))[1]["unread_count"])

    assert await unread(a) == 0
    # b's marker is written by the messages projection; a's reads are what read-your-writes covers
    for _ in range(50):
        if await unread(b) == 3:
            break
        await asyncio.sleep(0.1)
    assert await unread(b) == 3

    status, body = await api.call("GET", f"/api/v1/chats/{chat_id}/read-markers", a["token"])
    assert status == 200
    markers = {m["user_id"]: m["seq"] for m in body["read_markers"]}
    assert markers == {a["id"]: 3, b["id"]: 0} and len(body["read_markers"]) == 2
    outsider = await api.user()
    status, body = await api.call("GET", f"/api/v1/chats/{chat_id}/read-markers", outsider["token"])
    assert (status, error_code(body)) == (404, "not_found")


async def test_errors_are_enveloped_never_500(api: Api) -> None:
    user = await api.user()
    status, body = await api.call(
        "POST", "/api/v1/chats", user["token"], data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and error_code(body) == "invalid_request"
    status, body = await api.call("GET", "/api/v1/nothing-here")
    assert status == 404 and error_code(body) == "not_found"
    status, body = await api.call("GET", "/api/v1/chats/not-a-uuid", user["token"])
    assert status == 404
    status, body = await api.call("POST", "/api/v1/auth/register", data=b"x" * (70 * 1024))
    assert status == 413 and error_code(body) == "payload_too_large"


async def test_answers_that_carry_tokens_and_errors_are_not_stored_sniffed_or_framed(api: Api) -> None:
    """Issue 10, row 11: the gateway's own app (`create_app`) adds the security headers."""
    name, password = f"h{uuid.uuid4().hex[:10]}", "correct horse"
    answers = []
    async with api.http.post(f"{api.base}/api/v1/auth/register", json={"username": name, "password": password}) as r:
        answers.append((r.status, r.headers))
    async with api.http.post(f"{api.base}/api/v1/auth/login", json={"username": name, "password": password}) as r:
        answers.append((r.status, r.headers))
        refresh_token = (await r.json())["refresh_token"]
    async with api.http.post(f"{api.base}/api/v1/auth/refresh", json={"refresh_token": refresh_token}) as r:
        answers.append((r.status, r.headers))
    async with api.http.get(f"{api.base}/api/v1/users/me") as r:
        answers.append((r.status, r.headers))
    async with api.http.get(f"{api.base}/docs") as r:
        docs_headers = r.headers
    assert [status for status, _ in answers] == [201, 200, 200, 401]
    for _, headers in [*answers, (200, docs_headers)]:
        assert headers.get("X-Content-Type-Options") == "nosniff"
        assert headers.get("Referrer-Policy") == "no-referrer"
        assert headers.get("X-Frame-Options") == "DENY"
        assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", "")
    assert all(headers.get("Cache-Control") == "no-store" for _, headers in answers)
    assert "default-src 'self'" in docs_headers["Content-Security-Policy"]
