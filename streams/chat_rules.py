"""The rules of chats and messages, with no I/O: `decide` turns a command into events, `evolve`
applies an event to the state. The chat agent (`streams/chat_agent.py`) feeds them from Faust
tables; the tests feed them from a dict.

Membership changes reach members as deltas (`chat.member_added`, `chat.member_removed`); only the
added member, and everyone on create, gets the whole Chat (`chat.updated`). A group holds at most
`max_group_members`: so one add writes bytes linear in the group's size, and a create at most
`max_group_members`² (contract v1.1, "Group size").

The state is typed (`streams.chat_state`): a `ChatState` per chat and a `StoredMessage` per message,
whose id derives from (chat, sender, client_msg_id), so a repeated send finds it. `decide` applies the events it
returns to the store itself, so that the next command of the same batch sees them. `evolve` is
idempotent (an event applied twice changes nothing), because after a crash the agent replays the
tail of the event topics over state that may already hold it.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from schemas.api import GROUP_MEMBERS_DEFAULT
from schemas.commands import (
    AddMember,
    ChangePassword,
    ChatResult,
    Command,
    CreateChat,
    DeleteMessage,
    DeliveryRecord,
    EditMessage,
    EraseAccount,
    EraseMember,
    MarkRead,
    MessageDeletedResult,
    MessageResult,
    ReadResult,
    Register,
    RemoveMember,
    SendMessage,
    UpdateProfile,
)
from schemas.events import (
    ChatCreated,
    Event,
    MemberAdded,
    MemberRemoved,
    MessageDeleted,
    MessageEdited,
    MessageSent,
    Payload,
    ReadMarkerMoved,
    RemovalReason,
    RoleChanged,
    event_id_for,
    new_event,
)
from schemas.frames import (
    chat_member_added_frame,
    chat_member_removed_frame,
    chat_updated_frame,
    message_deleted_frame,
    message_edited_frame,
    message_new_frame,
    read_frame,
)
from schemas.models import Chat, Member, Message, Role, direct_chat_id, message_id_for
from streams.chat_state import ChatState, StoredMessage
from streams.decision import Decision, refuse
from streams.shredding import brought_key, shredded_by, unadopted

__all__ = ["ChatStore", "Decision", "decide", "evolve", "message_id_for", "shredded_in"]

MANAGERS = ("owner", "admin")


class ChatStore(Protocol):
    """The state the rules read and write: two maps keyed by strings."""

    def get_chat(self, chat_id: str) -> ChatState | None: ...
    def set_chat(self, chat_id: str, chat: ChatState) -> None: ...
    def get_message(self, message_id: str) -> StoredMessage | None: ...
    def set_message(self, message_id: str, message: StoredMessage) -> None: ...


def dedupe_key(chat_id: uuid.UUID | str, sender_id: uuid.UUID | str, client_msg_id: str) -> str:
    return f"{chat_id}|{sender_id}|{client_msg_id}"


# --- views of state as the contract's resources -----------------------------------------------


def chat_view(chat_id: str, chat: ChatState) -> Chat:
    """The contract's Chat as far as the decider knows it (the gateway adds last_message, unread)."""
    return Chat(
        id=uuid.UUID(chat_id),
        type=chat.type,
        title=chat.title,
        created_at=datetime.fromisoformat(chat.created_at),
        members=[Member(user_id=uuid.UUID(u), role=r) for u, r in chat.members.items()],
    )


def message_view(message: StoredMessage) -> Message:
    return Message.model_validate(message.to_json())


def json_of(resource: Chat | Message) -> dict[str, Any]:
    """A resource as a frame carries it."""
    return resource.model_dump(mode="json")


# --- evolve -----------------------------------------------------------------------------------


def shredded_in(store: ChatStore, event: Event) -> list[str]:
    """The data keys `event` shreds, read from `store` before `event` is applied to it."""
    p = event.payload
    if isinstance(p, (MessageEdited, MessageDeleted)):
        return shredded_by(store.get_message(str(p.message_id)), event)
    return []


def evolve(store: ChatStore, event: Event) -> None:
    """Apply `event` to `store`; applying it again changes nothing."""
    p = event.payload
    at = event.occurred_at.isoformat()
    if isinstance(p, ChatCreated):
        if store.get_chat(str(p.chat_id)) is None:
            store.set_chat(
                str(p.chat_id),
                ChatState(
                    type=p.type,
                    title=p.title,
                    created_at=at,
                    created_by=str(p.created_by),
                    members={str(m.user_id): m.role for m in p.members},
                    last_seq=0,
                ),
            )
    elif isinstance(p, (MemberAdded, RoleChanged, MemberRemoved)):
        _evolve_membership(store, p)
    elif isinstance(p, MessageSent):
        _evolve_sent(store, p, at)
    elif isinstance(p, (MessageEdited, MessageDeleted)):
        message = store.get_message(str(p.message_id))
        if message is not None:
            if isinstance(p, MessageEdited):
                message = replace(message, text=p.carried_text, edited_at=at)
            else:
                message = replace(message, text="", deleted=True)
            store.set_message(str(p.message_id), message)


def _evolve_membership(store: ChatStore, p: MemberAdded | RoleChanged | MemberRemoved) -> None:
    chat = store.get_chat(str(p.chat_id))
    if chat is None:
        return
    members = dict(chat.members)
    if isinstance(p, MemberRemoved):
        members.pop(str(p.user_id), None)
    else:
        members[str(p.user_id)] = p.role
    store.set_chat(str(p.chat_id), replace(chat, members=members))


def _evolve_sent(store: ChatStore, p: MessageSent, at: str) -> None:
    """Each of the two keys is mended on its own: a crash can leave either of them written
    (they live in different changelogs), and the replayed tail must complete the other."""
    chat = store.get_chat(str(p.chat_id))
    if chat is None:
        return
    if p.seq > chat.last_seq:
        store.set_chat(str(p.chat_id), chat.at_seq(p.seq))
    if store.get_message(str(p.message_id)) is None:
        store.set_message(
            str(p.message_id),
            StoredMessage(
                id=str(p.message_id),
                chat_id=str(p.chat_id),
                seq=p.seq,
                sender_id=str(p.sender_id),
                text=p.carried_text,
                client_msg_id=p.client_msg_id,
                created_at=at,
            ),
        )


# --- decide -----------------------------------------------------------------------------------


def decide(
    store: ChatStore,
    command: Command,
    now: datetime | None = None,
    *,
    chat_id_key: bytes,
    max_group_members: int = GROUP_MEMBERS_DEFAULT,
) -> Decision:
    """The outcome of `command` against `store`; accepted events are already applied to it."""
    decision = _decide(store, command, now, chat_id_key, max_group_members)
    if not decision.ok:
        decision.shredded.extend(unadopted(brought_key(command), _message_of(store, command)))
    return decision


def _message_of(store: ChatStore, command: Command) -> StoredMessage | None:
    """The message whose text `command` carries, if the store holds it: a command decided again
    after a crash may be refused now (its sender left meanwhile) while its text is the message's."""
    body = command.body
    if isinstance(body, SendMessage) and command.actor_id is not None:
        return store.get_message(str(message_id_for(body.chat_id, command.actor_id, body.client_msg_id)))
    if isinstance(body, EditMessage):
        return store.get_message(str(body.message_id))
    return None


def _decide(
    store: ChatStore, command: Command, now: datetime | None, chat_id_key: bytes, max_group_members: int
) -> Decision:
    body = command.body
    if command.actor_id is None:
        return refuse("unauthenticated", "a chat command needs an actor")
    emit = _Emitter(store, command, now or datetime.now(UTC))
    if isinstance(body, CreateChat):
        return _create(store, command.actor_id, body, emit, max_group_members, chat_id_key)
    if isinstance(body, (Register, UpdateProfile, EraseAccount, ChangePassword)):
        return refuse("invalid_request", f"{body.kind} is not a chat command")
    chat = store.get_chat(str(body.chat_id))
    actor = str(command.actor_id)
    if isinstance(body, EraseMember):
        return _erase_member(store, chat, actor, body, emit) if chat else refuse("not_found", "no such chat")
    if chat is None or actor not in chat.members:
        return refuse("not_found", "no such chat")
    if isinstance(body, AddMember):
        return _add_member(chat, actor, body, emit, max_group_members)
    if isinstance(body, RemoveMember):
        return _remove_member(chat, actor, body, emit)
    if isinstance(body, SendMessage):
        return _send(store, chat, actor, body, emit)
    if isinstance(body, (EditMessage, DeleteMessage)):
        return _change_message(store, chat, actor, body, emit)
    return _read(chat, actor, body, emit)


class _Emitter:
    """Builds the events of one command (ids derived from it), applying each to the store."""

    def __init__(self, store: ChatStore, command: Command, now: datetime) -> None:
        self.store, self.command, self.now = store, command, now
        self.decision = Decision(ok=True)

    def __call__(self, aggregate_id: uuid.UUID, payload: Payload) -> None:
        index = len(self.decision.events)
        event = new_event(
            payload,
            aggregate_id=aggregate_id,
            event_id=event_id_for(self.command.command_id, index),
            actor_id=self.command.actor_id,
            correlation_id=self.command.correlation_id,
            occurred_at=self.now,
        )
        self.decision.shredded.extend(shredded_in(self.store, event))
        evolve(self.store, event)
        self.decision.events.append(event)

    def deliver(self, recipients: list[str], frame: dict[str, Any]) -> None:
        origin = self.command.origin
        actor = str(self.command.actor_id)
        for user in recipients:
            skip = origin.connection_id if origin and user == actor else None
            self.decision.deliveries.append(DeliveryRecord(user, frame, skip))

    def stored_message(self, message_id: uuid.UUID) -> StoredMessage:
        """A message this command's events just wrote."""
        message = self.store.get_message(str(message_id))
        assert message is not None
        return message

    def chat_result(self, chat_id: str) -> dict[str, Any]:
        """The chat as it now is, as the command's result (the reply is one record, whatever
        the group's size); returned as a frame carries it."""
        chat = self.store.get_chat(chat_id)
        assert chat is not None
        view = chat_view(chat_id, chat)
        self.decision.result = ChatResult(chat=view)
        return json_of(view)


def group_full(limit: int) -> Decision:
    return refuse("group_full", f"a group holds at most {limit} members")


def _create(
    store: ChatStore, actor: uuid.UUID, body: CreateChat, emit: _Emitter, max_members: int, chat_id_key: bytes
) -> Decision:
    others = {m for m in body.member_ids if m != actor}
    if body.type == "direct":
        if len(others) != 1:
            return refuse("invalid_request", "a direct chat has exactly one other member")
        if body.chat_id != direct_chat_id(chat_id_key, actor, next(iter(others))):
            return refuse("invalid_request", "a direct chat's id is derived from its two members")
        members = [Member(user_id=actor, role="member"), Member(user_id=next(iter(others)), role="member")]
    else:
        members = [Member(user_id=actor, role="owner")] + [
            Member(user_id=u, role="member") for u in sorted(others, key=str)
        ]
    existing = store.get_chat(str(body.chat_id))
    if existing is not None:
        if str(actor) not in existing.members or (body.type == "group" and existing.created_by != str(actor)):
            return refuse("conflict", "a chat with this id exists")
        return Decision(ok=True, duplicate=True, result=ChatResult(chat=chat_view(str(body.chat_id), existing)))
    if len(members) > max_members:
        return group_full(max_members)
    emit(
        body.chat_id,
        ChatCreated(chat_id=body.chat_id, type=body.type, title=body.title, created_by=actor, members=members),
    )
    view = emit.chat_result(str(body.chat_id))
    emit.deliver([str(m.user_id) for m in members], chat_updated_frame(view))
    return emit.decision


def _add_member(chat: ChatState, actor: str, body: AddMember, emit: _Emitter, max_members: int) -> Decision:
    """The members before the add get the delta; the added member the whole chat."""
    if chat.type != "group":
        return refuse("forbidden", "members are added to group chats only")
    if chat.role_of(actor) not in MANAGERS:
        return refuse("forbidden", "only the owner or an admin adds members")
    added = str(body.user_id)
    if added in chat.members:
        return Decision(ok=True, duplicate=True, result=ChatResult(chat=chat_view(str(body.chat_id), chat)))
    if len(chat.members) >= max_members:
        return group_full(max_members)
    chat_id = str(body.chat_id)
    role: Role = "member"
    emit(body.chat_id, MemberAdded(chat_id=body.chat_id, user_id=body.user_id, role=role, added_by=uuid.UUID(actor)))
    emit.deliver(list(chat.members), chat_member_added_frame(chat_id, added, role))
    emit.deliver([added], chat_updated_frame(emit.chat_result(chat_id)))
    return emit.decision


def _remove_member(chat: ChatState, actor: str, body: RemoveMember, emit: _Emitter) -> Decision:
    target = str(body.user_id)
    leaving = target == actor
    if chat.type != "group":
        return refuse("forbidden", "members of a direct chat cannot be removed")
    if target not in chat.members:
        return refuse("not_found", "no such member")
    if not leaving and (chat.role_of(actor) not in MANAGERS or chat.role_of(target) == "owner"):
        return refuse("forbidden", "only the owner or an admin removes members, and not the owner")
    _leave(chat, actor, body, emit, "left" if leaving else "removed")
    emit.chat_result(str(body.chat_id))
    return emit.decision


def _leave(
    chat: ChatState, actor: str, body: RemoveMember | EraseMember, emit: _Emitter, reason: RemovalReason
) -> None:
    """`body.user_id` out of the chat; a leaving owner hands the group over (`_successor`)."""
    chat_id, target = str(body.chat_id), str(body.user_id)
    emit(
        body.chat_id,
        MemberRemoved(chat_id=body.chat_id, user_id=body.user_id, removed_by=uuid.UUID(actor), reason=reason),
    )
    rest = [m for m in chat.members if m != target]
    emit.deliver([*rest, target], chat_member_removed_frame(chat_id, target))
    successor = _successor(chat, target)
    if chat.role_of(target) == "owner" and successor:
        emit(body.chat_id, RoleChanged(chat_id=body.chat_id, user_id=uuid.UUID(successor), role="owner"))
        emit.deliver(rest, chat_member_added_frame(chat_id, successor, "owner"))


def _erase_member(store: ChatStore, chat: ChatState, actor: str, body: EraseMember, emit: _Emitter) -> Decision:
    """An erased account's messages named in the command deleted (their keys shredded), and the
    account out of the chat, a direct one too, so that nothing it still holds can write here.

    Its membership may be gone already: the gateway sends the messages it finds after the
    removal (those decided just before it) in a second command. Messages of others, of another
    chat, or deleted already are passed over: a command decided again changes nothing.
    """
    if actor != str(body.user_id):
        return refuse("forbidden", "only an erased account's own erasure removes it")
    chat_id = str(body.chat_id)
    members = list(chat.members)
    for message_id in body.message_ids:
        message = store.get_message(str(message_id))
        if message is None or message.chat_id != chat_id or message.sender_id != actor or message.deleted:
            continue
        emit(
            body.chat_id,
            MessageDeleted(message_id=message_id, chat_id=body.chat_id, seq=message.seq, deleted_by=body.user_id),
        )
        emit.deliver(members, message_deleted_frame(chat_id, str(message_id), message.seq))
    if actor in chat.members:
        _leave(chat, actor, body, emit, "erased")
    return emit.decision


def _sent_again(chat: ChatState, first: StoredMessage, emit: _Emitter) -> Decision:
    """A send decided before: the first message, and its `message.new` delivered again.

    The first decision's events may be durable while its deliveries never left (the worker was
    killed between the two); the command then comes again (uncommitted, or resent by its
    client) and lands here. Delivering again is safe: each socket drops a `seq` it already has.
    The message's id derives from (chat, sender, client_msg_id), so `message_index` finds it.
    """
    message = message_view(first)
    if not first.deleted:
        emit.deliver(list(chat.members), message_new_frame(json_of(message)))
    emit.decision.duplicate = True
    emit.decision.result = MessageResult(message=message)
    emit.decision.shredded.extend(unadopted(brought_key(emit.command), first))
    return emit.decision


def _successor(chat: ChatState, leaving: str) -> str | None:
    """Who owns a group when its owner leaves: the first admin, else the first member (by join order)."""
    rest = [(u, r) for u, r in chat.members.items() if u != leaving]
    for user, role in rest:
        if role == "admin":
            return user
    return rest[0][0] if rest else None


def _send(store: ChatStore, chat: ChatState, actor: str, body: SendMessage, emit: _Emitter) -> Decision:
    sender = uuid.UUID(actor)
    message_id = message_id_for(body.chat_id, sender, body.client_msg_id)
    first = store.get_message(str(message_id))
    if first is not None:
        return _sent_again(chat, first, emit)
    members = list(chat.members)
    emit(
        body.chat_id,
        MessageSent(
            message_id=message_id,
            chat_id=body.chat_id,
            seq=chat.last_seq + 1,
            sender_id=sender,
            text=body.text,
            sealed_text=body.sealed_text,
            client_msg_id=body.client_msg_id,
            recipients=[uuid.UUID(m) for m in members],
        ),
    )
    message = message_view(emit.stored_message(message_id))
    emit.deliver(members, message_new_frame(json_of(message)))
    emit.decision.result = MessageResult(message=message)
    return emit.decision


def _change_message(
    store: ChatStore, chat: ChatState, actor: str, body: EditMessage | DeleteMessage, emit: _Emitter
) -> Decision:
    message = store.get_message(str(body.message_id))
    if message is None or message.chat_id != str(body.chat_id):
        return refuse("not_found", "no such message")
    if message.deleted:
        return refuse("not_found", "the message was deleted")
    is_sender = message.sender_id == actor
    members = list(chat.members)
    if isinstance(body, EditMessage):
        if not is_sender:
            return refuse("forbidden", "only the sender edits a message")
        emit(
            body.chat_id,
            MessageEdited(
                message_id=body.message_id,
                chat_id=body.chat_id,
                seq=message.seq,
                text=body.text,
                sealed_text=body.sealed_text,
            ),
        )
        view = message_view(emit.stored_message(body.message_id))
        emit.deliver(members, message_edited_frame(json_of(view)))
        emit.decision.result = MessageResult(message=view)
        return emit.decision
    may_moderate = chat.type == "group" and chat.role_of(actor) in MANAGERS
    if not (is_sender or may_moderate):
        return refuse("forbidden", "only the sender or a group owner/admin deletes a message")
    emit(
        body.chat_id,
        MessageDeleted(message_id=body.message_id, chat_id=body.chat_id, seq=message.seq, deleted_by=uuid.UUID(actor)),
    )
    emit.deliver(members, message_deleted_frame(str(body.chat_id), str(body.message_id), message.seq))
    emit.decision.result = MessageDeletedResult(chat_id=body.chat_id, message_id=body.message_id, seq=message.seq)
    return emit.decision


def _read(chat: ChatState, actor: str, body: MarkRead, emit: _Emitter) -> Decision:
    seq = min(body.seq, chat.last_seq)
    emit(body.chat_id, ReadMarkerMoved(chat_id=body.chat_id, user_id=uuid.UUID(actor), seq=seq))
    emit.deliver(list(chat.members), read_frame(str(body.chat_id), actor, seq))
    emit.decision.result = ReadResult(chat_id=body.chat_id, seq=seq)
    return emit.decision
