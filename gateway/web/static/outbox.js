/**
 * Own messages on their way: each send gets a `client_msg_id` and stays "Sending…" until its
 * `message.ack` (or its echo by `sync`) gives it a seq. Not sent while offline, resent with the
 * SAME client_msg_id after every reconnect (the gateway deduplicates), retried after a rate limit
 * or an `unavailable`, given up on for good only when the gateway refuses the message itself.
 * @module outbox
 */
import { newId } from './ids.js';

const RETRY_UNAVAILABLE_MS = 1500;

/** Words for a refusal that no retry can fix. */
const FINAL = {
  invalid_request: 'Not sent: the text is too long or not allowed',
  forbidden: 'Not sent: you are not a member of this chat any more',
  not_found: 'Not sent: you are not a member of this chat any more',
};

export class Outbox {
  /**
   * @param {import('./store.js').Store} store
   * @param {import('./socket.js').Connection} connection
   */
  constructor(store, connection) {
    this.store = store;
    this.connection = connection;
    this.timers = new Map();
  }

  /**
   * Sends `text` to `chatId` now, or as soon as a socket is open.
   * @param {string} chatId
   * @param {string} text
   */
  send(chatId, text) {
    const message = {
      client_msg_id: newId(), chat_id: chatId, text, sender_id: this.store.me.id, seq: null, id: '',
      created_at: new Date().toISOString(), edited_at: null, deleted: false, state: 'sending', reason: '',
      queuedAt: performance.now(),
    };
    this.store.addPending(chatId, message);
    this.transmit(message);
  }

  /** @param {object} message a pending message */
  transmit(message) {
    this.connection.send({
      type: 'message.send', chat_id: message.chat_id, client_msg_id: message.client_msg_id, text: message.text,
    });
  }

  /** After a (re)connect: every message without a seq goes again, with its own client_msg_id. */
  resendAll() {
    for (const message of this.store.allPending()) {
      if (message.state === 'failed' && message.final) continue;
      clearTimeout(this.timers.get(message.client_msg_id));
      this.store.setPendingState(message.chat_id, message.client_msg_id, 'sending');
      this.transmit(message);
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
      this.store.setPendingState(chatId, id, 'failed', FINAL[frame.code]);
      if (frame.code !== 'invalid_request') this.store.markRemoved(chatId);
      return true;
    }
    const wait = frame.code === 'rate_limited' ? Math.max(frame.retry_after_ms ?? 1000, 200) : RETRY_UNAVAILABLE_MS;
    this.store.setPendingState(chatId, id, 'failed', `Not sent — retrying in ${Math.ceil(wait / 1000)} s`);
    this.timers.set(
      id,
      setTimeout(() => {
        if (!this.store.chats.get(chatId)?.pending.has(id)) return;
        this.store.setPendingState(chatId, id, 'sending');
        this.transmit(message);
      }, wait),
    );
    return true;
  }
}
