// The RBM API on loopback HTTP servers: Google's OAuth token endpoint (service-account
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
//   POST   /v1/files                                             files.create (metadata URI: fileUrl)
//   POST   /upload/v1/files?uploadType=media&agentId=            files.create (media upload URI: raw bytes)
//
// Hosts. By default one server (the global host, `url`). With opts.regions it also listens on
// three more loopback ports standing for https://{us,europe,asia}-rcsbusinessmessaging.googleapis.com
// (`regionUrls`); all four share one state (tokens, messages, recorded requests, stats), and
// every record says which host it hit (`host`: 'global' | 'us' | 'europe' | 'asia').
//
// users.batchGet (Google's BatchGetUsersResponse; rules in sim/rbm.mjs batchGetAnswer):
//   - regions mode: since May 2026 Google requires the regional host: on the GLOBAL host it
//     answers 400 INVALID_ARGUMENT; on a regional host every number must be of that host's
//     region (regionOf, sim/rbm.mjs), else 400 INVALID_ARGUMENT naming the first one that is not.
//     Reachable = last digit even and not a scripted error/reset number (isBatchReachable).
//     The us host adds reachableUsersMap (carrier id -> {"reachableUsers":[…]}, +1 numbers only).
//   - single-host mode (the simulator): any number on the one host; reachable = every number but
//     the scripted error/reset ones (isReachable); no reachableUsersMap.
//   - both: 400 without agentId, with users not a non-empty list of E.164 strings;
//     totalRandomSampleUserCount 0 under 500 numbers, else ~75% (index % 4 !== 3);
//     429 RESOURCE_EXHAUSTED once batchGetQpm (default 600, Google's quota) calls were answered
//     within the last 60 s (all hosts together); failNextBatchGets(n, code) scripts errors.
//   - every call is kept in `batchGets` (host, count, users, time, in-flight, status, answer or error body).
// files.create (answer: Google's File resource, {"name":"files/<id>"}; every call kept in `files`):
//   - JSON {"fileUrl","thumbnailUrl"?,"contentDescription"?,"agentId"}: fileUrl and agentId
//     required, URLs http(s), unknown fields refused (400 INVALID_ARGUMENT, as Google does);
//   - media upload: Content-Type one of RBM's media types (RBM_MEDIA_TYPES) else 400, agentId
//     and uploadType=media required, non-empty; above 100 MiB (declared Content-Length or bytes
//     received) 413 in Google's error shape. The body is streamed and hashed, never kept.
//
// Node 20 standard library only.

import http from 'node:http';
import crypto from 'node:crypto';
import {
  RBM_SCOPE, JWT_BEARER, FEATURES, NUMBERS, UUID_RE, E164_RE, isObj, isReachable,
  googleError, rfc3339, validateAgentMessage, makeServiceAccountKey, assertionError,
  REGIONS, regionOf, isBatchReachable, batchGetAnswer, RBM_MEDIA_TYPES, MAX_UPLOAD_BYTES,
} from './rbm.mjs';

export { regionOf } from './rbm.mjs';

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

const isHttpUrl = (v) => {
  if (typeof v !== 'string') return false;
  try { const u = new URL(v); return u.protocol === 'https:' || u.protocol === 'http:'; } catch { return false; }
};

/** A File resource name like Google's: files/<random id>. */
const newFileName = () => `files/${crypto.randomBytes(12).toString('hex')}`;

const GOOGLE_CODES = new Set([400, 401, 403, 404, 409, 413, 429, 500, 503]);

/** Returns { name, phone?, messageId? } or null when unrouted. */
function route(method, segs) {
  if (segs[0] !== 'v1') return null;
  if (method === 'POST' && segs.length === 2 && segs[1] === 'users:batchGet') return { name: 'batchGet' };
  if (method === 'POST' && segs.length === 2 && segs[1] === 'files') return { name: 'createFile' };
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
 *   recordLimit         how many RBM requests `requests` keeps (default: all); `batchGets` and
 *                       `files` keep as many
 *   regions             true: also serve the us, europe and asia hosts on their own ports
 *                       (regionUrls), with the regional users.batchGet rules (header comment)
 *   batchGetQpm         users.batchGet calls answered per 60 s before 429 (default 600)
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
    batchGetQpm: opts.batchGetQpm ?? 600,
    failBatchGets: 0,
    failBatchGetCode: 500,
    batchGetsInFlight: 0,
    batchGetsMaxInFlight: 0,
  };
  const regional = !!opts.regions;
  const stats = { tokenRequests: 0, tokenRejected: 0, rbmRequests: 0 };
  const requests = [];
  /** Every users.batchGet call: { host, region, agentId, users, count, unique, at, endAt, inFlight, status, answer (200) | error (else) } */
  const batchGets = [];
  /** Every files.create call (both URIs): { host, source: 'url'|'upload', status, name?, agentId, … } */
  const files = [];
  const keep = (list, rec) => {
    list.push(rec);
    if (list.length > recordLimit) list.splice(0, list.length - recordLimit);
    return rec;
  };
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
  async function handleRbm(req, res, url, raw, call, host) {
    stats.rbmRequests++;
    const body = parseJson(raw);
    keep(requests, {
      method: req.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: { ...req.headers },
      body,
      raw,
      host,
      at: Date.now(),
    });

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
        const entry = { phone: r.phone, agentId, message, body, host, acceptedAt: Date.now(), delivered: false, read: false, revoked: false, expired: false };
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
      case 'batchGet': return batchGet(res, body, call, host);
      case 'createFile': {
        const rec = keep(files, { host, source: 'url', status: null, body, agentId: isObj(body) ? body.agentId : undefined, at: Date.now() });
        const fail = (why) => { rec.status = 400; return sendJson(res, 400, googleError(400, why)); };
        if (!isObj(body)) return fail('Invalid JSON payload received.');
        const unknown = Object.keys(body).filter((k) => !['fileUrl', 'thumbnailUrl', 'contentDescription', 'agentId'].includes(k));
        if (unknown.length) return fail(`Invalid JSON payload received. Unknown name ${JSON.stringify(unknown[0])}: Cannot find field.`);
        if (typeof body.agentId !== 'string' || body.agentId === '') return fail('agentId is required.');
        if (body.fileUrl === undefined) return fail('fileUrl is required (or upload the file to /upload/v1/files).');
        if (!isHttpUrl(body.fileUrl)) return fail(`Invalid fileUrl: ${JSON.stringify(body.fileUrl)}`);
        if (body.thumbnailUrl !== undefined && !isHttpUrl(body.thumbnailUrl)) return fail(`Invalid thumbnailUrl: ${JSON.stringify(body.thumbnailUrl)}`);
        if (body.contentDescription !== undefined && typeof body.contentDescription !== 'string') return fail('contentDescription must be a string.');
        Object.assign(rec, {
          status: 200, name: newFileName(), agentId: body.agentId, fileUrl: body.fileUrl,
          thumbnailUrl: body.thumbnailUrl, contentDescription: body.contentDescription,
        });
        call.fileName = rec.name;
        return sendJson(res, 200, { name: rec.name });
      }
    }
    return sendJson(res, 404, googleError(404));
  }

  // ---------------------------------------------------------------- users.batchGet
  function batchGet(res, body, call, host) {
    const rec = keep(batchGets, {
      host, region: host === 'global' ? null : host, agentId: isObj(body) ? body.agentId : undefined,
      users: isObj(body) && Array.isArray(body.users) ? body.users : [], count: 0, unique: 0,
      at: Date.now(), endAt: null, inFlight: state.batchGetsInFlight, status: null, answer: null, error: null,
    });
    rec.count = rec.users.length;
    rec.unique = new Set(rec.users).size;
    call.count = rec.count;
    const answer = (status, obj) => {
      rec.status = status;
      rec.endAt = Date.now();
      if (status === 200) rec.answer = obj; else rec.error = obj;
      return sendJson(res, status, obj);
    };
    if (regional && host === 'global') {
      return answer(400, googleError(400, 'users.batchGet requires a regional endpoint: us-, europe- or asia-rcsbusinessmessaging.googleapis.com.'));
    }
    if (!isObj(body) || !Array.isArray(body.users) || !body.users.every((u) => typeof u === 'string')) {
      return answer(400, googleError(400, 'users must be a list of phone numbers.'));
    }
    if (typeof body.agentId !== 'string' || body.agentId === '') return answer(400, googleError(400, 'agentId is required.'));
    if (body.users.length === 0) return answer(400, googleError(400, 'users must not be empty.'));
    const bad = body.users.find((u) => !E164_RE.test(u));
    if (bad !== undefined) return answer(400, googleError(400, `Invalid phone number: ${bad}`));
    if (regional) {
      const other = body.users.find((u) => regionOf(u) !== host);
      if (other !== undefined) {
        return answer(400, googleError(400, `Phone number ${other} is not in region ${host}: all numbers of a request must be from the region of its endpoint.`));
      }
    }
    if (state.failBatchGets > 0) {
      state.failBatchGets--;
      return answer(state.failBatchGetCode, googleError(state.failBatchGetCode));
    }
    const now = Date.now();
    const lastMinute = batchGets.filter((b) => b !== rec && b.status === 200 && b.endAt > now - 60_000).length;
    if (lastMinute >= state.batchGetQpm) {
      return answer(429, googleError(429, "Quota exceeded for quota metric 'Batch get users requests' and limit 'Batch get users requests per minute' of service 'rcsbusinessmessaging.googleapis.com'."));
    }
    return answer(200, batchGetAnswer(body.users, {
      reachable: regional ? isBatchReachable : isReachable,
      usMap: regional && host === 'us',
    }));
  }

  // ---------------------------------------------------------------- media upload
  /** POST /upload/v1/files?uploadType=media&agentId=: the body streamed through sha256, never kept. */
  async function handleUpload(req, res, url, call, host) {
    stats.rbmRequests++;
    const q = url.searchParams;
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
    const contentType = req.headers['content-type'] ?? null;
    const reqRec = keep(requests, {
      method: req.method, path: url.pathname, query: Object.fromEntries(q), headers: { ...req.headers },
      body: null, raw: '', host, at: Date.now(), bytes: 0,
    });
    const rec = keep(files, {
      host, source: 'upload', status: null, agentId: q.get('agentId'), query: Object.fromEntries(q),
      contentType, contentLength: declared, chunked: /chunked/i.test(String(req.headers['transfer-encoding'] ?? '')),
      bytes: 0, sha256: null, at: Date.now(), endAt: null,
    });
    call.name = 'uploadFile';
    let answered = false;
    const answer = (status, obj) => {
      if (answered) return;
      answered = true;
      rec.status = status;
      rec.endAt = Date.now();
      if (status !== 200) {
        // What is left of the body is read and dropped (Node does that once the answer ends),
        // for at most 10 s: the connection then closes.
        res.setHeader('connection', 'close');
        const t = setTimeout(() => { timers.delete(t); req.destroy(); }, 10_000);
        timers.add(t);
        req.on('end', () => { clearTimeout(t); timers.delete(t); });
        req.resume();
      }
      sendJson(res, status, obj);
    };
    const reject = (status, why) => answer(status, googleError(status, why));

    if (!bearerOk(req)) return reject(401);
    if (state.rejectNext > 0) { state.rejectNext--; return reject(401); }
    if (q.get('uploadType') !== 'media') return reject(400, `Invalid uploadType: ${JSON.stringify(q.get('uploadType'))}; use uploadType=media.`);
    if (!q.get('agentId')) return reject(400, 'agentId is required.');
    const mime = String(contentType ?? '').split(';')[0].trim().toLowerCase();
    if (!RBM_MEDIA_TYPES.includes(mime)) return reject(400, `Unsupported media type: ${JSON.stringify(contentType)}.`);
    if (declared !== null && declared > MAX_UPLOAD_BYTES) return reject(413);

    const hash = crypto.createHash('sha256');
    const ok = await new Promise((resolve) => {
      req.on('data', (c) => {
        if (answered) return;
        rec.bytes += c.length;
        reqRec.bytes = rec.bytes;
        if (rec.bytes > MAX_UPLOAD_BYTES) { reject(413); resolve(false); return; }
        hash.update(c);
      });
      req.on('end', () => resolve(true));
      req.on('error', () => resolve(false));
      req.on('close', () => resolve(false)); // after 'end' this changes nothing
    });
    if (!ok || answered) { if (!answered) { rec.status = 'aborted'; rec.endAt = Date.now(); } return; }
    rec.sha256 = hash.digest('hex');
    if (rec.bytes === 0) return reject(400, 'The uploaded file is empty.');
    await sleep(state.delay);
    rec.name = newFileName();
    call.fileName = rec.name;
    answer(200, { name: rec.name });
  }

  function handler(host) {
    return async (req, res) => {
      const started = Date.now();
      const call = { method: req.method, name: null, status: null, host };
      try {
        const url = new URL(req.url, 'http://127.0.0.1');
        if (req.method === 'POST' && url.pathname === '/upload/v1/files') {
          call.path = url.pathname;
          await handleUpload(req, res, url, call, host);
        } else {
          const isBatch = req.method === 'POST' && url.pathname === '/v1/users:batchGet';
          const raw = await readBody(req);
          if (url.pathname === '/token') {
            if (req.method !== 'POST') return sendJson(res, 404, googleError(404));
            return handleToken(req, res, raw);
          }
          if (hooks.extraRoute && await hooks.extraRoute(req, res, url, raw)) return;
          call.path = url.pathname;
          if (isBatch) {
            state.batchGetsInFlight++;
            state.batchGetsMaxInFlight = Math.max(state.batchGetsMaxInFlight, state.batchGetsInFlight);
          }
          try {
            await handleRbm(req, res, url, raw, call, host);
          } finally {
            if (isBatch) state.batchGetsInFlight--;
          }
        }
        if (call.status === null) call.status = res.statusCode;
      } catch (err) {
        sendJson(res, 500, googleError(500, String(err?.message ?? err)));
        call.status = 500;
      }
      if (call.path !== undefined) {
        call.ms = Date.now() - started;
        try { hooks.onCall?.(call); } catch { /* logging only */ }
      }
    };
  }

  async function listen(host, port) {
    const srv = http.createServer(handler(host));
    srv.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
    await new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, opts.host ?? '127.0.0.1', resolve);
    });
    servers.push(srv);
    return `http://127.0.0.1:${srv.address().port}`;
  }

  const servers = [];
  const url = await listen('global', opts.port ?? 0);
  const port = Number(new URL(url).port);
  const regionUrls = {};
  try {
    if (regional) for (const r of REGIONS) regionUrls[r] = await listen(r, 0);
  } catch (err) {
    for (const srv of servers) srv.close();
    throw err;
  }
  const tokenUri = `${url}/token`;
  audiences = [tokenUri, `http://localhost:${port}/token`];
  if (generated) sa.token_uri = tokenUri;
  const serviceAccountKey = JSON.stringify(sa, null, 2);

  let closed = null;
  return {
    url,
    port,
    /** Only with opts.regions: { us, europe, asia } base URLs of the regional hosts. */
    regionUrls: regional ? { ...regionUrls } : undefined,
    /** Base URL per host name: { global, us?, europe?, asia? }. */
    hosts: { global: url, ...regionUrls },
    tokenUri,
    serviceAccountKey,
    clientEmail: sa.client_email,
    privateKeyId: sa.private_key_id,
    scope: RBM_SCOPE,
    stats,
    requests,
    batchGets,
    files,
    /** The most users.batchGet calls that were in progress at once (all hosts), since start or reset(). */
    get maxBatchGetsInFlight() { return state.batchGetsMaxInFlight; },
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
    /** The next n users.batchGet calls that pass validation answer `code` in Google's error shape. */
    failNextBatchGets(n, code = 500) {
      if (!GOOGLE_CODES.has(code)) throw new Error(`failNextBatchGets: no Google error for ${code}`);
      state.failBatchGets = n; state.failBatchGetCode = code;
    },
    /** users.batchGet calls answered per 60 s before 429 RESOURCE_EXHAUSTED. */
    setBatchGetQpm(n) { state.batchGetQpm = n; },
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
      state.batchGetQpm = opts.batchGetQpm ?? 600;
      state.failBatchGets = 0; state.failBatchGetCode = 500;
      stats.tokenRequests = 0; stats.tokenRejected = 0; stats.rbmRequests = 0;
      state.batchGetsMaxInFlight = 0;
      requests.length = 0;
      batchGets.length = 0;
      files.length = 0;
      messages.clear();
      usedIds.clear();
    },
    close() {
      if (!closed) {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        for (const cancel of waiters) cancel();
        closed = Promise.all(servers.map((srv) => new Promise((resolve) => srv.close(() => resolve())))).then(() => {});
        for (const s of sockets) s.destroy();
        for (const srv of servers) srv.closeAllConnections?.();
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
