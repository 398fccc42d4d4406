"""The web client (issue 13) in real browsers, used as people use it: they register and sign in through
the page, find each other by name, chat directly and in a group, manage members, read, edit and delete,
go offline and come back, scroll back through history, and one does it all with the keyboard only.

One system for the module (its own topics and database clone) with two gateways, and a third whose
access tokens live 30 s: one person signs in through it when the module starts and stays while the
other tests run; the last test checks that her page kept its tokens fresh without losing its socket.
Each browser reaches its gateway through a TCP proxy of its own (`ProxyThread`), which is how a test
takes one person offline: it cuts that browser's connections and refuses new ones, while everyone
else goes on. The tests never reach into the page's script: they type, click, press keys and scroll,
and read what the page shows, by the ids and data-* attributes the client promises. Screenshots of
every step of every session, phone and desktop sized, are in
tests/browser/screenshots/test_web_client/<test>/ (the long-lived session's in long-session/).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.chrome import DESKTOP, PHONE, BrowserSession, BrowserSessions, Screen
from tests.e2e.gateway_harness import (
    WORKER_READY_S,
    Gateway,
    GatewaySystem,
    module_system,
    stop_all,
    wait_delivery_assigned,
)
from tests.processes import free_port, start, wait_http
from tests.tcp_proxy import ProxyThread

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PASSWORD = "correct horse battery"
LIVE_S = 15.0
"""How long a frame may take to show in another person's page (Kafka, the other gateway, the DOM)."""
RECONNECT_S = 30.0
"""How long a browser may take to be back after its network is: a backoff of up to 10 s, then `sync`."""
PAGE_SIZE = 50
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots" / "test_web_client"
OFFLINE_NETWORK_ERRORS = ("WebSocket connection to", "net::ERR_")
"""What Chromium itself logs while the network is away (a refused socket, a failed fetch): not the page's
fault, allowed in the console only while a test keeps the browser offline."""


# --- the system, the proxies, and REST as a test user ---------------------------------------------


@pytest.fixture(scope="module")
async def system(
    topic_prefix: str, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, template_database: str
) -> AsyncIterator[GatewaySystem]:
    """Two gateways; registrations are not limited per address here (every browser comes from
    127.0.0.1, and the module registers more people than the default 10 an hour)."""
    async with module_system(
        "webclient",
        topic_prefix,
        tmp_path_factory,
        jwt_secret,
        template_database,
        {"REGISTER_LIMIT_PER_ADDRESS": "1000"},
        gateways=2,
    ) as system:
        yield system


@dataclass
class Site:
    """The system as the tests reach it: proxies in front of its gateways, and REST as a user."""

    system: GatewaySystem
    stack: contextlib.ExitStack

    def proxy(self, gateway: int) -> ProxyThread:
        """A proxy of one browser's own in front of gateway `gateway` (0 or 1)."""
        return self.stack.enter_context(ProxyThread("127.0.0.1", self.system.gateways[gateway].port))

    def gateway(self, index: int = 0) -> Gateway:
        return self.system.gateways[index]

    def account(self, username: str, display_name: str) -> Account:
        """A person registered and logged in over REST (as another client would), not yet in a browser."""
        user = call(self.gateway(), "POST", "/api/v1/auth/register", body=account_body(username, display_name))
        login = call(self.gateway(), "POST", "/api/v1/auth/login", body={"username": username, "password": PASSWORD})
        return Account(username, display_name, user["user"]["id"], login["access_token"])

    def direct_chat(self, owner: Account, other: Account) -> str:
        answer = call(
            self.gateway(), "POST", "/api/v1/chats", owner.token, {"type": "direct", "member_ids": [other.user_id]}
        )
        return str(answer["chat"]["id"])

    def group_chat(self, owner: Account, title: str, members: list[Account]) -> str:
        body = {"type": "group", "title": title, "member_ids": [m.user_id for m in members]}
        return str(call(self.gateway(), "POST", "/api/v1/chats", owner.token, body)["chat"]["id"])

    def members(self, reader: Account, chat_id: str) -> dict[str, str]:
        """The chat's members (user id to role) as `reader` reads them over REST."""
        chat = call(self.gateway(), "GET", f"/api/v1/chats/{chat_id}", reader.token)
        return {m["user_id"]: m["role"] for m in chat["members"]}

    def send(self, sender: Account, chat_id: str, text: str) -> dict[str, Any]:
        """A message sent over REST; a 503 (stored, not readable in time) is sent again as it was."""
        body = {"text": text, "client_msg_id": uuid.uuid4().hex}
        for _ in range(20):
            try:
                answer = call(self.gateway(), "POST", f"/api/v1/chats/{chat_id}/messages", sender.token, body)
            except urllib.error.HTTPError as error:
                if error.code != 503:
                    raise
                time.sleep(float(error.headers.get("Retry-After") or 0.2))
                continue
            message: dict[str, Any] = answer["message"]
            return message
        raise AssertionError(f"{text!r} was answered 503 twenty times")

    def history(self, reader: Account, chat_id: str) -> list[dict[str, Any]]:
        answer = call(self.gateway(), "GET", f"/api/v1/chats/{chat_id}/messages?limit=200", reader.token)
        messages: list[dict[str, Any]] = answer["messages"]
        return messages


def account_body(username: str, display_name: str) -> dict[str, str]:
    return {"username": username, "password": PASSWORD, "display_name": display_name}


def call(gateway: Gateway, method: str, path: str, token: str = "", body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(gateway.url + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=15) as response:
        text = response.read()
    return json.loads(text) if text else None


@pytest.fixture(scope="module")
def site(system: GatewaySystem) -> Iterator[Site]:
    with contextlib.ExitStack() as stack:
        yield Site(system, stack)


SHORT_TOKEN_S = 30
"""The access token lifetime of the third gateway (the least the settings allow)."""


@pytest.fixture(scope="module")
async def short_token_gateway(system: GatewaySystem) -> AsyncIterator[Gateway]:
    """A third gateway of the system whose logins and refreshes give tokens of SHORT_TOKEN_S."""
    port = free_port()
    env = {**system.gateway_env("gw-short", port), "ACCESS_TOKEN_TTL_SECONDS": str(SHORT_TOKEN_S)}
    gateway = Gateway(start("gateway-gw-short", ["gateway"], env, system.log_dir), port, "gw-short")
    try:
        await asyncio.to_thread(wait_http, gateway.process, f"{gateway.url}/healthz", WORKER_READY_S)
        await wait_delivery_assigned([*system.gateways, gateway], system.settings.topic_partitions)
        yield gateway
    finally:
        stop_all([gateway.process])


@dataclass
class Watcher:
    """Someone signed in for the whole module, through the short-token gateway."""

    person: Person
    partner: Account
    chat: str
    since: float
    """When she signed in (time.monotonic())."""


@pytest.fixture(scope="module", autouse=True)
def watcher(site: Site, short_token_gateway: Gateway) -> Iterator[Watcher]:
    """uma (phone) signs in when the module starts and stays, her chat with vic open, while the other
    tests run: her access token expires several times meanwhile (the last test checks on her)."""
    uma, vic = site.account("uma", "Uma Reyes"), site.account("vic", "Vic Adler")
    chat = site.direct_chat(vic, uma)
    proxy = site.stack.enter_context(ProxyThread("127.0.0.1", short_token_gateway.port))
    shutil.rmtree(SCREENSHOTS / "long-session", ignore_errors=True)
    with BrowserSessions(SCREENSHOTS / "long-session") as browsers:
        session = browsers.open("uma", PHONE)
        session.get(f"http://127.0.0.1:{proxy.port}/")
        person = Person(uma, session, proxy, short_token_gateway)
        sign_in(person)
        since = time.monotonic()
        open_chat(person, chat, vic.display_name)
        yield Watcher(person, vic, chat, since)


@dataclass
class Account:
    username: str
    display_name: str
    user_id: str = ""
    token: str = ""
    """An access token from a REST login, for what the test itself does as this user."""


@dataclass
class Person:
    """Someone with a browser: a session (one screen size) behind a proxy of its own."""

    account: Account
    session: BrowserSession
    proxy: ProxyThread
    gateway: Gateway
    """The gateway the proxy forwards to."""

    @property
    def name(self) -> str:
        return self.account.display_name

    @property
    def is_phone(self) -> bool:
        return self.session.screen.mobile

    def shot(self, step: str) -> None:
        self.session.shot(step)


def arrive(browsers: BrowserSessions, site: Site, account: Account, screen: Screen, gateway: int) -> Person:
    """`account`'s person opens the client's page (through a proxy to gateway `gateway`)."""
    proxy = site.proxy(gateway)
    session = browsers.open(account.username, screen)
    session.get(f"http://127.0.0.1:{proxy.port}/")
    session.wait(lambda d: d.find_element(By.CSS_SELECTOR, "form#auth").is_displayed(), "no sign-in form shown")
    assert session.contrast_failures() == [], "the sign-in page has text below WCAG AA contrast"
    return Person(account, session, proxy, site.gateway(gateway))


# --- reading the page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """One `li.message` as the page shows it."""

    seq: int | None
    message_id: str
    sender_id: str
    client_msg_id: str
    state: str
    deleted: bool
    edited: bool
    text: str
    status: str
    meta: str


VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
PARTS = ("text", "status", "meta")


class MessageListParser(HTMLParser):
    """The `li.message` items of `ol#messages`' HTML, read in one WebDriver call rather than several
    calls per message (a wait polls it ten times a second)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.messages: list[Shown] = []
        self._attrs: dict[str, str] = {}
        self._parts: dict[str, list[str]] = {}
        self._open: list[set[str]] = []
        """The classes of each element open inside the current message (the li first)."""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        classes = set(values.get("class", "").split())
        if not self._open:
            if tag == "li" and "message" in classes:
                self._attrs, self._parts, self._open = values, {part: [] for part in PARTS}, [classes]
            return
        if tag not in VOID_TAGS:
            self._open.append(classes)

    def handle_endtag(self, tag: str) -> None:
        if not self._open or tag in VOID_TAGS:
            return
        self._open.pop()
        if not self._open:
            self.messages.append(self._shown())

    def handle_data(self, data: str) -> None:
        inside = set().union(*self._open) if self._open else set()
        for part in PARTS:
            if part in inside:
                self._parts[part].append(data)

    def _shown(self) -> Shown:
        attrs, parts = self._attrs, {name: " ".join("".join(texts).split()) for name, texts in self._parts.items()}
        seq = attrs.get("data-seq", "")
        return Shown(
            seq=int(seq) if seq else None,
            message_id=attrs.get("data-message-id", ""),
            sender_id=attrs.get("data-sender-id", ""),
            client_msg_id=attrs.get("data-client-msg-id", ""),
            state=attrs.get("data-state", ""),
            deleted=attrs.get("data-deleted") == "true",
            edited=attrs.get("data-edited") == "true",
            **parts,
        )


def shown_messages(driver: WebDriver) -> list[Shown]:
    parser = MessageListParser()
    parser.feed(str(driver.find_element(By.CSS_SELECTOR, "ol#messages").get_attribute("outerHTML")))
    return parser.messages


def wait_messages(
    person: Person, holds: Callable[[list[Shown]], bool], what: str, timeout: float = LIVE_S
) -> list[Shown]:
    """The open chat's messages once `holds(messages)`; the last ones seen are in the failure."""
    seen: list[list[Shown]] = [[]]

    def check(driver: WebDriver) -> list[Shown] | None:
        seen[0] = shown_messages(driver)
        return seen[0] if holds(seen[0]) else None

    try:
        return person.session.wait(check, what, timeout)
    except Exception as error:
        raise AssertionError(f"{person.name}: {what}; shown: {[(m.seq, m.text, m.state) for m in seen[0]]}") from error


def wait_conversation(person: Person, texts: list[str], timeout: float = LIVE_S) -> list[Shown]:
    """Until the open chat shows exactly `texts`, each once, in that order, every one with its seq;
    their seqs rise in the order shown."""
    shown = wait_messages(
        person,
        lambda messages: [m.text for m in messages] == texts and all(m.seq is not None for m in messages),
        f"the chat never showed {texts}",
        timeout,
    )
    seqs = [m.seq or 0 for m in shown]
    assert seqs == sorted(set(seqs)), f"{person.name}: not in seq order or repeated: {seqs}"
    return shown


def delivered(message: Shown) -> bool:
    return message.seq is not None and message.state in ("sent", "seen")


# --- what people do ---------------------------------------------------------------------------------


def visible(person: Person, css: str) -> bool:
    return any(e.is_displayed() for e in person.session.driver.find_elements(By.CSS_SELECTOR, css))


def press(session: BrowserSession, css: str) -> None:
    """Click what `css` selects once it can be clicked (found again if the page redrew it)."""

    def attempt(driver: WebDriver) -> bool:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True

    session.wait(attempt, f"could not click {css!r}")


def type_into(session: BrowserSession, css: str, *keys: str) -> None:
    """Empty the field (select all, delete, as a person does) and type `keys`, once it can be typed in."""

    def usable(driver: WebDriver) -> WebElement | None:
        found = driver.find_element(By.CSS_SELECTOR, css)
        return found if found.is_displayed() and found.is_enabled() else None

    field_ = session.wait(usable, f"{css!r} cannot be typed in")
    field_.send_keys(Keys.CONTROL, "a")
    field_.send_keys(Keys.BACKSPACE)
    field_.send_keys(*keys)


def fill_auth(person: Person, *, with_display_name: bool = False) -> None:
    type_into(person.session, "input#username", person.account.username)
    type_into(person.session, "input#password", PASSWORD)
    if with_display_name:
        type_into(person.session, "input#display-name", person.name)


def wait_signed_in(person: Person) -> None:
    person.session.wait_text("#me", lambda text: person.name in text)
    person.session.find("#connection[data-state='online']")


def register_in_page(person: Person) -> None:
    fill_auth(person, with_display_name=True)
    person.shot("register-form")
    press(person.session, "button#register")
    wait_signed_in(person)
    person.shot("registered")


def sign_in(person: Person) -> None:
    fill_auth(person)
    press(person.session, "button#sign-in")
    wait_signed_in(person)
    person.shot("signed-in")


def to_chat_list(person: Person) -> None:
    """On a phone, back from an open chat to the list (a desktop shows both side by side)."""
    if not person.is_phone:
        return
    backs = [b for b in person.session.driver.find_elements(By.CSS_SELECTOR, "button#back") if b.is_displayed()]
    if backs:
        backs[0].click()
    person.session.wait(
        lambda d: d.find_element(By.CSS_SELECTOR, "input#people-search").is_displayed(), "the chat list is not shown"
    )


def pick_result(person: Person, results_css: str, other: Account, button: str) -> None:
    """Clicks `button` in the row of `other` (found by their @username, shown with their display name)
    among the search results `results_css`; learns their user id."""

    def row(driver: WebDriver) -> tuple[str, str] | None:
        for item in driver.find_elements(By.CSS_SELECTOR, f"{results_css} li[data-user-id]"):
            if f"@{other.username}" in item.text:
                return str(item.get_attribute("data-user-id")), str(item.text)
        return None

    user_id, text = person.session.wait(row, f"{other.username} not among the results {results_css}")
    assert other.display_name in text, text
    other.user_id = other.user_id or user_id
    assert user_id == other.user_id
    press(person.session, f"{results_css} li[data-user-id='{user_id}'] {button}")


def wait_open_chat(person: Person, title: str, not_chat: str = "") -> str:
    """The id of the chat the page opened once its title is `title` (and it is not `not_chat`)."""

    def opened(driver: WebDriver) -> str | None:
        section = driver.find_element(By.CSS_SELECTOR, "section#chat")
        chat_id = str(section.get_attribute("data-chat-id") or "")
        title_shown = driver.find_element(By.CSS_SELECTOR, "h2#chat-title").text
        return chat_id if chat_id and chat_id != not_chat and title in title_shown and section.is_displayed() else None

    return person.session.wait(opened, f"chat {title!r} did not open")


def start_direct_chat(person: Person, other: Account) -> str:
    """Finds `other` by the start of their username and messages them: their direct chat opens."""
    to_chat_list(person)
    type_into(person.session, "input#people-search", other.username[:3])
    person.session.find("ul#people-results li[data-user-id]")
    person.shot(f"found-{other.username}")
    pick_result(person, "ul#people-results", other, "button.start-direct")
    return wait_open_chat(person, other.display_name)


def open_chat(person: Person, chat_id: str, title: str) -> None:
    to_chat_list(person)
    press(person.session, f"li.chat[data-chat-id='{chat_id}'] button.open-chat")
    assert wait_open_chat(person, title) == chat_id


def current_chat(person: Person) -> str:
    sections = person.session.driver.find_elements(By.CSS_SELECTOR, "section#chat")
    return str(sections[0].get_attribute("data-chat-id") or "") if sections else ""


def create_group(person: Person, title: str, members: list[Account]) -> str:
    to_chat_list(person)
    before = current_chat(person)
    press(person.session, "button#new-group")
    person.session.wait(lambda d: d.find_element(By.CSS_SELECTOR, "form#group-form").is_displayed(), "no group form")
    type_into(person.session, "input#group-title", title)
    for member in members:
        type_into(person.session, "input#group-member-search", member.username[:3])
        pick_result(person, "ul#group-member-results", member, "button.pick-member")
        person.session.find(f"ul#group-members li[data-user-id='{member.user_id}']")
    person.shot("group-form")
    press(person.session, "button#create-group")
    return wait_open_chat(person, title, not_chat=before)


def send(person: Person, text: str) -> None:
    """Types `text` in the composer and presses Enter."""
    type_into(person.session, "textarea#message-input", text)
    person.session.find("textarea#message-input").send_keys(Keys.ENTER)


def say(person: Person, text: str) -> Shown:
    """Sends `text` and waits until the page shows it sent (acknowledged, with its seq)."""
    send(person, text)
    shown = wait_messages(
        person, lambda ms: any(m.text == text and delivered(m) for m in ms), f"{text!r} never showed as sent"
    )
    [mine] = [m for m in shown if m.text == text]
    return mine


def unread(person: Person, chat_id: str) -> str:
    return str(person.session.find(f"li.chat[data-chat-id='{chat_id}']").get_attribute("data-unread"))


def wait_unread(person: Person, chat_id: str, count: int) -> None:
    row = f"li.chat[data-chat-id='{chat_id}']"
    person.session.wait(
        lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-unread") == str(count),
        f"the chat list never showed {count} unread (it shows {unread(person, chat_id)})",
        LIVE_S,
    )
    badge = person.session.find(f"{row} .unread")
    if count:
        assert badge.is_displayed() and badge.text.strip() == str(count), badge.text
    else:
        assert not badge.is_displayed(), f"a badge for 0 unread shows {badge.text!r}"


def assert_quiet(*people: Person) -> None:
    """No console errors (CSP refusals included) since the last look, in any of their pages."""
    errors = {p.name: p.session.console_errors() for p in people}
    assert all(not lines for lines in errors.values()), errors


# --- the tests ----------------------------------------------------------------------------------------


def on_a_thread(scenario: Callable[..., None]) -> Callable[..., Coroutine[Any, Any, None]]:
    """The test's blocking browser steps run on a thread of their own: the event loop that holds the
    module's system (its Kafka clients) goes on running meanwhile. Blocked for a whole test, it found
    its consumer's fetch timed out when it was stopped. (pytest reads the fixtures to pass from
    `scenario`'s signature, which `wraps` keeps.)"""

    @functools.wraps(scenario)
    async def test(**fixtures: Any) -> None:
        await asyncio.to_thread(scenario, **fixtures)

    return test


@on_a_thread
def test_two_people_chat_directly_then_a_third_on_the_other_gateway_joins_a_group(
    site: Site, browsers: BrowserSessions
) -> None:
    """alice (phone) and bob (desktop) on gateway A register and chat both ways; carol (desktop) on
    gateway B registers and is in the group alice makes: all three chat, each seeing the others live."""
    alice = arrive(browsers, site, Account("alice", "Alice Martin"), PHONE, 0)
    bob = arrive(browsers, site, Account("bob", "Bob Chen"), DESKTOP, 0)
    register_in_page(alice)
    register_in_page(bob)

    direct = start_direct_chat(alice, bob.account)
    alice.shot("direct-chat-opened")
    say(alice, "Hi Bob, it's Alice")
    open_chat(bob, direct, alice.name)
    wait_conversation(bob, ["Hi Bob, it's Alice"])
    bob.shot("direct-first-message")
    reply = "Hello Alice! <b>no markup</b> & ✓"
    type_into(bob.session, "textarea#message-input", reply)
    alice.session.wait_text("#typing", lambda text: bob.name in text and "typing" in text)
    alice.shot("bob-is-typing")
    bob.session.find("textarea#message-input").send_keys(Keys.ENTER)
    for person in (alice, bob):
        wait_conversation(person, ["Hi Bob, it's Alice", reply])
        person.session.find(f"li.chat[data-chat-id='{direct}'] .presence[data-online='true']")
        person.shot("direct-both-ways")

    carol = arrive(browsers, site, Account("carol", "Carol Diaz"), DESKTOP, 1)
    register_in_page(carol)
    group = create_group(alice, "Weekend hike", [bob.account, carol.account])
    alice.shot("group-created")
    for person in (bob, carol):
        open_chat(person, group, "Weekend hike")
        person.shot("group-opened")
    lines: list[str] = []
    for person, text in (
        (carol, "Carol here, on the other gateway"),
        (alice, "Saturday at 9?"),
        (bob, "Works for me"),
        (carol, "I'll bring the map"),
    ):
        say(person, text)
        lines.append(text)
        seen = [[(m.seq, m.sender_id, m.text) for m in wait_conversation(p, lines)] for p in (alice, bob, carol)]
        assert seen[0] == seen[1] == seen[2], "the three see one conversation"
    for person in (alice, bob, carol):
        person.session.shot("group-conversation", every_screen=True)
        assert person.session.overflow_px(PHONE) == 0, f"{person.name}'s page scrolls sideways on a phone"
        assert person.session.contrast_failures() == [], f"{person.name}'s page has text below WCAG AA contrast"
    assert_quiet(alice, bob, carol)


@on_a_thread
def test_someone_offline_gets_every_message_once_in_order_and_what_they_typed_is_sent_once(
    site: Site, browsers: BrowserSessions
) -> None:
    """dave (phone, gateway A) loses his network while erin (desktop, gateway B) sends. The first thing
    he sent was stored but its answer never reached him (the read models are held back until he is
    cut off); what he types while offline waits as "Sending…". Back online, he has every message
    once, in order, and each of his own is sent once (the client resends it with the same
    client_msg_id; the gateway keeps the first)."""
    dave_account, erin_account = site.account("dave", "Dave Okafor"), site.account("erin", "Erin Walsh")
    chat = site.direct_chat(erin_account, dave_account)
    lines = ["Are you around today?"]
    site.send(erin_account, chat, lines[0])
    dave = arrive(browsers, site, dave_account, PHONE, 0)
    erin = arrive(browsers, site, erin_account, DESKTOP, 1)
    for person, other in ((dave, erin), (erin, dave)):
        sign_in(person)
        open_chat(person, chat, other.name)
        wait_conversation(person, lines)
    presence = f"li.chat[data-chat-id='{chat}'] .presence"
    erin.session.find(f"{presence}[data-online='true']")
    assert_quiet(dave, erin)

    dropped = "Yes! Sent just as the signal dropped"
    send_unanswered_then_go_offline(site, dave, dropped)
    dave.session.find("#connection:not([data-state='online'])")
    for person in (dave, erin):
        person.session.find(f"{presence}[data-online='false']")
    until(lambda: dropped in [m["text"] for m in site.history(erin_account, chat)], f"{dropped!r} is stored")
    dave.shot("offline")
    erin.shot("dave-offline")
    away = [f"While you were away {i}" for i in range(1, 6)]
    for text in away:
        say(erin, text)
    erin.shot("sent-while-dave-is-offline")
    typed = "Typed on the train, no signal"
    send(dave, typed)
    pending = wait_messages(
        dave, lambda ms: [m.text for m in ms] == [*lines, dropped, typed], "nothing else came while offline"
    )[-2:]
    for mine in pending:
        assert (mine.state, mine.seq) == ("sending", None) and "Sending" in mine.status, mine
    dave.shot("sending-while-offline")
    offline_errors = dave.session.console_errors()

    dave.proxy.go_online()
    dave.session.wait(
        lambda d: d.find_element(By.CSS_SELECTOR, "#connection").get_attribute("data-state") == "online",
        "not back online",
        RECONNECT_S,
    )
    lines += [dropped, *away, typed]
    back = wait_conversation(dave, lines, RECONNECT_S)
    assert [(m.client_msg_id, delivered(m)) for m in (back[1], back[-1])] == [
        (mine.client_msg_id, True) for mine in pending
    ], back
    dave.shot("back-online")
    for person in (dave, erin):
        person.session.find(f"{presence}[data-online='true']")
    say(dave, "Back on land")
    lines.append("Back on land")
    for person in (dave, erin):
        shown = wait_conversation(person, lines)
        assert [m.seq for m in shown] == list(range(1, len(lines) + 1)), [(m.seq, m.text) for m in shown]
        person.shot("caught-up")
    stored = site.history(erin_account, chat)
    assert [m["text"] for m in stored] == lines, "the server holds each message once"
    assert [m["client_msg_id"] for m in stored if m["text"] in (dropped, typed)] == [m.client_msg_id for m in pending]
    unexpected = [line for line in offline_errors if not any(kind in line for kind in OFFLINE_NETWORK_ERRORS)]
    assert not unexpected, unexpected
    assert_quiet(erin)
    errors = dave.session.console_errors()
    assert all(any(kind in line for kind in OFFLINE_NETWORK_ERRORS) for line in errors), errors


def frames_in(gateway: Gateway, frame_type: str) -> int:
    """How many client frames of `frame_type` the gateway has received (its /metrics)."""
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    sample = f'gateway_ws_frames_in_total{{type="{frame_type}"}} '
    return sum(int(float(line[len(sample) :])) for line in text.splitlines() if line.startswith(sample))


def until(check: Callable[[], bool], what: str, timeout: float = LIVE_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not in {timeout} s: {what}"
        time.sleep(0.1)


def send_unanswered_then_go_offline(site: Site, person: Person, text: str) -> None:
    """`person` sends `text` and loses the network before the answer: the projections worker is held
    (SIGSTOP) so that the gateway, which answers only once the message can be read, cannot answer
    before the proxy cuts the socket; the message itself is decided and stored meanwhile."""
    [projections] = [w for w in site.system.workers if w.name == "projections"]
    gateway = person.gateway
    before = frames_in(gateway, "message.send")
    projections.popen.send_signal(signal.SIGSTOP)
    try:
        send(person, text)
        until(lambda: frames_in(gateway, "message.send") > before, "the gateway received the message")
        person.proxy.go_offline()
    finally:
        projections.popen.send_signal(signal.SIGCONT)


@on_a_thread
def test_an_edit_and_a_delete_show_on_both_sides(site: Site, browsers: BrowserSessions) -> None:
    frank_account, grace_account = site.account("frank", "Frank Ito"), site.account("grace", "Grace Kelly")
    chat = site.direct_chat(frank_account, grace_account)
    site.send(grace_account, chat, "Dinner at 7?")
    frank = arrive(browsers, site, frank_account, DESKTOP, 0)
    grace = arrive(browsers, site, grace_account, PHONE, 1)
    for person, other in ((frank, grace), (grace, frank)):
        sign_in(person)
        open_chat(person, chat, other.name)
    late = say(frank, "I'll be there at 8")
    typo = say(frank, "typo mesage, ignore")
    wait_conversation(grace, ["Dinner at 7?", late.text, typo.text])
    grace.shot("before-edit")

    press(frank.session, f"li.message[data-message-id='{late.message_id}'] button.edit")
    frank.session.find("form#composer[data-mode='edit']")
    assert frank.session.find("textarea#message-input").get_attribute("value") == late.text
    frank.shot("editing")
    type_into(frank.session, "textarea#message-input", "I'll be there at 7:30", Keys.ENTER)
    frank.session.find("form#composer:not([data-mode='edit'])")
    for person in (frank, grace):
        wait_messages(
            person,
            lambda ms: any(
                m.message_id == late.message_id and m.edited and m.text == "I'll be there at 7:30" for m in ms
            ),
            "the edit never showed",
        )
        [edited] = [m for m in shown_messages(person.session.driver) if m.message_id == late.message_id]
        assert "edited" in edited.meta.lower(), edited
        person.shot("edited")

    press(frank.session, f"li.message[data-message-id='{typo.message_id}'] button.delete")
    frank.shot("confirm-delete")
    press(frank.session, f"li.message[data-message-id='{typo.message_id}'] button.confirm-delete")
    for person in (frank, grace):
        shown = wait_messages(
            person,
            lambda ms: any(m.message_id == typo.message_id and m.deleted for m in ms),
            "the delete never showed",
        )
        assert [m.seq for m in shown] == [1, 2, 3], "a deleted message keeps its place"
        assert "mesage" not in shown[2].text and shown[2].text, shown[2]
        person.shot("deleted")
    gone = f"li.message[data-message-id='{typo.message_id}'] button"
    assert not frank.session.driver.find_elements(By.CSS_SELECTOR, f"{gone}.edit, {gone}.delete")
    stored = {m["id"]: m for m in site.history(grace_account, chat)}
    assert stored[late.message_id]["edited_at"] and stored[late.message_id]["text"] == "I'll be there at 7:30"
    assert stored[typo.message_id]["deleted"] and stored[typo.message_id]["text"] == ""
    assert_quiet(frank, grace)


@on_a_thread
def test_unread_counts_and_read_markers_move_as_a_person_reads(site: Site, browsers: BrowserSessions) -> None:
    """henry (desktop) writes to ivy (phone): her list counts what she has not read; opening the chat
    reads it and henry sees "seen"; both survive a reload (from REST: unread_count, last_read_seq)."""
    henry_account, ivy_account = site.account("henry", "Henry Moss"), site.account("ivy", "Ivy Novak")
    chat = site.direct_chat(henry_account, ivy_account)
    henry = arrive(browsers, site, henry_account, DESKTOP, 0)
    ivy = arrive(browsers, site, ivy_account, PHONE, 1)
    sign_in(henry)
    sign_in(ivy)
    open_chat(henry, chat, ivy.name)
    wait_unread(ivy, chat, 0)
    first = ["Did you get the tickets?", "Row 12, seats 4 and 5", "Doors open at 7"]
    for text in first:
        say(henry, text)
    wait_unread(ivy, chat, 3)
    ivy.shot("three-unread")
    assert [m.state for m in wait_conversation(henry, first)] == ["sent"] * 3, "nobody has read them yet"
    wait_unread(henry, chat, 0)
    henry.shot("sent-not-seen")

    open_chat(ivy, chat, henry.name)
    wait_conversation(ivy, first)
    ivy.shot("reading")
    seen = wait_messages(henry, lambda ms: [m.state for m in ms] == ["seen"] * 3, "never seen")
    assert all("seen" in m.status.lower() for m in seen), [m.status for m in seen]
    henry.shot("seen")
    to_chat_list(ivy)
    wait_unread(ivy, chat, 0)
    ivy.shot("all-read")

    later = ["Also, bring a jacket", "It gets cold after dark"]
    for text in later:
        say(henry, text)
    wait_unread(ivy, chat, 2)
    ivy.shot("two-unread")
    for person in (henry, ivy):
        person.session.driver.refresh()
        wait_signed_in(person)
    wait_unread(ivy, chat, 2)
    ivy.shot("two-unread-after-reload")
    open_chat(henry, chat, ivy.name)
    wait_messages(henry, lambda ms: [m.state for m in ms] == ["seen"] * 3 + ["sent"] * 2, "the markers after a reload")
    henry.shot("markers-after-reload")
    assert_quiet(henry, ivy)


def scroll_to_top(person: Person) -> None:
    """The mouse wheel turned up over the message list, as far as it goes."""
    scroller = person.session.find("#message-scroller")
    ActionChains(person.session.driver).scroll_from_origin(ScrollOrigin.from_element(scroller), 0, -100_000).perform()


@on_a_thread
def test_scrolling_back_loads_older_pages_in_order(site: Site, browsers: BrowserSessions) -> None:
    """60 messages (more than a page of 50), sent fast over REST: kate (desktop) scrolls up, jack
    (phone) presses the load-older button, and both then have all 60 in order."""
    jack_account, kate_account = site.account("jack", "Jack Rowe"), site.account("kate", "Kate Brandt")
    chat = site.direct_chat(jack_account, kate_account)
    texts = [f"Note {i:02d} of 60" for i in range(1, 61)]
    for text in texts:
        site.send(jack_account, chat, text)
    kate = arrive(browsers, site, kate_account, DESKTOP, 0)
    jack = arrive(browsers, site, jack_account, PHONE, 1)
    for person, other in ((kate, jack), (jack, kate)):
        sign_in(person)
        open_chat(person, chat, other.name)
        newest = wait_conversation(person, texts[-PAGE_SIZE:])
        assert [m.seq for m in newest] == list(range(11, 61))
        assert person.session.find("button#load-older").is_displayed()
        person.shot("newest-page")

    scroll_to_top(kate)
    assert [m.seq for m in wait_conversation(kate, texts)] == list(range(1, 61))
    kate.shot("scrolled-back-to-the-start")
    press(jack.session, "button#load-older")
    assert [m.seq for m in wait_conversation(jack, texts)] == list(range(1, 61))
    jack.shot("loaded-older")
    for person in (kate, jack):
        person.session.wait(
            lambda d: not any(b.is_displayed() for b in d.find_elements(By.CSS_SELECTOR, "button#load-older")),
            "the load-older button still shows with nothing older",
        )
    assert_quiet(kate, jack)


def tab_to(person: Person, css: str, limit: int = 60) -> None:
    """Presses Tab until the focus is on what `css` selects."""
    target = person.session.find(css)
    driver = person.session.driver
    for _ in range(limit):
        if driver.switch_to.active_element == target:
            return
        ActionChains(driver).send_keys(Keys.TAB).perform()
    raise AssertionError(f"{person.name}: {limit} Tabs never reached {css!r}")


def keys(person: Person, *typed: str) -> None:
    """Keys pressed into whatever has the focus."""
    ActionChains(person.session.driver).send_keys(*typed).perform()


def select_all(person: Person) -> None:
    ActionChains(person.session.driver).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).perform()


def keyboard_sign_in(person: Person, username: str, password: str) -> None:
    """Fills the sign-in form and presses Sign in, with Tab, typing and Enter only."""
    for css, text in (("input#username", username), ("input#password", password)):
        tab_to(person, css)
        select_all(person)
        keys(person, text)
    tab_to(person, "button#sign-in")
    keys(person, Keys.ENTER)


def refused_sign_in(person: Person, username: str, password: str) -> list[str]:
    """A sign-in that the gateway refuses: what Chromium logged of the refused request (the only
    console errors a page that asks with fetch cannot avoid)."""
    keyboard_sign_in(person, username, password)
    return person.session.wait(lambda d: person.session.console_errors() or None, "the refusal was never logged")


def content_security_policy(url: str) -> dict[str, list[str]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        header = str(response.headers["Content-Security-Policy"] or "")
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {words[0]: words[1:] for words in directives}


@on_a_thread
def test_keyboard_only_sign_in_and_send_under_a_strict_csp_with_a_live_message_log(
    site: Site, browsers: BrowserSessions
) -> None:
    """The page's policy is strict; liam (desktop, gateway B) uses Tab, typing and Enter only: wrong
    guesses at another name are answered in words, up to the rate limit; then he signs in, opens his
    chat, sends, and signs out (a reload keeps him out)."""
    liam_account, mia_account = site.account("liam", "Liam Byrne"), site.account("mia", "Mia Lopez")
    chat = site.direct_chat(mia_account, liam_account)
    site.send(mia_account, chat, "Can you hear me?")
    policy = content_security_policy(f"{site.gateway(1).url}/")
    assert policy.get("default-src") == ["'none'"], policy
    for directive in ("frame-ancestors", "base-uri", "form-action"):
        assert policy.get(directive) == ["'none'"], (directive, policy)
    for directive in ("script-src", "style-src"):
        assert policy.get(directive) == ["'self'"], (directive, policy)
    sources = [source for values in policy.values() for source in values]
    assert not [s for s in sources if "unsafe" in s or s == "*" or s.startswith(("http", "data:"))], policy

    liam = arrive(browsers, site, liam_account, DESKTOP, 1)
    answers = []
    for attempt in range(1, 8):
        [answer] = refused_sign_in(liam, "mallory", f"guess number {attempt}")
        answers.append(answer)
        if attempt == 1:
            notice = liam.session.wait_text("#notice", lambda text: "password" in text.lower())
            assert "invalid_credentials" not in notice, notice
            liam.shot("wrong-password")
        if "status of 429" in answer:
            break
    assert [a.split("status of ")[1][:3] for a in answers] == ["401"] * 5 + ["429"], answers
    notice = liam.session.wait_text("#notice", lambda text: "too many" in text.lower())
    assert re.search(r"try again in \d+ s", notice), notice
    liam.shot("too-many-attempts")
    keyboard_sign_in(liam, liam_account.username, PASSWORD)
    wait_signed_in(liam)
    liam.shot("signed-in-by-keyboard")
    tab_to(liam, f"li.chat[data-chat-id='{chat}'] button.open-chat")
    keys(liam, Keys.ENTER)
    assert wait_open_chat(liam, mia_account.display_name) == chat
    log = liam.session.find("ol#messages")
    assert (log.get_attribute("role"), log.get_attribute("aria-live")) == ("log", "polite")
    wait_conversation(liam, ["Can you hear me?"])
    tab_to(liam, "textarea#message-input")
    keys(liam, "Loud and clear, no mouse needed", Keys.ENTER)
    [mine] = wait_messages(liam, lambda ms: len(ms) == 2 and delivered(ms[1]), "never sent")[1:]
    assert mine.text == "Loud and clear, no mouse needed"
    liam.shot("sent-by-keyboard")
    assert [m["text"] for m in site.history(mia_account, chat)] == ["Can you hear me?", mine.text]
    tab_to(liam, "button#sign-out")
    keys(liam, Keys.ENTER)
    liam.session.wait(lambda d: d.find_element(By.CSS_SELECTOR, "form#auth").is_displayed(), "still signed in")
    liam.session.driver.refresh()
    liam.session.wait(lambda d: d.find_element(By.CSS_SELECTOR, "form#auth").is_displayed(), "signed in again")
    assert not visible(liam, "#me"), "a reload after signing out signs nobody in"
    liam.shot("signed-out")
    assert_quiet(liam)


def members_shown(person: Person) -> dict[str, str]:
    rows = person.session.driver.find_elements(By.CSS_SELECTOR, "ul#member-list li[data-user-id]")
    return {str(row.get_attribute("data-user-id")): str(row.get_attribute("data-role")) for row in rows}


def wait_members(person: Person, expected: dict[str, str]) -> None:
    person.session.wait(lambda d: members_shown(person) == expected, f"the members never were {expected}", LIVE_S)


def open_members(person: Person) -> None:
    press(person.session, "button#members-button")
    person.session.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#members").is_displayed(), "no members panel")


@on_a_thread
def test_the_owner_adds_and_removes_members_and_a_member_leaves(site: Site, browsers: BrowserSessions) -> None:
    """nora (desktop) owns a group with oscar (phone): he may not manage it, she adds paul and removes
    oscar (his page says he is not a member any more and will not let him write), adds him back, and he
    leaves; each change shows live on the other side."""
    nora_account, oscar_account = site.account("nora", "Nora Quinn"), site.account("oscar", "Oscar Silva")
    paul_account = site.account("paul", "Paul Tan")
    group = site.group_chat(nora_account, "Book club", [oscar_account])
    nora = arrive(browsers, site, nora_account, DESKTOP, 0)
    oscar = arrive(browsers, site, oscar_account, PHONE, 1)
    for person in (nora, oscar):
        sign_in(person)
        open_chat(person, group, "Book club")
        open_members(person)
    two = {nora_account.user_id: "owner", oscar_account.user_id: "member"}
    wait_members(oscar, two)
    assert not visible(oscar, "button.remove-member") and not visible(oscar, "input#add-member-search")
    assert visible(oscar, "button#leave-chat")
    oscar.shot("members-as-a-member")
    wait_members(nora, two)
    assert not visible(nora, f"li[data-user-id='{nora_account.user_id}'] button.remove-member"), "the owner stays"

    type_into(nora.session, "input#add-member-search", "pau")
    pick_result(nora, "ul#add-member-results", paul_account, "button.add-member")
    three = {**two, paul_account.user_id: "member"}
    for person in (nora, oscar):
        wait_members(person, three)
        person.shot("paul-added")
    assert site.members(paul_account, group) == three

    press(nora.session, f"ul#member-list li[data-user-id='{oscar_account.user_id}'] button.remove-member")
    wait_members(nora, {nora_account.user_id: "owner", paul_account.user_id: "member"})
    nora.shot("oscar-removed")
    oscar.session.wait(
        lambda d: not d.find_element(By.CSS_SELECTOR, "textarea#message-input").is_enabled(), "he may still write"
    )
    page = oscar.session.find("body").text.lower()
    assert "not a member" in page, page
    oscar.shot("removed")

    type_into(nora.session, "input#add-member-search", "osc")
    pick_result(nora, "ul#add-member-results", oscar_account, "button.add-member")
    wait_members(nora, three)
    open_chat(oscar, group, "Book club")
    oscar.session.wait(lambda d: d.find_element(By.CSS_SELECTOR, "textarea#message-input").is_enabled(), "still out")
    say(oscar, "Thanks for having me back")
    oscar.shot("added-back")
    open_members(oscar)
    press(oscar.session, "button#leave-chat")
    oscar.session.wait(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f"li.chat[data-chat-id='{group}']"), "the group is still listed"
    )
    oscar.shot("left")
    wait_members(nora, {nora_account.user_id: "owner", paul_account.user_id: "member"})
    nora.shot("oscar-left")
    assert site.members(nora_account, group) == {nora_account.user_id: "owner", paul_account.user_id: "member"}
    assert_quiet(nora, oscar)


@on_a_thread
def test_a_session_outlives_its_access_tokens(site: Site, watcher: Watcher) -> None:
    """uma signed in when the module began, through a gateway whose access tokens live 30 s: her page
    refreshed them before they expired and gave each to its socket (an `auth` frame), so the socket
    she opened then is still open, the messages come live, and her REST calls still work."""
    person, gateway = watcher.person, watcher.person.gateway
    left = watcher.since + SHORT_TOKEN_S + 5 - time.monotonic()
    if left > 0:  # run alone: the token she signed in with has to expire first
        time.sleep(left)
    person.session.find("#connection[data-state='online']")
    site.send(watcher.partner, watcher.chat, "Still there?")
    wait_conversation(person, ["Still there?"])
    say(person, "Yes, all along")
    to_chat_list(person)
    type_into(person.session, "input#people-search", watcher.partner.username[:3])
    pick_result(person, "ul#people-results", watcher.partner, "button.start-direct")
    assert wait_open_chat(person, watcher.partner.display_name) == watcher.chat
    person.shot("after-its-tokens-expired")
    log = gateway.process.log()
    assert "POST /api/v1/auth/refresh 200" in log, "the page never refreshed its token"
    assert "GET /api/v1/ws 101" not in log, "a socket of hers was closed (its line is written when it ends)"
    assert gateway.metric("gateway_ws_session_closes_total") == 0
    assert_quiet(person)
