/**
 * Wires the client together: the session and its tokens, the REST calls, the socket, the store,
 * the chats kept current (`chats.js`) and the views; what a person's actions do; signing in and
 * out. Nothing here draws; it decides what happens when.
 * @module main
 */
import { createApi } from './api.js';
import { createChatSync } from './chats.js';
import { byId } from './dom.js';
import { ApiError } from './http.js';
import { newId } from './ids.js';
import { Outbox } from './outbox.js';
import { Session } from './session.js';
import { Connection } from './socket.js';
import { Store } from './store.js';
import { bindAuthForm, showSignedOut } from './views/auth.js';
import { renderChatList } from './views/chatList.js';
import { bindChatView } from './views/chatView.js';
import { bindGroupForm } from './views/groupForm.js';
import { bindMembersPanel } from './views/members.js';
import { say, showConnection, showMe } from './views/status.js';
import { typeAhead } from './views/typeahead.js';
import { describe } from './words.js';

const BOOT_RETRY_MS = 3000;

const session = new Session();
const store = new Store();
const connection = new Connection(session);
const outbox = new Outbox(store, connection);
const api = createApi(session, (error) => say(describe(error), 4000));

const failed = (doing) => (error) => {
  if (error?.code === 'session_ended') return;
  say(describe(error, doing));
};

const chats = createChatSync({ store, api, connection, outbox, say, failed });
document.addEventListener('visibilitychange', chats.sendRead);

connection.addEventListener('frame', (event) => chats.onFrame(event.detail));
connection.addEventListener('open', chats.catchUp);
connection.addEventListener('state', (event) => {
  showConnection(event.detail.state, event.detail.retryAt);
  // Offline, who is online is not known: nobody is shown online until the next socket's snapshot.
  if (event.detail.state !== 'online') store.clearPresence();
});

// ---- what the person does --------------------------------------------------------------------

async function openChat(chatId) {
  const chat = store.chats.get(chatId);
  if (!chat) return;
  membersPanel.close();
  store.open(chatId);
  chatView.focusComposer();
  if (!chat.loaded && !chat.removed) await chats.loadLatest(chatId);
  chats.sendRead();
}

async function startDirect(user) {
  try {
    store.addUsers([user]);
    const chat = chats.takeChat(await api.directChat(user.id));
    people.clear();
    await openChat(chat.id);
  } catch (error) {
    failed('start this chat')(error);
  }
}

async function createGroup(title, memberIds) {
  try {
    const chat = chats.takeChat(await api.createGroup(title, memberIds));
    await openChat(chat.id);
    return true;
  } catch (error) {
    failed('create the group')(error);
    return false;
  }
}

function frameOrSay(frame, doing) {
  if (connection.send(frame)) return true;
  say(`You are offline: could not ${doing}. Try again once connected.`);
  return false;
}

const chatView = bindChatView({
  store,
  send: (text) => {
    const chat = store.openChat();
    if (chat && !chat.removed) outbox.send(chat.id, text);
  },
  edit: (message, text) =>
    frameOrSay({ type: 'message.edit', message_id: message.id, text, client_msg_id: newId('e:') }, 'edit the message'),
  remove: (message) =>
    frameOrSay({ type: 'message.delete', message_id: message.id, client_msg_id: newId('d:') }, 'delete the message'),
  discard: (message) => outbox.discard(message.chat_id, message.client_msg_id),
  typing: () => {
    const chat = store.openChat();
    if (chat && !chat.removed) connection.send({ type: 'typing', chat_id: chat.id, client_msg_id: newId('t:') });
  },
  loadOlder: () => chats.loadOlder(),
  removeMember: async (userId) => {
    const chat = store.openChat();
    if (!chat) return;
    try {
      await api.removeMember(chat.id, userId);
      store.removeMember(chat.id, userId);
    } catch (error) {
      failed('remove this member')(error);
    }
  },
  back: () => {
    const chatId = store.openChatId;
    store.open(null);
    /** @type {HTMLElement|null} */ (document.querySelector(`#chat-list li[data-chat-id="${chatId}"] .open-chat`))?.focus();
  },
  say,
});

const membersPanel = bindMembersPanel({
  store,
  search: (prefix) => api.searchUsers(prefix),
  add: async (userId) => {
    const chat = store.openChat();
    if (!chat) return;
    try {
      chats.takeChat(await api.addMember(chat.id, userId));
    } catch (error) {
      failed('add this member')(error);
    }
  },
  leave: async () => {
    const chat = store.openChat();
    if (!chat) return;
    try {
      await api.removeMember(chat.id, store.me.id);
      store.dropChat(chat.id);
      byId('people-search').focus();
    } catch (error) {
      failed('leave the group')(error);
    }
  },
  failed: failed('search'),
});

const people = typeAhead(/** @type {HTMLInputElement} */ (byId('people-search')), /** @type {HTMLUListElement} */ (byId('people-results')), {
  search: (prefix) => api.searchUsers(prefix),
  show: (user) => user.id !== store.me?.id,
  button: { class: 'start-direct', text: 'Message', label: (user) => `Message ${user.display_name}` },
  pick: startDirect,
  failed: failed('search'),
});

const groupForm = bindGroupForm({
  search: (prefix) => api.searchUsers(prefix),
  myId: () => store.me?.id ?? '',
  create: createGroup,
  say,
  failed: failed('search'),
});

// ---- drawing ---------------------------------------------------------------------------------

let drawQueued = false;
store.addEventListener('change', (event) => {
  const { kind, chatId } = event.detail;
  if (kind === 'me') showMe(store.me?.display_name ?? '');
  if (kind === 'messages' && chatId === store.openChatId) queueMicrotask(chats.sendRead);
  if (drawQueued) return;
  drawQueued = true;
  setTimeout(draw, 0);
});

function draw() {
  drawQueued = false;
  renderChatList(store, openChat);
  chatView.render();
  const unread = [...store.chats.values()].reduce((sum, chat) => sum + chat.unread, 0);
  document.title = unread ? `(${unread}) Messenger` : 'Messenger';
}

// ---- signing in and out ----------------------------------------------------------------------

async function begin(user) {
  store.setMe(user);
  showSignedOut(false);
  say('', 0);
  connection.start();
  try {
    await chats.loadChats();
  } catch (error) {
    failed('load your chats')(error);
  }
}

function finish(notice) {
  connection.stop();
  session.clear();
  store.reset();
  chats.reset();
  groupForm.close();
  membersPanel.close();
  people.clear();
  draw();
  showSignedOut(true, { keepName: Boolean(notice) });
  say(notice, 0);
}

bindAuthForm({
  signIn: async (username, password) => {
    try {
      const grant = await api.login(username, password);
      session.take(grant);
      await begin(grant.user);
    } catch (error) {
      say(describe(error, 'sign in'), 0);
    }
  },
  register: async (username, password, displayName) => {
    try {
      await api.register(username, password, displayName);
      const grant = await api.login(username, password);
      session.take(grant);
      await begin(grant.user);
    } catch (error) {
      say(describe(error, 'create the account'), 0);
    }
  },
  say: (text) => say(text, 0),
});

byId('sign-out').addEventListener('click', async () => {
  const refreshToken = session.refreshToken();
  finish('');
  if (refreshToken) await api.logout(refreshToken).catch(() => {});
});

session.addEventListener('ended', () => finish('Your session has ended: sign in again.'));

/** A reload in the same tab resumes the session with the refresh token kept there. */
async function boot() {
  if (!session.canResume()) {
    showSignedOut(true);
    return;
  }
  try {
    await session.refresh();
    await begin(await api.me());
  } catch (error) {
    if (error instanceof ApiError && error.code === 'offline') {
      say(describe(error), 0);
      setTimeout(boot, BOOT_RETRY_MS);
    } else if (!(error instanceof ApiError && error.code === 'session_ended')) {
      finish(describe(error));
    }
  }
}

boot();
