/**
 * The list of chats: latest activity first, each with its title, last message, unread badge and,
 * for a direct chat, whether the other person is online.
 * @module views/chatList
 */
import { byId, el, setData, setText } from '../dom.js';

/**
 * One row, built once per chat and updated in place (focus stays on its button).
 * @param {string} chatId
 * @param {(chatId: string) => void} open
 */
function newRow(chatId, open) {
  return el(
    'li', { class: 'chat', data: { chatId, unread: '0' } },
    el(
      'button', { type: 'button', class: 'open-chat', on: { click: () => open(chatId) } },
      el('span', { class: 'presence', hidden: true }),
      el('span', { class: 'title' }),
      el('span', { class: 'preview' }),
    ),
    el('span', { class: 'unread', hidden: true }),
  );
}

function preview(store, chat) {
  if (chat.removed) return 'You are no longer a member';
  const last = chat.lastMessage;
  if (!last) return chat.type === 'group' ? 'New group' : 'No messages yet';
  const who = last.sender_id === store.me?.id ? 'You' : store.nameOf(last.sender_id);
  const text = last.deleted ? 'Message deleted' : last.text.replace(/\s+/g, ' ');
  return chat.type === 'group' || who === 'You' ? `${who}: ${text}` : text;
}

/**
 * Redraws the list from the store.
 * @param {import('../store.js').Store} store
 * @param {(chatId: string) => void} open
 */
export function renderChatList(store, open) {
  const list = byId('chat-list');
  const rows = new Map([...list.children].map((li) => [/** @type {HTMLElement} */ (li).dataset.chatId, li]));
  const chats = store.orderedChats();
  chats.forEach((chat, index) => {
    const row = rows.get(chat.id) ?? newRow(chat.id, open);
    rows.delete(chat.id);
    const title = store.titleOf(chat);
    setText(row.querySelector('.title'), title);
    setText(row.querySelector('.preview'), preview(store, chat));
    setData(row, 'unread', chat.unread);
    const badge = /** @type {HTMLElement} */ (row.querySelector('.unread'));
    setText(badge, String(chat.unread));
    badge.hidden = chat.unread === 0;
    badge.setAttribute('aria-label', `${chat.unread} unread`);
    const presence = /** @type {HTMLElement} */ (row.querySelector('.presence'));
    const partner = store.partnerOf(chat);
    presence.hidden = !partner;
    if (partner) {
      const online = store.online.has(partner);
      setData(presence, 'online', online);
      presence.setAttribute('aria-label', online ? 'online' : 'offline');
      presence.setAttribute('role', 'img');
    }
    row.classList.toggle('current', chat.id === store.openChatId);
    row.querySelector('.open-chat')?.setAttribute('aria-current', chat.id === store.openChatId ? 'true' : 'false');
    row.classList.toggle('removed', chat.removed);
    if (list.children[index] !== row) list.insertBefore(row, list.children[index] ?? null);
  });
  rows.forEach((row) => row.remove());
  byId('no-chats').hidden = chats.length > 0;
}
