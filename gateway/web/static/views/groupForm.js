/**
 * The "New group" form: a title and members picked by username.
 * @module views/groupForm
 */
import { byId, el } from '../dom.js';
import { typeAhead } from './typeahead.js';

/**
 * @param {object} deps
 * @param {(prefix: string) => Promise<object[]>} deps.search
 * @param {() => string} deps.myId
 * @param {(title: string, memberIds: string[]) => Promise<boolean>} deps.create true when created
 * @param {(text: string) => void} deps.say
 * @param {(error: object) => void} deps.failed
 */
export function bindGroupForm({ search, myId, create, say, failed }) {
  const form = /** @type {HTMLFormElement} */ (byId('group-form'));
  const toggle = byId('new-group');
  const title = /** @type {HTMLInputElement} */ (byId('group-title'));
  const chosenList = byId('group-members');
  /** @type {Map<string, object>} */
  const chosen = new Map();

  function drawChosen() {
    chosenList.replaceChildren(
      ...[...chosen.values()].map((user) =>
        el(
          'li', { data: { userId: user.id } },
          el('span', { class: 'name', text: user.display_name }),
          el('button', {
            type: 'button', class: 'unpick-member', text: 'Remove', 'aria-label': `Remove ${user.display_name}`,
            on: { click: () => { chosen.delete(user.id); drawChosen(); finder.rerun(); } },
          }),
        ),
      ),
    );
  }

  const finder = typeAhead(/** @type {HTMLInputElement} */ (byId('group-member-search')), /** @type {HTMLUListElement} */ (byId('group-member-results')), {
    search,
    show: (user) => user.id !== myId() && !chosen.has(user.id),
    button: { class: 'pick-member', text: 'Add', label: (user) => `Add ${user.display_name} to the group` },
    pick: (user) => {
      chosen.set(user.id, user);
      drawChosen();
      finder.clear();
      byId('group-member-search').focus();
    },
    failed,
  });

  function setOpen(open) {
    form.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    if (open) title.focus();
    else {
      title.value = '';
      chosen.clear();
      drawChosen();
      finder.clear();
    }
  }

  toggle.addEventListener('click', () => setOpen(form.hidden));
  byId('cancel-group').addEventListener('click', () => { setOpen(false); toggle.focus(); });
  form.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') { setOpen(false); toggle.focus(); }
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!title.value.trim()) {
      say('Give the group a title.');
      title.focus();
      return;
    }
    if (chosen.size === 0) {
      say('Add at least one member.');
      byId('group-member-search').focus();
      return;
    }
    if (await create(title.value.trim(), [...chosen.keys()])) setOpen(false);
  });
  return { close: () => setOpen(false) };
}
