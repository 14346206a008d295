// Fake of Google's OAuth token endpoint + the RBM REST API, for rbm-edge tests.
//
// One HTTP server on 127.0.0.1 (random port) serves both:
//   POST /token                                         service-account JWT-bearer grant
//   POST   /v1/phones/{E164}/agentMessages              phones.agentMessages.create
//   DELETE /v1/phones/{E164}/agentMessages/{messageId}  phones.agentMessages.delete (revoke)
//   POST   /v1/phones/{E164}/agentEvents                phones.agentEvents.create
//   GET    /v1/phones/{E164}/capabilities               phones.getCapabilities
//   POST   /v1/users:batchGet                           users.batchGet
//
// Shapes follow /work/shared/rbm-protocol.md sections 5-7. Node 20 standard library only.

import http from 'node:http';
import crypto from 'node:crypto';

const RBM_SCOPE = 'https://www.googleapis.com/auth/rcsbusinessmessaging';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const MAX_BODY_BYTES = 1024 * 1024; // reading cap; RBM's own AgentMessage limit (250 KB) is checked separately
const AGENT_MESSAGE_MAX_BYTES = 250 * 1024;

// Google's canonical texts for the status codes we emit (google.rpc.Code / AIP-193 style).
const GOOGLE_ERRORS = {
  400: ['INVALID_ARGUMENT', 'Request contains an invalid argument.'],
  401: ['UNAUTHENTICATED', 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.'],
  403: ['PERMISSION_DENIED', 'The caller does not have permission'],
  404: ['NOT_FOUND', 'Requested entity was not found.'],
  429: ['RESOURCE_EXHAUSTED', 'Quota exceeded for quota metric \'Requests\' and limit \'Requests per minute\'.'],
  500: ['INTERNAL', 'Internal error encountered.'],
  503: ['UNAVAILABLE', 'The service is currently unavailable.'],
};

// Scripted phone numbers: the behaviour applies to every /v1/phones/{E164}/... route.
// In users:batchGet these numbers are simply never "reachable".
const SCRIPTED = {
  '+15550000404': { status: 404 },
  '+15550000400': { status: 400 },
  '+15550000403': { status: 403 },
  '+15550000429': { status: 429 },
  '+15550000500': { status: 500 },
  '+15550000503': { status: 503 },
  '+15550000999': { slow: true },  // answers normally, but only after opts.slowMs (default 3000 ms)
  '+15550000666': { reset: true }, // socket destroyed without any answer
};

const FEATURES = [
  'RICHCARD_STANDALONE', 'RICHCARD_CAROUSEL', 'ACTION_CREATE_CALENDAR_EVENT', 'ACTION_DIAL',
  'ACTION_OPEN_URL', 'ACTION_SHARE_LOCATION', 'ACTION_VIEW_LOCATION',
];

const TRAFFIC_TYPES = new Set(['AUTHENTICATION', 'TRANSACTION', 'PROMOTION', 'SERVICEREQUEST', 'ACKNOWLEDGEMENT']);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const E164_RE = /^\+[1-9][0-9]{1,14}$/;
const B64URL_RE = /^[A-Za-z0-9_-]*$/;

function googleError(code, message) {
  const [status, text] = GOOGLE_ERRORS[code] ?? ['UNKNOWN', 'Unknown error.'];
  return { error: { code, message: message ?? text, status } };
}

/** RFC 3339 UTC with nanosecond digits, like Google's sendTime ("2018-12-31T15:01:23.045123456Z"). */
function rfc3339Now() {
  const iso = new Date().toISOString(); // ...T15:01:23.045Z
  const subMs = String(process.hrtime.bigint() % 1000000n).padStart(6, '0');
  return `${iso.slice(0, -1)}${subMs}Z`;
}

function b64urlJson(part) {
  if (!B64URL_RE.test(part)) throw new Error('not base64url');
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

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

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Light validation of an AgentMessage (protocol sheet section 5). Returns an error text or null.
 * Only checks the documented limits; it is not a full schema.
 */
function validateAgentMessage(body, raw) {
  if (!isObj(body)) return 'Invalid JSON payload received.';
  if (Buffer.byteLength(raw) > AGENT_MESSAGE_MAX_BYTES) return 'AgentMessage exceeds 250 KB.';
  const cm = body.contentMessage;
  if (!isObj(cm)) return 'contentMessage is required.';
  const kinds = ['text', 'richCard', 'contentInfo', 'uploadedRbmFile'].filter((k) => cm[k] !== undefined);
  if (kinds.length !== 1) return 'contentMessage must hold exactly one of text, richCard, contentInfo, uploadedRbmFile.';
  if (cm.text !== undefined && (typeof cm.text !== 'string' || cm.text.length > 3072)) return 'contentMessage.text must be a string of at most 3072 characters.';
  if (cm.suggestions !== undefined && (!Array.isArray(cm.suggestions) || cm.suggestions.length > 11)) return 'contentMessage.suggestions: at most 11.';
  if (body.messageTrafficType !== undefined && !TRAFFIC_TYPES.has(body.messageTrafficType)) return `Invalid value at 'agent_message.message_traffic_type': ${JSON.stringify(body.messageTrafficType)}`;
  if (body.ttl !== undefined && body.expireTime !== undefined) return 'At most one of ttl and expireTime may be set.';
  if (body.ttl !== undefined && (typeof body.ttl !== 'string' || !/^\d+(\.\d{1,9})?s$/.test(body.ttl))) return 'ttl must be a duration string like "3600s".';
  return null;
}

/**
 * Start the fake. opts:
 *   slowMs        delay of the scripted slow number +15550000999 (default 3000)
 *   tokenLifetime initial expires_in in seconds (default 3599)
 *   projectId     project id used in the key file (default "rbm-edge-test")
 */
export async function startGoogleFake(opts = {}) {
  const slowMs = opts.slowMs ?? 3000;
  const projectId = opts.projectId ?? 'rbm-edge-test';

  // Throwaway RSA-2048 test key, exported the way Google's key files hold it (PKCS#8 PEM).
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  const privateKeyId = crypto.randomBytes(20).toString('hex');
  const clientEmail = `rbm-edge@${projectId}.iam.gserviceaccount.com`;
  const clientId = String(100000000000000000000n + BigInt(crypto.randomInt(0, 2 ** 47)));

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
  /** messageId -> { phone, agentId, message } for revoke */
  const messages = new Map();
  const sockets = new Set();
  const timers = new Set();
  const waiters = new Set(); // cancel functions of pending waitFor() calls

  const sleep = (ms) => new Promise((resolve) => {
    if (ms <= 0) return resolve();
    const t = setTimeout(() => { timers.delete(t); resolve(); }, ms);
    timers.add(t);
  });

  function send(res, status, obj) {
    if (res.destroyed || res.writableEnded) return;
    const body = JSON.stringify(obj);
    res.writeHead(status, {
      'content-type': 'application/json; charset=UTF-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  // ---------------------------------------------------------------- OAuth token endpoint
  // Mirrors https://oauth2.googleapis.com/token for the service-account JWT-bearer grant.
  async function handleToken(req, res, raw) {
    stats.tokenRequests++;
    const reject = (why) => {
      stats.tokenRejected++;
      send(res, 400, { error: 'invalid_grant', error_description: why });
    };
    if (state.failTokens === 'http500') {
      return send(res, 500, { error: 'internal_failure', error_description: 'Backend Error' });
    }
    if (state.failTokens === 'invalid_grant') {
      // What Google answers when the key was deleted/disabled.
      return reject('Invalid JWT Signature.');
    }
    const ct = String(req.headers['content-type'] ?? '');
    if (!ct.toLowerCase().startsWith('application/x-www-form-urlencoded')) return reject('Content-Type must be application/x-www-form-urlencoded');
    const form = new URLSearchParams(raw);
    if (form.get('grant_type') !== JWT_BEARER) return reject(`Invalid grant_type: ${form.get('grant_type') ?? ''}`);
    const assertion = form.get('assertion');
    if (!assertion) return reject('Missing required parameter: assertion');

    const parts = assertion.split('.');
    if (parts.length !== 3) return reject('Invalid JWT: malformed assertion');
    let header, claims;
    try { header = b64urlJson(parts[0]); claims = b64urlJson(parts[1]); } catch { return reject('Invalid JWT: cannot decode header or claims'); }
    if (!isObj(header) || !isObj(claims)) return reject('Invalid JWT: header and claims must be JSON objects');
    if (header.alg !== 'RS256') return reject(`Invalid JWT: unsupported alg ${JSON.stringify(header.alg)}`);
    if (header.typ !== 'JWT') return reject(`Invalid JWT: typ must be "JWT", got ${JSON.stringify(header.typ)}`);
    if (header.kid !== privateKeyId) return reject('Invalid JWT Signature: unknown kid');
    if (!B64URL_RE.test(parts[2])) return reject('Invalid JWT Signature.');
    const sigOk = crypto.verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), publicKey, Buffer.from(parts[2], 'base64url'));
    if (!sigOk) return reject('Invalid JWT Signature.');

    if (claims.iss !== clientEmail) return reject(`Invalid JWT: iss ${JSON.stringify(claims.iss)} is not the service account email`);
    if (claims.scope !== RBM_SCOPE) return reject(`Invalid JWT: scope must be ${RBM_SCOPE}`);
    if (claims.aud !== tokenUri) return reject(`Invalid JWT: aud must be ${tokenUri}`);
    const now = Math.floor(Date.now() / 1000);
    const { iat, exp } = claims;
    // Google's wording for timing problems.
    const timing = 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.';
    if (!Number.isInteger(iat) || !Number.isInteger(exp)) return reject(timing);
    if (Math.abs(iat - now) > 300) return reject(timing);
    if (!(exp > iat) || exp - iat > 3600) return reject(timing);
    if (exp <= now) return reject(timing);

    const token = `ya29.fake-${crypto.randomBytes(24).toString('base64url')}`;
    tokens.set(token, { expiresAt: Date.now() + state.tokenLifetime * 1000, revoked: false });
    send(res, 200, { access_token: token, expires_in: state.tokenLifetime, token_type: 'Bearer' });
  }

  // ---------------------------------------------------------------- RBM API
  function bearerOk(req) {
    const m = /^Bearer ([^\s]+)$/.exec(String(req.headers.authorization ?? ''));
    if (!m) return false;
    const t = tokens.get(m[1]);
    return !!t && !t.revoked && t.expiresAt > Date.now();
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

  async function handleRbm(req, res, url, raw) {
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

    await sleep(state.delay); // setDelay(): applies to every RBM answer

    let segs;
    try { segs = url.pathname.split('/').filter(Boolean).map(decodeURIComponent); } catch { return send(res, 400, googleError(400)); }
    const r = route(req.method, segs);
    if (!r) return send(res, 404, googleError(404));

    // Authentication comes before anything else, as on Google's front end.
    if (!bearerOk(req)) return send(res, 401, googleError(401));
    if (state.rejectNext > 0) { // token "revoked" server-side although it looks valid
      state.rejectNext--;
      return send(res, 401, googleError(401));
    }

    const q = url.searchParams;
    if (r.phone !== undefined) {
      if (!E164_RE.test(r.phone)) return send(res, 400, googleError(400, `Invalid phone number: ${r.phone}`));
      const script = SCRIPTED[r.phone];
      if (script?.reset) { req.socket.destroy(); return; }
      if (script?.status) return send(res, script.status, googleError(script.status));
      if (script?.slow) await sleep(slowMs);
    }

    const agentId = q.get('agentId');
    switch (r.name) {
      case 'createMessage': {
        const messageId = q.get('messageId');
        if (!messageId || !UUID_RE.test(messageId)) return send(res, 400, googleError(400, 'messageId must be a UUID.'));
        if (!agentId) return send(res, 400, googleError(400, 'agentId is required.'));
        const why = validateAgentMessage(body, raw);
        if (why) return send(res, 400, googleError(400, why));
        // A reused messageId is ignored by RBM (nothing new is sent); we answer with the original.
        const existing = messages.get(messageId);
        if (existing) return send(res, 200, existing.message);
        const message = { ...body, name: `phones/${r.phone}/agentMessages/${messageId}`, sendTime: rfc3339Now() };
        messages.set(messageId, { phone: r.phone, agentId, message });
        return send(res, 200, message);
      }
      case 'revokeMessage': {
        if (!agentId) return send(res, 400, googleError(400, 'agentId is required.'));
        const m = messages.get(r.messageId);
        // 404 = never created (Google also answers 404 when it was already delivered).
        if (!m || m.phone !== r.phone) return send(res, 404, googleError(404));
        return send(res, 200, {});
      }
      case 'createEvent': {
        const eventId = q.get('eventId');
        if (!eventId || !UUID_RE.test(eventId)) return send(res, 400, googleError(400, 'eventId must be a UUID.'));
        if (!agentId) return send(res, 400, googleError(400, 'agentId is required.'));
        if (!isObj(body)) return send(res, 400, googleError(400, 'Invalid JSON payload received.'));
        const out = { name: `phones/${r.phone}/agentEvents/${eventId}`, eventType: body.eventType };
        if (body.eventType === 'READ') {
          if (typeof body.messageId !== 'string' || body.messageId === '') return send(res, 400, googleError(400, 'READ requires messageId.'));
          out.messageId = body.messageId;
        } else if (body.eventType !== 'IS_TYPING') {
          return send(res, 400, googleError(400, `Invalid value at 'agent_event.event_type': ${JSON.stringify(body.eventType)}`));
        }
        return send(res, 200, out);
      }
      case 'capabilities': {
        const requestId = q.get('requestId');
        if (!requestId || !UUID_RE.test(requestId)) return send(res, 400, googleError(400, 'requestId must be a UUID.'));
        if (!agentId) return send(res, 400, googleError(400, 'agentId is required.'));
        return send(res, 200, { features: [...FEATURES] });
      }
      case 'batchGet': {
        if (!isObj(body) || !Array.isArray(body.users) || !body.users.every((u) => typeof u === 'string')) {
          return send(res, 400, googleError(400, 'users must be a list of phone numbers.'));
        }
        if (typeof body.agentId !== 'string' || body.agentId === '') return send(res, 400, googleError(400, 'agentId is required.'));
        return send(res, 200, {
          reachableUsers: body.users.filter((u) => !(u in SCRIPTED)),
          totalRandomSampleUserCount: 0,
          reachableRandomSampleUserCount: 0,
        });
      }
    }
    return send(res, 404, googleError(404));
  }

  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://127.0.0.1');
      const raw = await readBody(req);
      if (url.pathname === '/token') {
        if (req.method !== 'POST') return send(res, 404, googleError(404));
        return await handleToken(req, res, raw);
      }
      return await handleRbm(req, res, url, raw);
    } catch (err) {
      send(res, 500, googleError(500, String(err?.message ?? err)));
    }
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  const tokenUri = `${url}/token`;

  const serviceAccountKey = JSON.stringify({
    type: 'service_account',
    project_id: projectId,
    private_key_id: privateKeyId,
    private_key: privatePem,
    client_email: clientEmail,
    client_id: clientId,
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: tokenUri,
    auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
    client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(clientEmail)}`,
    universe_domain: 'googleapis.com',
  }, null, 2);

  let closed = null;
  return {
    url,
    tokenUri,
    serviceAccountKey,
    clientEmail,
    privateKeyId,
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
      return pollUntil(() => requests.filter(predicate), min, timeoutMs, waiters, 'google fake requests');
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
function pollUntil(collect, min, timeoutMs, waiters, what) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    let timer = null;
    const cancel = () => { clearTimeout(timer); waiters.delete(cancel); reject(new Error(`fake closed while waiting for ${what}`)); };
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
