"""Schemathesis against docs/swagger.yaml on a running gateway: no 5xx, answers that fit the spec.

The system runs as it does in production: a streams worker, a projections worker and
`python -m gateway`, on their own topics and database. Every operation of the spec is called with
schema-driven input (boundary values, wrong types, missing fields: the coverage phase) and random
input, valid and invalid (the fuzzing phase), with a registered user's bearer token.

Checks left out, and why:
- `positive_data_acceptance`: input that fits the schema may still be refused with a 400 that
  names the field (a member id of no existing user, a username that does not fold to `a-z0-9_.`);
  the schema cannot say which users exist.
- `use_after_free`, `ensure_resource_availability`: stateful checks that need links between
  operations, which the spec does not declare.

`running_gateway` is shared with tests/e2e/test_fuzz_ws.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
from aiohttp import ClientSession
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from config.settings import GatewaySettings
from schemas.text import PG_BIGINT_MAX
from streams.topics import create_topics
from tests.conftest import ADMIN_DATABASE_URL, RUN_ID, database_url_for
from tests.e2e.workers import running_workers
from tests.processes import Process, free_port, start, wait_http

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SWAGGER_YAML = ROOT / "docs" / "swagger.yaml"

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "25"))
"""Random examples per operation in the fuzzing phase (the coverage phase adds its own)."""
OPERATION_TIMEOUT_S = 120
"""A bound on one operation's whole run: a hang fails the test instead of stalling the suite."""
REQUEST_TIMEOUT_S = 15.0
"""A bound on one answer; writes wait for Kafka and the projections, reads answer in milliseconds."""

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": int(os.environ.get("FUZZ_SEED", "20260101")),
        "request-timeout": REQUEST_TIMEOUT_S,
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "allow-x00": True},
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            "use_after_free": {"enabled": False},
            "ensure_resource_availability": {"enabled": False},
        },
    }
)

schema = schemathesis.openapi.from_path(SWAGGER_YAML, config=CONFIG)


@dataclass
class RunningGateway:
    base: str
    process: Process
    settings: GatewaySettings


async def clone_database(template: str, name: str) -> str:
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return database_url_for(name)


def gateway_env(settings: GatewaySettings) -> dict[str, str]:
    """The variables `python -m gateway` reads its settings from (they win over `.env`)."""
    names = (
        "topic_prefix",
        "topic_partitions",
        "jwt_secret",
        "database_url",
        "gateway_instance_id",
        "gateway_host",
        "gateway_port",
    )
    return {name.upper(): str(getattr(settings, name)) for name in names}


@asynccontextmanager
async def running_gateway(
    name: str, topic_prefix: str, template_database: str, log_dir: Path, jwt_secret: str
) -> AsyncIterator[RunningGateway]:
    """Workers and `python -m gateway` on topics and a database of their own, stopped on exit."""
    prefix = f"{topic_prefix}{name}."
    database_url = await clone_database(template_database, f"test_{RUN_ID}_{name}")
    settings = GatewaySettings(
        topic_prefix=prefix,
        topic_partitions=4,
        jwt_secret=jwt_secret,
        database_url=database_url,
        gateway_instance_id=f"{name}-{uuid.uuid4().hex[:6]}",
        gateway_host="127.0.0.1",
        gateway_port=free_port(),
    )
    await create_topics(settings)
    with running_workers(prefix, database_url, log_dir):
        process = start("gateway", ["gateway"], gateway_env(settings), log_dir)
        base = f"http://127.0.0.1:{settings.gateway_port}"
        try:
            await asyncio.to_thread(wait_http, process, f"{base}/healthz", 60)
            yield RunningGateway(base, process, settings)
        finally:
            process.stop()


async def call(http: ClientSession, method: str, url: str, token: str | None = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kwargs) as response:
        assert response.status in (200, 201), f"{method} {url}: {response.status} {await response.text()}"
        return await response.json()


async def registered_user(http: ClientSession, base: str, attempts: int = 5) -> tuple[str, str]:
    """A new user's id and access token (logged in before fuzzing can trip the login throttle).

    Right after the workers start, their consumer groups may still be settling and the first
    command can time out (503); a new name is tried then, since the first may yet be registered.
    """
    for attempt in range(attempts):
        credentials = {"username": f"fuzz{uuid.uuid4().hex[:8]}", "password": "correct horse battery"}
        async with http.post(f"{base}/api/v1/auth/register", json=credentials) as response:
            if response.status == 503 and attempt < attempts - 1:
                continue
            assert response.status == 201, await response.text()
            user = (await response.json())["user"]
        login = await call(http, "POST", f"{base}/api/v1/auth/login", json=credentials)
        return str(user["id"]), str(login["access_token"])
    raise AssertionError("unreachable")


@dataclass
class FuzzTarget:
    """The caller, another user and a group chat of both with a message in it.

    Random ids name nothing, and everything behind a chat's 404 would go untested; so half of the
    generated ids (`steer`) are replaced with these real ones.
    """

    gateway: RunningGateway
    token: str
    other_user_id: str
    chat_id: str


@pytest.fixture(scope="module")
async def target(
    topic_prefix: str, template_database: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str
) -> AsyncIterator[FuzzTarget]:
    async with (
        running_gateway(
            "fuzzrest", topic_prefix, template_database, tmp_path_factory.mktemp("fuzzrest"), jwt_secret
        ) as gateway,
        ClientSession() as http,
    ):
        base = gateway.base
        _, token = await registered_user(http, base)
        other_id, _ = await registered_user(http, base)
        body = {"type": "group", "title": "fuzz", "member_ids": [other_id]}
        chat = (await call(http, "POST", f"{base}/api/v1/chats", token, json=body))["chat"]
        message = {"text": "hello", "client_msg_id": "fuzz-1"}
        await call(http, "POST", f"{base}/api/v1/chats/{chat['id']}/messages", token, json=message)
        yield FuzzTarget(gateway, token, other_id, str(chat["id"]))


def is_even_uuid(value: Any) -> bool:
    """A valid UUID string picked by its own bits: the choice is deterministic, and replacing
    it keeps the case as valid or invalid as it was."""
    try:
        return isinstance(value, str) and uuid.UUID(value).int % 2 == 0
    except ValueError:
        return False


def steer(case: Case[Any], target: FuzzTarget) -> None:
    """Point half of the generated ids at the fixture's real chat and user."""
    path = case.operation.path
    params = case.path_parameters
    real_id = target.chat_id if path.startswith("/api/v1/chats/") else target.other_user_id
    if is_even_uuid(params.get("id")):
        params["id"] = real_id
    if is_even_uuid(params.get("user_id")):
        params["user_id"] = target.other_user_id
    body = case.body
    if isinstance(body, dict):
        if is_even_uuid(body.get("user_id")):
            body["user_id"] = target.other_user_id
        members = body.get("member_ids")
        if isinstance(members, list) and members and all(is_even_uuid(m) for m in members):
            body["member_ids"] = [target.other_user_id]


@pytest.mark.timeout(OPERATION_TIMEOUT_S)
@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=EXAMPLES_PER_OPERATION)
def test_every_operation_survives_schema_driven_input(case: Case[Any], target: FuzzTarget) -> None:
    steer(case, target)
    case.call_and_validate(
        base_url=target.gateway.base,
        headers={"Authorization": f"Bearer {target.token}"},
    )


# --- edge inputs the runs above once found, pinned ---------------------------------------------------
# NUL (U+0000) cannot be stored or compared by PostgreSQL, and integers passed to asyncpg as bigint
# must fit in 64 bits: the models of schemas/api.py refuse both (schemas/text.py), so that nothing
# is acknowledged and then lost on its way to the read models.

NUL = "\u0000"
BEYOND_INT64 = 2**64


async def answer(target: FuzzTarget, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {target.token}"}
    async with (
        ClientSession() as http,
        http.request(method, target.gateway.base + path, headers=headers, **kwargs) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


@pytest.mark.parametrize("value", [PG_BIGINT_MAX + 1, BEYOND_INT64])
@pytest.mark.parametrize("parameter", ["before", "after"])
async def test_a_seq_beyond_bigint_is_refused_naming_it(target: FuzzTarget, parameter: str, value: int) -> None:
    path = f"/api/v1/chats/{target.chat_id}/messages?{parameter}={value}"
    status, body = await answer(target, "GET", path)
    assert (status, body["error"]["code"], body["error"]["details"]["field"]) == (400, "invalid_request", parameter)


async def test_a_seq_of_exactly_the_bigint_maximum_is_an_empty_page(target: FuzzTarget) -> None:
    status, body = await answer(target, "GET", f"/api/v1/chats/{target.chat_id}/messages?after={PG_BIGINT_MAX}")
    assert (status, body) == (200, {"messages": []})


async def test_a_nul_in_the_search_prefix_is_not_a_server_error(target: FuzzTarget) -> None:
    status, _ = await answer(target, "GET", "/api/v1/users", params={"q": f"a{NUL}"})
    assert status < 500


async def test_a_nul_in_a_login_username_is_not_a_server_error(target: FuzzTarget) -> None:
    status, _ = await answer(target, "POST", "/api/v1/auth/login", json={"username": f"a{NUL}b", "password": "x"})
    assert status in (400, 401)


async def test_a_message_with_a_nul_is_refused_or_readable(target: FuzzTarget) -> None:
    path = f"/api/v1/chats/{target.chat_id}/messages"
    status, body = await answer(target, "POST", path, json={"text": f"a{NUL}b", "client_msg_id": "edge-nul"})
    if status == 400:
        return
    assert status == 201, body
    _, page = await answer(target, "GET", f"{path}?after=0&limit=200")
    assert body["message"]["id"] in {m["id"] for m in page["messages"]}, "an acknowledged message is missing"


async def test_a_profile_with_a_nul_is_refused_or_kept(target: FuzzTarget) -> None:
    status, user = await answer(target, "PATCH", "/api/v1/users/me", json={"display_name": f"a{NUL}b"})
    assert status == 400 or (status == 200 and user["display_name"] == f"a{NUL}b"), (status, user)


async def test_a_chat_title_with_a_nul_is_refused_or_created(target: FuzzTarget) -> None:
    body = {"type": "group", "title": f"t{NUL}", "member_ids": [target.other_user_id]}
    status, answered = await answer(target, "POST", "/api/v1/chats", json=body)
    assert status in (400, 201), (status, answered)


async def test_a_registration_with_a_nul_is_refused_or_usable(target: FuzzTarget) -> None:
    credentials = {"username": f"nul{uuid.uuid4().hex[:8]}", "password": "correct horse battery"}
    status, _ = await answer(target, "POST", "/api/v1/auth/register", json={**credentials, "display_name": NUL})
    if status == 400:
        return
    assert status == 201
    status, body = await answer(target, "POST", "/api/v1/auth/login", json=credentials)
    assert status == 200, body


def test_the_gateway_is_still_up(target: FuzzTarget) -> None:
    process = target.gateway.process
    assert process.popen.poll() is None, f"the gateway exited:\n{process.log()[-4000:]}"
    wait_http(process, f"{target.gateway.base}/healthz", timeout=10)
