/**
 * The header's live parts: the connection state (with the seconds until the next retry), the
 * signed-in user's name, and the notice line for errors.
 * @module views/status
 */
import { byId, setData, setText } from '../dom.js';

const WORDS = { online: 'Online', connecting: 'Connecting…', offline: 'Offline' };

let countdown = 0;

/**
 * Shows the connection's state; while offline, counts down to the next attempt.
 * @param {string} state online | connecting | offline
 * @param {number} retryAt time of the next attempt (ms), 0 when none
 */
export function showConnection(state, retryAt) {
  const element = byId('connection');
  setData(element, 'state', state);
  clearInterval(countdown);
  const draw = () => {
    const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    setText(element, state === 'offline' && retryAt ? `Offline — retrying in ${seconds} s` : WORDS[state]);
  };
  draw();
  if (state === 'offline' && retryAt) countdown = setInterval(draw, 1000);
}

/** @param {string} name the signed-in user's display name */
export function showMe(name) {
  setText(byId('me'), name);
}

let noticeTimer = 0;

/**
 * Says something to the person in the alert line (empty text clears it).
 * @param {string} text
 * @param {number} [forMs] clears itself after this long (0: stays until replaced)
 */
export function say(text, forMs = 8000) {
  clearTimeout(noticeTimer);
  setText(byId('notice'), text);
  if (text && forMs) noticeTimer = setTimeout(() => setText(byId('notice'), ''), forMs);
}
