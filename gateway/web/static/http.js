/**
 * One JSON request to the gateway's REST API, and the error every failure becomes.
 * Knows nothing of tokens beyond putting one in the Authorization header.
 * @module http
 */

export const API = '/api/v1';

/** A refused or failed request, with the contract's error code. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 when the gateway could not be reached)
   * @param {string} code the contract's error code (`offline` when unreachable)
   * @param {string} message the gateway's message, for people
   * @param {{retryAfter?: number, field?: string}} [extra]
   */
  constructor(status, code, message, extra = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = extra.retryAfter ?? 0;
    this.field = extra.field ?? '';
  }
}

/**
 * Sends `body` (as JSON) to `API + path` and answers the parsed JSON body (null for 204).
 * @param {string} method
 * @param {string} path below /api/v1, e.g. `/chats`
 * @param {object|null} [body]
 * @param {string|null} [token] access token for the Authorization header
 * @returns {Promise<any>}
 * @throws {ApiError}
 */
export async function requestJson(method, path, body = null, token = null) {
  const headers = { Accept: 'application/json' };
  if (body !== null) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: body === null ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    throw new ApiError(0, 'offline', 'the gateway cannot be reached');
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok) return data;
  const error = data?.error ?? {};
  throw new ApiError(response.status, error.code ?? 'unavailable', error.message ?? response.statusText, {
    retryAfter: Number(response.headers.get('Retry-After') ?? 0),
    field: error.details?.field ?? '',
  });
}
