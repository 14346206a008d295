// GET /v1/phones/{p}/live: a WebSocket carrying the conversation's new messages, status changes
// and typing indicators. Browsers cannot set headers on a WebSocket and tokens never go in URLs,
// so the token travels as a second subprotocol: ["rbm-edge.v1", "bearer.<token>"]; the Worker
// answers "rbm-edge.v1". Reconnects with backoff when the socket drops.

import { LIVE_PROTOCOL, LIVE_BACKOFF_MS } from './config.js';

export class LiveConnection {
  /**
   * @param {object} o
   * @param {string} o.phone
   * @param {(opts?: {fresh?: boolean}) => Promise<string>} o.getToken
   * @param {(frame: object) => void} o.onFrame
   * @param {(state: {state: string, retryInMs?: number, attempt?: number, detail?: string}) => void} o.onState
   */
  constructor({ phone, getToken, onFrame, onState }) {
    this.phone = phone;
    this.getToken = getToken;
    this.onFrame = onFrame;
    this.onState = onState;
    this.ws = null;
    this.stopped = true;
    this.attempt = 0;
    this.timer = null;
    this.readySeen = false;
    this.freshToken = false;
  }

  get url() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/v1/phones/${encodeURIComponent(this.phone)}/live`;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try { ws.close(1000, 'closed by the console'); } catch { /* already closed */ }
    }
  }

  /** Reconnect now (a button), skipping the remaining backoff. */
  retryNow() {
    if (this.stopped) return this.start();
    clearTimeout(this.timer);
    if (!this.ws) this.connect();
  }

  async connect() {
    this.timer = null;
    if (this.stopped) return;
    this.onState({ state: 'connecting', attempt: this.attempt });
    let token;
    try {
      token = await this.getToken({ fresh: this.freshToken });
      this.freshToken = false;
    } catch (err) {
      if (this.stopped) return;
      this.scheduleReconnect(`no token: ${err.code ?? ''} ${err.message ?? ''}`.trim());
      return;
    }
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url, [LIVE_PROTOCOL, `bearer.${token}`]);
    } catch {
      this.scheduleReconnect('the browser refused to open the socket');
      return;
    }
    this.ws = ws;
    this.readySeen = false;
    const opened = { at: 0 };
    ws.onopen = () => {
      opened.at = Date.now();
      if (ws.protocol !== LIVE_PROTOCOL) {
        ws.close(1002, 'unexpected subprotocol');
      }
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (!frame || typeof frame !== 'object') return;
      if (frame.type === 'ready') {
        this.readySeen = true;
        this.attempt = 0;
        this.onState({ state: 'open' });
      }
      this.onFrame(frame);
    };
    ws.onerror = () => { /* onclose follows and decides */ };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      // Closed by the Worker for policy/auth reasons (1008, 4xxx): the next try mints first.
      if (ev.code === 1008 || (ev.code >= 4000 && ev.code < 5000)) this.freshToken = true;
      const why = opened.at === 0
        ? 'the live route did not accept the connection'
        : `closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`;
      this.scheduleReconnect(why);
    };
  }

  scheduleReconnect(detail) {
    const base = LIVE_BACKOFF_MS[Math.min(this.attempt, LIVE_BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (1 + Math.random() * 0.25));
    this.attempt += 1;
    this.onState({ state: 'waiting', retryInMs: delay, attempt: this.attempt, detail });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
