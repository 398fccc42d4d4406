/**
 * The open chat's members panel: who is in it (role, online), removing and adding members as the
 * viewer's role allows, and leaving a group.
 * @module views/members
 */
import { byId, el, setData } from '../dom.js';
import { typeAhead } from './typeahead.js';

const ROLE_WORDS = { owner: 'owner', admin: 'admin', member: 'member' };
const RANK = { owner: 0, admin: 1, member: 2 };

/**
 * Whether the viewer may add and remove members of `chat`.
 * @param {import('../store.js').Store} store
 * @param {import('../store.js').ChatState} chat
 */
export function canManage(store, chat) {
  const role = store.myRole(chat);
  return chat.type === 'group' && !chat.removed && (role === 'owner' || role === 'admin');
}

/**
 * Redraws the panel's member list and shows the parts the viewer may use.
 * @param {import('../store.js').Store} store
 * @param {import('../store.js').ChatState} chat
 * @param {(userId: string) => void} remove
 */
export function renderMembers(store, chat, remove) {
  const manage = canManage(store, chat);
  const members = [...chat.members.entries()].sort(
    ([a, ma], [b, mb]) => RANK[ma.role] - RANK[mb.role] || store.nameOf(a).localeCompare(store.nameOf(b)),
  );
  const list = byId('member-list');
  const focusedId = /** @type {HTMLElement|null} */ (document.activeElement?.closest('#member-list li'))?.dataset.userId;
  list.replaceChildren(
    ...members.map(([userId, member]) => {
      const online = store.online.has(userId) || userId === store.me?.id;
      const row = el(
        'li', { data: { userId, role: member.role } },
        el('span', { class: 'presence', role: 'img', 'aria-label': online ? 'online' : 'offline', data: { online: String(online) } }),
        el('span', { class: 'name', text: userId === store.me?.id ? `${store.nameOf(userId)} (you)` : store.nameOf(userId) }),
        el('span', { class: 'role', text: ROLE_WORDS[member.role] ?? member.role }),
      );
      setData(row, 'online', online);
      if (manage && member.role !== 'owner' && userId !== store.me?.id) {
        row.append(el('button', {
          type: 'button', class: 'remove-member danger', text: 'Remove',
          'aria-label': `Remove ${store.nameOf(userId)} from the group`, on: { click: () => remove(userId) },
        }));
      }
      return row;
    }),
  );
  if (focusedId) /** @type {HTMLElement|null} */ (list.querySelector(`li[data-user-id="${CSS.escape(focusedId)}"] button`))?.focus();
  byId('add-member').hidden = !manage;
  byId('leave-chat').hidden = chat.type !== 'group' || chat.removed;
}

/**
 * Wires the panel's controls once.
 * @param {object} deps
 * @param {import('../store.js').Store} deps.store
 * @param {(prefix: string) => Promise<object[]>} deps.search
 * @param {(userId: string) => void} deps.add
 * @param {() => void} deps.leave
 * @param {(error: object) => void} deps.failed
 */
export function bindMembersPanel({ store, search, add, leave, failed }) {
  const panel = byId('members');
  const toggle = byId('members-button');
  const finder = typeAhead(/** @type {HTMLInputElement} */ (byId('add-member-search')), /** @type {HTMLUListElement} */ (byId('add-member-results')), {
    search,
    show: (user) => !store.openChat()?.members.has(user.id),
    button: { class: 'add-member', text: 'Add', label: (user) => `Add ${user.display_name} to the group` },
    pick: (user) => {
      add(user.id);
      finder.clear();
      byId('add-member-search').focus();
    },
    failed,
  });
  toggle.addEventListener('click', () => setPanel(panel.hidden));
  panel.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') { setPanel(false); toggle.focus(); }
  });
  byId('leave-chat').addEventListener('click', leave);

  function setPanel(open) {
    panel.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    if (!open) finder.clear();
  }
  return { close: () => setPanel(false) };
}
