// Browser-safe scoped tokens (issue 7) against the built Worker in workerd (wrangler dev --local)
// and the loopback RBM fake (tests/fakes/google.mjs).
// Contract: `issues show 7`, README "Calling from a web page" (token format + worked example).
//
//   POST /v1/tokens                         API key only -> {"token","expiresAt","scopes","phoneNumbers","maxSends"}
//   POST /v1/messages, DELETE /v1/messages/{id}          scope messages:send
//   GET  /v1/messages/{id}                               scope messages:read
//   POST /v1/phones/{p}/events                           scope events:send
//   GET  /v1/phones/{p}/capabilities                     scope capabilities:read
//   /v1/tokens, /v1/dead-letters                         API key only
//
// Workers started here (all stopped in after()):
//   main    TOKEN_SIGNING_KEY (random, 48 chars), ALLOWED_ORIGINS, and the Rate Limiting binding
//           SEND_RATE_LIMITER (simple = 5 per 60 s). Miniflare (wrangler 4.86 local) simulates the
//           binding in memory with fixed 60 s windows aligned to the Unix epoch.
//   noKey   the same without TOKEN_SIGNING_KEY and without the rate limiter.
//
// Client IPs: the Worker limits token sends per token AND per CF-Connecting-IP. On Cloudflare the
// edge sets that header; wrangler's local mode passes a client-supplied one through (checked in a
// scratch run), so every token call here carries its own documentation-range address (RFC 5737,
// a header value only: no traffic goes anywhere but loopback) to stand for a distinct visitor.
// Otherwise every token send of this file would share one 5-per-minute IP bucket.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

import { startWorker, REPO } from '../support/worker.mjs';
import { inlineConfig, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs, assertNoSecrets } from '../support/assert.mjs';
import { startGoogleFake } from '../fakes/google.mjs';
import * as rbm from '../support/rbm.mjs';

const { request, PHONE, AGENT_ID } = rbm;
const [KEY_ONE, KEY_TWO] = API_KEYS;
const API_AUTH = { authorization: `Bearer ${KEY_ONE}` };
const ORIGIN = 'https://app.example.com';
const OTHER_PHONE = '+14155550199';
const RATE_LIMIT = 5;
const RATE_TOML = `[[ratelimits]]\nname = "SEND_RATE_LIMITER"\nnamespace_id = "1001"\nsimple = { limit = ${RATE_LIMIT}, period = 60 }`;
/** 48 characters of base64url: safe in .dev.vars, ≥ the Worker's 32-byte minimum. */
const SIGNING_KEY = crypto.randomBytes(36).toString('base64url');
const OTHER_KEY = crypto.randomBytes(36).toString('base64url');

let fake;
const workers = {};
/** Every token string this file has held (minted by the Worker or by the test), for the log checks. */
const tokensSeen = new Set();
/** Tokens deliberately put into a URL: wrangler's own access log prints the URL, so these are
 * checked only against the Worker's output (not the [wrangler:info] request lines). */
const tokensInUrls = new Set();

// ------------------------------------------------------------------------------- helpers

const nowS = () => Math.floor(Date.now() / 1000);
const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x), 'utf8').toString('base64url');
const hmac = (key, input) => crypto.createHmac('sha256', Buffer.from(key, 'utf8')).update(input).digest('base64url');
const HEADER = { alg: 'HS256', typ: 'JWT' };

/** A compact HS256 JWT over exactly these header/claims (objects are JSON.stringify'd in their own key order). */
function jwt(claims, { key = SIGNING_KEY, header = HEADER } = {}) {
  const input = `${b64u(header)}.${b64u(claims)}`;
  const token = `${input}.${hmac(key, input)}`;
  tokensSeen.add(token);
  return token;
}

/** Claims valid now: iat now, exp now + 900, a fresh jti. */
function claimsNow(over = {}) {
  const iat = nowS();
  return { iat, exp: iat + 900, jti: `t_${crypto.randomBytes(8).toString('hex')}`, aud: 'rbm-edge', scope: 'messages:send', ...over };
}

function decodeJwt(token) {
  const [h, p, s] = token.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), claims: JSON.parse(Buffer.from(p, 'base64url')), raw: { h, p, s } };
}

let ipCounter = 0;
/** A distinct client address per call site (see the header comment): 198.51.100.x, 203.0.113.x. */
function freshIp() {
  const n = ipCounter++;
  return n < 250 ? `198.51.100.${n + 1}` : `203.0.113.${(n - 250) % 250 + 1}`;
}

/** One request; a non-string body is JSON-encoded. Never returns the signing key in an answer. */
async function call(w, method, p, { body, headers = API_AUTH } = {}) {
  const h = { ...headers };
  let b = body;
  if (b !== undefined && typeof b !== 'string') b = JSON.stringify(b);
  if (b !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
  const res = await request(w.url, p, { method, body: b, headers: h });
  assert.ok(!res.text.includes(SIGNING_KEY), `${method} ${p}: the answer contains TOKEN_SIGNING_KEY`);
  assertNoSecrets(res.text, `${method} ${p}`);
  return res;
}

/** The headers a page on ORIGIN sends with a token (one visitor = one client IP). */
const browser = (token, ip = freshIp()) => ({ authorization: `Bearer ${token}`, origin: ORIGIN, 'cf-connecting-ip': ip });

/** POST /v1/tokens with the API key; asserts 200 and remembers the token. */
async function mint(req, w = workers.main) {
  const res = await call(w, 'POST', '/v1/tokens', { body: req });
  assert.equal(res.status, 200, `mint ${JSON.stringify(req)}: ${res.status} ${res.text}`);
  tokensSeen.add(res.json.token);
  return res;
}
const mintToken = async (req) => (await mint(req)).json.token;

const textMessage = (phoneNumber = PHONE, over = {}) => ({ phoneNumber, contentMessage: { text: 'Hi from the page' }, ...over });
const sendWith = (headers, msg = textMessage(), w = workers.main) => call(w, 'POST', '/v1/messages', { body: msg, headers });
const createRequests = () => fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/agentMessages'));

/** 403 FORBIDDEN whose message contains every string of `names`. */
function assertForbidden(res, names, what) {
  assertError(res, 403, 'FORBIDDEN', what);
  for (const n of names) {
    assert.ok(res.json.error.message.includes(n), `${what}: the 403 message must name ${JSON.stringify(n)}, got ${JSON.stringify(res.json.error.message)}`);
  }
}

/** 401 UNAUTHORIZED, nothing relayed to RBM. */
function assert401(res, what) {
  assertError(res, 401, 'UNAUTHORIZED', what);
}

/** Wait (≤ 16 s) so the next few seconds fall inside one fixed 60 s rate-limit window. */
async function insideOneWindow(needMs = 15_000) {
  const into = Date.now() % 60_000;
  if (into + needMs > 60_000) await new Promise((r) => setTimeout(r, 60_000 - into + 250));
}

/** A message sent with the API key (for status/revoke tests); returns its id. */
async function sendWithApiKey(phoneNumber) {
  const id = crypto.randomUUID();
  const res = await sendWith(API_AUTH, textMessage(phoneNumber, { messageId: id }));
  assert.equal(res.status, 200, `API-key send to ${phoneNumber}: ${res.text}`);
  return id;
}

function workerConfig({ withKey = true, rateLimiter = true } = {}) {
  const base = inlineConfig();
  return {
    kv: true,
    secrets: {
      ...base.secrets,
      RBM_SERVICE_ACCOUNT_KEY: fake.serviceAccountKey,
      ...(withKey ? { TOKEN_SIGNING_KEY: SIGNING_KEY } : {}),
    },
    vars: { ...base.vars, RBM_API_BASE: fake.url, RBM_AGENT_ID: AGENT_ID, PROCESSING: 'inline', ALLOWED_ORIGINS: ORIGIN },
    extraToml: rateLimiter ? RATE_TOML : '',
  };
}

before(async () => {
  fake = await startGoogleFake();
  workers.main = await startWorker({ ...workerConfig(), name: 'rbm-edge-tokens-test' });
  workers.noKey = await startWorker({ ...workerConfig({ withKey: false, rateLimiter: false }), name: 'rbm-edge-tokens-nokey' });
});

after(async () => {
  for (const w of Object.values(workers)) await w?.stop();
  await fake?.close();
});

beforeEach(() => fake?.reset());

// ------------------------------------------------------------------------------- tests

describe('scoped tokens', () => {
  describe('POST /v1/tokens (mint)', () => {
    test('API key -> 200 {token, expiresAt ≈ now + ttlSeconds, scopes, phoneNumbers, maxSends}; the token is the documented HS256 JWT', async () => {
      const req = { scopes: ['messages:send', 'messages:read'], phoneNumbers: [PHONE], ttlSeconds: 600, maxSends: 7 };
      const t0 = Date.now();
      const res = await mint(req);
      const t1 = Date.now();
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/i);
      assert.deepEqual(Object.keys(res.json).sort(), ['agentId', 'expiresAt', 'maxSends', 'phoneNumbers', 'scopes', 'token'], res.text);
      assert.deepEqual(res.json.scopes, req.scopes);
      assert.deepEqual(res.json.phoneNumbers, [PHONE]);
      assert.equal(res.json.maxSends, 7);
      assert.match(res.json.expiresAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/, 'expiresAt is RFC 3339 UTC');
      const exp = Date.parse(res.json.expiresAt);
      assert.ok(exp >= Math.floor(t0 / 1000) * 1000 + 600_000 - 2000 && exp <= t1 + 600_000 + 2000,
        `expiresAt ${res.json.expiresAt} ≈ now + 600 s (${new Date(t0 + 600_000).toISOString()})`);

      const { header, claims, raw } = decodeJwt(res.json.token);
      assert.deepEqual(header, { alg: 'HS256', typ: 'JWT' });
      assert.equal(raw.s, hmac(SIGNING_KEY, `${raw.h}.${raw.p}`), 'HMAC-SHA256 over "header.payload" with TOKEN_SIGNING_KEY');
      assert.equal(claims.exp - claims.iat, 600, JSON.stringify(claims));
      assert.equal(claims.exp * 1000, exp, 'exp = expiresAt');
      assert.equal(claims.scope, 'messages:send messages:read');
      assert.deepEqual(claims.phone_numbers, [PHONE]);
      assert.equal(claims.max_sends, 7);
      assert.match(claims.jti, /^[A-Za-z0-9_-]{1,64}$/);
      // Two mints are two tokens (fresh jti).
      const again = await mint(req);
      assert.notEqual(decodeJwt(again.json.token).claims.jti, claims.jti);
      assert.equal(fake.requests.length, 0, 'minting never calls Google');
    });

    test('defaults: no ttlSeconds -> 900 s; absent phoneNumbers / maxSends -> null; the README\'s curl -d (form content-type) works', async () => {
      const res = await call(workers.main, 'POST', '/v1/tokens', {
        body: JSON.stringify({ scopes: ['capabilities:read'] }),
        headers: { ...API_AUTH, 'content-type': 'application/x-www-form-urlencoded' },
      });
      assert.equal(res.status, 200, res.text);
      tokensSeen.add(res.json.token);
      assert.equal(res.json.phoneNumbers, null);
      assert.equal(res.json.maxSends, null);
      const { claims } = decodeJwt(res.json.token);
      assert.equal(claims.exp - claims.iat, 900);
      assert.equal(claims.phone_numbers, undefined);
      assert.equal(claims.max_sends, undefined);
      const msLeft = Date.parse(res.json.expiresAt) - Date.now();
      assert.ok(msLeft > 895_000 && msLeft <= 901_000, `expiresAt ${res.json.expiresAt} ≈ now + 900 s`);
    });

    test('invalid bodies -> 400 VALIDATION_FAILED whose message starts with the field', async () => {
      const cases = [
        [{ scopes: ['admin'] }, 'scopes[0]'],
        [{ scopes: ['messages:send', 'messages:*'] }, 'scopes[1]'],
        [{ scopes: [] }, 'scopes'],
        [{ scopes: ['messages:send'], ttlSeconds: 3601 }, 'ttlSeconds'],
        [{ scopes: ['messages:send'], ttlSeconds: 0 }, 'ttlSeconds'],
        [{ scopes: ['messages:send'], phoneNumbers: ['555-0123'] }, 'phoneNumbers[0]'],
        [{ scopes: ['messages:send'], phoneNumbers: [PHONE, '14155550123'] }, 'phoneNumbers[1]'],
        [{ scopes: ['messages:send'], phoneNumbers: [] }, 'phoneNumbers'],
      ];
      for (const [body, field] of cases) {
        const res = await call(workers.main, 'POST', '/v1/tokens', { body });
        const what = `mint ${JSON.stringify(body)}`;
        assertError(res, 400, 'VALIDATION_FAILED', what);
        assert.ok(res.json.error.message.startsWith(`${field}: `), `${what}: message must start with "${field}: ", got ${JSON.stringify(res.json.error.message)}`);
        assert.equal(res.json.token, undefined);
      }
      // No JSON path for these, but the message still names the problem.
      for (const [body, name] of [[{ phoneNumbers: [PHONE] }, 'scopes'], [{ scopes: ['messages:send'], typo: 1 }, 'typo']]) {
        const res = await call(workers.main, 'POST', '/v1/tokens', { body });
        assertError(res, 400, 'VALIDATION_FAILED', JSON.stringify(body));
        assert.ok(res.json.error.message.includes(name), `${JSON.stringify(body)}: message names ${name}: ${res.json.error.message}`);
      }
      for (const body of ['not json', '[]', '']) {
        const res = await call(workers.main, 'POST', '/v1/tokens', { body });
        assertError(res, 400, undefined, `mint body ${JSON.stringify(body)}`);
      }
    });

    test('a field of the wrong JSON type or range -> 400 VALIDATION_FAILED whose message names the field', async () => {
      // serde's own errors ("invalid type: string \"10\", expected u32 at line 1 column 43") name
      // no field; the contract asks for the field, like the checks above do.
      const cases = [
        [{ scopes: ['messages:send'], maxSends: -1 }, 'maxSends'],
        [{ scopes: ['messages:send'], maxSends: 2.5 }, 'maxSends'],
        [{ scopes: ['messages:send'], maxSends: '10' }, 'maxSends'],
        [{ scopes: ['messages:send'], maxSends: 4294967296 }, 'maxSends'],
        [{ scopes: ['messages:send'], ttlSeconds: '900' }, 'ttlSeconds'],
        [{ scopes: 'messages:send' }, 'scopes'],
        [{ scopes: ['messages:send'], phoneNumbers: PHONE }, 'phoneNumbers'],
      ];
      const wrong = [];
      for (const [body, field] of cases) {
        const res = await call(workers.main, 'POST', '/v1/tokens', { body });
        const what = `mint ${JSON.stringify(body)}`;
        assertError(res, 400, 'VALIDATION_FAILED', what);
        if (!res.json.error.message.includes(field)) wrong.push(`${what} -> ${JSON.stringify(res.json.error.message)}`);
      }
      assert.deepEqual(wrong, [], `these 400 messages do not name the field:\n${wrong.join('\n')}`);
    });

    test('a token instead of an API key -> 403 FORBIDDEN on /v1/tokens and /v1/dead-letters', async () => {
      const all = await mintToken({ scopes: ['messages:send', 'messages:read', 'events:send', 'capabilities:read'] });
      const cases = [
        ['POST', '/v1/tokens', { scopes: ['messages:send'] }],
        ['GET', '/v1/dead-letters'],
        ['DELETE', `/v1/dead-letters/${crypto.randomUUID()}`],
        ['POST', `/v1/dead-letters/${crypto.randomUUID()}/replay`],
      ];
      for (const [method, p, body] of cases) {
        const res = await call(workers.main, method, p, { body, headers: browser(all) });
        assertError(res, 403, 'FORBIDDEN', `${method} ${p} with a token`);
        assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN, `${method} ${p}: CORS on the 403`);
      }
    });

    test('without auth, or with a wrong key -> 401', async () => {
      const body = { scopes: ['messages:send'] };
      for (const headers of [{}, { authorization: 'Bearer key-three' }, { authorization: `Basic ${KEY_ONE}` }, { authorization: 'Bearer' }]) {
        assert401(await call(workers.main, 'POST', '/v1/tokens', { body, headers }), `mint with ${JSON.stringify(headers)}`);
      }
    });

    test('Worker without TOKEN_SIGNING_KEY: mint -> 500 CONFIG_MISSING naming it; API keys still work; tokens -> 401', async () => {
      const w = workers.noKey;
      const res = await call(w, 'POST', '/v1/tokens', { body: { scopes: ['messages:send'] } });
      assertError(res, 500, 'CONFIG_MISSING', 'mint without TOKEN_SIGNING_KEY');
      assert.ok(res.json.error.message.includes('TOKEN_SIGNING_KEY'), res.json.error.message);
      const ok = await sendWith(API_AUTH, textMessage(), w);
      assert.equal(ok.status, 200, `API-key send on the keyless Worker: ${ok.text}`);
      // A well-formed token (signed with our key, which this Worker does not have) is refused.
      const before = createRequests().length;
      assert401(await sendWith(browser(jwt(claimsNow())), textMessage(), w), 'token on a Worker without TOKEN_SIGNING_KEY');
      assert.equal(createRequests().length, before, 'nothing relayed');
    });
  });

  describe('browser-style calls with a token from https://app.example.com', () => {
    const list = (v) => (v ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);

    test('CORS preflight for POST /v1/messages (authorization, content-type) -> 204 with allow-origin', async () => {
      const res = await call(workers.main, 'OPTIONS', '/v1/messages', {
        headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
      });
      assert.equal(res.status, 204, `${res.status} ${res.text}`);
      assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
      assert.ok(list(res.headers.get('access-control-allow-methods')).includes('post'), res.headers.get('access-control-allow-methods'));
      const hdrs = list(res.headers.get('access-control-allow-headers'));
      for (const h of ['authorization', 'content-type']) assert.ok(hdrs.includes(h), `allow-headers: ${hdrs}`);
      assert.ok(list(res.headers.get('vary')).includes('origin'));
      const other = await call(workers.main, 'OPTIONS', '/v1/messages', {
        headers: { origin: 'https://evil.example.net', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
      });
      assert.equal(other.headers.get('access-control-allow-origin'), null, 'other origins get no CORS headers');
    });

    test('send within scope and number -> RBM\'s 200; the fake got the message; CORS headers on the answer', async () => {
      const token = await mintToken({ scopes: ['messages:send'], phoneNumbers: [PHONE] });
      const id = crypto.randomUUID();
      const res = await sendWith(browser(token), textMessage(PHONE, { messageId: id }));
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.status, 'SENT', res.text);
      assert.equal(res.json.messageId, id);
      assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
      const recs = createRequests();
      assert.equal(recs.length, 1, 'one agentMessages.create');
      assert.equal(recs[0].path, '/v1/phones/%2B12223334444/agentMessages');
      assert.equal(recs[0].query.messageId, id);
      assert.deepEqual(recs[0].body, { contentMessage: { text: 'Hi from the page' } });
      assert.ok(!JSON.stringify(recs[0].headers).includes(token), 'the browser token is not forwarded to Google');
      assert.ok(fake.messages.has(id));
    });

    test('send to another number -> 403 FORBIDDEN naming the number; nothing relayed; CORS on the 403', async () => {
      const token = await mintToken({ scopes: ['messages:send'], phoneNumbers: [PHONE] });
      const res = await sendWith(browser(token), textMessage(OTHER_PHONE));
      assertForbidden(res, [OTHER_PHONE], 'send to another number');
      assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
      assert.equal(fake.requests.length, 0, 'nothing reached Google');
    });

    test('status read with messages:read -> 200 for its own message', async () => {
      const token = await mintToken({ scopes: ['messages:send', 'messages:read'], phoneNumbers: [PHONE] });
      const id = crypto.randomUUID();
      const sent = await sendWith(browser(token), textMessage(PHONE, { messageId: id }));
      assert.equal(sent.status, 200, sent.text);
      const res = await call(workers.main, 'GET', `/v1/messages/${id}`, { headers: browser(token) });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.messageId, id);
      assert.equal(res.json.phoneNumber, PHONE);
      assert.equal(res.json.status, 'SENT');
      assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
    });

    test('status read of a message to another number (sent with the API key) by a number-limited token -> 403; by an any-number token -> 200', async () => {
      const id = await sendWithApiKey(OTHER_PHONE);
      const limited = await mintToken({ scopes: ['messages:read'], phoneNumbers: [PHONE] });
      const res = await call(workers.main, 'GET', `/v1/messages/${id}`, { headers: browser(limited) });
      assertForbidden(res, [OTHER_PHONE], 'status of another number\'s message');
      assert.equal(res.json.events, undefined, 'no status view leaks in the 403');
      const any = await mintToken({ scopes: ['messages:read'] });
      const ok = await call(workers.main, 'GET', `/v1/messages/${id}`, { headers: browser(any) });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.phoneNumber, OTHER_PHONE);
    });

    test('status read without messages:read -> 403 naming messages:read', async () => {
      const id = await sendWithApiKey(PHONE);
      const token = await mintToken({ scopes: ['messages:send'], phoneNumbers: [PHONE] });
      assertForbidden(await call(workers.main, 'GET', `/v1/messages/${id}`, { headers: browser(token) }), ['messages:read'], 'status without messages:read');
    });

    test('scope missing: a capabilities:read-only token trying to send -> 403 naming messages:send; nothing relayed', async () => {
      const token = await mintToken({ scopes: ['capabilities:read'], phoneNumbers: [PHONE] });
      const res = await sendWith(browser(token), textMessage(PHONE));
      assertForbidden(res, ['messages:send'], 'send without messages:send');
      assert.equal(fake.requests.length, 0);
    });

    test('a token may not reuse a messageId recorded for another number -> 403 without naming it; nothing relayed, budget untouched', async () => {
      const otherId = await sendWithApiKey(OTHER_PHONE);
      const sender = await mintToken({ scopes: ['messages:send', 'messages:read'], phoneNumbers: [PHONE], maxSends: 1 });
      const before = createRequests().length;
      const res = await sendWith(browser(sender), textMessage(PHONE, { messageId: otherId }));
      assertForbidden(res, ['another phone number'], 'reused messageId of another number');
      assert.ok(!res.text.includes(OTHER_PHONE), `the 403 must not reveal the other number: ${res.text}`);
      assert.equal(createRequests().length, before, 'nothing relayed');
      const view = await call(workers.main, 'GET', `/v1/messages/${otherId}`);
      assert.equal(view.json.phoneNumber, OTHER_PHONE, 'the other message keeps its number');
      // The refused send did not use the token's only send.
      const own = await sendWith(browser(sender), textMessage(PHONE));
      assert.equal(own.status, 200, own.text);
    });

    test('revoke (DELETE) needs messages:send and the number: own message -> 200; read-only token -> 403; other number -> 403', async () => {
      const sender = await mintToken({ scopes: ['messages:send'], phoneNumbers: [PHONE] });
      const id = crypto.randomUUID();
      assert.equal((await sendWith(browser(sender), textMessage(PHONE, { messageId: id }))).status, 200);
      const reader = await mintToken({ scopes: ['messages:read'], phoneNumbers: [PHONE] });
      assertForbidden(await call(workers.main, 'DELETE', `/v1/messages/${id}`, { headers: browser(reader) }), ['messages:send'], 'revoke without messages:send');
      const ok = await call(workers.main, 'DELETE', `/v1/messages/${id}`, { headers: browser(sender) });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.status, 'REVOKE_REQUESTED', ok.text);
      const otherId = await sendWithApiKey(OTHER_PHONE);
      const before = fake.requests.length;
      const theirs = await call(workers.main, 'DELETE', `/v1/messages/${otherId}`, { headers: browser(sender) });
      assertForbidden(theirs, ['another phone number'], 'revoke another number\'s message');
      assert.ok(!theirs.text.includes(OTHER_PHONE), `the 403 must not reveal the message's number: ${theirs.text}`);
      assertForbidden(await call(workers.main, 'DELETE', `/v1/messages/${otherId}?phoneNumber=${encodeURIComponent(OTHER_PHONE)}`, { headers: browser(sender) }), [OTHER_PHONE], 'revoke naming the other number');
      assert.equal(fake.requests.length, before, 'the refused revokes reached nobody');
      assert.equal(fake.requests.filter((r) => r.method === 'DELETE').length, 1, 'only the allowed revoke reached Google');
      // Naming its own number for another number's message id: refused before RBM, without
      // revealing the recorded number, and the message stays SENT.
      const sneaky = await call(workers.main, 'DELETE', `/v1/messages/${otherId}?phoneNumber=%2B12223334444`, { headers: browser(sender) });
      assertForbidden(sneaky, ['another phone number'], 'revoke of another number\'s message under our number');
      assert.ok(!sneaky.text.includes(OTHER_PHONE), sneaky.text);
      assert.equal(fake.requests.length, before, 'the refused revokes reached nobody');
      const view = await call(workers.main, 'GET', `/v1/messages/${otherId}`);
      assert.equal(view.json?.status, 'SENT', view.text);
    });

    test('events: with events:send -> 200; without -> 403 naming events:send; another number -> 403 naming it', async () => {
      const ev = await mintToken({ scopes: ['events:send'], phoneNumbers: [PHONE] });
      const ok = await call(workers.main, 'POST', `/v1/phones/${PHONE}/events`, { body: { eventType: 'IS_TYPING' }, headers: browser(ev) });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.headers.get('access-control-allow-origin'), ORIGIN);
      assert.equal(fake.requests.filter((r) => r.path.endsWith('/agentEvents')).length, 1);
      const noScope = await mintToken({ scopes: ['messages:send', 'capabilities:read'], phoneNumbers: [PHONE] });
      assertForbidden(await call(workers.main, 'POST', `/v1/phones/${PHONE}/events`, { body: { eventType: 'IS_TYPING' }, headers: browser(noScope) }), ['events:send'], 'events without events:send');
      assertForbidden(await call(workers.main, 'POST', `/v1/phones/%2B${OTHER_PHONE.slice(1)}/events`, { body: { eventType: 'IS_TYPING' }, headers: browser(ev) }), [OTHER_PHONE], 'events to another number');
      assert.equal(fake.requests.length, 1, 'only the allowed event reached Google');
    });

    test('capabilities: with capabilities:read -> 200; without -> 403 naming capabilities:read; another number -> 403 naming it', async () => {
      const cap = await mintToken({ scopes: ['capabilities:read'], phoneNumbers: [PHONE] });
      const ok = await call(workers.main, 'GET', `/v1/phones/${PHONE}/capabilities`, { headers: browser(cap) });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.rcsReachable, true, ok.text);
      assert.equal(ok.headers.get('access-control-allow-origin'), ORIGIN);
      const noScope = await mintToken({ scopes: ['messages:send', 'messages:read', 'events:send'] });
      assertForbidden(await call(workers.main, 'GET', `/v1/phones/${PHONE}/capabilities`, { headers: browser(noScope) }), ['capabilities:read'], 'capabilities without the scope');
      assertForbidden(await call(workers.main, 'GET', `/v1/phones/${OTHER_PHONE}/capabilities`, { headers: browser(cap) }), [OTHER_PHONE], 'capabilities of another number');
      assert.equal(fake.requests.length, 1, 'only the allowed check reached Google');
    });
  });

  describe('token validity', () => {
    /** A send with `token` must be refused with 401 and reach nobody. */
    async function expectRefused(token, what) {
      const before = fake.requests.length;
      const res = await sendWith(browser(token), textMessage(PHONE));
      assert401(res, what);
      assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN, `${what}: CORS on the 401 (the page can read why)`);
      assert.equal(fake.requests.length, before, `${what}: nothing relayed`);
      return res;
    }

    test('expired (iat/exp in the past, minted here with node:crypto) -> 401', async () => {
      const now = nowS();
      const long = await expectRefused(jwt(claimsNow({ iat: now - 1000, exp: now - 100 })), 'expired 100 s ago');
      assert.match(long.json.error.message, /expired/i, long.json.error.message);
      await expectRefused(jwt(claimsNow({ iat: now - 900, exp: now - 2 })), 'expired 2 s ago');
      // Control: the same shape with exp in the future is accepted.
      const ok = await sendWith(browser(jwt(claimsNow({ iat: now - 900, exp: now + 30 }))), textMessage(PHONE));
      assert.equal(ok.status, 200, `control, valid for 30 more seconds: ${ok.text}`);
    });

    test('lifetime over 3600 s, or issued well in the future -> 401', async () => {
      const now = nowS();
      await expectRefused(jwt(claimsNow({ iat: now, exp: now + 3601 })), 'exp - iat = 3601');
      await expectRefused(jwt(claimsNow({ iat: now + 600, exp: now + 1200 })), 'iat 10 minutes ahead');
    });

    test('forged (signed with another key) -> 401', async () => {
      const res = await expectRefused(jwt(claimsNow(), { key: OTHER_KEY }), 'forged');
      assert.ok(!res.text.includes(OTHER_KEY));
    });

    test('tampered payload or header (signature kept) -> 401', async () => {
      const good = await mintToken({ scopes: ['messages:read'], phoneNumbers: [OTHER_PHONE], maxSends: 1 });
      const { claims, raw } = decodeJwt(good);
      const tampered = [
        ['scope widened', { ...claims, scope: 'messages:send messages:read' }],
        ['number swapped', { ...claims, scope: 'messages:send', phone_numbers: [PHONE] }],
        ['number limit removed', (({ phone_numbers, ...c }) => ({ ...c, scope: 'messages:send' }))(claims)],
        ['budget removed', (({ max_sends, ...c }) => c)({ ...claims, scope: 'messages:send' })],
        ['exp extended', { ...claims, scope: 'messages:send', exp: claims.exp + 60 }],
      ];
      for (const [what, c] of tampered) {
        const t = `${raw.h}.${b64u(c)}.${raw.s}`;
        tokensSeen.add(t);
        await expectRefused(t, what);
      }
      const h2 = b64u({ alg: 'HS256', typ: 'JWS' });
      await expectRefused(`${h2}.${raw.p}.${raw.s}`, 'header re-encoded');
      const sig = Buffer.from(raw.s, 'base64url');
      sig[5] ^= 1;
      await expectRefused(`${raw.h}.${raw.p}.${sig.toString('base64url')}`, 'one signature bit flipped');
      // The untouched token works (as a reader) — the refusals were about the tampering.
      const id = await sendWithApiKey(OTHER_PHONE);
      assert.equal((await call(workers.main, 'GET', `/v1/messages/${id}`, { headers: browser(good) })).status, 200);
    });

    test('alg:none, and every alg but HS256 -> 401', async () => {
      const c = claimsNow();
      const p = b64u(c);
      for (const header of [{ alg: 'none', typ: 'JWT' }, { alg: 'None' }, { alg: 'HS512', typ: 'JWT' }, { alg: 'RS256', typ: 'JWT' }, { alg: 'hs256' }, { typ: 'JWT' }]) {
        const h = b64u(header);
        await expectRefused(`${h}.${p}.`, `unsigned ${JSON.stringify(header)}`);
        // Even with a valid HS256 MAC over that header: the alg check comes first.
        await expectRefused(jwt(c, { header }), `${JSON.stringify(header)} with an HS256 MAC`);
      }
    });

    test('malformed strings (a.b, a.b.c.d, empty, 5 KB, ...) -> 401', async () => {
      const good = await mintToken({ scopes: ['messages:send'] });
      const cases = {
        'a.b': 'a.b',
        'a.b.c.d': 'a.b.c.d',
        'a.b.c': 'a.b.c',
        '..': '..',
        'token + extra part': `${good}.${good.split('.')[2]}`,
        'two parts of the real token': good.split('.').slice(0, 2).join('.'),
        '5 KB, no dots': 'x'.repeat(5 * 1024),
        '5 KB, three parts': `${good}${'A'.repeat(5 * 1024)}`,
        'padded signature': `${good}=`,
        'signature with a non-base64url character': `${good.slice(0, -1)}+`,
      };
      for (const [what, t] of Object.entries(cases)) {
        tokensSeen.add(t);
        const res = await sendWith({ authorization: `Bearer ${t}`, origin: ORIGIN, 'cf-connecting-ip': freshIp() }, textMessage(PHONE));
        assert401(res, what);
      }
      for (const [what, authorization] of [['empty bearer', 'Bearer '], ['scheme only', 'Bearer'], ['no header', undefined], ['token without scheme', good]]) {
        const headers = { origin: ORIGIN, ...(authorization === undefined ? {} : { authorization }) };
        assert401(await sendWith(headers, textMessage(PHONE)), what);
      }
      assert.equal(fake.requests.length, 0, 'nothing relayed');
    });

    test('a token a backend minted itself (other key order, typ omitted, aud "rbm-edge") is accepted', async () => {
      const iat = nowS();
      const jti = `backend-${crypto.randomBytes(6).toString('hex')}`;
      // Another library's layout: different key order, extra claims, aud as string and as array.
      const variants = [
        [{ alg: 'HS256', typ: 'JWT' }, { scope: 'messages:send', aud: 'rbm-edge', sub: 'user-42', exp: iat + 300, jti, phone_numbers: [PHONE], iat }],
        [{ typ: 'JWT', alg: 'HS256' }, { aud: ['other-api', 'rbm-edge'], jti: `${jti}-b`, exp: iat + 300, iat, scope: 'messages:read messages:send' }],
        [{ alg: 'HS256' }, { exp: iat + 300, iat, jti: `${jti}-c`, aud: 'rbm-edge', scope: 'messages:send', agent_id: AGENT_ID, iss: 'https://backend.example.com' }],
      ];
      for (const [header, claims] of variants) {
        const t = jwt(claims, { header });
        const res = await sendWith(browser(t), textMessage(PHONE));
        assert.equal(res.status, 200, `${JSON.stringify(header)} ${JSON.stringify(claims)}: ${res.text}`);
      }
      assert.equal(createRequests().length, variants.length);
      // ...but an audience that is not ours, or none, is refused.
      await expectRefused(jwt({ iat, exp: iat + 300, jti: `${jti}-d`, scope: 'messages:send', aud: 'someone-else' }), 'aud someone-else');
      await expectRefused(jwt({ iat, exp: iat + 300, jti: `${jti}-e`, scope: 'messages:send' }), 'no aud');
    });

    test('README: the worked example token is HS256 over the documented claims with the documented key (node:crypto and the shell recipe)', async (t) => {
      const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
      const m = /Worked example — key `([^`]+)`, claims\s*`(\{[^`]+\})`:\s*```\s*\n(eyJ[A-Za-z0-9_.-]+)\s*\n```/.exec(readme);
      assert.ok(m, 'README holds the worked example (key, claims, token)');
      const [, key, claimsJson, token] = m;
      JSON.parse(claimsJson); // the documented claims are JSON
      const input = `${b64u('{"alg":"HS256","typ":"JWT"}')}.${b64u(claimsJson)}`;
      assert.equal(`${input}.${hmac(key, input)}`, token, 'node:crypto reproduces the README token');
      const { claims } = decodeJwt(token);
      assert.equal(claims.exp - claims.iat, 900);
      // The module documentation shows the same example.
      const moduleDoc = fs.readFileSync(path.join(REPO, 'src', 'core', 'token.rs'), 'utf8');
      assert.ok(moduleDoc.includes(token), 'src/core/token.rs documents the same token');

      // The README's shell recipe, run as written (bash + openssl).
      const recipe = /```sh\n(b64url\(\)[^`]+?)```/.exec(readme);
      assert.ok(recipe, 'README holds the shell recipe');
      let out;
      try {
        out = execFileSync('bash', ['-c', recipe[1]], {
          env: { PATH: process.env.PATH, CLAIMS: claimsJson, TOKEN_SIGNING_KEY: key }, encoding: 'utf8', timeout: 10_000,
        }).trim();
      } catch (err) {
        if (err.code === 'ENOENT') return t.skip('bash is not installed');
        throw err;
      }
      assert.equal(out, token, 'the shell recipe reproduces the README token');
    });
  });

  describe('limits', () => {
    test('budget: a token with maxSends 2 -> third send -> 403 BUDGET_EXHAUSTED (no Retry-After: waiting cannot help); Google got 2', async () => {
      const mintRes = await mint({ scopes: ['messages:send'], phoneNumbers: [PHONE], maxSends: 2, ttlSeconds: 900 });
      const token = mintRes.json.token;
      const ip = freshIp();
      for (let i = 1; i <= 2; i++) {
        const r = await sendWith(browser(token, ip), textMessage(PHONE));
        assert.equal(r.status, 200, `send ${i}: ${r.text}`);
      }
      for (const n of [3, 4]) {
        const res = await sendWith(browser(token, ip), textMessage(PHONE));
        assertError(res, 403, 'BUDGET_EXHAUSTED', `send ${n} over a budget of 2`);
        assert.equal(res.headers.get('retry-after'), null);
        assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
      }
      assert.equal(createRequests().length, 2, 'only the budgeted sends reached Google');
      // Another token (same visitor) has its own budget.
      const fresh = await mintToken({ scopes: ['messages:send'], maxSends: 1 });
      assert.equal((await sendWith(browser(fresh, ip), textMessage(PHONE))).status, 200);
    });

    test('budget of a token minted by a backend (max_sends claim) is enforced the same way', async () => {
      const t = jwt(claimsNow({ max_sends: 1, aud: 'rbm-edge' }));
      const ip = freshIp();
      assert.equal((await sendWith(browser(t, ip), textMessage(PHONE))).status, 200);
      const res = await sendWith(browser(t, ip), textMessage(PHONE));
      assertError(res, 403, 'BUDGET_EXHAUSTED', 'second send over max_sends 1');
    });

    test('API keys are never budget- or rate-limited (8 quick sends from one IP)', async () => {
      const ip = freshIp();
      for (let i = 1; i <= RATE_LIMIT + 3; i++) {
        const r = await sendWith({ ...API_AUTH, 'cf-connecting-ip': ip }, textMessage(PHONE));
        assert.equal(r.status, 200, `API-key send ${i}: ${r.status} ${r.text}`);
      }
      assert.equal(createRequests().length, RATE_LIMIT + 3);
    });

    test(`rate limit per token: ${RATE_LIMIT} per 60 s -> send ${RATE_LIMIT + 1} in the window -> 429 with Retry-After`, async () => {
      await insideOneWindow(10_000);
      const token = await mintToken({ scopes: ['messages:send'] });
      // A new client IP for every send, so only the per-token limit can bite.
      for (let i = 1; i <= RATE_LIMIT; i++) {
        const r = await sendWith(browser(token), textMessage(PHONE));
        assert.equal(r.status, 200, `send ${i} of ${RATE_LIMIT}: ${r.status} ${r.text}`);
      }
      const res = await sendWith(browser(token), textMessage(PHONE));
      assertError(res, 429, 'RATE_LIMITED', `send ${RATE_LIMIT + 1}`);
      const ra = res.headers.get('retry-after');
      assert.match(ra ?? '', /^\d+$/, `Retry-After: ${ra}`);
      assert.ok(Number(ra) >= 1 && Number(ra) <= 60, `Retry-After ${ra} within the 60 s period`);
      assert.equal(createRequests().length, RATE_LIMIT);
      // Another token is not affected.
      const other = await mintToken({ scopes: ['messages:send'] });
      assert.equal((await sendWith(browser(other), textMessage(PHONE))).status, 200, 'another token still sends');
    });

    test(`rate limit per client IP: ${RATE_LIMIT + 1} tokens from one IP -> the ${RATE_LIMIT + 1}th send -> 429 with Retry-After`, async () => {
      await insideOneWindow(10_000);
      const ip = freshIp();
      for (let i = 1; i <= RATE_LIMIT; i++) {
        const r = await sendWith(browser(await mintToken({ scopes: ['messages:send'] }), ip), textMessage(PHONE));
        assert.equal(r.status, 200, `send ${i} from ${ip}: ${r.status} ${r.text}`);
      }
      const res = await sendWith(browser(await mintToken({ scopes: ['messages:send'] }), ip), textMessage(PHONE));
      assertError(res, 429, 'RATE_LIMITED', `send ${RATE_LIMIT + 1} from one IP with a fresh token`);
      assert.match(res.headers.get('retry-after') ?? '', /^\d+$/);
      assert.equal(createRequests().length, RATE_LIMIT);
    });
  });

  describe('API keys and URLs', () => {
    test('API keys still work on every route', async () => {
      for (const key of [KEY_ONE, KEY_TWO]) {
        const auth = { authorization: `Bearer ${key}`, origin: ORIGIN };
        const id = crypto.randomUUID();
        const sent = await sendWith(auth, textMessage(OTHER_PHONE, { messageId: id }));
        assert.equal(sent.status, 200, `send: ${sent.text}`);
        const st = await call(workers.main, 'GET', `/v1/messages/${id}`, { headers: auth });
        assert.equal(st.status, 200, `status: ${st.text}`);
        const rv = await call(workers.main, 'DELETE', `/v1/messages/${id}`, { headers: auth });
        assert.equal(rv.status, 200, `revoke: ${rv.text}`);
        const ev = await call(workers.main, 'POST', `/v1/phones/${OTHER_PHONE}/events`, { body: { eventType: 'IS_TYPING' }, headers: auth });
        assert.equal(ev.status, 200, `events: ${ev.text}`);
        const cap = await call(workers.main, 'GET', `/v1/phones/${OTHER_PHONE}/capabilities`, { headers: auth });
        assert.equal(cap.status, 200, `capabilities: ${cap.text}`);
        const mt = await call(workers.main, 'POST', '/v1/tokens', { body: { scopes: ['messages:read'] }, headers: auth });
        assert.equal(mt.status, 200, `mint: ${mt.text}`);
        tokensSeen.add(mt.json.token);
        const dl = await call(workers.main, 'GET', '/v1/dead-letters', { headers: auth });
        assert.equal(dl.status, 200, `dead letters: ${dl.text}`);
        assert.ok(Array.isArray(dl.json.deadLetters), dl.text);
        const missing = await call(workers.main, 'DELETE', `/v1/dead-letters/${crypto.randomUUID()}`, { headers: auth });
        assert.ok(missing.status === 200 || missing.status === 404, `delete dead letter: ${missing.status} ${missing.text}`);
      }
    });

    test('tokens are never accepted in the URL (?token=, ?access_token=) -> 401', async () => {
      const token = await mintToken({ scopes: ['messages:send', 'messages:read', 'capabilities:read'] });
      tokensInUrls.add(token);
      const id = await sendWithApiKey(PHONE);
      const headers = { origin: ORIGIN, 'cf-connecting-ip': freshIp() };
      const before = fake.requests.length;
      for (const param of ['token', 'access_token', 'authorization']) {
        const q = `${param}=${encodeURIComponent(token)}`;
        assert401(await call(workers.main, 'POST', `/v1/messages?${q}`, { body: textMessage(PHONE), headers }), `send ?${param}=`);
        assert401(await call(workers.main, 'GET', `/v1/messages/${id}?${q}`, { headers }), `status ?${param}=`);
        assert401(await call(workers.main, 'GET', `/v1/phones/${PHONE}/capabilities?${q}`, { headers }), `capabilities ?${param}=`);
      }
      assert.equal(fake.requests.length, before, 'nothing relayed');
      // Sanity: the same token in the header works.
      assert.equal((await call(workers.main, 'GET', `/v1/messages/${id}`, { headers: browser(token) })).status, 200);
    });
  });

  // Last: everything above has run against these Workers.
  describe('logs', () => {
    test('no token string, token signature or TOKEN_SIGNING_KEY in the logs (assertCleanLogs too)', () => {
      for (const [name, w] of Object.entries(workers)) {
        const logs = w.logs();
        assertCleanLogs(logs);
        assert.ok(!logs.includes(SIGNING_KEY), `${name}: logs contain TOKEN_SIGNING_KEY`);
        // What the Worker itself printed, without wrangler's access-log lines ("[wrangler:info] GET /… 200 OK").
        const workerOnly = logs.split('\n').filter((l) => !/^\[wrangler:info\] [A-Z]+ \//.test(l)).join('\n');
        assert.ok(tokensSeen.size > 20, `the log check covers the tokens used (${tokensSeen.size})`);
        for (const t of tokensSeen) {
          if (t.length < 16) continue; // 'a.b' and friends
          const hay = tokensInUrls.has(t) ? workerOnly : logs;
          const i = hay.indexOf(t);
          assert.ok(i < 0, `${name}: logs contain a token: ...${hay.slice(Math.max(0, i - 200), i + 60)}...`);
          const sig = t.split('.')[2];
          if (sig && sig.length >= 40) {
            const j = hay.indexOf(sig);
            assert.ok(j < 0, `${name}: logs contain a token signature: ...${hay.slice(Math.max(0, j - 200), j + 60)}...`);
          }
        }
        assert.ok(!/eyJhbGciOi/.test(workerOnly), `${name}: the Worker logged something that looks like a JWT`);
      }
    });
  });
});
