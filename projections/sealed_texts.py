"""Sealed texts into the read models: the projections keep plain text, so a batch's sealed
parameters are opened, with the keys of the mirror (`projections.key_mirror`), before its
statement runs (docs/erasure.md).

A projection's `params` gives a `SealedParam` (the token, what it seals and whose) where an event
carries a sealed text, at the positions its `sealed_params` names. `TextOpener.open` replaces each
with its text, with the keys of the mirror (one query for the batch's keys) and, in the worker,
those of the last minute tailed from `content.keys` (`runtime.key_tail`): a message's key was
written a moment before its event, so the tail holds it (or soon will) while the mirror, caught up
every few seconds, rarely does yet. A key neither holds makes it catch the mirror up (`CATCH_UPS`
times at most); one still missing then is lost. What
cannot be opened becomes the empty string, as a deleted message's text: a shredded key is an
erasure working as meant; a lost or corrupt key, a text that does not authenticate, is logged and
counted (`projection_unopened_texts_total`), never guessed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import Counter

from projections.model import Params
from runtime.key_tail import KeyTail
from runtime.sealing import KeyState, Unopened, open_sealed
from schemas.sealed import MalformedSealed, Purpose, parse

log = logging.getLogger(__name__)

UNOPENED = Counter(
    "projection_unopened_texts_total",
    "Sealed texts a projection could not open: shredded (erased, as meant), or a fault: "
    "key_missing, corrupt_key, not_authentic, malformed",
    ["reason"],
)
CATCH_UPS = 3
CATCH_UP_PAUSE_S = 0.25
"""A key is handed to Kafka just before the command whose text it seals, so it lands with it or
a moment after (docs/erasure.md): a key still missing after three catch-ups half a second apart
is lost."""
TAIL_WAIT_S = 0.5
"""How long a batch waits for the tail to bring a key neither it nor the mirror holds yet."""
ERASED_TEXT = ""
"""What a text that cannot be opened becomes in the read models: what a deleted message holds."""


class SealedParam(str):
    """A statement parameter that holds a sealed token, opened before the statement runs (a str
    subclass cannot have slots: its two attributes live in its `__dict__`)."""

    purpose: Purpose
    subject_id: uuid.UUID

    def __new__(cls, token: str, purpose: Purpose, subject_id: uuid.UUID) -> SealedParam:
        made = super().__new__(cls, token)
        made.purpose = purpose
        made.subject_id = subject_id
        return made


Conn = asyncpg.Connection | PoolConnectionProxy
CatchUp = Callable[[], Awaitable[object]]
"""Brings the mirror to the end of `content.keys` (`projections.key_mirror.catching_up`), on a
connection of its own: the batch's may be in a transaction, or on a shadow schema's search path."""
MIRROR_TABLE = "public.content_keys"
"""Named with its schema: a rebuild's connections search its shadow schema alone."""


async def keys_for(conn: Conn, key_ids: Iterable[str]) -> dict[str, KeyState]:
    """The mirror's state of `key_ids`: a key, or None when shredded; a key id it does not hold is
    absent (what `runtime.sealing.open_sealed` reads as `key_missing`)."""
    wanted = sorted(set(key_ids))
    if not wanted:
        return {}
    rows = await conn.fetch(f"SELECT key_id, key FROM {MIRROR_TABLE} WHERE key_id = ANY($1::text[])", wanted)
    return {r["key_id"]: r["key"] for r in rows}


def key_id_of(token: str) -> str | None:
    try:
        return parse(token).key_id
    except MalformedSealed:
        return None


class TextOpener:
    def __init__(self) -> None:
        self.catch_up: CatchUp | None = None
        """None: the mirror is taken as it is (a process that does not read Kafka, or whose caller
        caught it up already); a missing key is then lost at once."""
        self.recent: KeyTail | None = None
        """The worker's tail of `content.keys`, once started (`Runtime.follow_recent_keys`); None in
        a process that does not tail (the rebuild command, which catches the mirror up first)."""

    def follow(self, catch_up: CatchUp | None) -> None:
        self.catch_up = catch_up

    async def keys(self, conn: Conn, wanted: set[str], tail_wait_s: float = 0.0) -> dict[str, KeyState]:
        """What the mirror and the tail hold of `wanted` (the tail given up to `tail_wait_s` to
        bring those neither holds); a shredding seen in either wins."""
        keys = await keys_for(conn, wanted)
        if self.recent is None:
            return keys
        missing = wanted - keys.keys()
        if missing and tail_wait_s > 0:
            await self.recent.wait_for(missing, tail_wait_s)
        for key_id, state in self.recent.known(wanted).items():
            if state is None or key_id not in keys:
                keys[key_id] = state
        return keys

    async def open(self, conn: Conn, rows: list[Params], positions: Sequence[int]) -> list[Params]:
        """`rows` with every `SealedParam` at `positions` replaced by its text (or `ERASED_TEXT`)."""
        sealed = [
            (index, position)
            for index, row in enumerate(rows)
            for position in positions
            if isinstance(row[position], SealedParam)
        ]
        if not sealed:
            return rows
        wanted = {key_id for i, p in sealed if (key_id := key_id_of(str(rows[i][p]))) is not None}
        keys = await self.keys(conn, wanted, TAIL_WAIT_S)
        for attempt in range(CATCH_UPS if self.catch_up is not None else 0):
            if wanted <= keys.keys():
                break
            if attempt:
                await asyncio.sleep(CATCH_UP_PAUSE_S)
            assert self.catch_up is not None
            await self.catch_up()
            keys = await self.keys(conn, wanted)
        opened = list(rows)
        for index, position in sealed:
            param = rows[index][position]
            assert isinstance(param, SealedParam)
            text = open_sealed(param, param.purpose, param.subject_id, keys)
            if isinstance(text, Unopened):
                report(text, param)
                text = ERASED_TEXT
            row = opened[index]
            opened[index] = (*row[:position], text, *row[position + 1 :])
        return opened


def report(unopened: Unopened, param: SealedParam) -> None:
    UNOPENED.labels(unopened.reason).inc()
    if not unopened.erased:
        log.error(
            "cannot open the sealed %s of %s (key %s): %s; stored as erased",
            param.purpose,
            param.subject_id,
            unopened.key_id or "?",
            unopened.reason,
        )


OPENER = TextOpener()
"""The process's opener: the projections worker and the rebuild let it catch the mirror up."""
