"""A `ChatStore` over plain dicts: the state of the rules in unit tests and in catch-up overlays."""

from __future__ import annotations

from typing import Any


class MemoryChatStore:
    def __init__(self) -> None:
        self.chats: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.sent: dict[str, str] = {}

    def get_chat(self, chat_id: str) -> dict[str, Any] | None:
        return self.chats.get(chat_id)

    def set_chat(self, chat_id: str, chat: dict[str, Any]) -> None:
        self.chats[chat_id] = chat

    def get_message(self, message_id: str) -> dict[str, Any] | None:
        return self.messages.get(message_id)

    def set_message(self, message_id: str, message: dict[str, Any]) -> None:
        self.messages[message_id] = message

    def get_sent(self, dedupe_key: str) -> str | None:
        return self.sent.get(dedupe_key)

    def set_sent(self, dedupe_key: str, message_id: str) -> None:
        self.sent[dedupe_key] = message_id
