"""`typing` frames, relayed to the chat's other members through a short-lived cache of members.

Typing frames come often (a client may send one every few seconds per open chat) and are worth
little: a frame routed to a member who left a few seconds ago, or missed by one who just joined,
harms nobody. So their membership check and fan-out read this cache; everything that is stored
(sends, reads, syncs) asks the deciding agent or the read model itself.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

import asyncpg

from gateway.infra import read_store
from gateway.usecases.refusal import FORBIDDEN, Refused
from gateway.ws.routing import Route, UserChannels
from schemas.frames import encode_frame, typing_frame

TTL_S = 5.0
"""Long enough that a burst of typing frames costs one query, short enough to follow joins."""
MAX_CHATS = 10_000
"""About a megabyte of member lists at most; the least recently used chats go first."""


class MembersCache:
    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl_s: float = TTL_S,
        max_chats: int = MAX_CHATS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl_s
        self._max = max_chats
        self._clock = clock
        self._chats: OrderedDict[uuid.UUID, tuple[float, frozenset[str]]] = OrderedDict()

    async def members(self, chat_id: uuid.UUID, *, must_include: str | None = None) -> frozenset[str]:
        """The member ids of `chat_id`; read again if stale, or if `must_include` is not among
        them (someone who just joined should not wait for the entry to expire)."""
        entry = self._chats.get(chat_id)
        now = self._clock()
        if entry is not None and now - entry[0] < self._ttl and (must_include is None or must_include in entry[1]):
            self._chats.move_to_end(chat_id)
            return entry[1]
        members = frozenset(str(u) for u in await read_store.member_ids(self._pool, chat_id))
        self._chats[chat_id] = (now, members)
        self._chats.move_to_end(chat_id)
        while len(self._chats) > self._max:
            self._chats.popitem(last=False)
        return members


class TypingRelay:
    """Not stored, not decided: a `typing` frame goes from one member straight to the others."""

    def __init__(self, members: MembersCache, channels: UserChannels) -> None:
        self._members = members
        self._channels = channels

    async def relay(self, user_id: str, chat_id: uuid.UUID) -> None:
        """Tell the other members of `chat_id` that `user_id` types; `forbidden` for a non-member."""
        members = await self._members.members(chat_id, must_include=user_id)
        if user_id not in members:
            raise Refused(FORBIDDEN, "not a member of this chat")
        text = encode_frame(typing_frame(str(chat_id), user_id))
        await self._channels.publish(Route(m, text) for m in members if m != user_id)
