"""A `ChatStore` over plain dicts: the state of the chat rules in unit tests."""

from __future__ import annotations

from streams.chat_state import ChatState, StoredMessage


class MemoryChatStore:
    def __init__(self) -> None:
        self.chats: dict[str, ChatState] = {}
        self.messages: dict[str, StoredMessage] = {}

    def get_chat(self, chat_id: str) -> ChatState | None:
        return self.chats.get(chat_id)

    def set_chat(self, chat_id: str, chat: ChatState) -> None:
        self.chats[chat_id] = chat

    def get_message(self, message_id: str) -> StoredMessage | None:
        return self.messages.get(message_id)

    def set_message(self, message_id: str, message: StoredMessage) -> None:
        self.messages[message_id] = message
