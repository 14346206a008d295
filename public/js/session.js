// The signed-in session: the API key (sessionStorage only, used for nothing but minting) and the
// short browser token used for every other call, minted again shortly before it expires.

import { apiFetch, ApiError } from './api.js';
import {
  TOKEN_SCOPES, DEAD_LETTER_SCOPE, TOKEN_TTL_SECONDS, TOKEN_REFRESH_MARGIN_MS, TOKEN_MIN_LEFT_MS,
  STORAGE_API_KEY, STORAGE_AGENT_ID,
} from './config.js';

export class Session {
  /**
   * @param {object} hooks
   * @param {(s: Session) => void} hooks.onToken   a new token was minted
   * @param {(err: ApiError) => void} hooks.onLost the API key stopped working: signed out
   * @param {(err: ApiError|null) => void} hooks.onRefreshProblem a background re-mint failed (null: fixed)
   */
  constructor(hooks = {}) {
    this.hooks = hooks;
    this.apiKey = null;
    this.agentId = '';
    this.tokenValue = null;
    this.expiresAtMs = 0; // by this page's clock
    this.scopes = [];
    this.minting = null;
    this.timer = null;
  }

  /** A session from this tab's storage, or null. */
  static stored() {
    try {
      const key = sessionStorage.getItem(STORAGE_API_KEY);
      if (!key) return null;
      return { apiKey: key, agentId: sessionStorage.getItem(STORAGE_AGENT_ID) ?? '' };
    } catch {
      return null;
    }
  }

  get signedIn() { return this.apiKey !== null; }
  get canManageDeadLetters() { return this.scopes.includes(DEAD_LETTER_SCOPE); }
  get msLeft() { return this.expiresAtMs - Date.now(); }

  /** Mints a first token with `apiKey`; keeps the key in sessionStorage only when that works. */
  async signIn(apiKey, agentId = '') {
    this.apiKey = apiKey;
    this.agentId = agentId;
    try {
      await this.mint();
    } catch (err) {
      this.apiKey = null;
      this.agentId = '';
      throw err;
    }
    try {
      sessionStorage.setItem(STORAGE_API_KEY, apiKey);
      if (agentId) sessionStorage.setItem(STORAGE_AGENT_ID, agentId);
      else sessionStorage.removeItem(STORAGE_AGENT_ID);
    } catch { /* storage disabled: the session lasts until reload */ }
  }

  signOut() {
    clearTimeout(this.timer);
    this.timer = null;
    this.apiKey = null;
    this.agentId = '';
    this.tokenValue = null;
    this.expiresAtMs = 0;
    this.scopes = [];
    this.minting = null;
    try {
      sessionStorage.removeItem(STORAGE_API_KEY);
      sessionStorage.removeItem(STORAGE_AGENT_ID);
    } catch { /* nothing stored */ }
  }

  /** A token with enough life left for a call; mints one first when needed. */
  async token({ fresh = false } = {}) {
    if (!this.signedIn) throw new ApiError(401, 'SIGNED_OUT', 'Sign in again.');
    if (!fresh && this.tokenValue && this.msLeft > TOKEN_MIN_LEFT_MS) return this.tokenValue;
    await this.mint();
    return this.tokenValue;
  }

  /** POST /v1/tokens with the API key; one mint at a time. */
  mint() {
    if (!this.minting) {
      this.minting = this.mintOnce().finally(() => { this.minting = null; });
    }
    return this.minting;
  }

  async mintOnce() {
    const key = this.apiKey;
    const started = Date.now();
    const ask = (scopes) => {
      const body = { scopes, ttlSeconds: TOKEN_TTL_SECONDS };
      if (this.agentId) body.agentId = this.agentId;
      return apiFetch('/v1/tokens', { method: 'POST', body, bearer: key });
    };
    let res;
    try {
      res = await ask(TOKEN_SCOPES);
    } catch (err) {
      // A Worker that predates `dead-letters:manage` names it as an unknown scope: mint the
      // rest, and the dead-letter panel says why it cannot work.
      const i = TOKEN_SCOPES.indexOf(DEAD_LETTER_SCOPE);
      if (err instanceof ApiError && err.status === 400 && err.message.includes(`scopes[${i}]`)) {
        res = await ask(TOKEN_SCOPES.filter((s) => s !== DEAD_LETTER_SCOPE));
      } else {
        throw err;
      }
    }
    if (this.apiKey !== key) throw new ApiError(401, 'SIGNED_OUT', 'Signed out while the token was minted.');
    const body = res.body ?? {};
    if (typeof body.token !== 'string' || body.token.split('.').length !== 3) {
      throw new ApiError(res.status, 'BAD_TOKEN_ANSWER', 'POST /v1/tokens did not answer with a token.');
    }
    this.tokenValue = body.token;
    this.scopes = Array.isArray(body.scopes) ? body.scopes.map(String) : [];
    // By our own clock: the token lives ttl seconds from the Worker's "now", which is after
    // `started`, so this never overestimates its life even when the two clocks disagree.
    this.expiresAtMs = started + TOKEN_TTL_SECONDS * 1000;
    this.schedule();
    this.hooks.onToken?.(this);
  }

  /** The next background mint, TOKEN_REFRESH_MARGIN_MS before expiry. */
  schedule(delayMs = Math.max(5_000, this.msLeft - TOKEN_REFRESH_MARGIN_MS)) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delayMs);
  }

  async refresh() {
    if (!this.signedIn) return;
    try {
      await this.mint();
      this.hooks.onRefreshProblem?.(null);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401 && err.code !== 'SIGNED_OUT') {
        this.signOut();
        this.hooks.onLost?.(err);
        return;
      }
      this.hooks.onRefreshProblem?.(err);
      this.schedule(Math.min(15_000, Math.max(2_000, this.msLeft / 4)));
    }
  }
}
