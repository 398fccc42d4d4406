/**
 * The REST calls the client makes, with the session's access token. A 401 `token_expired`
 * refreshes once and retries; a read that finds the gateway unreachable or unavailable (503)
 * is retried with a growing wait, telling `onRetry` so the page can say so.
 * @module api
 */
import { ApiError, requestJson } from './http.js';

const READ_ATTEMPTS = 5;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * @param {import('./session.js').Session} session
 * @param {(error: ApiError) => void} onRetry called before a read is retried
 */
export function createApi(session, onRetry) {
  async function authorized(method, path, body) {
    const token = await session.validToken();
    try {
      return await requestJson(method, path, body, token);
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== 'token_expired') throw error;
      return requestJson(method, path, body, await session.refresh());
    }
  }

  async function read(path) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await authorized('GET', path, null);
      } catch (error) {
        const transient = error instanceof ApiError && (error.code === 'offline' || error.code === 'unavailable');
        if (!transient || attempt >= READ_ATTEMPTS) throw error;
        onRetry(error);
        await sleep(Math.max(error.retryAfter * 1000, 500 * 2 ** attempt));
      }
    }
  }

  const q = encodeURIComponent;
  return {
    /** @returns {Promise<object>} the login answer (tokens and user) */
    login: (username, password) => requestJson('POST', '/auth/login', { username, password }),
    /** @returns {Promise<object>} `{user}` */
    register: (username, password, displayName) =>
      requestJson('POST', '/auth/register', displayName ? { username, password, display_name: displayName } : { username, password }),
    /** Ends the session of `refreshToken` (its sockets close). */
    logout: (refreshToken) => requestJson('POST', '/auth/logout', { refresh_token: refreshToken }),
    /** @returns {Promise<object>} the signed-in User */
    me: () => read('/users/me'),
    /** @returns {Promise<object>} a User */
    user: (id) => read(`/users/${q(id)}`),
    /** @returns {Promise<object[]>} users whose username starts with `prefix` */
    searchUsers: async (prefix) => (await read(`/users?q=${q(prefix)}&limit=20`)).users,
    /** @returns {Promise<object[]>} the caller's chats, latest activity first */
    chats: async () => (await read('/chats')).chats,
    /** @returns {Promise<object>} a Chat */
    chat: (id) => read(`/chats/${q(id)}`),
    /** @returns {Promise<object>} the direct chat with `userId` (created if none) */
    directChat: async (userId) => (await authorized('POST', '/chats', { type: 'direct', member_ids: [userId] })).chat,
    /** @returns {Promise<object>} the new group */
    createGroup: async (title, memberIds) =>
      (await authorized('POST', '/chats', { type: 'group', title, member_ids: memberIds })).chat,
    /** @returns {Promise<object>} the Chat with `userId` added */
    addMember: (chatId, userId) => authorized('POST', `/chats/${q(chatId)}/members`, { user_id: userId }),
    /** Removes `userId` (oneself: leaves). */
    removeMember: (chatId, userId) => authorized('DELETE', `/chats/${q(chatId)}/members/${q(userId)}`, null),
    /** @returns {Promise<{user_id: string, seq: number}[]>} how far each member has read */
    readMarkers: async (chatId) => (await read(`/chats/${q(chatId)}/read-markers`)).read_markers,
    /**
     * A page of history, ascending by seq.
     * @param {string} chatId
     * @param {{before?: number, limit?: number}} [page]
     * @returns {Promise<object[]>}
     */
    messages: async (chatId, { before, limit = 50 } = {}) => {
      const query = before ? `?before=${before}&limit=${limit}` : `?limit=${limit}`;
      return (await read(`/chats/${q(chatId)}/messages${query}`)).messages;
    },
  };
}
