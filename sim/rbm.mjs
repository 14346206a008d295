// Google's RBM shapes, written once: the OAuth service-account grant, the RBM REST answers and
// errors, and what RBM POSTs to a webhook. Used by the local RBM simulator (sim/simulator.mjs)
// and by the test fake (tests/fakes/google.mjs). Facts: /work/shared/rbm-protocol.md.
// Node 20 standard library only.

import crypto from 'node:crypto';

export const RBM_SCOPE = 'https://www.googleapis.com/auth/rcsbusinessmessaging';
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const AGENT_MESSAGE_MAX_BYTES = 250 * 1024;

// Google's canonical texts for the status codes we emit (google.rpc.Code / AIP-193 style).
export const GOOGLE_ERRORS = {
  400: ['INVALID_ARGUMENT', 'Request contains an invalid argument.'],
  401: ['UNAUTHENTICATED', 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.'],
  403: ['PERMISSION_DENIED', 'The caller does not have permission'],
  404: ['NOT_FOUND', 'Requested entity was not found.'],
  409: ['ALREADY_EXISTS', 'Requested entity already exists'],
  413: ['INVALID_ARGUMENT', 'Request payload size exceeds the limit: 104857600 bytes.'],
  429: ['RESOURCE_EXHAUSTED', 'Quota exceeded for quota metric \'Requests\' and limit \'Requests per minute\'.'],
  500: ['INTERNAL', 'Internal error encountered.'],
  503: ['UNAVAILABLE', 'The service is currently unavailable.'],
};

export const FEATURES = [
  'RICHCARD_STANDALONE', 'RICHCARD_CAROUSEL', 'ACTION_CREATE_CALENDAR_EVENT', 'ACTION_DIAL',
  'ACTION_OPEN_URL', 'ACTION_SHARE_LOCATION', 'ACTION_VIEW_LOCATION',
];

/**
 * Scripted phone numbers. `answer`, `slow` and `reset` change how the RBM API answers every
 * /v1/phones/{E164}/... call (the test fake uses only these); `after` is what the simulated user
 * does once a message was accepted (only the simulator acts on it). Any other valid number is a
 * normal RCS user: DELIVERED after ~1 s, READ after ~3 s.
 */
export const NUMBERS = {
  '+15550000101': { after: 'replyText', what: 'reads, types, then replies with a text' },
  '+15550000102': { after: 'tapSuggestion', what: 'reads, types, then taps the first suggestion (suggestionResponse)' },
  '+15550000103': { after: 'shareLocation', what: 'reads, types, then shares a location' },
  '+15550000104': { after: 'deliverOnly', what: 'delivered, never read' },
  '+15550000100': { after: 'offline', what: 'offline: never delivered; TTL_EXPIRATION_REVOKED when ttl/expireTime passes; revocable' },
  '+15550000105': { after: 'offlineRevokeFails', what: 'offline: never delivered; TTL_EXPIRATION_REVOKE_FAILED when ttl/expireTime passes' },
  '+15550000999': { slow: true, what: 'answers after ~3 s (slowMs), then behaves normally' },
  '+15550000404': { answer: 404, what: '404 NOT_FOUND on every call: not RCS-reachable (SMS fallback cue)' },
  '+15550000400': { answer: 400, what: '400 INVALID_ARGUMENT on every call (device lacks a feature)' },
  '+15550000403': { answer: 403, what: '403 PERMISSION_DENIED on every call (agent not launched for this user)' },
  '+15550000429': { answer: 429, what: '429 RESOURCE_EXHAUSTED on every call (rate limited)' },
  '+15550000500': { answer: 500, what: '500 INTERNAL on every call (failing)' },
  '+15550000503': { answer: 503, what: '503 UNAVAILABLE on every call' },
  '+15550000666': { reset: true, what: 'connection reset without an answer' },
};

/** Numbers RBM would list in users:batchGet (everything that gets a normal answer). */
export const isReachable = (phone) => !(NUMBERS[phone]?.answer || NUMBERS[phone]?.reset);

// ------------------------------------------------------------------ regions, users.batchGet, files

/** RBM's regional hosts: `https://{region}-rcsbusinessmessaging.googleapis.com`. */
export const REGIONS = ['us', 'europe', 'asia'];

/** Calling-code prefixes of Asia Pacific in zone 9 (South and Central Asia). */
const ASIA_IN_ZONE_9 = ['91', '92', '93', '94', '95', '960', '975', '976', '977', '992', '993', '996', '998'];

/**
 * The RBM region of an E.164 number, by country calling code (the Worker uses the same table;
 * Google: Latin America uses North America, Africa uses Europe):
 *   'us'     codes starting 1 (NANP) or 5 (Latin America), and 297 (Aruba)
 *   'asia'   codes starting 6 or 8, and 91-95, 960, 975, 976, 977, 992, 993, 996, 998
 *   'europe' everything else (2x Africa, 3x, 4x, 7, 90, 96x/97x Middle East, 98, 994, 995, ...)
 * null when `e164` is not an E.164 number.
 */
export function regionOf(e164) {
  if (typeof e164 !== 'string' || !E164_RE.test(e164)) return null;
  const d = e164.slice(1);
  if (d.startsWith('297') || d[0] === '1' || d[0] === '5') return 'us';
  if (d[0] === '6' || d[0] === '8') return 'asia';
  if (ASIA_IN_ZONE_9.some((p) => d.startsWith(p))) return 'asia';
  return 'europe';
}

/**
 * users.batchGet reachability of the regional fake (startRbmServer({regions:true})): a number
 * is reachable when its LAST DIGIT IS EVEN and it is not one of the scripted error/reset numbers
 * of NUMBERS (+15550000400/403/404/429/500/503/666). Deterministic, so tests can compute the
 * expected answer. (The single-host fake and the simulator keep `isReachable`: every number
 * but the scripted error ones, so the simulator's friendly numbers stay reachable.)
 */
export const isBatchReachable = (phone) => isReachable(phone) && /[02468]$/.test(phone);

/** The carrier of a reachable +1 number in reachableUsersMap: by its second-to-last digit mod 3. */
export const US_CARRIERS = ['att', 'tmobile', 'verizon'];
export const usCarrierOf = (phone) => US_CARRIERS[Number(phone.at(-2)) % 3];

/**
 * The users.batchGet answer for one request's numbers (Google's BatchGetUsersResponse):
 *   reachableUsers                  the reachable numbers, request order, duplicates once
 *   totalRandomSampleUserCount      0 when fewer than 500 numbers were asked; else the size of a
 *                                   deterministic ~75% "random" sample: the numbers at request
 *                                   index i with i % 4 !== 3 (duplicates counted as asked)
 *   reachableRandomSampleUserCount  how many of that sample are reachable
 *   reachableUsersMap               only when usMap (the us host): carrier id -> {"reachableUsers":[…]}
 *                                   for the reachable numbers starting +1 (Google: US numbers
 *                                   only); carrier ids 'att' | 'tmobile' | 'verizon' by usCarrierOf;
 *                                   present (possibly {}) on every us-host answer
 * reachable: the rule (isBatchReachable on regional fakes, isReachable otherwise).
 */
export function batchGetAnswer(users, { reachable = isBatchReachable, usMap = false } = {}) {
  const reachableUsers = [...new Set(users.filter(reachable))];
  let total = 0;
  let reachableSample = 0;
  if (users.length >= 500) {
    const sample = users.filter((_, i) => i % 4 !== 3);
    total = sample.length;
    reachableSample = sample.filter(reachable).length;
  }
  const out = { reachableUsers, totalRandomSampleUserCount: total, reachableRandomSampleUserCount: reachableSample };
  if (usMap) {
    const map = {};
    for (const u of reachableUsers) {
      if (!u.startsWith('+1')) continue;
      (map[usCarrierOf(u)] ??= { reachableUsers: [] }).reachableUsers.push(u);
    }
    out.reachableUsersMap = map;
  }
  return out;
}

/** Media types RBM accepts for files.create (images, video, audio, PDF). */
export const RBM_MEDIA_TYPES = [
  'image/jpeg', 'image/jpg', 'image/gif', 'image/png',
  'video/h263', 'video/m4v', 'video/mp4', 'video/mpeg', 'video/mpeg4', 'video/webm',
  'audio/aac', 'audio/mp3', 'audio/mpeg', 'audio/mpg', 'audio/mp4', 'audio/mp4-latm', 'audio/3gpp', 'audio/ogg',
  'application/ogg', 'application/pdf',
];
/** Largest media upload RBM takes: 100 MiB. */
export const MAX_UPLOAD_BYTES = 100 * 1024 * 1024;

export const TRAFFIC_TYPES = new Set(['AUTHENTICATION', 'TRANSACTION', 'PROMOTION', 'SERVICEREQUEST', 'ACKNOWLEDGEMENT']);
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const E164_RE = /^\+[1-9][0-9]{1,14}$/;
const B64URL_RE = /^[A-Za-z0-9_-]*$/;

export const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Google's JSON error body. */
export function googleError(code, message) {
  const [status, text] = GOOGLE_ERRORS[code] ?? ['UNKNOWN', 'Unknown error.'];
  return { error: { code, message: message ?? text, status } };
}

/** RFC 3339 UTC with nanosecond digits, like Google's sendTime ("2018-12-31T15:01:23.045123456Z"). */
export function rfc3339(date = new Date()) {
  const iso = date.toISOString(); // ...T15:01:23.045Z
  const subMs = String(process.hrtime.bigint() % 1000000n).padStart(6, '0');
  return `${iso.slice(0, -1)}${subMs}Z`;
}

/** `+12223334444` → `***4444` (the last four digits only), for log lines. */
export function maskPhone(p) {
  const s = String(p ?? '');
  return s.length > 4 ? `***${s.slice(-4)}` : '***';
}

/**
 * Light validation of an AgentMessage (protocol sheet section 5). Returns an error text or null.
 * Only checks the documented limits; it is not a full schema.
 */
export function validateAgentMessage(body, raw) {
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
  if (body.expireTime !== undefined && (typeof body.expireTime !== 'string' || Number.isNaN(Date.parse(body.expireTime)))) return 'expireTime must be an RFC 3339 timestamp.';
  return null;
}

/** When an accepted AgentMessage expires (ms since the epoch), from its ttl or expireTime; null when neither. */
export function expiryOf(body, acceptedAtMs) {
  if (typeof body?.ttl === 'string') {
    const m = /^(\d+(?:\.\d{1,9})?)s$/.exec(body.ttl);
    if (m) return acceptedAtMs + Math.round(Number(m[1]) * 1000);
  }
  if (typeof body?.expireTime === 'string') {
    const t = Date.parse(body.expireTime);
    if (!Number.isNaN(t)) return t;
  }
  return null;
}

/** The first suggestion of an AgentMessage (its own, else the first card's), as a suggestionResponse; null when none. */
export function firstSuggestionResponse(body) {
  const cm = body?.contentMessage ?? {};
  const card = cm.richCard?.standaloneCard?.cardContent ?? cm.richCard?.carouselCard?.cardContents?.[0];
  const s = [...(Array.isArray(cm.suggestions) ? cm.suggestions : []), ...(Array.isArray(card?.suggestions) ? card.suggestions : [])][0];
  if (!isObj(s)) return null;
  if (isObj(s.reply)) return { postbackData: s.reply.postbackData ?? '', text: s.reply.text ?? '', type: 'REPLY' };
  if (isObj(s.action)) return { postbackData: s.action.postbackData ?? '', text: s.action.text ?? '', type: 'ACTION' };
  return null;
}

// ------------------------------------------------------------------ service account + OAuth

/**
 * A service-account JSON key shaped like Google's key files (PKCS#8 PEM private key).
 * privateKey: a KeyObject or PEM (a fresh RSA-2048 key when absent).
 */
export function makeServiceAccountKey({ projectId = 'rbm-edge-local', tokenUri, privateKey, privateKeyId, clientEmail } = {}) {
  const key = privateKey
    ? (typeof privateKey === 'string' ? crypto.createPrivateKey(privateKey) : privateKey)
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const email = clientEmail ?? `rbm-edge@${projectId}.iam.gserviceaccount.com`;
  return {
    type: 'service_account',
    project_id: projectId,
    private_key_id: privateKeyId ?? crypto.randomBytes(20).toString('hex'),
    private_key: key.export({ type: 'pkcs8', format: 'pem' }),
    client_email: email,
    client_id: String(100000000000000000000n + BigInt(crypto.randomInt(0, 2 ** 47))),
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: tokenUri,
    auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
    client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(email)}`,
    universe_domain: 'googleapis.com',
  };
}

function b64urlJson(part) {
  if (!B64URL_RE.test(part)) throw new Error('not base64url');
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

/**
 * Checks a JWT-bearer assertion the way Google's token endpoint does: RS256 signature against
 * the service account's public key, kid, iss, scope, aud, iat/exp. Returns null when it is
 * good, else Google's error_description.
 * expect: { publicKey, privateKeyId, clientEmail, audiences: [token URIs accepted as aud] }
 */
export function assertionError(assertion, { publicKey, privateKeyId, clientEmail, audiences }, nowS = Math.floor(Date.now() / 1000)) {
  if (!assertion) return 'Missing required parameter: assertion';
  const parts = assertion.split('.');
  if (parts.length !== 3) return 'Invalid JWT: malformed assertion';
  let header, claims;
  try { header = b64urlJson(parts[0]); claims = b64urlJson(parts[1]); } catch { return 'Invalid JWT: cannot decode header or claims'; }
  if (!isObj(header) || !isObj(claims)) return 'Invalid JWT: header and claims must be JSON objects';
  if (header.alg !== 'RS256') return `Invalid JWT: unsupported alg ${JSON.stringify(header.alg)}`;
  if (header.typ !== 'JWT') return `Invalid JWT: typ must be "JWT", got ${JSON.stringify(header.typ)}`;
  if (header.kid !== privateKeyId) return 'Invalid JWT Signature: unknown kid';
  if (!B64URL_RE.test(parts[2])) return 'Invalid JWT Signature.';
  const sigOk = crypto.verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), publicKey, Buffer.from(parts[2], 'base64url'));
  if (!sigOk) return 'Invalid JWT Signature.';

  if (claims.iss !== clientEmail) return `Invalid JWT: iss ${JSON.stringify(claims.iss)} is not the service account email`;
  if (claims.scope !== RBM_SCOPE) return `Invalid JWT: scope must be ${RBM_SCOPE}`;
  if (!audiences.includes(claims.aud)) return `Invalid JWT: aud must be ${audiences[0]}`;
  const { iat, exp } = claims;
  // Google's wording for timing problems.
  const timing = 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.';
  if (!Number.isInteger(iat) || !Number.isInteger(exp)) return timing;
  if (Math.abs(iat - nowS) > 300) return timing;
  if (!(exp > iat) || exp - iat > 3600) return timing;
  if (exp <= nowS) return timing;
  return null;
}

// ------------------------------------------------------------------ webhooks (RBM → agent)

/** base64 HMAC-SHA512 keyed by the client token over the (decoded) data bytes: X-Goog-Signature. */
export function signature(dataBytes, clientToken) {
  return crypto.createHmac('sha512', Buffer.from(clientToken, 'utf8')).update(dataBytes).digest('base64');
}

/** The signed Pub/Sub-style envelope RBM POSTs for one event: { body, headers }. */
export function signedEnvelope(event, clientToken, { subscription = 'projects/rbm-local/subscriptions/rbm-agent-webhook' } = {}) {
  const data = Buffer.from(JSON.stringify(event), 'utf8');
  const envelope = {
    message: { data: data.toString('base64'), messageId: String(crypto.randomInt(1e12, 9e12)), publishTime: new Date().toISOString() },
    subscription,
  };
  return {
    body: JSON.stringify(envelope),
    headers: { 'content-type': 'application/json', 'x-goog-signature': signature(data, clientToken) },
  };
}

/** UserEvent: DELIVERED / READ (with the agent message's id), IS_TYPING, SUBSCRIBE, UNSUBSCRIBE. */
export function userEvent({ agentId, phone, eventType, messageId }) {
  const e = { agentId, senderPhoneNumber: phone, eventId: crypto.randomUUID(), sendTime: rfc3339(), eventType };
  if (messageId !== undefined) e.messageId = messageId;
  return e;
}

/** UserMessage: `content` is one of {text}, {suggestionResponse}, {location}, {userFile}. */
export function userMessage({ agentId, phone, content }) {
  return { agentId, senderPhoneNumber: phone, messageId: crypto.randomUUID(), sendTime: rfc3339(), ...content };
}

/** ServerEvent (phoneNumber, not senderPhoneNumber): TTL_EXPIRATION_REVOKED / _REVOKE_FAILED. */
export function serverEvent({ agentId, phone, eventType, messageId }) {
  return { phoneNumber: phone, agentId, messageId, eventId: crypto.randomUUID(), eventType, sendTime: rfc3339() };
}

/** A short name for an event in logs: DELIVERED, text, suggestionResponse, … */
export function eventKind(e) {
  if (e.eventType) return e.eventType;
  for (const k of ['text', 'suggestionResponse', 'location', 'userFile']) if (e[k] !== undefined) return k;
  return 'unknown';
}
