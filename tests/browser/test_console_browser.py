"""The operator console in a real browser, as an operator uses it (issue 12): two streams workers and a
projections worker on their own topics and database, gateways and a client making traffic. The
operator logs in with the token, reads the tables and their key counts merged across both streams
workers, pages through a table's keys, opens a value; then starts `python -m projections rebuild` and
watches its progress on the rebuild page while a client keeps sending and reading: no read during the
rebuild sees fewer messages than the last one before it. Screenshots of every step, phone and desktop,
in tests/browser/screenshots/test_console_browser/. Tests run in file order on one system."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiokafka.partitioner import murmur2
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from projections.catalogue import PROJECTIONS
from schemas import topics
from schemas.commands import CreateChat
from schemas.console import TablesPage
from tests.browser.chrome import DESKTOP, PHONE, BrowserSession, BrowserSessions
from tests.e2e.gateway_harness import GatewaySystem, module_system
from tests.integration.test_projections_workload import mixed_workload, produce
from tests.processes import Process, start

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

OPERATOR_TOKEN = secrets.token_urlsafe(32)
PARTITIONS = 4
CHATS_PER_PARTITION = 2
KEYS_PER_PAGE = 3
MESSAGES_BEFORE = 5
HISTORY_STEPS = 6_000
"""Steps of a random workload written straight to the event topics before the rebuild (about 1.1 events
a step), so that the rebuild lasts long enough for its progress to be seen moving."""
SETTLE_S = 60.0
SEND_ATTEMPTS = 20
REBUILD_S = 60.0
ACTIVE_PHASES = {"bulk", "indexes", "catch_up", "checksum", "swap"}
HOLDABLE_PHASES = ("bulk", "indexes", "catch_up")
"""Phases a rebuild may be frozen in without pausing the live projections worker (the swap does)."""
HOLD_S = 10.0
STREAMS_TABLES = {"chat_state", "message_index", "event_checkpoint", "usernames"}


def partition_of(key: str) -> int:
    """The partition aiokafka's default partitioner gives `key` (the command bus's, so the chat's)."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % PARTITIONS


def chat_ids_over_every_partition() -> list[str]:
    """CHATS_PER_PARTITION chat ids on each partition, so that each streams worker owns some."""
    chosen: dict[str, int] = {}
    while len(chosen) < PARTITIONS * CHATS_PER_PARTITION:
        chat_id = str(uuid.uuid4())
        if list(chosen.values()).count(partition := partition_of(chat_id)) < CHATS_PER_PARTITION:
            chosen[chat_id] = partition
    return list(chosen)


@dataclass
class Console:
    system: GatewaySystem
    streams: list[str]
    """The two streams workers' base URLs."""
    projections: str
    alice: uuid.UUID = field(default_factory=uuid.uuid4)
    bob: uuid.UUID = field(default_factory=uuid.uuid4)
    chats: list[str] = field(default_factory=list)
    direct: str = ""
    """alice and bob's direct chat, where the client sends and reads."""
    sent: int = 0
    retries: int = 0
    """Sends answered 503 (stored, not readable in time) and sent again, as the contract says."""

    @property
    def gateway(self) -> str:
        return self.system.gateways[0].url

    async def send(self, token: str, text: str) -> None:
        """A message, sent again with the same client_msg_id while the gateway answers 503 (a send
        that was stored but is not readable yet: the retry finds it, never a duplicate)."""
        url = f"{self.gateway}/api/v1/chats/{self.direct}/messages"
        body = {"text": text, "client_msg_id": uuid.uuid4().hex[:16]}
        for _ in range(SEND_ATTEMPTS):
            async with self.system.http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as answer:
                if answer.status == 503:
                    self.retries += 1
                    await asyncio.sleep(float(answer.headers.get("Retry-After", "0.2")))
                    continue
                assert answer.status in (200, 201), await answer.text()
                self.sent += 1
                return
        raise AssertionError(f"a send was answered 503 {SEND_ATTEMPTS} times")

    async def read(self, token: str) -> int:
        """How many messages of the direct chat a read shows: its newest page, whose seqs run without a
        gap up to the last message (nothing is deleted there), so the last seq is the count."""
        url = f"{self.gateway}/api/v1/chats/{self.direct}/messages?limit=20"
        async with self.system.http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200, await response.text()
            seqs = [m["seq"] for m in (await response.json())["messages"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True, seqs
        return max(seqs, default=0)


def get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def settled(page: TablesPage, workers: list[str]) -> bool:
    """Both workers answer, and every partition of every table has an active owner among them."""
    owners = {p.owner for t in page.tables for p in t.partitions}
    return (
        sorted(w.url for w in page.workers) == workers
        and all(w.answered for w in page.workers)
        and not page.rebalancing
        and owners == set(workers)
        and all(p.state == "active" for t in page.tables for p in t.partitions)
    )


async def wait_settled(workers: list[str]) -> TablesPage:
    deadline = time.monotonic() + SETTLE_S
    page = None
    while time.monotonic() < deadline:
        try:
            page = TablesPage.model_validate(
                await asyncio.to_thread(get_json, f"{workers[0]}/console/tables?format=json")
            )
            if settled(page, workers):
                return page
        except OSError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"the two streams workers did not settle in {SETTLE_S} s: {page}")


async def create_chats(console: Console) -> None:
    """alice's group chats with bob over every partition, and their direct chat."""
    system, alice, bob = console.system, console.alice, console.bob
    for chat_id in chat_ids_over_every_partition():
        body = CreateChat(chat_id=uuid.UUID(chat_id), type="group", title=f"room {chat_id[:4]}", member_ids=[bob])
        reply = await system.bus.ask(topics.CHAT_COMMANDS, chat_id, body, alice)
        assert reply.ok, reply
        assert await system.watermarks.wait_for(reply.positions)
        console.chats.append(chat_id)
    console.direct = str(await system.create_chat(alice, [bob], direct=True))
    console.chats.append(console.direct)


@pytest.fixture(scope="module")
async def console(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, template_database: str
) -> AsyncIterator[Console]:
    """The system plus a second streams worker, every process knowing OPERATOR_TOKEN, settled with
    partitions on both streams workers; chats on every partition and a few messages in one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPERATOR_TOKEN", OPERATOR_TOKEN)
        async with module_system(
            "opsview", topic_prefix, tmp_path_factory, jwt_secret, template_database, gateways=1, streams_workers=2
        ) as system:
            base = {name: url.removesuffix("/healthz") for name, url in system.worker_health.items()}
            streams = sorted([base["streams"], base["streams-b"]])
            await wait_settled(streams)
            console = Console(system, streams, base["projections"])
            await create_chats(console)
            token = await system.token(console.alice)
            for i in range(MESSAGES_BEFORE):
                await console.send(token, f"before {i}")
            yield console


# --- what the operator does in the browser (blocking Selenium calls, run in a thread) ---------------


def cell(row: WebElement, css: str) -> str:
    return str(row.find_element(By.CSS_SELECTOR, css).text)


def texts(session: BrowserSession, css: str) -> list[str]:
    return [str(e.text) for e in session.driver.find_elements(By.CSS_SELECTOR, css)]


def on_page(session: BrowserSession, name: str) -> WebElement:
    return session.find(f"main#console[data-page='{name}']")


def log_in(session: BrowserSession, worker: str, target: str = "/console/tables") -> None:
    """A page asked for without a session leads to the login form; a wrong token is refused there in
    words, the right one leads back to the page."""
    session.get(worker + target)
    session.wait(lambda d: "/console/login" in d.current_url, "no login page")
    session.shot("login-page")
    session.find("input#token").send_keys("not-the-token")
    session.follow("button#login-submit")
    assert "Wrong token" in session.find("p#login-error").text
    session.shot("wrong-token")
    assert all("login - Failed to load resource" in line and "401" in line for line in session.console_errors())
    session.find("input#token").send_keys(OPERATOR_TOKEN)
    session.follow("button#login-submit")
    session.wait(lambda d: d.current_url.endswith(target), f"not back at {target} after the login")


def read_tables(session: BrowserSession, console: Console) -> dict[int, str]:
    """The tables page: both workers answering, the five tables, chat_state's count merged across the
    workers and per partition; the owner of each partition."""
    on_page(session, "tables")
    session.shot("tables", every_screen=True)
    assert session.overflow_px(PHONE) == 0, "the tables page scrolls sideways on a phone"
    workers = {
        str(row.get_attribute("data-worker")): str(row.find_element(By.CSS_SELECTOR, "td.worker-status").text)
        for row in session.driver.find_elements(By.CSS_SELECTOR, "tr.worker-row")
    }
    assert workers == dict.fromkeys(console.streams, "answering")
    names = {str(r.get_attribute("data-table")) for r in session.driver.find_elements(By.CSS_SELECTOR, "tr.table-row")}
    assert names == STREAMS_TABLES
    total = session.find("tr.table-row[data-table='chat_state'] td.table-total").text
    assert int(total) == len(console.chats)
    owners: dict[int, str] = {}
    expected = [0] * PARTITIONS
    for chat_id in console.chats:
        expected[partition_of(chat_id)] += 1
    for row in session.driver.find_elements(By.CSS_SELECTOR, "section#table-chat_state tr.partition-row"):
        partition = int(str(row.get_attribute("data-partition")))
        cell = {name: str(row.find_element(By.CSS_SELECTOR, f"td.partition-{name}").text) for name in ("owner", "keys")}
        owners[partition] = cell["owner"]
        assert int(cell["keys"]) == expected[partition], (partition, cell)
    assert sorted(owners) == list(range(PARTITIONS))
    assert set(owners.values()) == set(console.streams), "the partitions are not spread over both workers"
    return owners


def page_through_keys(session: BrowserSession, console: Console, owners: dict[int, str]) -> list[str]:
    """chat_state's keys, KEYS_PER_PAGE a page, following the next-page link to the end; then a prefix."""
    session.follow("tr.table-row[data-table='chat_state'] a.table-keys-link")
    on_page(session, "keys")
    limit = session.find("form#keys-filter input[name='limit']")
    limit.clear()
    limit.send_keys(str(KEYS_PER_PAGE))
    session.follow("button#keys-apply")
    seen: list[str] = []
    for page in range(1, len(console.chats) + 2):
        on_page(session, "keys")
        rows = session.driver.find_elements(By.CSS_SELECTOR, "tr.key-row")
        assert 0 < len(rows) <= KEYS_PER_PAGE
        for row in rows:
            key = str(row.get_attribute("data-key"))
            partition = int(row.find_element(By.CSS_SELECTOR, "td.key-partition").text)
            assert partition == partition_of(key)
            assert row.find_element(By.CSS_SELECTOR, "td.key-worker").text == owners[partition]
            seen.append(key)
        session.shot(f"keys-page-{page}", every_screen=page == 1)
        assert page > 1 or session.overflow_px(PHONE) == 0, "the keys page scrolls sideways on a phone"
        following = session.driver.find_elements(By.CSS_SELECTOR, "a#next-page")
        if not following:
            break
        session.follow(following[0])
    assert seen == sorted(console.chats), "every key once, in order, across the pages"
    prefix = console.direct[:2]
    field_ = session.find("form#keys-filter input[name='prefix']")
    field_.clear()
    field_.send_keys(prefix)
    session.find("form#keys-filter input[name='limit']").clear()
    session.find("form#keys-filter input[name='limit']").send_keys("50")
    session.follow("button#keys-apply")
    session.wait(lambda d: f"prefix={prefix}" in d.current_url, "the filter was not applied")
    assert texts(session, "tr.key-row a.key-link") == sorted(c for c in console.chats if c.startswith(prefix))
    session.shot("keys-prefix")
    return seen


def open_value(session: BrowserSession, console: Console, owners: dict[int, str]) -> None:
    """The direct chat's state: pretty JSON naming both members, its partition and worker."""
    session.follow(f"tr.key-row[data-key='{console.direct}'] a.key-link")
    on_page(session, "value")
    assert session.find("code#value-key").text == console.direct
    value = json.loads(session.find("pre#value").text)
    assert {str(console.alice), str(console.bob)} <= set(json.dumps(value).replace('"', " ").split())
    partition = partition_of(console.direct)
    assert session.find("td#value-partition").text == str(partition)
    assert session.find("td#value-worker").text == owners[partition]
    session.shot("value", every_screen=True)
    assert session.overflow_px(PHONE) == 0, "the value page scrolls sideways on a phone"


def test_the_operator_reads_tables_keys_and_a_value_across_both_workers(
    console: Console, browsers: BrowserSessions
) -> None:
    desktop = browsers.open("operator", DESKTOP)
    log_in(desktop, console.streams[0])
    owners = read_tables(desktop, console)
    page_through_keys(desktop, console, owners)
    open_value(desktop, console, owners)
    phone = browsers.open("on-call", PHONE)
    log_in(phone, console.streams[1])
    assert read_tables(phone, console) == owners, "the other worker shows the same merged tables"
    assert desktop.console_errors() == [] and phone.console_errors() == []


# --- the rebuild -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One projection's row of the rebuild page, as read at one moment."""

    projection: str
    phase: str
    done: int
    total: int
    running: bool
    """Read while the rebuild command still ran."""


def rebuild_rows(session: BrowserSession) -> list[tuple[str, str, int, int]]:
    rows = []
    for row in session.driver.find_elements(By.CSS_SELECTOR, "tr.rebuild-row"):
        projection = str(row.get_attribute("data-projection"))
        done, total = number(cell(row, "td.rebuild-done")), number(cell(row, "td.rebuild-total"))
        rows.append((projection, cell(row, "td.rebuild-phase"), done, total))
    return rows


def number(text: str) -> int:
    digits = "".join(c for c in text if c.isdigit())
    return int(digits) if digits else 0


def watch_rebuild(
    sessions: list[BrowserSession], rebuild: Process, stop: threading.Event, shown_moving: threading.Event
) -> list[Seen]:
    """Reads the rebuild page of every session (it reloads itself) until the command has ended and the
    page shows every projection done or failed (or `stop` is set); a screenshot at each phase a session
    first shows; `shown_moving` is set once a page showed a phase of a rebuild still running."""
    seen: list[Seen] = []
    shot: set[tuple[str, str, str]] = set()
    deadline = time.monotonic() + REBUILD_S
    while time.monotonic() < deadline and not stop.is_set():
        running = rebuild.popen.poll() is None
        finished = True
        for session in sessions:
            try:
                rows = rebuild_rows(session)
            except Exception:  # the page was reloading under our feet
                finished = False
                continue
            for projection, phase, done, total in rows:
                seen.append(Seen(projection, phase, done, total, running))
                if running and phase in ACTIVE_PHASES:
                    shown_moving.set()
                if (session.label, projection, phase) not in shot:
                    shot.add((session.label, projection, phase))
                    session.shot(f"rebuild-{projection}-{phase}")
            finished = finished and bool(rows) and all(phase in ("done", "failed") for _, phase, _, _ in rows)
        if not running and finished:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"the rebuild page did not show the end in {REBUILD_S} s; last rows: {seen[-6:]}")


def open_rebuild_pages(browsers: BrowserSessions, console: Console) -> list[BrowserSession]:
    """Two operators, on a desktop and on a phone, each logged in to the rebuild page of a streams
    worker of their own; no rebuild was ever recorded."""
    sessions = [browsers.open("operator", DESKTOP), browsers.open("on-call", PHONE)]
    for session, worker in zip(sessions, console.streams, strict=True):
        log_in(session, worker, "/console/rebuild")
        on_page(session, "rebuild")
        session.find("p#rebuild-none")
        session.shot("before-rebuild")
        assert session.overflow_px(PHONE) == 0, "the rebuild page scrolls sideways on a phone"
    return sessions


async def wait_projected(projections: str, events: int) -> None:
    """Until the live projections worker has applied at least `events` records and lags by none."""
    deadline = time.monotonic() + SETTLE_S
    lag: dict[str, Any] = {}
    while time.monotonic() < deadline:
        lag = await asyncio.to_thread(get_json, f"{projections}/projections/lag")
        ends = sum(p["end_offset"] for v in lag["projections"].values() for p in v["partitions"].values())
        if lag["lag"] == 0 and ends >= events:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"the projections did not catch up in {SETTLE_S} s: {lag}")


async def hold_until_shown(database_url: str, rebuild: Process, shown_moving: threading.Event) -> None:
    """Freezes the rebuild (SIGSTOP) the first time its progress is in a phase that holds nothing of
    the live model (`HOLDABLE_PHASES`), until a page has shown a moving phase or `HOLD_S` passed, then
    lets it go on. A rebuild of this small history can pass every phase between two reloads of the
    page (every 2 s), and the test would then have nothing to see."""
    conn = await asyncpg.connect(database_url)
    try:
        while rebuild.popen.poll() is None and not shown_moving.is_set():
            phase = await conn.fetchval(
                "SELECT phase FROM rebuild_progress WHERE phase = ANY($1::text[]) LIMIT 1", list(HOLDABLE_PHASES)
            )
            if phase is not None:
                rebuild.popen.send_signal(signal.SIGSTOP)
                try:
                    await asyncio.to_thread(shown_moving.wait, HOLD_S)
                finally:
                    rebuild.popen.send_signal(signal.SIGCONT)
                return
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def keep_sending_and_reading(console: Console, token: str, rebuild: Process, counts: list[int]) -> None:
    """A client: a message, then a read, again and again while the rebuild runs (and once after)."""
    while True:
        running = rebuild.popen.poll() is None
        await console.send(token, f"during {len(counts)}")
        counts.append(await console.read(token))
        if not running:
            return
        await asyncio.sleep(0.05)


async def test_the_operator_watches_a_rebuild_while_a_client_sends_and_reads(
    console: Console, browsers: BrowserSessions
) -> None:
    system = console.system
    history = mixed_workload(seed=12, steps=HISTORY_STEPS)

    async def write_history() -> None:
        await produce(system.settings, history)
        await wait_projected(console.projections, len(history.entries))

    opening = asyncio.to_thread(open_rebuild_pages, browsers, console)
    [desktop, phone], _ = await asyncio.gather(opening, write_history())

    token = await system.token(console.alice)
    before = await console.read(token)
    assert before == console.sent
    rebuild = start("rebuild", ["projections", "rebuild", "--no-progress"], system.common_env(), system.log_dir)
    counts: list[int] = []
    stop, shown_moving = threading.Event(), threading.Event()
    try:
        seen, _, _ = await asyncio.gather(
            asyncio.to_thread(watch_rebuild, [desktop, phone], rebuild, stop, shown_moving),
            keep_sending_and_reading(console, token, rebuild, counts),
            hold_until_shown(system.settings.database_url, rebuild, shown_moving),
        )
    finally:
        stop.set()
        code = rebuild.stop()
    assert code == 0, rebuild.log()[-3000:]
    assert "rebuilt:" in rebuild.log()

    assert counts and min(counts) >= before, f"a read during the rebuild saw fewer than {before}: {counts}"
    assert counts == sorted(counts), f"a read saw fewer messages than the one before it: {counts}"
    assert await console.read(token) == console.sent

    projections = {s.projection for s in seen}
    assert projections == set(PROJECTIONS)
    moving = [s for s in seen if s.running and s.phase in ACTIVE_PHASES]
    assert moving, f"no progress was seen while the rebuild ran: {seen[:10]}"
    assert all(s.done <= s.total for s in moving if s.total)
    history_of = {name: sum(1 for e in history.entries if e.topic == p.topic) for name, p in PROJECTIONS.items()}
    bulk = [s for s in seen if s.phase == "bulk"]
    assert all(s.total >= history_of[s.projection] for s in bulk), "a bulk load counted fewer records than the log"
    last = {s.projection: s for s in seen}
    assert all(s.phase == "done" and s.done == s.total > 0 for s in last.values()), last
    assert desktop.console_errors() == [] and phone.console_errors() == []
