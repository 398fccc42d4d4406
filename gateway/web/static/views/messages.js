/**
 * The open chat's messages in `ol#messages`, in seq order, then own messages still on their way.
 * Each message's row is built once and updated in place, keyed by seq (by client_msg_id while it
 * has none), so that the live region announces new rows only and focus stays where it was.
 * @module views/messages
 */
import { byId, el, setData, setText } from '../dom.js';
import { shortTime } from '../words.js';

/**
 * @typedef {object} MessageActions
 * @property {(message: object) => void} edit
 * @property {(message: object) => void} remove
 * @property {(message: object) => void} discard
 */

/** Rows asking "delete?" (by message id). */
const confirming = new Set();

/** The message each row shows now: its buttons act on the latest version (an edited text). */
const shown = new WeakMap();

function keyOf(message) {
  return message.seq ? `s${message.seq}` : `c${message.client_msg_id}`;
}

function statusOf(store, chat, message) {
  if (message.state === 'sending') return ['sending', 'Sending…'];
  if (message.state === 'failed') return ['failed', message.reason || 'Not sent — retrying'];
  const seen = store.seenBy(chat, message.seq);
  if (seen === 0) return ['sent', 'Sent'];
  return ['seen', chat.type === 'group' && chat.members.size > 2 ? `Seen by ${seen}` : 'Seen'];
}

function actionsFor(row, message, mine, actions) {
  const current = () => shown.get(row) ?? message;
  const box = el('span', { class: 'actions' });
  if (!mine) return box;
  if (!message.seq) {
    if (message.state === 'failed' && message.final) {
      box.append(el('button', { type: 'button', class: 'discard', text: 'Remove', on: { click: () => actions.discard(current()) } }));
    }
    return box;
  }
  if (message.deleted) return box;
  if (confirming.has(message.id)) {
    box.append(
      el('span', { class: 'ask', text: 'Delete for everyone?' }),
      el('button', {
        type: 'button', class: 'confirm-delete danger', text: 'Delete',
        on: { click: () => { confirming.delete(message.id); actions.remove(current()); } },
      }),
      el('button', {
        type: 'button', class: 'cancel-delete', text: 'Keep',
        on: { click: (event) => { confirming.delete(message.id); redraw(event); } },
      }),
    );
    return box;
  }
  box.append(
    el('button', { type: 'button', class: 'edit', text: 'Edit', 'aria-label': 'Edit message', on: { click: () => actions.edit(current()) } }),
    el('button', {
      type: 'button', class: 'delete', text: 'Delete', 'aria-label': 'Delete message',
      on: { click: (event) => { confirming.add(message.id); redraw(event, '.confirm-delete'); } },
    }),
  );
  return box;
}

/** Asks the list to redraw after a row's own button changed its state. */
let requestRedraw = () => {};

function redraw(event, focusSelector = '') {
  const row = /** @type {HTMLElement} */ (event.target).closest('li.message');
  requestRedraw();
  if (focusSelector && row) /** @type {HTMLElement|null} */ (row.querySelector(focusSelector))?.focus();
  else /** @type {HTMLElement|null} */ (row?.querySelector('.delete'))?.focus();
}

function newRow(message, mine) {
  return el(
    'li', { class: mine ? 'message mine' : 'message', tabindex: '-1' },
    el('span', { class: 'sender' }),
    el('p', { class: 'text' }),
    el('span', { class: 'meta' }),
    mine ? el('span', { class: 'status' }) : null,
    el('span', { class: 'actions' }),
  );
}

function fill(row, store, chat, message, actions) {
  shown.set(row, message);
  const mine = message.sender_id === store.me?.id;
  setData(row, 'seq', message.seq ?? '');
  setData(row, 'messageId', message.id ?? '');
  setData(row, 'senderId', message.sender_id);
  setData(row, 'clientMsgId', message.client_msg_id ?? '');
  setData(row, 'deleted', Boolean(message.deleted));
  setData(row, 'edited', Boolean(message.edited_at));
  setText(row.querySelector('.sender'), mine ? 'You' : store.nameOf(message.sender_id));
  const text = /** @type {HTMLElement} */ (row.querySelector('.text'));
  setText(text, message.deleted ? 'Message deleted' : message.text);
  text.classList.toggle('placeholder', Boolean(message.deleted));
  setText(row.querySelector('.meta'), shortTime(message.created_at) + (message.edited_at && !message.deleted ? ' · edited' : ''));
  if (mine) {
    const [state, words] = statusOf(store, chat, message);
    setData(row, 'state', state);
    setText(row.querySelector('.status'), words);
  } else {
    setData(row, 'state', 'received');
  }
  const signature = [message.seq, message.deleted, message.state, message.final, confirming.has(message.id)].join('|');
  if (row.dataset.actions !== signature) {
    const focused = row.contains(document.activeElement) ? document.activeElement?.className : '';
    row.querySelector('.actions')?.replaceWith(actionsFor(row, message, mine, actions));
    row.dataset.actions = signature;
    if (focused) /** @type {HTMLElement|null} */ (row.querySelector(`.${String(focused).split(' ')[0]}`))?.focus();
  }
}

/**
 * Redraws the open chat's messages.
 * @param {import('../store.js').Store} store
 * @param {import('../store.js').ChatState} chat
 * @param {MessageActions} actions
 * @param {() => void} again redraws the whole chat view (after a row's own button)
 */
export function renderMessages(store, chat, actions, again) {
  requestRedraw = again;
  const list = byId('messages');
  if (list.dataset.chatId !== chat.id) {
    list.replaceChildren();
    list.dataset.chatId = chat.id;
    list.dataset.chatType = chat.type;
    confirming.clear();
  }
  /** @type {Map<string, HTMLElement>} */
  const rows = new Map();
  for (const li of /** @type {HTMLCollectionOf<HTMLElement>} */ (list.children)) {
    rows.set(li.dataset.seq ? `s${li.dataset.seq}` : `c${li.dataset.clientMsgId}`, li);
  }
  const byClientId = new Map([...rows.values()].map((li) => [li.dataset.clientMsgId, li]));
  const ordered = [
    ...[...chat.messages.values()].sort((a, b) => a.seq - b.seq),
    ...[...chat.pending.values()].sort((a, b) => a.queuedAt - b.queuedAt),
  ];
  ordered.forEach((message, index) => {
    const key = keyOf(message);
    const mine = message.sender_id === store.me?.id;
    let row = rows.get(key);
    if (!row && mine && message.client_msg_id) {
      const waiting = byClientId.get(message.client_msg_id);
      if (waiting && !waiting.dataset.seq) row = waiting;
    }
    if (row) rows.delete(row.dataset.seq ? `s${row.dataset.seq}` : `c${row.dataset.clientMsgId}`);
    row ??= newRow(message, mine);
    fill(row, store, chat, message, actions);
    if (list.children[index] !== row) list.insertBefore(row, list.children[index] ?? null);
  });
  rows.forEach((row) => row.remove());
}
