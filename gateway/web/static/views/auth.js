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

/** Shows the signed-out page (or hides it), emptying the password. */
export function showSignedOut(shown) {
  byId('signed-out').hidden = !shown;
  byId('signed-in').hidden = shown;
  if (shown) {
    /** @type {HTMLInputElement} */ (byId('password')).value = '';
    byId('username').focus();
  }
}
