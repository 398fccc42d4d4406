"""The checkers: what the clients wrote down, held against what the read models say (REST
history) once the load has settled. Each counter counts violations of the contract; none of them
is allowed to be anything but zero, except the errors (`unavailable` is expected) and recovery.

- lost: an acked (chat, seq, message id, client_msg_id) that the history does not hold.
- doubled: a client_msg_id stored in two rows, a seq held by two rows, or two acks of one send
  naming different messages.
- gaps: seqs missing from a chat's history between 1 and its last seq.
- duplicate deliveries: the same (chat, seq) twice on one socket as a pushed message.new, or a
  message.new on the socket that sent the message (after it sent it, or after its ack). A sync's
  pages, which may race pushes, are not counted, nor the ack of a resend that the client made
  after the socket had already got the message as message.new (the ack answers a request).
- missing deliveries: a message of one of the user's chats, created after a socket opened and
  seen by some client at least `CLOSE_GRACE_S` before that socket closed, that the socket never got
  (live, as an ack, or by the client's own sync after connecting). A message the socket itself
  sent and saw unanswered is exempt: the gateway skips the sending socket.
- unacked: sends still without an ack when the suite stopped waiting.
- recovery: from the fault until the gateway's /healthz is 200 again and sends are acked in
  normal time again (the ack time of the last send, made after the fault, that took longer than
  `SLOW_ACK_S`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.load import ChatClient, Key, Send, Sightings, SocketLog, parse_time

OPEN_GRACE_S = 0.25
"""The gateway subscribes a socket to its user's channel before answering 101; a message decided
a moment after the client saw its socket open may still have been routed before."""
CLOSE_GRACE_S = 3.0
"""A message first seen by anyone less than this before a socket ended may still have been on
its way to it: the client gets it by sync on its next socket instead."""
SLOW_ACK_S = 3.0
"""An ack later than this after the send is not normal service (p99 is well under 1 s)."""

Message = dict[str, Any]


@dataclass
class Counters:
    fault: str
    acked: int = 0
    lost: int = 0
    doubled: int = 0
    gaps: int = 0
    duplicate_deliveries: int = 0
    missing_deliveries: int = 0
    unacked: int = 0
    manual_actions: int = 0
    recovery_s: float | None = None
    crashed: bool = False
    """The phase itself failed (a setup call or a check raised): nothing it counted is complete."""
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    """A few instances of each non-zero counter, for the report."""
    notes: list[str] = field(default_factory=list)

    def example(self, counter: str, text: str, keep: int = 5) -> None:
        found = self.examples.setdefault(counter, [])
        if len(found) < keep:
            found.append(text)

    @property
    def violations(self) -> dict[str, int]:
        return {
            "lost": self.lost,
            "doubled": self.doubled,
            "gaps": self.gaps,
            "duplicate_deliveries": self.duplicate_deliveries,
            "missing_deliveries": self.missing_deliveries,
            "unacked": self.unacked,
            "manual_actions": self.manual_actions,
            "crashed": int(self.crashed),
        }


def check(
    counters: Counters,
    clients: list[ChatClient],
    histories: dict[str, list[Message]],
    sightings: Sightings,
    fault_at: float,
    health: list[tuple[float, int]],
) -> Counters:
    sends = [s for c in clients for s in c.sends]
    counters.acked = sum(1 for s in sends if s.ack)
    counters.unacked = sum(len(c.pending) for c in clients)
    check_lost(counters, sends, histories)
    check_doubled(counters, sends, histories)
    check_gaps(counters, histories)
    check_duplicates(counters, clients)
    check_missing(counters, clients, histories, sightings)
    counters.recovery_s = recovery(sends, fault_at, health)
    for client in clients:
        counters.errors.update(client.errors)
    return counters


def check_lost(counters: Counters, sends: list[Send], histories: dict[str, list[Message]]) -> None:
    by_seq = {(chat, int(m["seq"])): m for chat, history in histories.items() for m in history}
    for send in sends:
        ack = send.ack
        if ack is None:
            continue
        stored = by_seq.get((ack.chat_id, ack.seq))
        if stored is None or str(stored["id"]) != ack.message_id or stored.get("client_msg_id") != send.cmid:
            counters.lost += 1
            counters.example(
                "lost", f"{send.cmid} acked as {ack.chat_id}#{ack.seq} id {ack.message_id}; stored: {stored}"
            )


def check_doubled(counters: Counters, sends: list[Send], histories: dict[str, list[Message]]) -> None:
    ours = {s.cmid for s in sends}
    rows: Counter[tuple[str, str]] = Counter()
    for chat, history in histories.items():
        for seq, count in Counter(int(m["seq"]) for m in history).items():
            if count > 1:
                counters.doubled += count - 1
                counters.example("doubled", f"{chat}#{seq} held by {count} rows")
        for m in history:
            if m.get("client_msg_id") in ours:
                rows[(chat, str(m["client_msg_id"]))] += 1
    for (chat, cmid), count in rows.items():
        if count > 1:
            counters.doubled += count - 1
            counters.example("doubled", f"client_msg_id {cmid} stored {count} times in {chat}")
    for send in sends:
        if len({(a.chat_id, a.seq, a.message_id) for a in send.acks}) > 1:
            counters.doubled += 1
            counters.example("doubled", f"{send.cmid} acked as {[(a.seq, a.message_id) for a in send.acks]}")


def check_gaps(counters: Counters, histories: dict[str, list[Message]]) -> None:
    for chat, history in histories.items():
        seqs = {int(m["seq"]) for m in history}
        if not seqs:
            continue
        missing = sorted(set(range(1, max(seqs) + 1)) - seqs)
        counters.gaps += len(missing)
        if missing:
            counters.example("gaps", f"{chat}: seqs {missing[:10]} missing of 1..{max(seqs)}")


def check_duplicates(counters: Counters, clients: list[ChatClient]) -> None:
    for client in clients:
        send_of = {(s.ack.chat_id, s.ack.seq): s for s in client.sends if s.ack}
        for log in client.sockets:
            for key, news in log.live.items():
                why = duplicate(log, key, sorted(news), send_of.get(key))
                if why:
                    counters.duplicate_deliveries += 1
                    counters.example(
                        "duplicate_deliveries", f"socket {log.id} of {log.user_id[:8]}: {key[0][:8]}#{key[1]} {why}"
                    )


def duplicate(log: SocketLog, key: Key, news: list[float], send: Send | None) -> str:
    """Why this socket got `key` once too often ('' if it did not)."""
    if len(news) > 1:
        return f"pushed {len(news)} times ({news[1] - news[0]:.2f} s apart)"
    acks = log.acked.get(key, [])
    if acks and min(acks) < news[0]:
        return f"pushed {news[0] - min(acks):.2f} s after its ack on the same socket"
    sent_here = send.sent_at.get(log.id, []) if send else []
    if sent_here and min(sent_here) < news[0]:
        return f"pushed to the socket that sent it, {news[0] - min(sent_here):.2f} s after the send"
    return ""


def check_missing(
    counters: Counters, clients: list[ChatClient], histories: dict[str, list[Message]], sightings: Sightings
) -> None:
    created = {
        (chat, int(m["seq"])): (parse_time(str(m["created_at"])), m)
        for chat, history in histories.items()
        for m in history
    }
    for client in clients:
        unanswered = unanswered_on(client)
        for log in client.sockets:
            if log.closed is None:
                continue
            for chat in client.chats:
                for key in keys_due(log, chat, histories.get(chat, []), created, sightings):
                    if log.received(key) or created[key][1].get("client_msg_id") in unanswered[log.id]:
                        continue
                    counters.missing_deliveries += 1
                    counters.example("missing_deliveries", describe_missing(log, key, created[key][0], sightings))


def unanswered_on(client: ChatClient) -> dict[int, set[str]]:
    """Per socket, the client_msg_ids it sent without getting their ack on it."""
    found: dict[int, set[str]] = defaultdict(set)
    for send in client.sends:
        acked_on = {a.connection for a in send.acks}
        for connection in send.sent_on - acked_on:
            found[connection].add(send.cmid)
    return found


def keys_due(
    log: SocketLog, chat: str, history: list[Message], created: dict[Key, tuple[float, Message]], sightings: Sightings
) -> Iterable[Key]:
    assert log.closed is not None
    for m in history:
        key = (chat, int(m["seq"]))
        at = created[key][0]
        seen = sightings.first.get(key, at)
        if at >= log.opened + OPEN_GRACE_S and seen <= log.closed - CLOSE_GRACE_S:
            yield key


def describe_missing(log: SocketLog, key: Key, at: float, sightings: Sightings) -> str:
    assert log.closed is not None
    seen = sightings.first.get(key)
    seen_text = f"first seen {seen - log.opened:.1f} s" if seen else "never seen by any client"
    return (
        f"socket {log.id} of {log.user_id[:8]} (open {log.closed - log.opened:.1f} s, close {log.close_code}) "
        f"never got {key[0][:8]}#{key[1]}, created {at - log.opened:.1f} s after it opened, {seen_text}"
    )


def recovery(sends: list[Send], fault_at: float, health: list[tuple[float, int]]) -> float | None:
    """Seconds from the fault to normal service (see the module's docstring); None if it never came."""
    after = [s for s in sends if s.created >= fault_at]
    if any(s.ack is None for s in after):
        return None
    slow = [s.ack.at for s in after if s.ack and s.ack.at - s.created > SLOW_ACK_S]
    acks_back = max(slow, default=fault_at)
    samples = [(t, code) for t, code in health if t >= fault_at]
    bad = [t for t, code in samples if code != 200]
    if bad:
        good_after = [t for t, code in samples if code == 200 and t > bad[-1]]
        if not good_after:
            return None
        health_back = good_after[0]
    else:
        health_back = fault_at
    return round(max(acks_back, health_back) - fault_at, 1)
