"""`sync` frames: a chat's messages after a `seq`, from the read models, in pages.

Live pushes to the socket are held while the pages go out and let through after them, so that
none comes out of order or twice: the socket was given everything of the chat up to the last page.
"""

from __future__ import annotations

import uuid

from gateway.infra import read_store
from gateway.usecases.refusal import FORBIDDEN, Refused
from gateway.ws.connections import Connection
from schemas.frames import encode_frame, message_new_frame, sync_done_frame

SYNC_PAGE = 200
"""The read model's page size (the REST maximum), and how many frames a sync queues at a time."""


class SyncReader:
    def __init__(self, pool: read_store.Pool) -> None:
        self._pool = pool

    async def sync(self, connection: Connection, chat_id: uuid.UUID, after_seq: int) -> None:
        """Every message after `after_seq`, in order and in pages, then `sync.done`;
        `forbidden` for a chat the socket's user is not in."""
        if not await read_store.is_member(self._pool, chat_id, uuid.UUID(connection.user_id)):
            raise Refused(FORBIDDEN, "not a member of this chat")
        connection.hold()
        try:
            last_seq = await self.send_pages(connection, chat_id, after_seq)
        finally:
            connection.release()
        if last_seq == after_seq:
            last_seq = await self.latest_seq(chat_id)
        await connection.reply(encode_frame(sync_done_frame(str(chat_id), last_seq)))

    async def send_pages(self, connection: Connection, chat_id: uuid.UUID, after_seq: int) -> int:
        """Reply with every message after `after_seq`; the last seq sent (`after_seq` if none)."""
        last_seq = after_seq
        while True:
            page = await read_store.messages_page(self._pool, chat_id, before=None, after=last_seq, limit=SYNC_PAGE)
            for message in page:
                await connection.reply(encode_frame(message_new_frame(message)))
            if page:
                last_seq = page[-1]["seq"]
                connection.note_given(str(chat_id), last_seq)
            if len(page) < SYNC_PAGE:
                return last_seq

    async def latest_seq(self, chat_id: uuid.UUID) -> int:
        """The chat's last seq (0 for none): what a client that asked past the end should know."""
        latest = await read_store.messages_page(self._pool, chat_id, before=None, after=None, limit=1)
        return int(latest[-1]["seq"]) if latest else 0
