/**
 * Keeping the store current from the gateway: users and chats fetched when a frame names one the
 * client lacks, history pages, read markers (and sending our own), and the catch-up after every
 * (re)connect: the chat list, a `sync` of every chat from the last seq held (waiting for each
 * `sync.done`), then the outbox.
 * @module chats
 */
import { applyFrame } from './frames.js';
import { ApiError } from './http.js';
import { newId } from './ids.js';
import { describe } from './words.js';

const PAGE = 50;
const SYNC_WAIT_MS = 10000;
const LAG_ATTEMPTS = 5;
const LAG_WAIT_MS = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * @param {object} deps
 * @param {import('./store.js').Store} deps.store
 * @param {ReturnType<typeof import('./api.js').createApi>} deps.api
 * @param {import('./socket.js').Connection} deps.connection
 * @param {import('./outbox.js').Outbox} deps.outbox
 * @param {(text: string) => void} deps.say
 * @param {(doing: string) => (error: object) => void} deps.failed
 */
export function createChatSync({ store, api, connection, outbox, say, failed }) {
  // ---- users and chats fetched on demand -------------------------------------------------------

  const usersAsked = new Set();
  function needUser(userId) {
    if (store.users.has(userId) || usersAsked.has(userId)) return;
    usersAsked.add(userId);
    api.user(userId).then((user) => store.addUsers([user]), () => usersAsked.delete(userId));
  }

  const chatsAsked = new Set();
  /** A chat a frame names that the client does not hold (asked again while the read models lag). */
  function needChat(chatId, attempt = 1) {
    if (chatsAsked.has(chatId) && attempt === 1) return;
    chatsAsked.add(chatId);
    api.chat(chatId).then(
      (chat) => {
        chatsAsked.delete(chatId);
        takeChat(chat);
      },
      () => {
        if (attempt < LAG_ATTEMPTS) setTimeout(() => needChat(chatId, attempt + 1), LAG_WAIT_MS);
        else chatsAsked.delete(chatId);
      },
    );
  }

  function takeChat(chat) {
    chat.members.forEach((m) => needUser(m.user_id));
    return store.upsertChat(chat);
  }

  async function loadChats() {
    const chats = await api.chats();
    const listed = new Set(chats.map((c) => c.id));
    chats.forEach((chat) => takeChat(chat));
    for (const chat of store.chats.values()) {
      if (!listed.has(chat.id)) store.markRemoved(chat.id);
    }
  }

  // ---- history ---------------------------------------------------------------------------------

  /**
   * The latest page of a chat. A 404 right after the client learned of the chat (a frame) may be
   * the read models' lag behind the frame: it is asked again before the chat counts as left.
   */
  async function loadLatest(chatId, attempt = 1) {
    try {
      const [messages, markers] = await Promise.all([api.messages(chatId, { limit: PAGE }), api.readMarkers(chatId)]);
      store.setReadMarkers(chatId, markers);
      store.putPage(chatId, messages, PAGE);
    } catch (error) {
      const out = error instanceof ApiError && (error.code === 'not_found' || error.code === 'forbidden');
      if (out && attempt < LAG_ATTEMPTS) {
        await sleep(LAG_WAIT_MS);
        await loadLatest(chatId, attempt + 1);
      } else if (out) store.markRemoved(chatId);
      else failed('load the history')(error);
    }
  }

  async function loadOlder() {
    const chat = store.openChat();
    if (!chat) return;
    try {
      store.putPage(chat.id, await api.messages(chat.id, { before: store.lowestSeq(chat), limit: PAGE }), PAGE);
    } catch (error) {
      failed('load older messages')(error);
    }
  }

  // ---- read markers ----------------------------------------------------------------------------

  /** The seq last sent in a `read` frame per chat (sent again after a reconnect). */
  const readSent = new Map();

  function sendRead() {
    const chat = store.openChat();
    if (!chat || chat.removed || !chat.loaded || document.visibilityState !== 'visible') return;
    const seq = Math.max(0, ...chat.messages.keys());
    if (seq <= store.myReadSeq(chat) || seq <= (readSent.get(chat.id) ?? 0)) return;
    if (connection.send({ type: 'read', chat_id: chat.id, seq, client_msg_id: newId('r:') })) readSent.set(chat.id, seq);
  }

  // ---- the socket: frames and catching up ------------------------------------------------------

  /** Chats whose `sync` has not answered `sync.done` yet, with what to call when it does. */
  const syncing = new Map();

  function syncDone(chatId) {
    resyncAttempts.delete(chatId);
    syncing.get(chatId)?.();
    syncing.delete(chatId);
  }

  function problem(frame) {
    const ref = String(frame.ref ?? '');
    if (ref.startsWith('sync:')) {
      const chatId = ref.slice(5);
      if (frame.code === 'rate_limited' || frame.code === 'unavailable') {
        setTimeout(() => sendSync(chatId), Math.max(frame.retry_after_ms ?? 1000, 200));
        return;
      }
      if (frame.code === 'forbidden' || frame.code === 'not_found') store.markRemoved(chatId);
      syncDone(chatId);
      return;
    }
    if (ref.startsWith('resync:')) {
      const chatId = ref.slice(7);
      if ((resyncAttempts.get(chatId) ?? 0) < LAG_ATTEMPTS) setTimeout(() => resync(chatId), LAG_WAIT_MS);
      return;
    }
    if (ref.startsWith('t:') || ref.startsWith('r:') || ref.startsWith('a:')) return;
    if (ref.startsWith('e:')) say(describe(frame, 'edit this message'));
    else if (ref.startsWith('d:')) say(describe(frame, 'delete this message'));
    else say(describe(frame));
  }

  const frameContext = { store, outbox, needChat, needUser, syncDone, problem, resync };

  /** Asks for every message of `chatId` after the last one held (answered by `sync.done`). */
  function sendSync(chatId) {
    const chat = store.chats.get(chatId);
    if (!chat) return;
    connection.send({ type: 'sync', chat_id: chatId, after_seq: chat.maxSeq, client_msg_id: `sync:${chatId}` });
  }

  /** Added back to a chat: what was said while out. The frame that said so may be ahead of the read
   * models, so a refusal is asked again a few times and never taken as being out. */
  const resyncAttempts = new Map();
  function resync(chatId) {
    const chat = store.chats.get(chatId);
    if (!chat) return;
    resyncAttempts.set(chatId, (resyncAttempts.get(chatId) ?? 0) + 1);
    connection.send({ type: 'sync', chat_id: chatId, after_seq: chat.maxSeq, client_msg_id: `resync:${chatId}` });
  }

  /** After every (re)connect: the chat list, a `sync` of every chat from its last seq, then the outbox. */
  async function catchUp() {
    store.clearPresence();
    readSent.clear();
    try {
      await loadChats();
    } catch (error) {
      failed('load your chats')(error);
    }
    const waits = [];
    for (const chat of store.chats.values()) {
      if (chat.removed) continue;
      waits.push(new Promise((resolve) => syncing.set(chat.id, resolve)));
      sendSync(chat.id);
    }
    await Promise.race([Promise.all(waits), new Promise((resolve) => setTimeout(resolve, SYNC_WAIT_MS))]);
    outbox.resendAll();
    for (const chat of store.chats.values()) {
      if (chat.loaded && !chat.removed) api.readMarkers(chat.id).then((markers) => store.setReadMarkers(chat.id, markers), () => {});
    }
    const open = store.openChat();
    if (open && !open.loaded && !open.removed) await loadLatest(open.id);
    sendRead();
  }

  /** Applies a server frame. */
  function onFrame(frame) {
    applyFrame(frame, frameContext);
  }

  /** Forgets what was asked and sent (sign out). */
  function reset() {
    usersAsked.clear();
    chatsAsked.clear();
    syncing.clear();
    readSent.clear();
    resyncAttempts.clear();
  }

  return { needUser, takeChat, loadChats, loadLatest, loadOlder, sendRead, catchUp, onFrame, reset };
}
