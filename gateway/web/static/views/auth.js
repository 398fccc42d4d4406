/**
 * The signed-out page: the sign-in form, which also creates accounts.
 * @module views/auth
 */
import { byId } from '../dom.js';

/**
 * @param {object} handlers
 * @param {(username: string, password: string) => Promise<void>} handlers.signIn
 * @param {(username: string, password: string, displayName: string) => Promise<void>} handlers.register
 * @param {(text: string) => void} handlers.say shows a notice
 */
export function bindAuthForm({ signIn, register, say }) {
  const form = /** @type {HTMLFormElement} */ (byId('auth'));
  const username = /** @type {HTMLInputElement} */ (byId('username'));
  const password = /** @type {HTMLInputElement} */ (byId('password'));
  const displayName = /** @type {HTMLInputElement} */ (byId('display-name'));
  const buttons = [byId('sign-in'), byId('register')];

  async function busy(work) {
    if (!username.value.trim() || !password.value) {
      say('Enter a username and a password.');
      (username.value.trim() ? password : username).focus();
      return;
    }
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await work();
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(() => signIn(username.value.trim(), password.value));
  });
  byId('register').addEventListener('click', () => {
    busy(() => register(username.value.trim(), password.value, displayName.value.trim()));
  });
}

/**
 * Shows the signed-out page (or hides it), emptying the password, and the name too unless kept
 * (a session that ended by itself: the same person signs in again).
 * @param {boolean} shown
 * @param {{keepName?: boolean}} [options]
 */
export function showSignedOut(shown, { keepName = false } = {}) {
  byId('signed-out').hidden = !shown;
  byId('signed-in').hidden = shown;
  if (!shown) return;
  const fields = keepName ? ['password'] : ['username', 'password', 'display-name'];
  for (const id of fields) /** @type {HTMLInputElement} */ (byId(id)).value = '';
  byId(keepName ? 'password' : 'username').focus();
}
