"""Records a worker skipped, kept on `dead.letters` with what an operator needs to judge and re-feed them.

A worker that cannot use a record (a command that is no command, an event of an unknown type, a
value PostgreSQL cannot store) skips it so that its partition goes on, and sends a `DeadLetter`:
who skipped it (`consumer`), why (`reason`, the label of its `*_bad_records_total` counter, and
`detail`), where it was (`topic`, `partition`, `offset`, `occurred_at`) and its exact bytes
(`key`, `value`; base64 in JSON). `python -m streams dead-letters replay` later writes a
`ReplayRequest` (events: the projections worker answers it) and a `ReplayOutcome` on the same
key. Every record of a dead letter has its id as key, `consumer|topic|partition|offset`: the same
record skipped twice (at-least-once, a restart) is one dead letter seen twice, not two.

`page_of` folds the records of the topic into one `DeadLetterEntry` per id, newest first: what
the CLI's `list` prints and the console's "Bad records" page shows. No I/O here: the reading is
`runtime.topic_log.read_topic`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from schemas import codec

Status = Literal["dead", "replay_requested", "replayed", "replay_failed"]

RAW_BYTES = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")
"""Raw key and value bytes travel as URL-safe base64 in JSON."""


def letter_id(consumer: str, topic: str, partition: int, offset: int) -> str:
    """The key of a dead letter: one source record skipped by one consumer."""
    return f"{consumer}|{topic}|{partition}|{offset}"


class DeadLetter(BaseModel):
    model_config = RAW_BYTES

    kind: Literal["dead"] = "dead"
    consumer: str
    """The agent (`chat_decider`, `user_decider`) or projection (`users`, `chats`, `messages`) that skipped it."""
    reason: str
    """malformed, unknown_type or unstorable: the label of the consumer's bad-records counter."""
    detail: str
    topic: str
    """The source topic as named on the broker (with the deployment's prefix)."""
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    occurred_at: datetime | None
    """The source record's timestamp."""
    dead_at: datetime

    @property
    def id(self) -> str:
        return letter_id(self.consumer, self.topic, self.partition, self.offset)


class ReplayRequest(BaseModel):
    """Asks the projections worker to apply `letter` to the projection that skipped it."""

    model_config = RAW_BYTES

    kind: Literal["replay"] = "replay"
    letter: DeadLetter
    requested_at: datetime


class ReplayOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["replayed", "replay_failed"]
    id: str
    at: datetime
    detail: str
    """Where it went (`produced again to message.send[2]@57`, `applied to the messages projection`) or why not."""


LetterRecord = Annotated[DeadLetter | ReplayRequest | ReplayOutcome, Field(discriminator="kind")]
LETTER_RECORD: TypeAdapter[DeadLetter | ReplayRequest | ReplayOutcome] = TypeAdapter(LetterRecord)


def encode_letter(record: DeadLetter | ReplayRequest | ReplayOutcome) -> bytes:
    return codec.dumps(record)


def decode_letter(data: bytes) -> DeadLetter | ReplayRequest | ReplayOutcome:
    """Raises ValueError (pydantic's ValidationError is one) for a record that is none of them."""
    return LETTER_RECORD.validate_json(data)


def key_of(record: DeadLetter | ReplayRequest | ReplayOutcome) -> bytes:
    """The Kafka key every record about one dead letter carries."""
    if isinstance(record, DeadLetter):
        return record.id.encode()
    if isinstance(record, ReplayRequest):
        return record.letter.id.encode()
    return record.id.encode()


class DeadLetterEntry(BaseModel):
    """One dead letter as the operator sees it: the first letter sent, and what became of it."""

    model_config = RAW_BYTES

    id: str
    letter: DeadLetter
    status: Status = "dead"
    outcome: str = ""
    """The last replay's detail; empty while none ended."""
    seen: int = 1
    """How many times it was dead-lettered (more than once after a redelivery)."""


class DeadLetterPage(BaseModel):
    model_config = RAW_BYTES

    entries: list[DeadLetterEntry]
    next_after: str | None
    """The cursor of the next (older) page, passed back as `after`; None on the last page."""
    total: int
    """Dead letters matching the filter, on every page."""
    unreadable: int = 0
    """Records of the topic that are no dead-letter record (never written by this code)."""


class Logged(Protocol):
    """A record read from the topic; only its value matters (a dead letter's key is in it)."""

    @property
    def value(self) -> bytes | None: ...


def fold(records: Iterable[Logged]) -> tuple[dict[str, DeadLetterEntry], int]:
    """One entry per id, from the records in log order per partition (the key keeps an id's records
    in one partition); and the number of records that could not be read."""
    entries: dict[str, DeadLetterEntry] = {}
    unreadable = 0
    for record in records:
        try:
            letter = decode_letter(record.value or b"")
        except (ValueError, ValidationError):
            unreadable += 1
            continue
        if isinstance(letter, DeadLetter):
            known = entries.get(letter.id)
            entries[letter.id] = (
                DeadLetterEntry(id=letter.id, letter=letter)
                if known is None
                else known.model_copy(update={"seen": known.seen + 1})
            )
        elif isinstance(letter, ReplayRequest):
            known = entries.get(letter.letter.id) or DeadLetterEntry(id=letter.letter.id, letter=letter.letter)
            entries[known.id] = known.model_copy(update={"status": "replay_requested"})
        elif letter.id in entries:
            entries[letter.id] = entries[letter.id].model_copy(update={"status": letter.kind, "outcome": letter.detail})
    return entries, unreadable


def cursor_of(entry: DeadLetterEntry) -> str:
    return f"{entry.letter.dead_at.isoformat()}/{entry.id}"


def page_of(
    records: Iterable[Logged], *, after: str | None = None, limit: int = 50, consumer: str | None = None
) -> DeadLetterPage:
    """The dead letters newest first (by `dead_at`, then id), `limit` of them after cursor `after`,
    those of `consumer` only if given."""
    entries, unreadable = fold(records)
    chosen = sorted(
        (e for e in entries.values() if consumer is None or e.letter.consumer == consumer),
        key=cursor_order,
        reverse=True,
    )
    start = 0
    if after is not None:
        bound = parse_cursor(after)
        start = next((i for i, e in enumerate(chosen) if cursor_order(e) < bound), len(chosen))
    shown = chosen[start : start + max(0, limit)]
    more = start + len(shown) < len(chosen)
    return DeadLetterPage(
        entries=shown,
        next_after=cursor_of(shown[-1]) if shown and more else None,
        total=len(chosen),
        unreadable=unreadable,
    )


def cursor_order(entry: DeadLetterEntry) -> tuple[datetime, str]:
    return entry.letter.dead_at, entry.id


def parse_cursor(after: str) -> tuple[datetime, str]:
    """ValueError for a cursor `cursor_of` did not make."""
    at, _, entry_id = after.partition("/")
    when = datetime.fromisoformat(at)
    if when.tzinfo is None:
        raise ValueError(f"not a cursor of this list: {after!r}")
    return when, entry_id


def find(records: Iterable[Logged], ref: str) -> list[DeadLetterEntry]:
    """The entries `ref` names: a full id, or `topic:partition:offset` (every consumer that skipped it)."""
    entries, _ = fold(records)
    if ref in entries:
        return [entries[ref]]
    parts = ref.rsplit(":", 2)
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        return []
    topic, partition, offset = parts[0], int(parts[1]), int(parts[2])
    return [
        e
        for e in entries.values()
        if e.letter.topic == topic and e.letter.partition == partition and e.letter.offset == offset
    ]
