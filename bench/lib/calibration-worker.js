// The plain-JavaScript calibration Worker of `make bench` (bench/README.md, rows 0k, 1k, 1t,
// 2k, 2d, 3k, 3t). Runs in workerd only (it imports `cloudflare:workers`); never in Node.
//
// Two kinds of route:
//  - floors, doing one step of a workload and nothing else: /healthz (0k), /put (1k: body +
//    one KV put), /list (3k: one KV list);
//  - twins, doing what a TypeScript Worker with rbm-edge's design would do on the same path,
//    written the ordinary way (crypto.subtle, JSON.parse, Response.json):
//      POST /webhook                    verify + decode + log; a receipt: KV put with metadata +
//                                       TTL, then its conversation object records it; a user
//                                       message: its conversation object stores it     (1t, 2d)
//      POST /webhook/no-conversation    the same without the conversation object        (2k)
//      GET  /v1/messages/{id}           API key (constant time), one KV list, the view  (3t)
// Bindings: STATUS (KV), CONVERSATIONS (the Conversation class below, SQLite-backed),
// RBM_CLIENT_TOKEN, API_KEYS, RBM_AGENT_ID.

import { DurableObject } from 'cloudflare:workers';

const STATUS_TTL_SECS = 30 * 86400;
const MAX_WEBHOOK_BODY = 1024 * 1024;
const enc = new TextEncoder();
const dec = new TextDecoder();

const fail = (status, code, message) => Response.json({ error: { code, message } }, { status });

/** The HMAC key of RBM_CLIENT_TOKEN, imported once per isolate. */
let clientKey = null;
const clientKeyOf = (env) => (clientKey ??= crypto.subtle.importKey(
  'raw', enc.encode(env.RBM_CLIENT_TOKEN), { name: 'HMAC', hash: 'SHA-512' }, false, ['verify'],
));

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** `+12223334444` → `***4444`. */
function maskPhone(p) {
  if (typeof p !== 'string') return null;
  const digits = p.replace(/\D/g, '');
  return digits.length < 8 ? '***' : `***${digits.slice(-4)}`;
}

const MESSAGE_ID = /^[A-Za-z0-9._~=+-]{1,200}$/;
const STATUS_RECORDS = new Set(['DELIVERED', 'READ', 'TTL_EXPIRATION_REVOKED', 'TTL_EXPIRATION_REVOKE_FAILED']);
const USER_CONTENT = ['text', 'suggestionResponse', 'location', 'userFile'];

function kindOf(event) {
  if (typeof event.eventType === 'string') return event.eventType;
  return USER_CONTENT.find((k) => event[k] !== undefined && event[k] !== null) ?? 'unknown';
}

/** [ms since the epoch, nanoseconds within the ms] of an RFC 3339 time, or null. */
function instant(s) {
  if (typeof s !== 'string') return null;
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) return null;
  const frac = /\.(\d+)/.exec(s)?.[1] ?? '';
  return [ms, Number(frac.slice(3, 9).padEnd(6, '0'))];
}
const cmpInstant = (a, b) => (a === null || b === null ? (a === null) - (b === null) : a[0] - b[0] || a[1] - b[1]);

// ------------------------------------------------------------------ status (KV records → view)

/** Record type → the status it stands for; statuses in ascending precedence. */
const STATUS_OF = {
  SENT: 'SENT', SEND_FAILED: 'FAILED', REVOKE_REQUESTED: 'REVOKED', DELIVERED: 'DELIVERED', READ: 'READ',
  TTL_EXPIRATION_REVOKED: 'REVOKED', TTL_EXPIRATION_REVOKE_FAILED: 'EXPIRED', FALLBACK: 'FALLBACK', REVOKE_FAILED: 'REVOKE_FAILED',
};
const RECORD_ORDER = Object.keys(STATUS_OF);
const PRECEDENCE = ['FAILED', 'SENT', 'REVOKE_FAILED', 'EXPIRED', 'REVOKED', 'FALLBACK', 'DELIVERED', 'READ'];

function project(types) {
  let best = -1;
  for (const t of types) best = Math.max(best, PRECEDENCE.indexOf(STATUS_OF[t]));
  return best < 0 ? null : PRECEDENCE[best];
}

/** The view of GET /v1/messages/{id} from the message's records [{type, meta}]; null if none. */
function fold(messageId, records) {
  if (records.length === 0) return null;
  const status = project(records.map((r) => r.type));
  const keyed = records.map((r) => ({ ...r, when: instant(r.meta.at) ?? instant(r.meta.receivedAt) }));
  keyed.sort((a, b) => cmpInstant(a.when, b.when) || RECORD_ORDER.indexOf(a.type) - RECORD_ORDER.indexOf(b.type));
  const pick = (field) => keyed.find((r) => r.meta.source === 'api' && r.meta[field])?.meta[field]
    ?? keyed.find((r) => r.meta[field])?.meta[field] ?? null;
  let updated = null;
  for (const r of keyed) {
    const t = instant(r.meta.receivedAt);
    if (updated === null || cmpInstant(t, updated.t) > 0) updated = { t, at: r.meta.receivedAt };
  }
  const view = {
    messageId,
    phoneNumber: pick('phoneNumber'),
    agentId: pick('agentId'),
    status,
    events: keyed.map(({ type, meta }) => ({
      type, at: meta.at, receivedAt: meta.receivedAt, source: meta.source,
      ...(meta.eventId !== undefined && { eventId: meta.eventId }),
      ...(meta.httpStatus !== undefined && { httpStatus: meta.httpStatus }),
    })),
    updatedAt: updated?.at ?? '',
  };
  const fb = keyed.find((r) => r.type === 'FALLBACK' && r.meta.fallback);
  if (fb) view.fallback = fb.meta.fallback;
  return view;
}

/** Constant-time comparison of `given` with every key (no early exit). */
function isApiKey(given, keys) {
  const g = enc.encode(given);
  let ok = false;
  for (const k of keys) {
    const kb = enc.encode(k);
    ok = (g.byteLength === kb.byteLength && crypto.subtle.timingSafeEqual(g, kb)) | ok;
  }
  return Boolean(ok);
}

async function status(request, env, messageId) {
  const auth = /^bearer\s+(\S+)\s*$/i.exec(request.headers.get('authorization') ?? '');
  const keys = (env.API_KEYS ?? '').split(',').map((k) => k.trim()).filter(Boolean);
  if (!auth || !isApiKey(auth[1], keys)) return fail(401, 'unauthorized', 'Send Authorization: Bearer <API key>.');
  if (!MESSAGE_ID.test(messageId)) return fail(400, 'invalid_message_id', 'Not a valid messageId.');
  const prefix = `msg:${messageId}:`;
  const page = await env.STATUS.list({ prefix });
  const records = [];
  for (const k of page.keys) {
    const type = k.name.slice(prefix.length);
    if (STATUS_OF[type] && k.metadata && typeof k.metadata.at === 'string') records.push({ type, meta: k.metadata });
  }
  const view = fold(messageId, records);
  if (!view) return fail(404, 'not_found', `No status is recorded for message ${messageId}.`);
  return Response.json(view, { headers: { vary: 'Origin' } });
}

// ------------------------------------------------------------------ webhook

async function conversationOp(env, agent, phone, op) {
  // RPC, as rbm-edge calls its conversation object (the object's `op` method below).
  const stub = env.CONVERSATIONS.get(env.CONVERSATIONS.idFromName(`c:${agent}:${phone}`));
  const out = await stub.op(op);
  if (out.error) throw new Error(`conversation object failed: ${out.error.message}`);
  return out;
}

async function webhook(request, env, { conversation }) {
  const body = await request.text();
  if (body.length > MAX_WEBHOOK_BODY) return fail(413, 'payload_too_large', 'Too large.');
  let envelope;
  try { envelope = JSON.parse(body); } catch { return fail(400, 'invalid_json', 'The body is not JSON.'); }
  const data64 = envelope?.message?.data;
  if (typeof data64 !== 'string') return fail(400, 'invalid_envelope', 'No message.data.');
  let data;
  try { data = fromBase64(data64); } catch { return fail(400, 'invalid_base64', 'message.data is not base64.'); }
  const header = request.headers.get('x-goog-signature')?.trim();
  if (!header) return fail(401, 'missing_signature', 'The X-Goog-Signature header is missing.');
  let signature = null;
  try { signature = fromBase64(header); } catch { /* malformed */ }
  if (!signature || signature.length !== 64) return fail(401, 'bad_signature', 'Not a base64 HMAC-SHA512.');
  if (!(await crypto.subtle.verify('HMAC', await clientKeyOf(env), signature, data))) {
    return fail(401, 'bad_signature', 'The X-Goog-Signature does not match the message.');
  }
  const raw = dec.decode(data);
  let event;
  try { event = JSON.parse(raw); } catch { return Response.json({ ok: true, kind: 'unparseable' }); }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return Response.json({ ok: true, kind: 'unparseable' });
  const kind = kindOf(event);
  const phone = event.senderPhoneNumber ?? event.phoneNumber;
  console.log(JSON.stringify({
    level: 'info', msg: 'event received', kind, agentId: event.agentId ?? null, messageId: event.messageId ?? null,
    eventId: event.eventId ?? null, phone: maskPhone(phone),
  }));
  const agent = event.agentId ?? env.RBM_AGENT_ID;
  if (STATUS_RECORDS.has(kind) && typeof event.messageId === 'string' && MESSAGE_ID.test(event.messageId)) {
    const receivedAt = new Date().toISOString();
    const meta = {
      at: instant(event.sendTime) ? event.sendTime : receivedAt, receivedAt, source: 'webhook',
      eventId: event.eventId, phoneNumber: phone, agentId: event.agentId,
    };
    await env.STATUS.put(`msg:${event.messageId}:${kind}`, raw, { metadata: meta, expirationTtl: STATUS_TTL_SECS });
    if (conversation && phone && agent) {
      await conversationOp(env, agent, phone, { status: { messageId: event.messageId, record: kind, meta } });
    }
  } else if (conversation && USER_CONTENT.includes(kind) && phone && agent) {
    const at = instant(event.sendTime) ? event.sendTime : new Date().toISOString();
    const message = { messageId: event.messageId ?? `anon-${Date.now()}`, kind, at };
    for (const k of USER_CONTENT) if (event[k] !== undefined && event[k] !== null) message[k] = event[k];
    await conversationOp(env, agent, phone, { inbound: { message } });
  }
  return Response.json({ ok: true, kind });
}

// ------------------------------------------------------------------ the Worker

export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    const p = u.pathname;
    if (p === '/healthz') return Response.json({ ok: true, version: '0.1.0' });
    if (p === '/webhook' && request.method === 'POST') return webhook(request, env, { conversation: true });
    if (p === '/webhook/no-conversation' && request.method === 'POST') return webhook(request, env, { conversation: false });
    if (p.startsWith('/v1/messages/') && request.method === 'GET') return status(request, env, decodeURIComponent(p.slice(13)));
    const id = u.searchParams.get('id');
    if (p === '/put') {
      const body = await request.text();
      const now = new Date().toISOString();
      await env.STATUS.put(`msg:${id}:${u.searchParams.get('type')}`, body, {
        metadata: { at: now, receivedAt: now, source: 'webhook', eventId: crypto.randomUUID(), phoneNumber: '+12223334444', agentId: 'test_agent' },
        expirationTtl: STATUS_TTL_SECS,
      });
      return Response.json({ ok: true });
    }
    if (p === '/list') {
      const page = await env.STATUS.list({ prefix: `msg:${id}:` });
      return Response.json({ n: page.keys.length });
    }
    return new Response('ok');
  },
};

// ------------------------------------------------------------------ the conversation object

const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (message_id TEXT PRIMARY KEY, direction TEXT NOT NULL,
  at_ms INTEGER NOT NULL, at TEXT NOT NULL, content TEXT, callback_url TEXT);
CREATE INDEX IF NOT EXISTS messages_order ON messages (at_ms, message_id);
CREATE TABLE IF NOT EXISTS events (message_id TEXT NOT NULL, type TEXT NOT NULL, meta TEXT NOT NULL,
  PRIMARY KEY (message_id, type));
`;

/** One per (agent, phone): the messages and status events of a conversation (SQLite). */
export class Conversation extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(SCHEMA);
  }

  /** RPC: one conversation op, answered as an object (`{error}` rather than a throw). */
  op(op) {
    const sql = this.ctx.storage.sql;
    if (op.inbound) {
      // A user message: one row (the view kept as the history item).
      const m = op.inbound.message;
      const content = JSON.stringify({ ...m, direction: 'inbound' });
      const cur = sql.exec(
        "INSERT OR IGNORE INTO messages (message_id, direction, at_ms, at, content) VALUES (?, 'inbound', ?, ?, ?)",
        m.messageId, Date.parse(m.at) || 0, m.at, content,
      );
      return { ok: true, duplicate: cur.rowsWritten === 0 };
    }
    if (op.status) {
      // A status event: the message's records, its callback URL (a status change would owe a
      // callback: none here, no message has one), then the record.
      const { messageId, record, meta } = op.status;
      const records = sql.exec('SELECT type, meta FROM events WHERE message_id = ?', messageId).toArray()
        .map((r) => ({ type: r.type, meta: JSON.parse(r.meta) }));
      const types = records.map((r) => r.type);
      if (types.includes(record)) return { ok: true, duplicate: true, status: project(types) };
      const callbackUrl = sql.exec('SELECT callback_url FROM messages WHERE message_id = ?', messageId).toArray()[0]?.callback_url ?? null;
      sql.exec('INSERT OR IGNORE INTO events (message_id, type, meta) VALUES (?, ?, ?)', messageId, record, JSON.stringify(meta));
      return { ok: true, status: project([...types, record]), callback: callbackUrl !== null };
    }
    return { error: { code: 'invalid_request', message: 'Not a conversation op.' } };
  }
}
