/**
 * Own messages on their way. Each send gets a `client_msg_id` and stays "Sending…" until its
 * `message.ack` (or its echo by `sync`) gives it a seq.
 *
 * Per chat, one message is on the wire at a time, in the order they were written: a message
 * refused for a rate limit cannot be overtaken by the next one, so the chat's order is the
 * writer's. While offline nothing is sent; after every reconnect each chat's queue starts again
 * from its first message, with the SAME client_msg_id (the gateway deduplicates a message that had
 * arrived before the drop). A rate limit or `unavailable` waits and retries; a refusal no retry can
 * fix (too long, not a member) marks that message failed and the queue moves on.
 * @module outbox
 */
import { newId } from './ids.js';

const RETRY_UNAVAILABLE_MS = 1500;
const ANSWER_WITHIN_MS = 15000;
/** The gateway answers every send within 10 s (an ack or `unavailable`); past this, send it again. */

/** Words for a refusal that no retry can fix. */
const FINAL = {
  invalid_request: 'Not sent: the text is too long or not allowed',
  forbidden: 'Not sent: you are not a member of this chat any more',
  not_found: 'Not sent: you are not a member of this chat any more',
};

/** The queue of own messages not yet acknowledged, per chat. */
export class Outbox {
  /**
   * @param {import('./store.js').Store} store
   * @param {import('./socket.js').Connection} connection
   */
  constructor(store, connection) {
    this.store = store;
    this.connection = connection;
    /** @type {Map<string, {id: string, timer: number}>} chat id → the message on the wire */
    this.inFlight = new Map();
    /** @type {Map<string, number>} chat id → a wait before its queue goes on */
    this.waiting = new Map();
    store.addEventListener('change', (event) => {
      if (event.detail.kind === 'messages') this.pump(event.detail.chatId);
    });
  }

  /**
   * Queues `text` for `chatId`; it goes out as soon as the chat's earlier messages are through.
   * @param {string} chatId
   * @param {string} text
   */
  send(chatId, text) {
    this.store.addPending(chatId, {
      client_msg_id: newId(), chat_id: chatId, text, sender_id: this.store.me.id, seq: null, id: '',
      created_at: new Date().toISOString(), edited_at: null, deleted: false, state: 'sending', reason: '',
      final: false, queuedAt: performance.now(),
    });
  }

  /** The first message of the chat's queue that may still go, or null. */
  head(chatId) {
    const chat = this.store.chats.get(chatId);
    if (!chat || chat.removed) return null;
    const queue = [...chat.pending.values()].filter((m) => !m.final).sort((a, b) => a.queuedAt - b.queuedAt);
    return queue[0] ?? null;
  }

  /**
   * Sends the chat's next message if none is on the wire (called on every change of its messages:
   * an ack removes the message from the queue, and the next one goes).
   * @param {string|null} chatId
   */
  pump(chatId) {
    if (!chatId || this.waiting.has(chatId)) return;
    const flying = this.inFlight.get(chatId);
    const next = this.head(chatId);
    if (flying && flying.id === next?.client_msg_id) return;
    if (flying) this.land(chatId);
    if (!next) return;
    const sent = this.connection.send({
      type: 'message.send', chat_id: chatId, client_msg_id: next.client_msg_id, text: next.text,
    });
    if (!sent) return;
    const timer = setTimeout(() => this.retry(chatId, 0), ANSWER_WITHIN_MS);
    this.inFlight.set(chatId, { id: next.client_msg_id, timer });
    // After it is on the wire: the change this announces pumps again and finds it flying.
    if (next.state !== 'sending') this.store.setPendingState(chatId, next.client_msg_id, 'sending');
  }

  land(chatId) {
    clearTimeout(this.inFlight.get(chatId)?.timer);
    this.inFlight.delete(chatId);
  }

  /** The chat's queue goes on after `waitMs` (from its first message again). */
  retry(chatId, waitMs) {
    this.land(chatId);
    clearTimeout(this.waiting.get(chatId));
    this.waiting.set(chatId, setTimeout(() => {
      this.waiting.delete(chatId);
      this.pump(chatId);
    }, waitMs));
  }

  /** After a (re)connect: nothing is on the wire any more; every queue starts from its first message. */
  resendAll() {
    for (const chatId of [...this.inFlight.keys()]) this.land(chatId);
    for (const chatId of this.store.chats.keys()) {
      if (!this.waiting.has(chatId)) this.pump(chatId);
    }
  }

  /** Drops a message that cannot be sent (the person chose to). */
  discard(chatId, clientMsgId) {
    const chat = this.store.chats.get(chatId);
    if (chat?.pending.delete(clientMsgId)) this.store.emit('messages', chatId);
  }

  /**
   * An `error` frame about one of our sends (its `ref` is the client_msg_id).
   * @param {object} frame
   * @returns {boolean} whether the error was about a pending send
   */
  refused(frame) {
    const message = this.store.allPending().find((m) => m.client_msg_id === frame.ref);
    if (!message) return false;
    const { chat_id: chatId, client_msg_id: id } = message;
    if (frame.code in FINAL) {
      message.final = true;
      this.land(chatId);
      this.store.setPendingState(chatId, id, 'failed', FINAL[frame.code]);
      if (frame.code !== 'invalid_request') this.store.markRemoved(chatId);
      return true;
    }
    const wait = frame.code === 'rate_limited' ? Math.max(frame.retry_after_ms ?? 1000, 200) : RETRY_UNAVAILABLE_MS;
    this.store.setPendingState(chatId, id, 'failed', `Not sent — retrying in ${Math.ceil(wait / 1000)} s`);
    this.retry(chatId, wait);
    return true;
  }
}
