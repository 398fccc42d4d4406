/**
 * The tokens of the signed-in session: the access token in memory only, the refresh token in
 * sessionStorage (this tab), refreshed about a minute before the access token expires.
 * Every refresh rotates the pair. Events: `token` (a new access token, detail: the token) and
 * `ended` (the session is over: the refresh token was refused).
 * @module session
 */
import { ApiError, requestJson } from './http.js';

const STORAGE_KEY = 'messenger.refresh_token';
const RETRY_MS = 5000;

/** Milliseconds before expiry at which to refresh, for a token living `lifetimeS` seconds. */
function refreshDelayMs(lifetimeS) {
  const ahead = lifetimeS > 120 ? 60 : lifetimeS / 4;
  return Math.max(1, lifetimeS - ahead) * 1000;
}

/** The signed-in session's tokens; see the module comment for its events. */
export class Session extends EventTarget {
  constructor() {
    super();
    /** @type {string|null} */
    this.accessToken = null;
    this.expiresAt = 0;
    this.lifetimeMs = 0;
    this.timer = 0;
    /** @type {Promise<string>|null} */
    this.refreshing = null;
  }

  /** Whether this tab holds a refresh token (a reload can resume the session). */
  canResume() {
    return Boolean(sessionStorage.getItem(STORAGE_KEY));
  }

  /**
   * Takes a login or refresh answer: keeps the pair and plans the next refresh.
   * @param {{access_token: string, refresh_token: string, expires_in: number}} grant
   */
  take(grant) {
    this.accessToken = grant.access_token;
    this.lifetimeMs = grant.expires_in * 1000;
    this.expiresAt = Date.now() + this.lifetimeMs;
    sessionStorage.setItem(STORAGE_KEY, grant.refresh_token);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refreshQuietly(), refreshDelayMs(grant.expires_in));
    this.dispatchEvent(new CustomEvent('token', { detail: grant.access_token }));
  }

  /**
   * A fresh pair from the refresh token; concurrent callers share one request (a refresh token
   * works once). A refused refresh token ends the session.
   * @returns {Promise<string>} the new access token
   * @throws {ApiError}
   */
  refresh() {
    if (!this.refreshing) {
      this.refreshing = this.rotate().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async rotate() {
    const refreshToken = sessionStorage.getItem(STORAGE_KEY);
    if (!refreshToken) throw this.end();
    try {
      this.take(await requestJson('POST', '/auth/refresh', { refresh_token: refreshToken }));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw this.end();
      throw error;
    }
    return /** @type {string} */ (this.accessToken);
  }

  /** The scheduled refresh: an unreachable gateway is retried until the token expires. */
  async refreshQuietly() {
    try {
      await this.refresh();
    } catch (error) {
      if (error instanceof ApiError && error.code !== 'invalid_token' && this.accessToken) {
        this.timer = setTimeout(() => this.refreshQuietly(), RETRY_MS);
      }
    }
  }

  /**
   * An access token valid for at least `marginMs` (or a quarter of a token's life, when shorter),
   * refreshing first when needed.
   * @param {number} [marginMs]
   * @returns {Promise<string>}
   */
  async validToken(marginMs = 15000) {
    const margin = Math.min(marginMs, this.lifetimeMs / 4);
    if (this.accessToken && this.expiresAt - Date.now() > margin) return this.accessToken;
    return this.refresh();
  }

  /** The refresh token to log out with (null when none). */
  refreshToken() {
    return sessionStorage.getItem(STORAGE_KEY);
  }

  /**
   * Forgets both tokens and tells listeners the session is over.
   * @returns {ApiError} the error that ends the caller's work
   */
  end() {
    const wasActive = this.accessToken !== null || this.canResume();
    this.clear();
    if (wasActive) this.dispatchEvent(new CustomEvent('ended'));
    return new ApiError(401, 'session_ended', 'the session has ended');
  }

  /** Forgets both tokens without an event (sign out). */
  clear() {
    clearTimeout(this.timer);
    this.accessToken = null;
    this.expiresAt = 0;
    sessionStorage.removeItem(STORAGE_KEY);
  }
}
