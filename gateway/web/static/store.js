/**
 * The client's state: who is signed in, the users it knows, the chats with their members and
 * messages, who is online, the open chat. Every change is announced with a `change` event whose
 * detail names what changed (`kind`: `me`, `users`, `chats`, `messages`, `members`, `presence`,
 * `typing`, `open`), so that each view redraws only its part.
 *
 * Messages are keyed by `client_msg_id` while they wait for the gateway (`pending`) and by `seq`
 * once they have one (`messages`): a message acknowledged, synced or echoed twice is shown once.
 * @module store
 */

const TYPING_SHOWN_MS = 5000;

/**
 * @typedef {object} Message the contract's Message, plus `state` for own pending ones
 * @typedef {object} ChatState
 * @property {string} id
 * @property {'direct'|'group'} type
 * @property {string|null} title
 * @property {Map<string, {role: string, lastRead: number}>} members
 * @property {number} unread
 * @property {number} activity time of the latest activity (ms)
 * @property {Message|null} lastMessage
 * @property {Map<number, Message>} messages by seq
 * @property {Map<string, Message>} pending own sends without a seq, by client_msg_id
 * @property {number} maxSeq the highest seq the client has
 * @property {boolean} loaded whether the latest page of history was fetched
 * @property {boolean} hasOlder whether older history exists before the lowest seq held
 * @property {boolean} removed the user is no longer a member
 * @property {Map<string, number>} typing user id → timer
 * @property {number} countedSeq the highest seq already counted in `unread`
 */

export class Store extends EventTarget {
  constructor() {
    super();
    this.reset();
  }

  /** Forgets everything (sign out). */
  reset() {
    /** @type {object|null} */
    this.me = null;
    /** @type {Map<string, object>} */
    this.users = new Map();
    /** @type {Map<string, ChatState>} */
    this.chats = new Map();
    /** @type {Set<string>} */
    this.online = new Set();
    /** @type {string|null} */
    this.openChatId = null;
  }

  /**
   * Announces a change.
   * @param {string} kind
   * @param {string|null} [chatId]
   */
  emit(kind, chatId = null) {
    this.dispatchEvent(new CustomEvent('change', { detail: { kind, chatId } }));
  }

  /** @param {object} user the signed-in User */
  setMe(user) {
    this.me = user;
    this.users.set(user.id, user);
    this.emit('me');
  }

  /** @param {object[]} users Users to remember (names for members and senders) */
  addUsers(users) {
    for (const user of users) this.users.set(user.id, user);
    this.emit('users');
  }

  /** A user's display name, or a placeholder while unknown. */
  nameOf(userId) {
    return this.users.get(userId)?.display_name ?? 'Someone';
  }

  /** The chats in the order of the list: latest activity first. */
  orderedChats() {
    return [...this.chats.values()].sort((a, b) => b.activity - a.activity);
  }

  /** @returns {ChatState|null} the chat open on screen */
  openChat() {
    return this.openChatId ? this.chats.get(this.openChatId) ?? null : null;
  }

  /** For a direct chat, the other member's id. */
  partnerOf(chat) {
    if (chat.type !== 'direct') return null;
    return [...chat.members.keys()].find((id) => id !== this.me?.id) ?? null;
  }

  /** The chat's name as shown: a group's title, a direct chat's partner. */
  titleOf(chat) {
    if (chat.type === 'group') return chat.title || 'Group';
    const partner = this.partnerOf(chat);
    return partner ? this.nameOf(partner) : 'Direct chat';
  }

  /** The viewer's role in `chat` (null when not a member). */
  myRole(chat) {
    return chat.members.get(this.me?.id ?? '')?.role ?? null;
  }

  /**
   * Takes a Chat from REST or a `chat.updated` frame: members and unread count as the gateway
   * says; messages already held stay.
   * @param {object} chat
   * @param {{silent?: boolean}} [options]
   * @returns {ChatState}
   */
  upsertChat(chat, { silent = false } = {}) {
    let state = this.chats.get(chat.id);
    if (!state) {
      state = {
        id: chat.id, type: chat.type, title: chat.title, members: new Map(), unread: 0, activity: 0,
        lastMessage: null, messages: new Map(), pending: new Map(), maxSeq: 0, loaded: false,
        hasOlder: false, removed: false, typing: new Map(), countedSeq: 0,
      };
      this.chats.set(chat.id, state);
    }
    state.title = chat.title;
    state.removed = false;
    state.members = new Map(
      chat.members.map((m) => [m.user_id, { role: m.role, lastRead: state.members.get(m.user_id)?.lastRead ?? 0 }]),
    );
    state.unread = chat.unread_count ?? 0;
    state.countedSeq = chat.last_message?.seq ?? 0;
    state.activity = Math.max(state.activity, Date.parse(chat.created_at));
    const last = chat.last_message;
    if (last) {
      state.activity = Math.max(state.activity, Date.parse(last.created_at));
      if (!state.lastMessage || last.seq >= state.lastMessage.seq) state.lastMessage = last;
      if (!state.loaded && state.messages.size === 0) state.maxSeq = Math.max(state.maxSeq, last.seq);
    }
    if (!silent) this.emit('chats', chat.id);
    return state;
  }

  /** The user is out of `chatId` (removed by someone, or the gateway no longer shows it). */
  markRemoved(chatId) {
    const chat = this.chats.get(chatId);
    if (!chat || chat.removed) return;
    chat.removed = true;
    chat.unread = 0;
    this.emit('chats', chatId);
    this.emit('members', chatId);
  }

  /** Forgets a chat (the user left it). */
  dropChat(chatId) {
    this.chats.delete(chatId);
    if (this.openChatId === chatId) this.openChatId = null;
    this.emit('chats', chatId);
    this.emit('open');
  }

  /** Whether new messages of `chat` are being read now (open, page visible). */
  isReading(chat) {
    return this.openChatId === chat.id && document.visibilityState === 'visible';
  }

  /**
   * Puts messages in their chat by seq (a history page, a live or synced `message.new`, an ack,
   * an edit); an own pending message with the same client_msg_id leaves `pending`.
   * @param {string} chatId
   * @param {Message[]} messages
   * @param {{live?: boolean}} [options] live: a new message arriving now (counts as unread)
   */
  putMessages(chatId, messages, { live = false } = {}) {
    const chat = this.chats.get(chatId);
    if (!chat) return;
    for (const message of messages) {
      const known = chat.messages.has(message.seq);
      chat.messages.set(message.seq, message);
      if (message.sender_id === this.me?.id) chat.pending.delete(message.client_msg_id);
      if (message.seq > chat.maxSeq) chat.maxSeq = message.seq;
      if (!chat.lastMessage || message.seq >= chat.lastMessage.seq) chat.lastMessage = message;
      if (live && !known && message.seq > chat.countedSeq) {
        chat.countedSeq = message.seq;
        chat.activity = Math.max(chat.activity, Date.parse(message.created_at));
        const mine = message.sender_id === this.me?.id;
        if (!mine && !this.isReading(chat) && message.seq > this.myReadSeq(chat)) chat.unread += 1;
        clearTimeout(chat.typing.get(message.sender_id));
        chat.typing.delete(message.sender_id);
      }
    }
    this.emit('messages', chatId);
    this.emit('chats', chatId);
  }

  /**
   * An edit: replaces the message where the client holds it (an edit of a message it does not
   * hold must not leave a lone old message in the middle of the history).
   * @param {Message} message
   */
  putEdit(message) {
    const chat = this.chats.get(message.chat_id);
    if (!chat) return;
    if (chat.lastMessage?.seq === message.seq) chat.lastMessage = message;
    if (chat.messages.has(message.seq)) chat.messages.set(message.seq, message);
    this.emit('messages', chat.id);
    this.emit('chats', chat.id);
  }

  /** A history page arrived: older ones exist when it was full. */
  putPage(chatId, messages, limit) {
    const chat = this.chats.get(chatId);
    if (!chat) return;
    const lowest = Math.min(...chat.messages.keys(), ...messages.map((m) => m.seq));
    chat.hasOlder = messages.length >= limit && lowest > 1;
    chat.loaded = true;
    this.putMessages(chatId, messages);
  }

  /** The lowest seq held (for the next older page). */
  lowestSeq(chat) {
    return chat.messages.size ? Math.min(...chat.messages.keys()) : chat.maxSeq + 1;
  }

  /** A deleted message keeps its place without its text. */
  markDeleted(chatId, seq, messageId) {
    const chat = this.chats.get(chatId);
    const message = chat?.messages.get(seq);
    if (!chat || !message || message.id !== messageId) return;
    chat.messages.set(seq, { ...message, deleted: true, text: '' });
    if (chat.lastMessage?.seq === seq) chat.lastMessage = chat.messages.get(seq);
    this.emit('messages', chatId);
    this.emit('chats', chatId);
  }

  /**
   * An own message waiting for the gateway.
   * @param {string} chatId
   * @param {Message} message with client_msg_id, text, state `sending`
   */
  addPending(chatId, message) {
    const chat = this.chats.get(chatId);
    if (!chat) return;
    chat.pending.set(message.client_msg_id, message);
    chat.activity = Date.now();
    this.emit('messages', chatId);
    this.emit('chats', chatId);
  }

  /** Changes the state (and reason) of a pending message. */
  setPendingState(chatId, clientMsgId, state, reason = '') {
    const message = this.chats.get(chatId)?.pending.get(clientMsgId);
    if (!message) return;
    message.state = state;
    message.reason = reason;
    this.emit('messages', chatId);
  }

  /** Every own message still waiting for an ack, over all chats, oldest first. */
  allPending() {
    const all = [];
    for (const chat of this.chats.values()) {
      if (!chat.removed) all.push(...chat.pending.values());
    }
    return all.sort((a, b) => a.queuedAt - b.queuedAt);
  }

  /** The viewer's read marker in `chat`. */
  myReadSeq(chat) {
    return chat.members.get(this.me?.id ?? '')?.lastRead ?? 0;
  }

  /** A member's read marker moved (a `read` frame). */
  setRead(chatId, userId, seq) {
    const chat = this.chats.get(chatId);
    const member = chat?.members.get(userId);
    if (!chat || !member || seq <= member.lastRead) return;
    member.lastRead = seq;
    if (userId === this.me?.id) {
      const unreadHeld = [...chat.messages.values()].filter((m) => m.seq > seq && m.sender_id !== userId).length;
      chat.unread = seq >= chat.maxSeq ? 0 : Math.min(chat.unread, Math.max(unreadHeld, chat.maxSeq - seq));
      this.emit('chats', chatId);
    }
    this.emit('messages', chatId);
  }

  /**
   * Where each member has read up to, from REST (live `read` frames move them on).
   * @param {string} chatId
   * @param {{user_id: string, seq: number}[]} markers
   */
  setReadMarkers(chatId, markers) {
    const chat = this.chats.get(chatId);
    if (!chat) return;
    for (const marker of markers) {
      const member = chat.members.get(marker.user_id);
      if (member) member.lastRead = Math.max(member.lastRead, marker.seq);
    }
    this.emit('messages', chatId);
  }

  /** How many other members have read `seq` (a message of the viewer's). */
  seenBy(chat, seq) {
    let count = 0;
    for (const [userId, member] of chat.members) {
      if (userId !== this.me?.id && member.lastRead >= seq) count += 1;
    }
    return count;
  }

  /** A member joined or changed role (`chat.member_added`). */
  setMember(chatId, userId, role) {
    const chat = this.chats.get(chatId);
    if (!chat) return;
    const member = chat.members.get(userId);
    chat.members.set(userId, { role, lastRead: member?.lastRead ?? 0 });
    this.emit('members', chatId);
    this.emit('chats', chatId);
  }

  /** A member left or was removed (`chat.member_removed`). */
  removeMember(chatId, userId) {
    const chat = this.chats.get(chatId);
    if (!chat) return;
    if (userId === this.me?.id) {
      this.markRemoved(chatId);
      return;
    }
    chat.members.delete(userId);
    this.emit('members', chatId);
    this.emit('chats', chatId);
  }

  /** Someone's presence changed. */
  setOnline(userId, online) {
    if (online) this.online.add(userId);
    else this.online.delete(userId);
    this.emit('presence');
  }

  /** A new socket: presence starts over from its snapshot. */
  clearPresence() {
    this.online.clear();
    this.emit('presence');
  }

  /** A member is typing in a chat; shown for a few seconds. */
  setTyping(chatId, userId) {
    const chat = this.chats.get(chatId);
    if (!chat || userId === this.me?.id) return;
    clearTimeout(chat.typing.get(userId));
    chat.typing.set(
      userId,
      setTimeout(() => {
        chat.typing.delete(userId);
        this.emit('typing', chatId);
      }, TYPING_SHOWN_MS),
    );
    this.emit('typing', chatId);
  }

  /** Opens a chat on screen (null: back to the list). */
  open(chatId) {
    this.openChatId = chatId;
    this.emit('open', chatId);
  }
}
