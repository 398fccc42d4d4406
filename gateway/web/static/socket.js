/**
 * The WebSocket to the gateway: opens it with the access token in the `token` query parameter,
 * reconnects by itself with backoff and jitter, notices a dead connection with pings, and hands
 * the new access token to the open socket with an `auth` frame after each refresh.
 *
 * Events: `state` (detail `{state, retryAt}`; state is `connecting`, `online` or `offline`),
 * `open` (a socket is ready: the caller catches up), `frame` (detail: a parsed server frame).
 * @module socket
 */

const PING_EVERY_MS = 15000;
const PONG_WITHIN_MS = 8000;
const MAX_BACKOFF_MS = 10000;
const SESSION_ENDED = 4001;

/**
 * The wait before reconnect attempt `attempt` (0 first): 0.5–1 s, then doubling up to 5–10 s.
 * @param {number} attempt
 * @returns {number} milliseconds
 */
export function backoffMs(attempt) {
  const ceiling = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempt);
  return Math.round(ceiling * (0.5 + Math.random() * 0.5));
}

/** One logical connection to the gateway, reopened by itself until `stop`. */
export class Connection extends EventTarget {
  /** @param {import('./session.js').Session} session */
  constructor(session) {
    super();
    this.session = session;
    /** @type {WebSocket|null} */
    this.ws = null;
    this.running = false;
    this.attempt = 0;
    this.state = 'offline';
    this.retryAt = 0;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.pongTimer = 0;
    // `a:` names the frame in a refusal's `ref`: a refused token needs no words (a 4001 follows).
    this.onToken = (event) => this.send({ type: 'auth', token: event.detail, client_msg_id: `a:${Date.now()}` });
    this.onOnline = () => this.retryNow();
    this.onOffline = () => { if (this.ws) this.dropDead(); };
  }

  /** Starts connecting (and keeps reconnecting until `stop`). */
  start() {
    if (this.running) return;
    this.running = true;
    this.session.addEventListener('token', this.onToken);
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    this.connect();
  }

  /** Closes the socket for good (sign out). */
  stop() {
    this.running = false;
    this.session.removeEventListener('token', this.onToken);
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    clearTimeout(this.retryTimer);
    this.drop(1000);
    this.setState('offline', 0);
  }

  /**
   * Sends a frame if a socket is open.
   * @param {object} frame
   * @returns {boolean} whether it was handed to an open socket
   */
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== 'online') return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  setState(state, retryAt) {
    this.state = state;
    this.retryAt = retryAt;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, retryAt } }));
  }

  async connect() {
    if (!this.running) return;
    this.setState('connecting', 0);
    let token;
    try {
      token = await this.session.validToken(60000);
    } catch (error) {
      if (this.running && error.code !== 'session_ended') this.scheduleRetry();
      return;
    }
    if (!this.running) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/ws?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setState('online', 0);
      this.keepAlive();
      this.dispatchEvent(new CustomEvent('open'));
    };
    ws.onmessage = (event) => {
      this.keepAlive();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type !== 'pong') this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.closed(event.code);
    };
  }

  /** What a close code asks for: 4001 a refresh first; anything else a reconnect with backoff. */
  async closed(code) {
    this.stopTimers();
    if (!this.running) return;
    if (code === SESSION_ENDED) {
      try {
        await this.session.refresh();
      } catch (error) {
        if (error.code === 'session_ended') return;
      }
    }
    this.scheduleRetry();
  }

  scheduleRetry() {
    const wait = backoffMs(this.attempt);
    this.attempt += 1;
    this.setState('offline', Date.now() + wait);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  /** The browser says the network is back: try at once instead of waiting out the backoff. */
  retryNow() {
    if (!this.running || this.state !== 'offline') return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  /** A ping after a quiet spell; no answer in time means the connection is dead. */
  keepAlive() {
    this.stopTimers();
    this.pingTimer = setTimeout(() => {
      this.send({ type: 'ping' });
      this.pongTimer = setTimeout(() => this.dropDead(), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  stopTimers() {
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  /** A silent connection: give up on it without waiting for a close handshake that may never come. */
  dropDead() {
    this.drop(4000);
    this.closed(1006);
  }

  drop(code) {
    this.stopTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code);
    }
  }
}
