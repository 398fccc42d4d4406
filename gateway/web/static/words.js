/**
 * Errors and states in words a person understands.
 * @module words
 */

const FIELDS = {
  username: 'A username is 3 to 32 characters: letters a–z, digits, “_” and “.”.',
  password: 'A password is 8 to 256 characters.',
  display_name: 'A display name is at most 64 characters.',
  title: 'A group title is 1 to 128 characters.',
  text: 'A message is 1 to 4,000 characters.',
  member_ids: 'Pick at least one member.',
};

/**
 * A sentence for a failed REST call or a refused frame.
 * @param {{code: string, field?: string, retryAfter?: number, retry_after_ms?: number, message?: string}} error
 * @param {string} [doing] what the person was doing, e.g. "sign in"
 * @returns {string}
 */
export function describe(error, doing = '') {
  const seconds = Math.max(1, Math.ceil(error.retryAfter || (error.retry_after_ms ?? 0) / 1000 || 1));
  switch (error.code) {
    case 'invalid_credentials':
      return 'Wrong username or password.';
    case 'username_taken':
      return 'That username is taken: choose another.';
    case 'rate_limited':
      return `Too many attempts — try again in ${seconds} s.`;
    case 'offline':
      return doing ? `You are offline: could not ${doing}.` : 'You are offline: check your connection.';
    case 'unavailable':
      return doing
        ? `The service is unavailable for a moment: could not ${doing}, try again in ${seconds} s.`
        : 'The service is unavailable for a moment — retrying.';
    case 'forbidden':
      return doing ? `You may not ${doing}.` : 'You may not do that.';
    case 'not_found':
      return 'You are not a member of this chat any more.';
    case 'group_full':
      return 'The group is full.';
    case 'invalid_request':
      return FIELDS[error.field ?? ''] ?? `That was not accepted: ${error.message ?? 'invalid input'}.`;
    case 'token_expired':
    case 'invalid_token':
    case 'session_ended':
      return 'Your session has ended: sign in again.';
    default:
      return `Something went wrong${doing ? ` (${doing})` : ''}: ${error.message || error.code}.`;
  }
}

/**
 * A time as the message list shows it: hours and minutes, with the date when not today.
 * @param {string} iso
 * @returns {string}
 */
export function shortTime(iso) {
  const when = new Date(iso);
  const time = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return when.toDateString() === new Date().toDateString() ? time : `${when.toLocaleDateString()} ${time}`;
}
