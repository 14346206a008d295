// Settings of the console page. Plain data, no behaviour.

/** Scopes of the browser token the page mints. `dead-letters:manage` is newer than the others:
 * a Worker that does not know it yet refuses it, and the page then mints without it. */
export const TOKEN_SCOPES = ['messages:send', 'messages:read', 'events:send', 'capabilities:read', 'dead-letters:manage'];
export const DEAD_LETTER_SCOPE = 'dead-letters:manage';
/** Lifetime asked for (the Worker caps tokens at 3600 s). */
export const TOKEN_TTL_SECONDS = 900;
/** Mint the next token this long before the current one expires. */
export const TOKEN_REFRESH_MARGIN_MS = 90_000;
/** A token with less than this left is not used for a new call: a fresh one is minted first. */
export const TOKEN_MIN_LEFT_MS = 20_000;

/** sessionStorage keys (never localStorage: the key must not outlive the tab). */
export const STORAGE_API_KEY = 'rbm-edge.console.apiKey';
export const STORAGE_AGENT_ID = 'rbm-edge.console.agentId';
export const STORAGE_PHONE = 'rbm-edge.console.phone';

export const HISTORY_PAGE_SIZE = 50;
export const REQUEST_TIMEOUT_MS = 15_000;

/** WebSocket subprotocol of GET /v1/phones/{p}/live; the token travels as a second one. */
export const LIVE_PROTOCOL = 'rbm-edge.v1';
/** Reconnect delays (ms), last one repeated; each gets up to 25 % random jitter. */
export const LIVE_BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
/** How long a typing indicator stays up without a new `typing` frame. */
export const TYPING_TIMEOUT_MS = 12_000;

/** Without a live socket, a message sent from this page is polled (GET /v1/messages/{id}). */
export const POLL_INTERVAL_MS = 1500;
export const POLL_FOR_MS = 10 * 60_000;

export const MAX_TEXT_SUGGESTIONS = 11;
export const MAX_CARD_SUGGESTIONS = 4;
export const MAX_SUGGESTION_CHARS = 25;

/**
 * Phone numbers of the local RBM simulator (`sim/`, which `make dev` runs next to the Worker),
 * offered as suggestions. Taken from NUMBERS in sim/rbm.mjs (also `GET /sim` on the simulator);
 * any other valid number behaves like the first one. Against Google these are just numbers.
 */
export const SIMULATOR_NUMBERS = [
  { number: '+12223334444', label: 'Delivers, then reads' },
  { number: '+15550000101', label: 'Reads, types, replies with text' },
  { number: '+15550000102', label: 'Reads, taps the first suggestion' },
  { number: '+15550000103', label: 'Reads, shares a location' },
  { number: '+15550000104', label: 'Delivered, never read' },
  { number: '+15550000100', label: 'Offline: never delivered' },
  { number: '+15550000404', label: 'Not an RCS user (404)' },
];

/** Status precedence, as the Worker folds it (README, Status model); FALLBACK after REVOKED. */
export const STATUS_RANK = {
  FAILED: 0, SENT: 1, EXPIRED: 2, REVOKED: 3, FALLBACK: 4, DELIVERED: 5, READ: 6,
};
/** Statuses after which nothing more is expected (polling stops). */
export const TERMINAL_STATUSES = new Set(['READ', 'FAILED', 'REVOKED', 'EXPIRED', 'FALLBACK']);
