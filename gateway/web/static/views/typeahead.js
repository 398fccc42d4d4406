/**
 * A username-prefix search box: asks the gateway as the person types (debounced) and lists the
 * users found with one action button each.
 * @module views/typeahead
 */
import { el } from '../dom.js';

const DEBOUNCE_MS = 200;

/**
 * @param {HTMLInputElement} input
 * @param {HTMLUListElement} list
 * @param {object} options
 * @param {(prefix: string) => Promise<object[]>} options.search
 * @param {(user: object) => boolean} options.show which users to list
 * @param {{class: string, text: string, label: (user: object) => string}} options.button
 * @param {(user: object) => void} options.pick the person pressed the button
 * @param {(error: object) => void} options.failed
 * @returns {{clear: () => void, rerun: () => void}}
 */
export function typeAhead(input, list, { search, show, button, pick, failed }) {
  let timer = 0;
  let latest = 0;

  function item(user) {
    return el(
      'li', { data: { userId: user.id } },
      el('span', { class: 'name', text: user.display_name }),
      el('span', { class: 'username', text: ` @${user.username}` }),
      el('button', {
        type: 'button', class: button.class, text: button.text, 'aria-label': button.label(user),
        on: { click: () => pick(user) },
      }),
    );
  }

  async function run() {
    const prefix = input.value.trim().toLowerCase();
    const mine = ++latest;
    if (!prefix) {
      list.replaceChildren();
      return;
    }
    let users;
    try {
      users = await search(prefix);
    } catch (error) {
      if (mine === latest) failed(error);
      return;
    }
    if (mine !== latest) return;
    const shown = users.filter(show);
    list.replaceChildren(...(shown.length ? shown.map(item) : [el('li', { class: 'empty', text: 'No one found.' })]));
  }

  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(run, DEBOUNCE_MS);
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      clearTimeout(timer);
      run();
    }
  });
  return {
    clear() {
      input.value = '';
      latest += 1;
      list.replaceChildren();
    },
    rerun: run,
  };
}
