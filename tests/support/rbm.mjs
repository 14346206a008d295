// What RBM sends to a webhook, built the way Google does (see /work/shared/rbm-protocol.md
// sections 1-3), plus small HTTP helpers. Node 20 standard library only.

import crypto from 'node:crypto';

export const AGENT_ID = 'test_agent';
export const PHONE = '+12223334444';

/** RFC 3339 UTC with nanosecond digits, like RBM's sendTime ("2018-12-31T15:01:23.045123456Z"). */
export function rbmTime(date = new Date()) {
  const iso = date.toISOString(); // ...T15:01:23.045Z
  const nanos = String(crypto.randomInt(0, 1_000_000)).padStart(6, '0');
  return `${iso.slice(0, -1)}${nanos}Z`;
}

const toBytes = (x) => (Buffer.isBuffer(x) || x instanceof Uint8Array) ? Buffer.from(x)
  : Buffer.from(typeof x === 'string' ? x : JSON.stringify(x), 'utf8');

/** base64 HMAC-SHA512(token, bytes): the X-Goog-Signature value. */
export function sign(bytes, token) {
  return crypto.createHmac('sha512', Buffer.from(token, 'utf8')).update(toBytes(bytes)).digest('base64');
}

/**
 * The envelope RBM POSTs for one event, signed with `token`.
 * event: an object (JSON-encoded), or a string / Buffer used as the raw data bytes.
 * pubsub: add the Pub/Sub-style extras (message.messageId, publishTime, attributes, subscription).
 * Returns { body (string), headers, data (Buffer: the signed bytes), signature, envelope (object) }.
 */
export function signedEnvelope(event, token, { pubsub = false } = {}) {
  const data = toBytes(event);
  const signature = sign(data, token);
  const message = { data: data.toString('base64') };
  if (pubsub) {
    message.messageId = String(crypto.randomInt(1e12, 9e12));
    message.publishTime = new Date().toISOString();
    message.attributes = { source: 'rbm' };
  }
  const envelope = pubsub ? { message, subscription: 'projects/p/subscriptions/s' } : { message };
  return {
    body: JSON.stringify(envelope),
    headers: { 'content-type': 'application/json', 'x-goog-signature': signature },
    data,
    signature,
    envelope,
  };
}

/** The registration handshake body. */
export function handshake(clientToken, secret = '1234567890') {
  return {
    body: JSON.stringify({ clientToken, secret }),
    headers: { 'content-type': 'application/json' },
  };
}

const base = () => ({ agentId: AGENT_ID, senderPhoneNumber: PHONE });

// ---- UserMessage (exactly one of text / suggestionResponse / location / userFile) ----

export function userText(over = {}) {
  return { ...base(), messageId: crypto.randomUUID(), sendTime: rbmTime(), text: 'Hello, world!', ...over };
}

export function suggestionResponse(over = {}) {
  return {
    ...base(), messageId: crypto.randomUUID(), sendTime: rbmTime(),
    suggestionResponse: { postbackData: 'suggestion_1', text: 'Suggestion #1', type: 'REPLY' }, ...over,
  };
}

export function location(over = {}) {
  return {
    ...base(), messageId: crypto.randomUUID(), sendTime: rbmTime(),
    location: { latitude: 37.422, longitude: -122.084056 }, ...over,
  };
}

export function userFile(over = {}) {
  return {
    ...base(), messageId: crypto.randomUUID(), sendTime: rbmTime(),
    userFile: {
      thumbnail: { mimeType: 'image/jpeg', fileSizeBytes: 1280, fileUri: 'https://example.com/t.jpeg', fileName: 'a.jpeg' },
      payload: { mimeType: 'image/gif', fileSizeBytes: 127806, fileUri: 'https://example.com/p.gif', fileName: 'a.gif' },
    },
    ...over,
  };
}

// ---- UserEvent ----

function userEvent(eventType, over = {}) {
  return { ...base(), eventId: crypto.randomUUID(), sendTime: rbmTime(), eventType, ...over };
}

/** DELIVERED / READ receipt about the agent message `messageId`. */
export function receipt(type, messageId, over = {}) {
  if (type !== 'DELIVERED' && type !== 'READ') throw new Error(`receipt: type must be DELIVERED or READ, got ${type}`);
  return userEvent(type, { messageId, ...over });
}
export const isTyping = (over = {}) => userEvent('IS_TYPING', over);
export const subscribe = (over = {}) => userEvent('SUBSCRIBE', over);
export const unsubscribe = (over = {}) => userEvent('UNSUBSCRIBE', over);

// ---- ServerEvent (phoneNumber, not senderPhoneNumber) ----

function serverEvent(eventType, messageId, over = {}) {
  return {
    phoneNumber: PHONE, agentId: AGENT_ID, messageId, eventId: crypto.randomUUID(),
    eventType, sendTime: rbmTime(), ...over,
  };
}
export const ttlRevoked = (messageId, over = {}) => serverEvent('TTL_EXPIRATION_REVOKED', messageId, over);
export const ttlRevokeFailed = (messageId, over = {}) => serverEvent('TTL_EXPIRATION_REVOKE_FAILED', messageId, over);

/** Any of the four status-bearing event types, by RBM name. */
export function statusEvent(type, messageId, over = {}) {
  switch (type) {
    case 'DELIVERED': case 'READ': return receipt(type, messageId, over);
    case 'TTL_EXPIRATION_REVOKED': return ttlRevoked(messageId, over);
    case 'TTL_EXPIRATION_REVOKE_FAILED': return ttlRevokeFailed(messageId, over);
    default: throw new Error(`statusEvent: unknown type ${type}`);
  }
}

// ---- HTTP ----

const TIMEOUT_MS = 10_000;

async function wrap(res) {
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

/** Any request; body: string | Buffer | ReadableStream | undefined. Returns {status, headers, text, json}. */
export async function request(url, path, { method = 'GET', body, headers = {} } = {}) {
  const init = { method, headers, body, signal: AbortSignal.timeout(TIMEOUT_MS) };
  if (body && typeof body.getReader === 'function') init.duplex = 'half';
  return wrap(await fetch(new URL(path, url), init));
}

export const post = (url, path, { body, headers = {} } = {}) => request(url, path, { method: 'POST', body, headers });
export const get = (url, path, headers = {}) => request(url, path, { method: 'GET', headers });

/** POST a signed envelope of `event` to /webhook. */
export function postEvent(url, event, token, opts) {
  return post(url, '/webhook', signedEnvelope(event, token, opts));
}

/** Runs async fns over items with at most `limit` in flight; results in input order. */
export async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  async function lane() {
    while (next < items.length) {
      const i = next++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try { out[i] = await fn(items[i], i); } finally { inFlight--; }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  out.maxInFlight = maxInFlight;
  return out;
}

/** Polls fn() every 100 ms until done(result) or timeoutMs; returns the last result. */
export async function pollUntil(fn, done, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (true) {
    last = await fn();
    if (done(last) || Date.now() >= deadline) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
}
