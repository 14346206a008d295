// The RBM API on one loopback HTTP server: Google's OAuth token endpoint (service-account
// JWT-bearer grant, assertion verified) and the RBM REST calls. The local simulator
// (sim/simulator.mjs) and the test fake (tests/fakes/google.mjs) are both this server with
// different hooks and switches.
//
//   POST   /token                                          service-account JWT-bearer grant
//   POST   /v1/phones/{E164}/agentMessages?messageId=&agentId=   phones.agentMessages.create
//   DELETE /v1/phones/{E164}/agentMessages/{messageId}?agentId=  phones.agentMessages.delete (revoke)
//   POST   /v1/phones/{E164}/agentEvents?eventId=&agentId=       phones.agentEvents.create
//   GET    /v1/phones/{E164}/capabilities?requestId=&agentId=    phones.getCapabilities
//   POST   /v1/users:batchGet                                    users.batchGet
//
// Node 20 standard library only.

import http from 'node:http';
import crypto from 'node:crypto';
import {
  RBM_SCOPE, JWT_BEARER, FEATURES, NUMBERS, UUID_RE, E164_RE, isObj, isReachable,
  googleError, rfc3339, validateAgentMessage, makeServiceAccountKey, assertionError,
} from './rbm.mjs';

const MAX_BODY_BYTES = 1024 * 1024; // reading cap; RBM's own AgentMessage limit (250 KB) is checked separately

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) { reject(new Error('body too large')); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseJson(raw) {
  if (raw === '') return null;
  try { return JSON.parse(raw); } catch { return null; }
}

/** Returns { name, phone?, messageId? } or null when unrouted. */
function route(method, segs) {
  if (segs[0] !== 'v1') return null;
  if (method === 'POST' && segs.length === 2 && segs[1] === 'users:batchGet') return { name: 'batchGet' };
  if (segs[1] !== 'phones' || segs.length < 4) return null;
  const phone = segs[2];
  if (method === 'POST' && segs.length === 4 && segs[3] === 'agentMessages') return { name: 'createMessage', phone };
  if (method === 'DELETE' && segs.length === 5 && segs[3] === 'agentMessages') return { name: 'revokeMessage', phone, messageId: segs[4] };
  if (method === 'POST' && segs.length === 4 && segs[3] === 'agentEvents') return { name: 'createEvent', phone };
  if (method === 'GET' && segs.length === 4 && segs[3] === 'capabilities') return { name: 'capabilities', phone };
  return null;
}

/** JSON answer with Google's content type; no-op when the connection is already gone. */
export function sendJson(res, status, obj) {
  if (res.destroyed || res.writableEnded) return;
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'content-type': 'application/json; charset=UTF-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/**
 * Starts the server. opts:
 *   port, host          where to listen (default 0 = any free port, 127.0.0.1)
 *   slowMs              delay of the scripted slow number +15550000999 (default 3000)
 *   tokenLifetime       expires_in of issued tokens in seconds (default 3599)
 *   projectId           project id of a generated key (default "rbm-edge-test")
 *   serviceAccountKey   the key whose assertions are accepted (JSON string or object); a fresh
 *                       RSA-2048 key with token_uri = {url}/token when absent
 *   tokenPrefix         access token prefix (default "ya29.fake-")
 *   duplicates          a reused messageId: 'original' (answer the first message again) or
 *                       'conflict' (409 ALREADY_EXISTS, ids shared by messages and events of an agent)
 *   recordLimit         how many RBM requests `requests` keeps (default: all)
 *   hooks               { onMessage(entry), onRevoke(entry), onAgentEvent(e), onCall(c), onToken(t),
 *                         extraRoute(req, res, url, raw) -> true when it answered }
 */
export async function startRbmServer(opts = {}) {
  const slowMs = opts.slowMs ?? 3000;
  const projectId = opts.projectId ?? 'rbm-edge-test';
  const tokenPrefix = opts.tokenPrefix ?? 'ya29.fake-';
  const duplicates = opts.duplicates ?? 'original';
  const recordLimit = opts.recordLimit ?? Infinity;
  const hooks = opts.hooks ?? {};

  let sa = typeof opts.serviceAccountKey === 'string' ? JSON.parse(opts.serviceAccountKey) : opts.serviceAccountKey;
  const generated = !sa;
  if (generated) sa = makeServiceAccountKey({ projectId }); // token_uri set once the port is known
  if (!isObj(sa) || typeof sa.private_key !== 'string' || typeof sa.client_email !== 'string' || typeof sa.private_key_id !== 'string') {
    throw new Error('serviceAccountKey needs private_key, private_key_id and client_email');
  }
  const publicKey = crypto.createPublicKey(crypto.createPrivateKey(sa.private_key));

  const state = {
    failTokens: null,         // null | 'http500' | 'invalid_grant'
    tokenLifetime: opts.tokenLifetime ?? 3599,
    rejectNext: 0,
    delay: 0,
  };
  const stats = { tokenRequests: 0, tokenRejected: 0, rbmRequests: 0 };
  const requests = [];
  /** token -> { expiresAt (ms), revoked } */
  const tokens = new Map();
  /** messageId -> { phone, agentId, message, body?, acceptedAt?, delivered?, read?, revoked?, expired? } */
  const messages = new Map();
  /** `${agentId} ${id}` of every message and event id used (duplicates: 'conflict') */
  const usedIds = new Set();
  const sockets = new Set();
  const timers = new Set();
  const waiters = new Set(); // cancel functions of pending waitFor() calls
  let audiences = [];

  const sleep = (ms) => new Promise((resolve) => {
    if (ms <= 0) return resolve();
    const t = setTimeout(() => { timers.delete(t); resolve(); }, ms);
    timers.add(t);
  });

  // ---------------------------------------------------------------- OAuth token endpoint
  // Mirrors https://oauth2.googleapis.com/token for the service-account JWT-bearer grant.
  function handleToken(req, res, raw) {
    stats.tokenRequests++;
    const reject = (why) => {
      stats.tokenRejected++;
      hooks.onToken?.({ ok: false, why });
      sendJson(res, 400, { error: 'invalid_grant', error_description: why });
    };
    if (state.failTokens === 'http500') {
      hooks.onToken?.({ ok: false, why: 'failTokens http500' });
      return sendJson(res, 500, { error: 'internal_failure', error_description: 'Backend Error' });
    }
    if (state.failTokens === 'invalid_grant') return reject('Invalid JWT Signature.'); // a deleted/disabled key
    const ct = String(req.headers['content-type'] ?? '');
    if (!ct.toLowerCase().startsWith('application/x-www-form-urlencoded')) return reject('Content-Type must be application/x-www-form-urlencoded');
    const form = new URLSearchParams(raw);
    if (form.get('grant_type') !== JWT_BEARER) return reject(`Invalid grant_type: ${form.get('grant_type') ?? ''}`);
    const why = assertionError(form.get('assertion'), { publicKey, privateKeyId: sa.private_key_id, clientEmail: sa.client_email, audiences });
    if (why) return reject(why);

    const token = `${tokenPrefix}${crypto.randomBytes(24).toString('base64url')}`;
    tokens.set(token, { expiresAt: Date.now() + state.tokenLifetime * 1000, revoked: false });
    hooks.onToken?.({ ok: true, expiresIn: state.tokenLifetime });
    sendJson(res, 200, { access_token: token, expires_in: state.tokenLifetime, token_type: 'Bearer' });
  }

  // ---------------------------------------------------------------- RBM API
  function bearerOk(req) {
    const m = /^Bearer ([^\s]+)$/.exec(String(req.headers.authorization ?? ''));
    if (!m) return false;
    const t = tokens.get(m[1]);
    return !!t && !t.revoked && t.expiresAt > Date.now();
  }

  /** Answers one RBM call; `call` collects what onCall reports (name, phone, ids, status). */
  async function handleRbm(req, res, url, raw, call) {
    stats.rbmRequests++;
    const body = parseJson(raw);
    requests.push({
      method: req.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: { ...req.headers },
      body,
      raw,
      at: Date.now(),
    });
    if (requests.length > recordLimit) requests.splice(0, requests.length - recordLimit);

    await sleep(state.delay); // setDelay(): applies to every RBM answer

    let segs;
    try { segs = url.pathname.split('/').filter(Boolean).map(decodeURIComponent); } catch { return sendJson(res, 400, googleError(400)); }
    const r = route(req.method, segs);
    if (!r) return sendJson(res, 404, googleError(404));
    Object.assign(call, r);

    // Authentication comes before anything else, as on Google's front end.
    if (!bearerOk(req)) return sendJson(res, 401, googleError(401));
    if (state.rejectNext > 0) { // token "revoked" server-side although it looks valid
      state.rejectNext--;
      return sendJson(res, 401, googleError(401));
    }

    const q = url.searchParams;
    if (r.phone !== undefined) {
      if (!E164_RE.test(r.phone)) return sendJson(res, 400, googleError(400, `Invalid phone number: ${r.phone}`));
      const script = NUMBERS[r.phone];
      if (script?.reset) { call.status = 'reset'; req.socket.destroy(); return; }
      if (script?.answer) return sendJson(res, script.answer, googleError(script.answer));
      if (script?.slow) await sleep(slowMs);
    }

    const agentId = q.get('agentId');
    switch (r.name) {
      case 'createMessage': {
        const messageId = q.get('messageId');
        call.messageId = messageId;
        if (!messageId || !UUID_RE.test(messageId)) return sendJson(res, 400, googleError(400, 'messageId must be a UUID.'));
        if (!agentId) return sendJson(res, 400, googleError(400, 'agentId is required.'));
        const why = validateAgentMessage(body, raw);
        if (why) return sendJson(res, 400, googleError(400, why));
        if (duplicates === 'conflict') {
          if (usedIds.has(`${agentId} ${messageId}`) || messages.has(messageId)) return sendJson(res, 409, googleError(409));
        } else {
          // A reused messageId: nothing new is sent; answer with the original.
          const existing = messages.get(messageId);
          if (existing) return sendJson(res, 200, existing.message);
        }
        usedIds.add(`${agentId} ${messageId}`);
        const message = { ...body, name: `phones/${r.phone}/agentMessages/${messageId}`, sendTime: rfc3339() };
        const entry = { phone: r.phone, agentId, message, body, acceptedAt: Date.now(), delivered: false, read: false, revoked: false, expired: false };
        messages.set(messageId, entry);
        sendJson(res, 200, message);
        hooks.onMessage?.(entry, messageId);
        return;
      }
      case 'revokeMessage': {
        call.messageId = r.messageId;
        if (!agentId) return sendJson(res, 400, googleError(400, 'agentId is required.'));
        const m = messages.get(r.messageId);
        // 404: unknown, already delivered, already revoked or expired.
        if (!m || m.phone !== r.phone || m.delivered || m.revoked || m.expired) return sendJson(res, 404, googleError(404));
        m.revoked = true;
        sendJson(res, 200, {});
        hooks.onRevoke?.(m, r.messageId);
        return;
      }
      case 'createEvent': {
        const eventId = q.get('eventId');
        if (!eventId || !UUID_RE.test(eventId)) return sendJson(res, 400, googleError(400, 'eventId must be a UUID.'));
        if (!agentId) return sendJson(res, 400, googleError(400, 'agentId is required.'));
        if (!isObj(body)) return sendJson(res, 400, googleError(400, 'Invalid JSON payload received.'));
        call.eventType = body.eventType;
        const out = { name: `phones/${r.phone}/agentEvents/${eventId}`, eventType: body.eventType };
        if (body.eventType === 'READ') {
          if (typeof body.messageId !== 'string' || body.messageId === '') return sendJson(res, 400, googleError(400, 'READ requires messageId.'));
          out.messageId = body.messageId;
        } else if (body.eventType !== 'IS_TYPING') {
          return sendJson(res, 400, googleError(400, `Invalid value at 'agent_event.event_type': ${JSON.stringify(body.eventType)}`));
        }
        if (duplicates === 'conflict') {
          if (usedIds.has(`${agentId} ${eventId}`)) return sendJson(res, 409, googleError(409));
          usedIds.add(`${agentId} ${eventId}`);
        }
        sendJson(res, 200, out);
        hooks.onAgentEvent?.({ phone: r.phone, agentId, eventId, eventType: body.eventType, messageId: out.messageId });
        return;
      }
      case 'capabilities': {
        const requestId = q.get('requestId');
        if (!requestId || !UUID_RE.test(requestId)) return sendJson(res, 400, googleError(400, 'requestId must be a UUID.'));
        if (!agentId) return sendJson(res, 400, googleError(400, 'agentId is required.'));
        return sendJson(res, 200, { features: [...FEATURES] });
      }
      case 'batchGet': {
        if (!isObj(body) || !Array.isArray(body.users) || !body.users.every((u) => typeof u === 'string')) {
          return sendJson(res, 400, googleError(400, 'users must be a list of phone numbers.'));
        }
        if (typeof body.agentId !== 'string' || body.agentId === '') return sendJson(res, 400, googleError(400, 'agentId is required.'));
        call.count = body.users.length;
        return sendJson(res, 200, {
          reachableUsers: body.users.filter(isReachable),
          totalRandomSampleUserCount: 0,
          reachableRandomSampleUserCount: 0,
        });
      }
    }
    return sendJson(res, 404, googleError(404));
  }

  const server = http.createServer(async (req, res) => {
    const started = Date.now();
    const call = { method: req.method, name: null, status: null };
    try {
      const url = new URL(req.url, 'http://127.0.0.1');
      const raw = await readBody(req);
      if (url.pathname === '/token') {
        if (req.method !== 'POST') return sendJson(res, 404, googleError(404));
        return handleToken(req, res, raw);
      }
      if (hooks.extraRoute && await hooks.extraRoute(req, res, url, raw)) return;
      call.path = url.pathname;
      await handleRbm(req, res, url, raw, call);
      if (call.status === null) call.status = res.statusCode;
    } catch (err) {
      sendJson(res, 500, googleError(500, String(err?.message ?? err)));
      call.status = 500;
    }
    if (call.path !== undefined) {
      call.ms = Date.now() - started;
      try { hooks.onCall?.(call); } catch { /* logging only */ }
    }
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const url = `http://127.0.0.1:${port}`;
  const tokenUri = `${url}/token`;
  audiences = [tokenUri, `http://localhost:${port}/token`];
  if (generated) sa.token_uri = tokenUri;
  const serviceAccountKey = JSON.stringify(sa, null, 2);

  let closed = null;
  return {
    url,
    port,
    tokenUri,
    serviceAccountKey,
    clientEmail: sa.client_email,
    privateKeyId: sa.private_key_id,
    scope: RBM_SCOPE,
    stats,
    requests,
    tokens,
    messages,
    failTokens(mode) {
      if (mode !== null && mode !== undefined && mode !== 'http500' && mode !== 'invalid_grant') throw new Error(`bad failTokens mode ${mode}`);
      state.failTokens = mode ?? null;
    },
    setTokenLifetime(seconds) { state.tokenLifetime = seconds; },
    rejectNextRbmCalls(n) { state.rejectNext = n; },
    revokeAllTokens() { for (const t of tokens.values()) t.revoked = true; },
    setDelay(ms) { state.delay = ms; },
    /** Poll `requests` until predicate matches at least `min` of them; rejects after timeoutMs. */
    waitFor(predicate, timeoutMs = 5000, min = 1) {
      return pollUntil(() => requests.filter(predicate), min, timeoutMs, waiters, 'RBM requests');
    },
    /**
     * Back to defaults: counters, recorded requests, sent messages and behaviour switches are cleared.
     * Issued tokens stay valid (a worker's cached token keeps working across tests).
     */
    reset() {
      state.failTokens = null;
      state.tokenLifetime = opts.tokenLifetime ?? 3599;
      state.rejectNext = 0;
      state.delay = 0;
      stats.tokenRequests = 0; stats.tokenRejected = 0; stats.rbmRequests = 0;
      requests.length = 0;
      messages.clear();
      usedIds.clear();
    },
    close() {
      if (!closed) {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        for (const cancel of waiters) cancel();
        closed = new Promise((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        server.closeAllConnections?.();
      }
      return closed;
    },
  };
}

/** Bounded polling shared by waitFor(): resolves with the matches, rejects on timeout or close(). */
export function pollUntil(collect, min, timeoutMs, waiters, what) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    let timer = null;
    const cancel = () => { clearTimeout(timer); waiters.delete(cancel); reject(new Error(`closed while waiting for ${what}`)); };
    const done = (fn, v) => { clearTimeout(timer); waiters.delete(cancel); fn(v); };
    waiters.add(cancel);
    const tick = () => {
      let found;
      try { found = collect(); } catch (e) { return done(reject, e); }
      if (found.length >= min) return done(resolve, found);
      if (Date.now() >= deadline) return done(reject, new Error(`timeout after ${timeoutMs} ms waiting for ${what} (have ${found.length}, want ${min})`));
      timer = setTimeout(tick, Math.min(20, Math.max(1, deadline - Date.now())));
    };
    tick();
  });
}
