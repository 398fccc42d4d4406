"""The checkers can fail: each counter, fed a history that breaks the contract in one way, counts it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from tests.chaos.checker import Counters, Message, check, recovery
from tests.chaos.load import Ack, ChatClient, Send, Sightings, SocketLog

CHAT = "c1"
T0 = 1_000_000.0


@dataclass
class FakeClient:
    chats: list[str]
    sends: list[Send] = field(default_factory=list)
    pending: dict[str, Send] = field(default_factory=dict)
    sockets: list[SocketLog] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def message(seq: int, cmid: str, at: float, sender: str = "u2") -> Message:
    return {
        "id": f"m{seq}",
        "chat_id": CHAT,
        "seq": seq,
        "sender_id": sender,
        "client_msg_id": cmid,
        "created_at": datetime.fromtimestamp(at, UTC).isoformat(),
    }


def acked_send(seq: int, cmid: str, connection: int = 1) -> Send:
    send = Send(cmid, CHAT, "hi", T0 + seq, T0 + seq)
    send.sent(connection, T0 + seq)
    send.acks.append(Ack(CHAT, seq, f"m{seq}", T0 + seq + 0.1, connection))
    return send


def socket_with(keys: list[int], opened: float = T0, closed: float = T0 + 100) -> SocketLog:
    log = SocketLog(1, "u1", opened, closed)
    for n, seq in enumerate(keys):
        log.on_new((CHAT, seq), opened + seq + n / 10)
    return log


def run(client: FakeClient, history: list[Message], sightings: Sightings | None = None) -> Counters:
    return check(Counters("test"), [cast(ChatClient, client)], {CHAT: history}, sightings or Sightings(), T0, [])


def test_a_clean_run_counts_nothing() -> None:
    client = FakeClient([CHAT], sends=[acked_send(1, "a")], sockets=[socket_with([2])])
    client.sockets[0].on_ack((CHAT, 1), T0 + 1.1)
    counters = run(client, [message(1, "a", T0 + 1, "u1"), message(2, "b", T0 + 2)])
    assert not any(counters.violations.values()), counters
    assert counters.acked == 1


def test_an_acked_message_missing_from_the_history_is_lost() -> None:
    client = FakeClient([CHAT], sends=[acked_send(1, "a"), acked_send(2, "b")])
    assert run(client, [message(1, "a", T0 + 1)]).lost == 1


def test_one_client_msg_id_in_two_rows_is_doubled() -> None:
    client = FakeClient([CHAT], sends=[acked_send(1, "a")])
    assert run(client, [message(1, "a", T0 + 1), message(2, "a", T0 + 2)]).doubled == 1


def test_a_missing_seq_is_a_gap() -> None:
    assert run(FakeClient([CHAT]), [message(1, "a", T0 + 1), message(3, "c", T0 + 3)]).gaps == 1


def test_a_live_message_twice_on_one_socket_is_a_duplicate_but_a_sync_repeat_is_not() -> None:
    log = socket_with([1, 1])
    log.syncing[CHAT] += 1
    log.on_new((CHAT, 1), T0 + 5)
    assert run(FakeClient([CHAT], sockets=[log]), [message(1, "a", T0 + 1)]).duplicate_deliveries == 1


def test_a_push_after_the_sockets_own_send_or_ack_is_a_duplicate_but_an_ack_of_a_later_resend_is_not() -> None:
    history = [message(1, "a", T0 + 1, "u1")]
    pushed_after_ack = socket_with([])
    pushed_after_ack.on_ack((CHAT, 1), T0 + 1.1)
    pushed_after_ack.on_new((CHAT, 1), T0 + 2)
    assert (
        run(FakeClient([CHAT], sends=[acked_send(1, "a")], sockets=[pushed_after_ack]), history).duplicate_deliveries
        == 1
    )

    resent_after_push = socket_with([])
    resent_after_push.on_new((CHAT, 1), T0 + 0.5)
    resent_after_push.on_ack((CHAT, 1), T0 + 1.1)
    assert (
        run(FakeClient([CHAT], sends=[acked_send(1, "a")], sockets=[resent_after_push]), history).duplicate_deliveries
        == 0
    )


def test_a_message_never_received_by_an_open_socket_is_missing() -> None:
    history = [message(1, "a", T0 + 1), message(2, "b", T0 + 2)]
    assert run(FakeClient([CHAT], sockets=[socket_with([1])]), history).missing_deliveries == 1


def test_a_message_too_close_to_the_socket_end_or_its_own_unanswered_send_is_not_missing() -> None:
    late = message(2, "b", T0 + 99)
    own = Send("c", CHAT, "hi", T0 + 3, T0 + 3)
    own.sent(1, T0 + 3)
    client = FakeClient([CHAT], sends=[own], sockets=[socket_with([1])])
    assert run(client, [message(1, "a", T0 + 1), late, message(3, "c", T0 + 3, "u1")]).missing_deliveries == 0


def test_recovery_is_the_last_slow_ack_or_the_first_healthy_answer_and_never_without_them() -> None:
    slow = Send("s", CHAT, "x", T0 + 1, T0 + 1, acks=[Ack(CHAT, 1, "m1", T0 + 12, 1)])
    fast = Send("f", CHAT, "x", T0 + 13, T0 + 13, acks=[Ack(CHAT, 2, "m2", T0 + 13.1, 1)])
    assert recovery([slow, fast], T0, [(T0 + 1, 503), (T0 + 15, 200)]) == 15.0
    assert recovery([slow, fast], T0, []) == 12.0
    assert recovery([Send("u", CHAT, "x", T0 + 1, T0 + 1)], T0, []) is None
    assert recovery([slow], T0, [(T0 + 1, 200), (T0 + 2, 503)]) is None
