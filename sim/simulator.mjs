// The local RBM simulator: Google's token endpoint and RBM API (sim/server.mjs) plus the part
// Google plays after a send — simulated users whose phones post signed webhooks (DELIVERED,
// READ, IS_TYPING, replies, TTL revocations) to the agent's webhook, retried with backoff like
// RBM. `make dev` runs it next to the Worker; tests start it with startSimulator().
//
//   const sim = await startSimulator({ webhookUrl: 'http://127.0.0.1:8787/webhook', clientToken: 'tok' });
//   sim.url, sim.tokenUri, sim.serviceAccountKey   → the Worker's RBM_API_BASE and RBM_SERVICE_ACCOUNT_KEY
//   await sim.stop();
//
// Scripted numbers: NUMBERS in sim/rbm.mjs (also GET /sim). Inspection (no auth, loopback):
//   GET  /sim               settings, scripted numbers, counters
//   GET  /sim/messages      agent messages received (?phoneNumber=), with state and webhooks posted
//   GET  /sim/messages/{id} one of them
//   GET  /sim/events        agent events received (READ, IS_TYPING)
//   GET  /sim/webhooks      webhooks posted: kind, attempts, last status
//   GET  /sim/calls         RBM API calls answered: name, number, status, ms
//   POST /sim/inbound       {"phoneNumber", one of "text" | "location" | "suggestionResponse" |
//                           "userFile" | "eventType"} → a user-initiated message or event
// Node 20 standard library only.

import crypto from 'node:crypto';
import { startRbmServer, sendJson } from './server.mjs';
import {
  NUMBERS, E164_RE, isObj, maskPhone, expiryOf, firstSuggestionResponse,
  signedEnvelope, userEvent, userMessage, serverEvent, eventKind,
} from './rbm.mjs';

const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_MESSAGES = 10_000;

export const DEFAULTS = Object.freeze({
  deliverMs: 1000,   // accepted → DELIVERED
  readMs: 3000,      // accepted → READ
  typingMs: 500,     // READ → IS_TYPING of a replying number
  replyMs: 1500,     // READ → the reply
  slowMs: 3000,      // the slow number's answer delay
  retries: 4,        // webhook re-posts after a non-200 (5 attempts in all)
  retryBaseMs: 1000, // first re-post delay, doubled each time
  retryMaxMs: 10_000,
  webhookTimeoutMs: 10_000,
  historyLimit: 1000,
});

const REPLY = {
  replyText: () => ({ text: 'Yes please, sounds good!' }),
  shareLocation: () => ({ location: { latitude: 37.422, longitude: -122.084056 } }),
};

const shortId = (id) => String(id ?? '').slice(0, 8);
const clip = (s, n = 40) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function stamp() {
  return new Date().toISOString().slice(11, 23);
}

/** What a message shows in a log line. */
function describeContent(body) {
  const cm = body?.contentMessage ?? {};
  if (typeof cm.text === 'string') return JSON.stringify(clip(cm.text.replace(/\s+/g, ' ')));
  if (cm.richCard) return cm.richCard.carouselCard ? 'carousel' : 'rich card';
  if (cm.contentInfo) return 'file';
  if (cm.uploadedRbmFile) return 'uploaded file';
  return 'message';
}

/** The rest of a webhook's log line: the agent message it is about, or what the user sent. */
function describeEvent(e) {
  if (e.eventType) return e.messageId ? ` msg ${shortId(e.messageId)}` : '';
  if (typeof e.text === 'string') return ` ${JSON.stringify(clip(e.text))}`;
  if (e.suggestionResponse) return ` tapped ${JSON.stringify(clip(String(e.suggestionResponse.text ?? '')))} (postbackData ${JSON.stringify(clip(String(e.suggestionResponse.postbackData ?? '')))})`;
  if (e.location) return ` at ${e.location.latitude},${e.location.longitude}`;
  return '';
}

/**
 * Starts the simulator. opts:
 *   port, host          where to listen (default 0 = a free port; 127.0.0.1)
 *   webhookUrl          the agent's webhook (settable later with setWebhook); null: events are dropped
 *   clientToken         signs X-Goog-Signature (required)
 *   serviceAccountKey   the key whose assertions are accepted (JSON text or object); generated when absent
 *   agentId             agent of user-initiated events (default "my_agent")
 *   deliverMs, readMs, typingMs, replyMs, slowMs, retries, retryBaseMs, retryMaxMs,
 *   webhookTimeoutMs, historyLimit                                   see DEFAULTS
 *   log                 a function taking one line (default console.log), or false
 */
export async function startSimulator(opts = {}) {
  if (typeof opts.clientToken !== 'string' || opts.clientToken === '') throw new Error('startSimulator: clientToken is required');
  const cfg = { ...DEFAULTS };
  for (const k of Object.keys(DEFAULTS)) if (opts[k] !== undefined) cfg[k] = Number(opts[k]);
  const clientToken = opts.clientToken;
  const defaultAgent = opts.agentId ?? 'my_agent';
  const logFn = opts.log === false ? null : (opts.log ?? console.log);
  const log = (line) => { if (logFn) logFn(`${stamp()} [sim] ${line}`); };

  let webhookUrl = opts.webhookUrl ?? null;
  let stopped = false;
  const timers = new Set();
  const inflight = new Set();
  const webhooks = [];  // posted (or being posted) webhook records
  const events = [];    // agent events received
  const calls = [];     // RBM calls answered
  const counts = { messages: 0, webhooksPosted: 0, webhooksFailed: 0, tokensIssued: 0, tokensRefused: 0 };
  const keep = (list, item) => { list.push(item); if (list.length > cfg.historyLimit) list.splice(0, list.length - cfg.historyLimit); };

  function later(ms, fn, owner) {
    if (stopped || !(ms < MAX_TIMER_MS)) return null;
    const t = setTimeout(() => { timers.delete(t); owner?.timers.delete(t); if (!stopped) fn(); }, Math.max(0, ms));
    timers.add(t);
    owner?.timers.add(t);
    return t;
  }

  // ------------------------------------------------------------------ webhooks
  function post(event, entry) {
    const kind = eventKind(event);
    const phone = event.senderPhoneNumber ?? event.phoneNumber;
    const rec = {
      kind, phoneNumber: phone, messageId: event.messageId, eventId: event.eventId,
      attempts: 0, status: null, postedAt: null, event, ...signedEnvelope(event, clientToken),
    };
    keep(webhooks, rec);
    entry?.webhooks.push(rec);
    attempt(rec);
    return rec;
  }

  async function attempt(rec) {
    if (stopped) return;
    const what = `webhook ${rec.kind} ${maskPhone(rec.phoneNumber)}${describeEvent(rec.event)}`;
    if (!webhookUrl) {
      rec.status = 'no webhook';
      log(`${what}: dropped (no webhook URL set)`);
      return;
    }
    rec.attempts++;
    const t0 = Date.now();
    const ctl = new AbortController();
    inflight.add(ctl);
    const timer = setTimeout(() => ctl.abort(new Error('timeout')), cfg.webhookTimeoutMs);
    let status;
    try {
      const res = await fetch(webhookUrl, { method: 'POST', headers: rec.headers, body: rec.body, signal: ctl.signal });
      await res.arrayBuffer();
      status = res.status;
    } catch (err) {
      status = ctl.signal.aborted ? (stopped ? 'stopped' : 'timeout') : (err.cause?.code ?? 'unreachable');
    } finally {
      clearTimeout(timer);
      inflight.delete(ctl);
    }
    if (stopped) return;
    rec.status = status;
    rec.postedAt = new Date().toISOString();
    const ms = Date.now() - t0;
    if (status === 200) {
      counts.webhooksPosted++;
      log(`${what} → 200 (${ms} ms${rec.attempts > 1 ? `, attempt ${rec.attempts}` : ''})`);
      return;
    }
    if (rec.attempts <= cfg.retries) {
      const wait = Math.min(cfg.retryBaseMs * 2 ** (rec.attempts - 1), cfg.retryMaxMs);
      log(`${what} → ${status}; retry ${rec.attempts}/${cfg.retries} in ${wait} ms`);
      later(wait, () => attempt(rec));
    } else {
      counts.webhooksFailed++;
      log(`${what} → ${status}; giving up after ${rec.attempts} attempts`);
    }
  }

  // ------------------------------------------------------------------ simulated users
  function onMessage(entry, messageId) {
    counts.messages++;
    entry.messageId = messageId;
    entry.timers = new Set();
    entry.webhooks = [];
    const after = NUMBERS[entry.phone]?.after ?? 'normal';
    const offline = after === 'offline' || after === 'offlineRevokeFails';
    const base = { agentId: entry.agentId, phone: entry.phone };
    entry.expiresAt = expiryOf(entry.body, entry.acceptedAt);
    const deliverIn = offline ? Infinity : cfg.deliverMs;
    const expireIn = entry.expiresAt === null ? Infinity : entry.expiresAt - Date.now();

    if (expireIn <= deliverIn && expireIn !== Infinity) {
      // Not delivered in time: RBM revokes it (or fails to) and says so with a ServerEvent.
      if (!later(expireIn, () => {
        if (entry.delivered || entry.revoked) return;
        entry.expired = true;
        const eventType = after === 'offlineRevokeFails' ? 'TTL_EXPIRATION_REVOKE_FAILED' : 'TTL_EXPIRATION_REVOKED';
        log(`${maskPhone(entry.phone)} msg ${shortId(messageId)} expired undelivered`);
        post(serverEvent({ ...base, eventType, messageId }), entry);
      }, entry)) log(`${maskPhone(entry.phone)} msg ${shortId(messageId)} expires too far ahead to simulate`);
      return;
    }
    if (offline) return;

    later(cfg.deliverMs, () => {
      if (entry.revoked || entry.expired) return;
      entry.delivered = true;
      post(userEvent({ ...base, eventType: 'DELIVERED', messageId }), entry);
    }, entry);
    if (after === 'deliverOnly') return;
    later(Math.max(cfg.readMs, cfg.deliverMs), () => {
      if (!entry.delivered) return;
      entry.read = true;
      post(userEvent({ ...base, eventType: 'READ', messageId }), entry);
      if (!['replyText', 'tapSuggestion', 'shareLocation'].includes(after)) return;
      later(cfg.typingMs, () => post(userEvent({ ...base, eventType: 'IS_TYPING' }), entry), entry);
      later(Math.max(cfg.replyMs, cfg.typingMs), () => {
        let content;
        if (after === 'tapSuggestion') {
          const tap = firstSuggestionResponse(entry.body);
          content = tap ? { suggestionResponse: tap } : { text: '(no suggestion to tap)' };
        } else {
          content = REPLY[after]();
        }
        post(userMessage({ ...base, content }), entry);
      }, entry);
    }, entry);
  }

  function onRevoke(entry, messageId) {
    for (const t of entry.timers ?? []) { clearTimeout(t); timers.delete(t); }
    entry.timers?.clear();
    log(`${maskPhone(entry.phone)} msg ${shortId(messageId)} revoked before delivery: it will not be delivered`);
  }

  function onAgentEvent(e) {
    keep(events, { ...e, phoneNumber: e.phone, at: new Date().toISOString() });
    if (e.eventType === 'IS_TYPING') log(`agent is typing… (shown to ${maskPhone(e.phone)})`);
    else log(`agent marked user message ${shortId(e.messageId)} as READ for ${maskPhone(e.phone)}`);
  }

  function onCall(c) {
    const status = c.status;
    keep(calls, { name: c.name ?? `${c.method} ${c.path}`, phoneNumber: c.phone, messageId: c.messageId, status, ms: c.ms, at: new Date().toISOString() });
    const who = c.phone ? ` ${maskPhone(c.phone)}` : '';
    let line;
    switch (c.name) {
      case 'createMessage': {
        const entry = server.messages.get(c.messageId);
        const extra = status === 200 && entry?.body ? ` ${describeContent(entry.body)}${entry.body.ttl ? ` ttl ${entry.body.ttl}` : ''}${entry.body.expireTime ? ` expireTime ${entry.body.expireTime}` : ''}` : '';
        line = `agentMessages.create${who} msg ${shortId(c.messageId)} → ${status}${extra}`;
        break;
      }
      case 'revokeMessage': line = `agentMessages.delete${who} msg ${shortId(c.messageId)} → ${status}`; break;
      case 'createEvent': line = `agentEvents.create${who} ${c.eventType ?? ''} → ${status}`; break;
      case 'capabilities': line = `getCapabilities${who} → ${status}`; break;
      case 'batchGet': line = `users.batchGet (${c.count ?? '?'} numbers) → ${status}`; break;
      default: line = `${c.method} ${c.path} → ${status}`;
    }
    log(`${line} (${c.ms} ms)`);
  }

  function onToken(t) {
    if (t.ok) { counts.tokensIssued++; log(`token issued (expires_in ${t.expiresIn})`); } else { counts.tokensRefused++; log(`token REFUSED: ${t.why}`); }
  }

  // ------------------------------------------------------------------ inspection routes
  function view(id, m) {
    const state = m.revoked ? 'revoked' : m.expired ? 'expired' : m.read ? 'read' : m.delivered ? 'delivered' : 'accepted';
    return {
      messageId: id, phoneNumber: m.phone, agentId: m.agentId, state,
      acceptedAt: m.acceptedAt ? new Date(m.acceptedAt).toISOString() : null,
      expiresAt: m.expiresAt ? new Date(m.expiresAt).toISOString() : null,
      message: m.message,
      webhooks: (m.webhooks ?? []).map(whView),
    };
  }
  const whView = (w) => ({ kind: w.kind, phoneNumber: w.phoneNumber, messageId: w.messageId, eventId: w.eventId, attempts: w.attempts, status: w.status, postedAt: w.postedAt, event: w.event });

  function inbound(input) {
    if (!isObj(input) || typeof input.phoneNumber !== 'string' || !E164_RE.test(input.phoneNumber)) throw new Error('phoneNumber must be an E.164 number');
    const base = { agentId: typeof input.agentId === 'string' ? input.agentId : defaultAgent, phone: input.phoneNumber };
    let event;
    if (typeof input.eventType === 'string') {
      if (!['IS_TYPING', 'SUBSCRIBE', 'UNSUBSCRIBE'].includes(input.eventType)) throw new Error('eventType must be IS_TYPING, SUBSCRIBE or UNSUBSCRIBE');
      event = userEvent({ ...base, eventType: input.eventType });
    } else {
      const keys = ['text', 'suggestionResponse', 'location', 'userFile'].filter((k) => input[k] !== undefined);
      if (keys.length !== 1) throw new Error('give exactly one of text, suggestionResponse, location, userFile (or eventType)');
      event = userMessage({ ...base, content: { [keys[0]]: input[keys[0]] } });
    }
    log(`${maskPhone(input.phoneNumber)} sends ${eventKind(event)} (inbound)`);
    return post(event, null);
  }

  async function simRoute(req, res, url, raw) {
    const p = url.pathname;
    if (p !== '/sim' && !p.startsWith('/sim/')) return false;
    const phoneFilter = url.searchParams.get('phoneNumber');
    const byPhone = (x) => !phoneFilter || x.phoneNumber === phoneFilter;
    if (req.method === 'GET' && p === '/sim') {
      sendJson(res, 200, {
        rbmApiBase: sim.url, tokenUri: sim.tokenUri, webhookUrl, clientEmail: server.clientEmail,
        timings: { ...cfg }, counts: { ...counts, messagesKept: server.messages.size },
        numbers: Object.fromEntries(Object.entries(NUMBERS).map(([n, s]) => [n, s.what])),
        otherNumbers: `delivered after ${cfg.deliverMs} ms, read after ${cfg.readMs} ms`,
      });
    } else if (req.method === 'GET' && p === '/sim/messages') {
      sendJson(res, 200, { messages: [...server.messages].map(([id, m]) => view(id, m)).filter(byPhone) });
    } else if (req.method === 'GET' && p.startsWith('/sim/messages/')) {
      const id = decodeURIComponent(p.slice('/sim/messages/'.length));
      const m = server.messages.get(id);
      if (m) sendJson(res, 200, view(id, m)); else sendJson(res, 404, { error: { code: 404, message: 'No such message.', status: 'NOT_FOUND' } });
    } else if (req.method === 'GET' && p === '/sim/events') {
      sendJson(res, 200, { events: events.filter(byPhone) });
    } else if (req.method === 'GET' && p === '/sim/webhooks') {
      sendJson(res, 200, { webhooks: webhooks.filter(byPhone).map(whView) });
    } else if (req.method === 'GET' && p === '/sim/calls') {
      sendJson(res, 200, { calls: calls.filter(byPhone) });
    } else if (req.method === 'POST' && p === '/sim/inbound') {
      let input;
      try { input = JSON.parse(raw); } catch { input = null; }
      try {
        const rec = inbound(input);
        sendJson(res, 202, { posted: whView(rec) });
      } catch (err) {
        sendJson(res, 400, { error: { code: 400, message: err.message, status: 'INVALID_ARGUMENT' } });
      }
    } else {
      sendJson(res, 404, { error: { code: 404, message: 'Routes: GET /sim, /sim/messages[/{id}], /sim/events, /sim/webhooks, /sim/calls; POST /sim/inbound', status: 'NOT_FOUND' } });
    }
    return true;
  }

  const server = await startRbmServer({
    port: opts.port ?? 0,
    host: opts.host ?? '127.0.0.1',
    slowMs: cfg.slowMs,
    projectId: 'rbm-edge-local',
    serviceAccountKey: opts.serviceAccountKey,
    tokenPrefix: 'ya29.local-',
    duplicates: 'conflict',
    recordLimit: cfg.historyLimit,
    hooks: {
      onMessage(entry, id) {
        onMessage(entry, id);
        if (server.messages.size > MAX_MESSAGES) server.messages.delete(server.messages.keys().next().value);
      },
      onRevoke, onAgentEvent, onCall, onToken, extraRoute: simRoute,
    },
  });

  const sim = {
    url: server.url,
    port: server.port,
    tokenUri: server.tokenUri,
    /** The key the token endpoint accepts (JSON text); token_uri is this simulator's when it generated the key. */
    serviceAccountKey: server.serviceAccountKey,
    server,
    get webhookUrl() { return webhookUrl; },
    setWebhook(url) { webhookUrl = url || null; log(`webhook set to ${webhookUrl ?? '(none)'}`); },
    /** The registration handshake RBM does when a webhook is configured: {ok, status}. */
    async verifyWebhook() {
      if (!webhookUrl) return { ok: false, status: null };
      const secret = String(crypto.randomInt(1e9, 1e10 - 1));
      let status = null, ok = false;
      try {
        const res = await fetch(webhookUrl, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ clientToken, secret }), signal: AbortSignal.timeout(cfg.webhookTimeoutMs),
        });
        status = res.status;
        ok = res.status === 200 && (await res.text()) === secret;
      } catch (err) { status = err.cause?.code ?? err.name; }
      log(ok ? `webhook ${webhookUrl} verified (handshake answered with the secret)` : `webhook ${webhookUrl} FAILED the handshake (${status}): check RBM_CLIENT_TOKEN`);
      return { ok, status };
    },
    /** A user-initiated message or event: {phoneNumber, text|location|suggestionResponse|userFile|eventType}. */
    inbound,
    messages: () => [...server.messages].map(([id, m]) => view(id, m)),
    webhooks: () => webhooks.map(whView),
    events: () => [...events],
    calls: () => [...calls],
    counts,
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const c of inflight) c.abort();
      await server.close();
    },
  };
  log(`RBM simulator on ${sim.url} (token endpoint ${sim.tokenUri}); webhooks → ${webhookUrl ?? '(none yet)'}`);
  return sim;
}
