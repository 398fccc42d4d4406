/**
 * Random ids for `client_msg_id` and frame references, from `crypto.getRandomValues` (which,
 * unlike `crypto.randomUUID`, also works on a page not served over a secure origin).
 * @module ids
 */

/**
 * A random id with an optional prefix saying what it names (`e:` an edit, `s:` a sync, ...).
 * @param {string} [prefix]
 * @returns {string}
 */
export function newId(prefix = '') {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
