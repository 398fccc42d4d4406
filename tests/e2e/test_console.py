"""The operator console on real workers: two streams workers and one projections worker on their own
topic prefix, tables filled through the command bus, every check through the console's JSON (and
the HTML where escaping and the login matter). The browser's view is tests/browser/."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from projections.catalogue import PROJECTIONS
from schemas import topics
from schemas.commands import CreateChat, MessageResult, SendMessage
from schemas.console import BadRecordsPage, KeysPage, RebuildPage, TablesPage, TopicsPage, ValuePage
from tests.conftest import cloned_database
from tests.integration.streams_harness import StreamsSystem, streams_system
from tests.processes import Process, free_port, start, wait_http

pytestmark = pytest.mark.e2e

TOKEN = secrets.token_urlsafe(32)
CHATS = 12
HOSTILE = '<script>alert("console")</script>'
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PAUSE_S = 1.5


@dataclass
class Console:
    system: StreamsSystem
    streams: list[Process]
    projections: Process
    chat_ids: list[str]
    message_ids: list[str]

    def url(self, worker: Process) -> str:
        return f"http://127.0.0.1:{worker.env['port']}"


def start_worker(kind: str, name: str, env: dict[str, str], log_dir: Path) -> Process:
    port = free_port()
    args = [kind, "worker", "-l", "info", "--web-port", str(port)]
    worker = start(name, args, {**env, "WORKER_WEB_PORT": str(port)}, log_dir)
    worker.env["port"] = str(port)
    return worker


async def ready(worker: Process) -> None:
    await asyncio.to_thread(wait_http, worker, f"http://127.0.0.1:{worker.env['port']}/healthz", 90)


async def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def tables_of(url: str) -> TablesPage:
    status, body = await get_json(f"{url}/console/tables?format=json", BEARER)
    assert status == 200, body
    return TablesPage.model_validate(body)


async def until(check: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll the async `check` until it returns something true."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: still {last!r} after {timeout}s")


@pytest.fixture(scope="module")
async def console(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, template_database: str
) -> AsyncIterator[Console]:
    log_dir = tmp_path_factory.mktemp("console")
    async with (
        cloned_database(template_database) as database_url,
        streams_system(f"{topic_prefix}console.", log_dir, jwt_secret, database_url=database_url) as system,
    ):
        env = {
            "TOPIC_PREFIX": system.settings.topic_prefix,
            "TOPIC_PARTITIONS": str(system.settings.topic_partitions),
            "DATABASE_URL": database_url,
            "WORKER_DATA_DIR": str(log_dir / "faust"),
            "OPERATOR_TOKEN": TOKEN,
        }
        streams = [start_worker("streams", "streams-0", env, log_dir)]
        projections = start_worker("projections", "projections", env, log_dir)
        workers = [*streams, projections]
        try:
            await asyncio.gather(*(ready(w) for w in workers))
            # The second after the first is up: two that start at once on new topics can leave a
            # changelog unassigned until the next rebalance (Faust assigns before the topic exists).
            streams.append(start_worker("streams", "streams-1", env, log_dir))
            workers.append(streams[1])
            await ready(streams[1])
            console = Console(system, streams, projections, [], [])
            await until(lambda: assigned(console), "both streams workers own partitions", timeout=90)
            owner = uuid.uuid4()
            chat_ids = console.chat_ids
            for i in range(CHATS):
                chat_id = uuid.uuid4()
                create = CreateChat(chat_id=chat_id, type="group", title=f"ops {i}", member_ids=[uuid.uuid4()])
                assert (await system.bus.ask(topics.CHAT_COMMANDS, str(chat_id), create, owner)).ok
                chat_ids.append(str(chat_id))
            message_ids = console.message_ids
            for i, chat in enumerate(chat_ids[:3]):
                send = SendMessage(chat_id=uuid.UUID(chat), client_msg_id=f"c{i}", text=f"{HOSTILE} {i}")
                reply = await system.bus.ask(topics.MESSAGE_SEND, chat, send, owner)
                assert reply.ok and isinstance(reply.result, MessageResult), reply
                message_ids.append(str(reply.result.message.id))
            yield console
        finally:
            for worker in workers:
                worker.stop()


async def assigned(console: Console) -> bool:
    """Both streams workers own partitions, every partition of every table has an active owner, and
    the group is not moving them."""
    page = await tables_of(console.url(console.streams[0]))
    owners = {p.owner for t in page.tables for p in t.partitions if p.state == "active"}
    every_partition = all(p.state == "active" for t in page.tables for p in t.partitions)
    return not page.rebalancing and every_partition and len(owners) == 2


async def settled(console: Console, worker: Process) -> TablesPage | None:
    """The merged tables once both streams workers own partitions and every count is in."""
    page = await tables_of(console.url(worker))
    chats = next(t for t in page.tables if t.name == "chat_state")
    owners = {p.owner for p in chats.partitions}
    if page.rebalancing or not chats.complete or chats.total_keys != len(console.chat_ids) or len(owners) != 2:
        return None
    return page


async def test_tables_are_counted_across_both_streams_workers(console: Console) -> None:
    urls = {console.url(w) for w in console.streams}
    for worker in console.streams:
        page = await until(lambda w=worker: settled(console, w), "chat_state counted on both workers")
        assert {w.url for w in page.workers} == urls and all(w.answered for w in page.workers)
        tables = {t.name: t for t in page.tables}
        assert set(tables) == {"chat_state", "message_index", "event_checkpoint", "usernames"}
        assert tables["message_index"].total_keys == len(console.message_ids)
        for table in tables.values():
            assert table.help and table.changelog_topic.endswith(f"{table.name}-changelog")
            assert len(table.partitions) == console.system.settings.topic_partitions
            assert all(p.owner in urls and p.state == "active" for p in table.partitions)
            assert sum(p.keys or 0 for p in table.partitions) == table.total_keys
        assert sum(p.changelog_end_offset or 0 for p in tables["chat_state"].partitions) >= CHATS


async def walk(url: str, table: str, prefix: str, limit: int) -> list[str]:
    seen: list[str] = []
    after = ""
    for _ in range(100):
        query = f"prefix={prefix}&after={after}&limit={limit}&format=json"
        status, body = await get_json(f"{url}/console/tables/{table}/keys?{query}", BEARER)
        assert status == 200, body
        page = KeysPage.model_validate(body)
        assert page.complete and len(page.keys) <= limit
        seen += [k.key for k in page.keys]
        if page.next_after is None:
            return seen
        after = page.next_after
    raise AssertionError("the keys never ended")


async def test_keys_page_through_every_key_exactly_once(console: Console) -> None:
    url = console.url(console.streams[0])
    await until(lambda: settled(console, console.streams[0]), "chat_state settled")
    assert await walk(url, "chat_state", "", 5) == sorted(console.chat_ids)
    prefix = console.chat_ids[0][:1]
    assert await walk(url, "chat_state", prefix, 2) == sorted(c for c in console.chat_ids if c.startswith(prefix))
    assert await walk(url, "message_index", "", 1) == sorted(console.message_ids)


async def test_a_value_shows_its_partition_and_worker(console: Console) -> None:
    url = console.url(console.streams[1])
    page = await until(lambda: settled(console, console.streams[1]), "chat_state settled")
    owner_of = {p.partition: p.owner for p in next(t for t in page.tables if t.name == "message_index").partitions}
    message_id = console.message_ids[0]
    status, body = await get_json(f"{url}/console/tables/message_index/value?key={message_id}&format=json", BEARER)
    assert status == 200, body
    value = ValuePage.model_validate(body)
    assert value.found and value.value["id"] == message_id and HOSTILE in value.value["text"]
    assert value.partition is not None and value.worker == owner_of[value.partition]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/console/tables/message_index/value?key={message_id}", headers=BEARER) as response,
    ):
        html = await response.text()
        assert response.status == 200 and "<script>" not in html and "&lt;script&gt;" in html
        assert "script-src" not in response.headers["Content-Security-Policy"]
    status, body = await get_json(f"{url}/console/tables/chat_state/value?key=no-such-chat&format=json", BEARER)
    assert status == 404 and not ValuePage.model_validate(body).found


async def test_the_projections_worker_has_no_tables_but_shows_topics_and_lag(console: Console) -> None:
    url = console.url(console.projections)
    page = await tables_of(url)
    assert not page.has_tables and "no Faust tables" in page.note and page.tables == []

    async def caught_up() -> TopicsPage | None:
        status, body = await get_json(f"{url}/console/topics?format=json", BEARER)
        assert status == 200, body
        view = TopicsPage.model_validate(body)
        chats = next(p for p in view.projections if p.projection == "chats")
        done = chats.lag_events == 0 and sum(p.end_offset for p in chats.partitions) >= CHATS
        return view if done else None

    view = await until(caught_up, "the chats projection caught up")
    prefix = console.system.settings.topic_prefix
    assert {t.name for t in view.topics} == {prefix + spec.name for spec in topics.ALL}
    assert {p.projection for p in view.projections} == set(PROJECTIONS)
    assert all(p.lag_seconds == 0.0 for lag in view.projections for p in lag.partitions if p.lag_events == 0)
    commands = next(t for t in view.topics if t.name == prefix + topics.CHAT_COMMANDS.name)
    streams_group = prefix + "messenger-streams"
    committed = [g for p in commands.partitions for g in p.groups if g.group == streams_group]
    assert sum(p.end_offset for p in commands.partitions) == CHATS
    assert all(g.committed is None or g.lag is not None for g in committed)


async def test_without_the_token_nothing_is_shown(console: Console) -> None:
    url = console.url(console.streams[0])
    for path in ("/console/tables", "/console/tables/chat_state/keys", "/console/topics", "/console/internal/tables"):
        status, body = await get_json(f"{url}{path}?format=json")
        assert status == 401 and body["error"]["code"] == "unauthenticated", path
        status, _ = await get_json(f"{url}{path}?format=json", {"Authorization": f"Bearer {TOKEN}x"})
        assert status == 401
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/console/tables", headers={"Accept": "text/html"}, allow_redirects=False) as response,
    ):
        assert response.status == 303 and response.headers["Location"].startswith("/console/login")


async def test_a_person_logs_in_with_the_token(console: Console) -> None:
    url = console.url(console.streams[0])
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{url}/console/login") as form:
            assert form.status == 200 and 'id="login-form"' in await form.text()
        data = {"token": TOKEN, "next": "/console/tables"}
        async with session.post(
            f"{url}/console/login", data=data, headers={"Origin": url}, allow_redirects=False
        ) as answer:
            assert answer.status == 303 and "HttpOnly" in answer.headers["Set-Cookie"]
            assert TOKEN not in answer.headers["Set-Cookie"]
        async with session.get(f"{url}/console/tables") as page:
            text = await page.text()
            assert page.status == 200 and 'id="tables"' in text and 'data-table="chat_state"' in text
        async with session.get(f"{url}/console/static/console.css") as style:
            assert style.status == 200 and style.content_type == "text/css"
        async with session.get(f"{url}/console/static/pages.py") as other:
            assert other.status == 404
        async with session.post(f"{url}/console/logout", headers={"Origin": url}, allow_redirects=False) as out:
            assert out.status == 303
        async with session.get(f"{url}/console/tables?format=json") as after:
            assert after.status == 401


async def test_bad_records_and_rebuilds_are_listed(console: Console) -> None:
    """A command that is no command reaches the chat agent: its dead letter is on the page."""
    topic = console.system.settings.topic(topics.CHAT_COMMANDS.name)
    await console.system.producer.send_and_wait(topic, HOSTILE.encode(), key=b"not-a-chat")
    url = console.url(console.projections)

    async def listed() -> BadRecordsPage | None:
        status, body = await get_json(f"{url}/console/bad-records?consumer=chat_decider&format=json", BEARER)
        assert status == 200, body
        page = BadRecordsPage.model_validate(body)
        assert page.available and page.page is not None, page
        return page if page.page.total else None

    page = await until(listed, "the dead letter listed")
    assert page.page is not None
    [entry] = page.page.entries
    assert (entry.letter.topic, entry.letter.reason, entry.letter.value) == (topic, "malformed", HOSTILE.encode())
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/console/bad-records", headers=BEARER) as response,
    ):
        html = await response.text()
        assert f'data-id="{entry.id}"' in html and "<script>" not in html
    status, body = await get_json(f"{url}/console/bad-records?after=not-a-cursor&format=json", BEARER)
    assert status == 400, body
    status, body = await get_json(f"{url}/console/rebuild?format=json", BEARER)
    assert status == 200 and RebuildPage.model_validate(body) == RebuildPage(served_by=url, available=True)


async def test_a_projection_behind_shows_its_lag_in_events_and_seconds(console: Console) -> None:
    """The projections worker stopped, new chats: a streams worker's page shows the chats projection
    behind by those events, and by at least the time since the last one it applied."""
    assert console.projections.stop() == 0
    await asyncio.sleep(PAUSE_S)
    owner = uuid.uuid4()
    for _ in range(4):
        chat_id = uuid.uuid4()
        create = CreateChat(chat_id=chat_id, type="group", title="late", member_ids=[])
        assert (await console.system.bus.ask(topics.CHAT_COMMANDS, str(chat_id), create, owner)).ok
        console.chat_ids.append(str(chat_id))
    status, body = await get_json(f"{console.url(console.streams[0])}/console/topics?format=json", BEARER)
    assert status == 200, body
    chats = next(p for p in TopicsPage.model_validate(body).projections if p.projection == "chats")
    assert chats.lag_events == 4
    behind = [p for p in chats.partitions if p.lag_events and p.next_offset > 0]
    assert behind and all(p.lag_seconds is not None and p.lag_seconds >= PAUSE_S for p in behind), behind
    assert all(p.lag_seconds == 0.0 for p in chats.partitions if not p.lag_events)


async def test_a_stopped_worker_is_shown_as_not_answering(console: Console) -> None:
    """Last of the module: the worker is killed, and until the group notices (10 s), its partitions
    are shown as not answering rather than left out."""
    alive, doomed = console.streams
    await until(lambda: settled(console, alive), "chat_state settled")
    doomed.kill9()
    page = await tables_of(console.url(alive))
    status = {w.url: w for w in page.workers}
    assert status[console.url(doomed)].answered is False and status[console.url(doomed)].error
    chats = next(t for t in page.tables if t.name == "chat_state")
    lost = [p for p in chats.partitions if p.owner == console.url(doomed)]
    assert lost and all(p.state == "not answering" and p.keys is None for p in lost)
    assert not chats.complete
