// Self-tests of the fakes: node --test tests/fakes/
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { startGoogleFake, regionOf, isBatchReachable, batchGetAnswer, usCarrierOf, RBM_MEDIA_TYPES } from './google.mjs';
import { startSink, signStandardWebhook } from './sink.mjs';

const SCOPE = 'https://www.googleapis.com/auth/rcsbusinessmessaging';
const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const AGENT = 'test-agent';
const PHONE = '+15551234567';

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

/** Build an RS256 service-account assertion, the way a Google client library does. */
function makeJwt(sa, { claims = {}, header = {}, key = sa.private_key } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const h = { alg: 'RS256', typ: 'JWT', kid: sa.private_key_id, ...header };
  const c = { iss: sa.client_email, scope: SCOPE, aud: sa.token_uri, iat: now, exp: now + 3600, ...claims };
  const input = `${b64url(h)}.${b64url(c)}`;
  const sig = crypto.sign('RSA-SHA256', Buffer.from(input), key).toString('base64url');
  return `${input}.${sig}`;
}

async function postToken(tokenUri, assertion, grantType = GRANT) {
  const res = await fetch(tokenUri, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: grantType, assertion }).toString(),
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, json: await res.json() };
}

async function call(url, { method = 'GET', token, body, timeout = 5000 } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
    signal: AbortSignal.timeout(timeout),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

function assertGoogleError(r, code, status) {
  assert.equal(r.status, code);
  assert.equal(r.json.error.code, code);
  assert.equal(r.json.error.status, status);
  assert.equal(typeof r.json.error.message, 'string');
  assert.deepEqual(Object.keys(r.json.error).sort(), ['code', 'message', 'status']);
}

describe('google fake', () => {
  let g, sa, token;
  const msgUrl = (phone, q = `messageId=${crypto.randomUUID()}&agentId=${AGENT}`) =>
    `${g.url}/v1/phones/${encodeURIComponent(phone)}/agentMessages?${q}`;
  const textMsg = { contentMessage: { text: 'Hello, world!', suggestions: [{ reply: { text: 'Yes', postbackData: 'yes' } }] }, messageTrafficType: 'TRANSACTION', ttl: '86400s' };

  before(async () => {
    g = await startGoogleFake();
    sa = JSON.parse(g.serviceAccountKey);
    const r = await postToken(g.tokenUri, makeJwt(sa));
    assert.equal(r.status, 200);
    token = r.json.access_token;
  });
  after(async () => { await g.close(); });

  test('service account key has the Google key-file shape', () => {
    assert.equal(typeof g.serviceAccountKey, 'string');
    assert.equal(sa.type, 'service_account');
    for (const k of ['project_id', 'private_key_id', 'private_key', 'client_email', 'client_id', 'auth_uri', 'token_uri', 'auth_provider_x509_cert_url', 'client_x509_cert_url']) {
      assert.equal(typeof sa[k], 'string', k);
    }
    assert.equal(sa.token_uri, g.tokenUri);
    assert.equal(g.tokenUri, `${g.url}/token`);
    assert.match(g.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(sa.private_key, /^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/);
    const k = crypto.createPrivateKey(sa.private_key);
    assert.equal(k.asymmetricKeyType, 'rsa');
    assert.equal(k.asymmetricKeyDetails.modulusLength, 2048);
    assert.match(sa.client_email, /@.+\.iam\.gserviceaccount\.com$/);
  });

  describe('token endpoint', () => {
    test('accepts a correctly signed assertion', async () => {
      const before = g.stats.tokenRequests;
      const r = await postToken(g.tokenUri, makeJwt(sa));
      assert.equal(r.status, 200);
      assert.match(r.json.access_token, /^ya29\.fake-/);
      assert.equal(r.json.expires_in, 3599);
      assert.equal(r.json.token_type, 'Bearer');
      assert.equal(g.stats.tokenRequests, before + 1);
    });

    const rejects = {
      'tampered claims': () => {
        const [h, , s] = makeJwt(sa).split('.');
        const forged = b64url({ iss: sa.client_email, scope: SCOPE, aud: sa.token_uri, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 60 });
        return `${h}.${forged}.${s}`;
      },
      'tampered signature': () => { const j = makeJwt(sa); return j.slice(0, -4) + (j.endsWith('AAAA') ? 'BBBB' : 'AAAA'); },
      'signed with another key': () => makeJwt(sa, { key: crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }),
      'wrong aud': () => makeJwt(sa, { claims: { aud: 'https://oauth2.googleapis.com/token' } }),
      'wrong scope': () => makeJwt(sa, { claims: { scope: 'https://www.googleapis.com/auth/cloud-platform' } }),
      'wrong iss': () => makeJwt(sa, { claims: { iss: 'someone@else.iam.gserviceaccount.com' } }),
      'expired': () => { const now = Math.floor(Date.now() / 1000); return makeJwt(sa, { claims: { iat: now - 7200, exp: now - 3600 } }); },
      'iat in the future': () => { const now = Math.floor(Date.now() / 1000); return makeJwt(sa, { claims: { iat: now + 900, exp: now + 4500 } }); },
      'lifetime over an hour': () => { const now = Math.floor(Date.now() / 1000); return makeJwt(sa, { claims: { exp: now + 3601 } }); },
      'exp not after iat': () => { const now = Math.floor(Date.now() / 1000); return makeJwt(sa, { claims: { exp: now } }); },
      'wrong kid': () => makeJwt(sa, { header: { kid: 'deadbeef' } }),
      'alg none': () => makeJwt(sa, { header: { alg: 'none' } }),
      'not a JWT': () => 'garbage',
    };
    for (const [name, build] of Object.entries(rejects)) {
      test(`rejects: ${name}`, async () => {
        const before = g.stats.tokenRejected;
        const r = await postToken(g.tokenUri, build());
        assert.equal(r.status, 400);
        assert.equal(r.json.error, 'invalid_grant');
        assert.equal(typeof r.json.error_description, 'string');
        assert.equal(g.stats.tokenRejected, before + 1);
      });
    }

    test('rejects a wrong grant_type', async () => {
      const r = await postToken(g.tokenUri, makeJwt(sa), 'client_credentials');
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'invalid_grant');
    });

    test('failTokens modes and setTokenLifetime', async () => {
      try {
        g.failTokens('http500');
        assert.equal((await postToken(g.tokenUri, makeJwt(sa))).status, 500);
        g.failTokens('invalid_grant');
        const r = await postToken(g.tokenUri, makeJwt(sa));
        assert.equal(r.status, 400);
        assert.equal(r.json.error, 'invalid_grant');
        g.failTokens(null);
        g.setTokenLifetime(0);
        const short = await postToken(g.tokenUri, makeJwt(sa));
        assert.equal(short.status, 200);
        assert.equal(short.json.expires_in, 0);
        // An expired token is refused by the API.
        assertGoogleError(await call(`${g.url}/v1/phones/${PHONE}/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`, { token: short.json.access_token }), 401, 'UNAUTHENTICATED');
      } finally {
        g.failTokens(null);
        g.setTokenLifetime(3599);
      }
    });
  });

  describe('RBM API', () => {
    test('agentMessages.create answers the created AgentMessage and is recorded', async () => {
      const messageId = crypto.randomUUID();
      const n = g.requests.length;
      const r = await call(msgUrl(PHONE, `messageId=${messageId}&agentId=${AGENT}`), { method: 'POST', token, body: textMsg });
      assert.equal(r.status, 200);
      assert.equal(r.json.name, `phones/${PHONE}/agentMessages/${messageId}`);
      assert.match(r.json.sendTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      assert.deepEqual(r.json.contentMessage, textMsg.contentMessage);
      assert.equal(r.json.messageTrafficType, 'TRANSACTION');
      const rec = g.requests[n];
      assert.equal(rec.method, 'POST');
      assert.equal(rec.path, `/v1/phones/%2B15551234567/agentMessages`);
      assert.deepEqual(rec.query, { messageId, agentId: AGENT });
      assert.equal(rec.headers.authorization, `Bearer ${token}`);
      assert.deepEqual(rec.body, textMsg);
      assert.equal(typeof rec.at, 'number');
    });

    test('agentMessages.create accepts a raw + in the path', async () => {
      const r = await call(`${g.url}/v1/phones/${PHONE}/agentMessages?messageId=${crypto.randomUUID()}&agentId=${AGENT}`, { method: 'POST', token, body: textMsg });
      assert.equal(r.status, 200);
      assert.match(r.json.name, /^phones\/\+15551234567\/agentMessages\//);
    });

    test('agentMessages.create: 400 without/with bad messageId, without agentId, bad body', async () => {
      assertGoogleError(await call(msgUrl(PHONE, `agentId=${AGENT}`), { method: 'POST', token, body: textMsg }), 400, 'INVALID_ARGUMENT');
      assertGoogleError(await call(msgUrl(PHONE, `messageId=not-a-uuid&agentId=${AGENT}`), { method: 'POST', token, body: textMsg }), 400, 'INVALID_ARGUMENT');
      assertGoogleError(await call(msgUrl(PHONE, `messageId=${crypto.randomUUID()}`), { method: 'POST', token, body: textMsg }), 400, 'INVALID_ARGUMENT');
      assertGoogleError(await call(msgUrl(PHONE), { method: 'POST', token, body: '{not json' }), 400, 'INVALID_ARGUMENT');
      assertGoogleError(await call(msgUrl(PHONE), { method: 'POST', token, body: { contentMessage: { text: 'x'.repeat(3073) } } }), 400, 'INVALID_ARGUMENT');
      assertGoogleError(await call(msgUrl(PHONE), { method: 'POST', token, body: { contentMessage: { text: 'x' }, ttl: '60s', expireTime: '2030-01-01T00:00:00Z' } }), 400, 'INVALID_ARGUMENT');
      assertGoogleError(await call(msgUrl('15551234567'), { method: 'POST', token, body: textMsg }), 400, 'INVALID_ARGUMENT');
    });

    test('revoke: 200 {} for a sent message, 404 for an unknown one', async () => {
      const messageId = crypto.randomUUID();
      assert.equal((await call(msgUrl(PHONE, `messageId=${messageId}&agentId=${AGENT}`), { method: 'POST', token, body: textMsg })).status, 200);
      const ok = await call(`${g.url}/v1/phones/%2B15551234567/agentMessages/${messageId}?agentId=${AGENT}`, { method: 'DELETE', token });
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.json, {});
      assertGoogleError(await call(`${g.url}/v1/phones/%2B15551234567/agentMessages/${crypto.randomUUID()}?agentId=${AGENT}`, { method: 'DELETE', token }), 404, 'NOT_FOUND');
    });

    test('agentEvents: READ, IS_TYPING, invalid', async () => {
      const eventId = crypto.randomUUID();
      const base = `${g.url}/v1/phones/%2B15551234567/agentEvents`;
      const read = await call(`${base}?eventId=${eventId}&agentId=${AGENT}`, { method: 'POST', token, body: { eventType: 'READ', messageId: 'MSG_ID' } });
      assert.equal(read.status, 200);
      assert.deepEqual(read.json, { name: `phones/${PHONE}/agentEvents/${eventId}`, eventType: 'READ', messageId: 'MSG_ID' });
      const typing = await call(`${base}?eventId=${crypto.randomUUID()}&agentId=${AGENT}`, { method: 'POST', token, body: { eventType: 'IS_TYPING' } });
      assert.equal(typing.status, 200);
      assert.equal(typing.json.eventType, 'IS_TYPING');
      assert.equal(typing.json.messageId, undefined);
      assertGoogleError(await call(`${base}?eventId=${crypto.randomUUID()}&agentId=${AGENT}`, { method: 'POST', token, body: { eventType: 'READ' } }), 400, 'INVALID_ARGUMENT');
      assertGoogleError(await call(`${base}?eventId=${crypto.randomUUID()}&agentId=${AGENT}`, { method: 'POST', token, body: { eventType: 'DELIVERED', messageId: 'x' } }), 400, 'INVALID_ARGUMENT');
      assertGoogleError(await call(`${base}?agentId=${AGENT}`, { method: 'POST', token, body: { eventType: 'IS_TYPING' } }), 400, 'INVALID_ARGUMENT');
    });

    test('capabilities', async () => {
      const r = await call(`${g.url}/v1/phones/%2B15551234567/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`, { token });
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { features: ['RICHCARD_STANDALONE', 'RICHCARD_CAROUSEL', 'ACTION_CREATE_CALENDAR_EVENT', 'ACTION_DIAL', 'ACTION_OPEN_URL', 'ACTION_SHARE_LOCATION', 'ACTION_VIEW_LOCATION'] });
    });

    test('users:batchGet leaves out the scripted numbers', async () => {
      const r = await call(`${g.url}/v1/users:batchGet`, { method: 'POST', token, body: { users: [PHONE, '+15550000404', '+15557654321'], agentId: AGENT } });
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { reachableUsers: [PHONE, '+15557654321'], totalRandomSampleUserCount: 0, reachableRandomSampleUserCount: 0 });
      assertGoogleError(await call(`${g.url}/v1/users:batchGet`, { method: 'POST', token, body: { users: 'x' } }), 400, 'INVALID_ARGUMENT');
    });

    test('unrouted paths answer 404 in Google shape', async () => {
      assertGoogleError(await call(`${g.url}/v1/nothing`, { token }), 404, 'NOT_FOUND');
      assertGoogleError(await call(`${g.url}/v1/phones/%2B15551234567/agentMessages`, { method: 'PUT', token, body: {} }), 404, 'NOT_FOUND');
    });

    test('missing, unknown and revoked bearer tokens -> 401 UNAUTHENTICATED', async () => {
      const u = `${g.url}/v1/phones/%2B15551234567/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`;
      const none = await call(u);
      assertGoogleError(none, 401, 'UNAUTHENTICATED');
      assert.equal(none.json.error.message, 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.');
      assertGoogleError(await call(u, { token: 'ya29.fake-unknown' }), 401, 'UNAUTHENTICATED');
      const fresh = (await postToken(g.tokenUri, makeJwt(sa))).json.access_token;
      assert.equal((await call(u, { token: fresh })).status, 200);
      g.revokeAllTokens();
      assertGoogleError(await call(u, { token: fresh }), 401, 'UNAUTHENTICATED');
      assertGoogleError(await call(u, { token }), 401, 'UNAUTHENTICATED');
      token = (await postToken(g.tokenUri, makeJwt(sa))).json.access_token; // new tokens work again
      assert.equal((await call(u, { token })).status, 200);
    });

    test('rejectNextRbmCalls(n) answers 401 n times with a valid token', async () => {
      const u = `${g.url}/v1/phones/%2B15551234567/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`;
      g.rejectNextRbmCalls(2);
      assertGoogleError(await call(u, { token }), 401, 'UNAUTHENTICATED');
      assertGoogleError(await call(u, { token }), 401, 'UNAUTHENTICATED');
      assert.equal((await call(u, { token })).status, 200);
    });

    test('setDelay delays RBM answers', async () => {
      g.setDelay(200);
      try {
        const t0 = Date.now();
        assert.equal((await call(`${g.url}/v1/phones/%2B15551234567/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`, { token })).status, 200);
        assert.ok(Date.now() - t0 >= 190);
      } finally { g.setDelay(0); }
    });
  });

  describe('scripted phone numbers', () => {
    const cases = [['+15550000404', 404, 'NOT_FOUND'], ['+15550000400', 400, 'INVALID_ARGUMENT'], ['+15550000403', 403, 'PERMISSION_DENIED'],
      ['+15550000429', 429, 'RESOURCE_EXHAUSTED'], ['+15550000500', 500, 'INTERNAL'], ['+15550000503', 503, 'UNAVAILABLE']];
    for (const [phone, code, status] of cases) {
      test(`${phone} -> ${code} ${status} on every route`, async () => {
        const p = encodeURIComponent(phone);
        assertGoogleError(await call(msgUrl(phone), { method: 'POST', token, body: textMsg }), code, status);
        assertGoogleError(await call(`${g.url}/v1/phones/${p}/agentMessages/${crypto.randomUUID()}?agentId=${AGENT}`, { method: 'DELETE', token }), code, status);
        assertGoogleError(await call(`${g.url}/v1/phones/${p}/agentEvents?eventId=${crypto.randomUUID()}&agentId=${AGENT}`, { method: 'POST', token, body: { eventType: 'IS_TYPING' } }), code, status);
        assertGoogleError(await call(`${g.url}/v1/phones/${p}/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`, { token }), code, status);
      });
    }
    test('404 body is exactly Google\'s', async () => {
      const r = await call(msgUrl('+15550000404'), { method: 'POST', token, body: textMsg });
      assert.deepEqual(r.json, { error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND' } });
    });

    test('+15550000666 resets the connection', async () => {
      await assert.rejects(call(msgUrl('+15550000666'), { method: 'POST', token, body: textMsg }), TypeError);
    });

    test('+15550000999 answers 200 only after ~3 s (client timeout aborts first)', async () => {
      await assert.rejects(call(msgUrl('+15550000999'), { method: 'POST', token, body: textMsg, timeout: 300 }), (e) => e.name === 'TimeoutError');
      const t0 = Date.now();
      const r = await call(msgUrl('+15550000999'), { method: 'POST', token, body: textMsg, timeout: 6000 });
      assert.equal(r.status, 200);
      assert.ok(Date.now() - t0 >= 2900, `answered after ${Date.now() - t0} ms`);
    });
  });

  test('waitFor resolves with matches and is bounded', async () => {
    const found = await g.waitFor((r) => r.path.endsWith('/capabilities'), 1000);
    assert.ok(found.length >= 1);
    await assert.rejects(g.waitFor((r) => r.path === '/never', 100), /timeout/);
  });

  test('reset clears counters, records and switches but keeps tokens valid', async () => {
    g.setDelay(1000); g.rejectNextRbmCalls(5); g.failTokens('http500');
    g.reset();
    assert.deepEqual(g.stats, { tokenRequests: 0, tokenRejected: 0, rbmRequests: 0 });
    assert.equal(g.requests.length, 0);
    assert.equal((await call(`${g.url}/v1/phones/%2B15551234567/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`, { token })).status, 200);
    assert.equal((await postToken(g.tokenUri, makeJwt(sa))).status, 200);
    assert.deepEqual(g.stats, { tokenRequests: 1, tokenRejected: 0, rbmRequests: 1 });
  });
});

describe('google fake with regions', () => {
  let g, token;
  const US = ['+12025550100', '+12025550101', '+15550000404', '+5511999990002', '+525512345674', '+2975551236', '+14155550123'];
  const EU = ['+447700900120', '+447700900121', '+4915112345678', '+2348012345670', '+79161234568', '+905321234560', '+971501234562'];
  const ASIA = ['+919812345670', '+919812345671', '+819012345674', '+6591234566', '+8613812345678', '+9607712344', '+998901234560'];

  const batchGet = (host, body, t = token) => call(`${g.hosts[host]}/v1/users:batchGet`, { method: 'POST', token: t, body });

  /** POST raw bytes to the media upload URI; `stream`: chunked (no content-length). */
  async function upload(base, bytes, { type = 'image/png', query = `uploadType=media&agentId=${AGENT}`, t = token, stream = false } = {}) {
    const headers = { 'content-type': type };
    if (t) headers.authorization = `Bearer ${t}`;
    const init = { method: 'POST', headers, signal: AbortSignal.timeout(10_000) };
    if (stream) {
      let off = 0;
      init.body = new ReadableStream({
        pull(c) {
          if (off >= bytes.length) return c.close();
          c.enqueue(new Uint8Array(bytes.subarray(off, off + 64 * 1024)));
          off += 64 * 1024;
        },
      });
      init.duplex = 'half';
    } else {
      init.body = bytes;
    }
    const res = await fetch(`${base}/upload/v1/files${query === null ? '' : `?${query}`}`, init);
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, json, text };
  }

  before(async () => {
    g = await startGoogleFake({ regions: true });
    const r = await postToken(g.tokenUri, makeJwt(JSON.parse(g.serviceAccountKey)));
    assert.equal(r.status, 200);
    token = r.json.access_token;
  });
  after(async () => { await g?.close(); });
  beforeEach(() => g.reset());

  test('regionOf: the calling-code table (Latin America -> us, Africa -> europe)', () => {
    const cases = {
      '+14155550123': 'us', '+12025550100': 'us', '+5511999990000': 'us', '+525512345678': 'us', '+541112345678': 'us',
      '+2975551234': 'us', '+2905551234': 'europe', '+2348012345678': 'europe', '+27821234567': 'europe', '+212612345678': 'europe',
      '+447700900123': 'europe', '+4915112345678': 'europe', '+33612345678': 'europe', '+79161234567': 'europe',
      '+905321234567': 'europe', '+96171123456': 'europe', '+971501234567': 'europe', '+989121234567': 'europe',
      '+994501234567': 'europe', '+995591234567': 'europe', '+97212345678': 'europe',
      '+919812345678': 'asia', '+923001234567': 'asia', '+93701234567': 'asia', '+94771234567': 'asia', '+959123456789': 'asia',
      '+9607712345': 'asia', '+97517123456': 'asia', '+97688123456': 'asia', '+9779812345678': 'asia', '+992917123456': 'asia',
      '+99365123456': 'asia', '+996555123456': 'asia', '+998901234567': 'asia', '+819012345678': 'asia', '+8613812345678': 'asia',
      '+6591234567': 'asia', '+61412345678': 'asia', '+628123456789': 'asia',
    };
    for (const [n, r] of Object.entries(cases)) assert.equal(regionOf(n), r, n);
    for (const bad of ['14155550123', '+0123', '', null, '+1 415']) assert.equal(regionOf(bad), null, String(bad));
  });

  test('four loopback hosts sharing tokens; every record names its host', async () => {
    assert.deepEqual(Object.keys(g.regionUrls).sort(), ['asia', 'europe', 'us']);
    const urls = [g.url, ...Object.values(g.regionUrls)];
    assert.equal(new Set(urls).size, 4);
    for (const u of urls) assert.match(u, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(g.hosts, { global: g.url, ...g.regionUrls });
    const id = crypto.randomUUID();
    const r = await call(`${g.regionUrls.europe}/v1/phones/%2B447700900120/agentMessages?messageId=${id}&agentId=${AGENT}`,
      { method: 'POST', token, body: { contentMessage: { text: 'Hei' } } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.name, `phones/+447700900120/agentMessages/${id}`);
    assert.equal(g.requests.at(-1).host, 'europe');
    assert.equal(g.messages.get(id).host, 'europe');
    const cap = await call(`${g.url}/v1/phones/%2B447700900120/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`, { token });
    assert.equal(cap.status, 200);
    assert.equal(g.requests.at(-1).host, 'global');
    assertGoogleError(await call(`${g.regionUrls.asia}/v1/phones/%2B447700900120/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`), 401, 'UNAUTHENTICATED');
  });

  test('users.batchGet on the global host -> 400 INVALID_ARGUMENT (regional endpoint required)', async () => {
    const r = await batchGet('global', { users: [US[0]], agentId: AGENT });
    assertGoogleError(r, 400, 'INVALID_ARGUMENT');
    assert.match(r.json.error.message, /regional endpoint/);
    assert.equal(g.batchGets.length, 1);
    assert.equal(g.batchGets[0].host, 'global');
    assert.equal(g.batchGets[0].status, 400);
  });

  test('users.batchGet on each regional host: its own numbers, the parity rule, reachableUsersMap on us only', async () => {
    for (const [host, list] of [['us', US], ['europe', EU], ['asia', ASIA]]) {
      const r = await batchGet(host, { users: list, agentId: AGENT });
      assert.equal(r.status, 200, `${host}: ${r.text}`);
      const reachable = list.filter((n) => /[02468]$/.test(n) && n !== '+15550000404');
      assert.deepEqual(r.json.reachableUsers, reachable, host);
      assert.deepEqual(reachable, list.filter(isBatchReachable), host);
      assert.equal(r.json.totalRandomSampleUserCount, 0, host);
      assert.equal(r.json.reachableRandomSampleUserCount, 0, host);
      if (host === 'us') {
        assert.deepEqual(Object.keys(r.json).sort(), ['reachableRandomSampleUserCount', 'reachableUsers', 'reachableUsersMap', 'totalRandomSampleUserCount']);
        // +1 numbers only, by carrier; Latin America and Aruba are not in the map.
        const inMap = Object.values(r.json.reachableUsersMap).flatMap((v) => v.reachableUsers).sort();
        assert.deepEqual(inMap, reachable.filter((n) => n.startsWith('+1')).sort());
        for (const [carrier, v] of Object.entries(r.json.reachableUsersMap)) {
          assert.deepEqual(Object.keys(v), ['reachableUsers']);
          for (const n of v.reachableUsers) assert.equal(usCarrierOf(n), carrier);
        }
      } else {
        assert.deepEqual(Object.keys(r.json).sort(), ['reachableRandomSampleUserCount', 'reachableUsers', 'totalRandomSampleUserCount'], host);
      }
      const rec = g.batchGets.at(-1);
      assert.equal(rec.host, host);
      assert.equal(rec.region, host);
      assert.equal(rec.agentId, AGENT);
      assert.equal(rec.count, list.length);
      assert.deepEqual(rec.users, list);
      assert.equal(rec.status, 200);
      assert.deepEqual(rec.answer, r.json);
      assert.equal(g.requests.at(-1).host, host);
    }
    // Every scripted error/reset number is even-ended or not, but never reachable.
    const scripted = ['+15550000400', '+15550000403', '+15550000404', '+15550000429', '+15550000500', '+15550000503', '+15550000666'];
    assert.deepEqual((await batchGet('us', { users: scripted, agentId: AGENT })).json.reachableUsers, []);
  });

  test('users.batchGet: another region\'s number, missing agentId, empty list, bad number -> 400', async () => {
    const wrong = await batchGet('europe', { users: [EU[0], EU[1], US[0], ASIA[0]], agentId: AGENT });
    assertGoogleError(wrong, 400, 'INVALID_ARGUMENT');
    assert.ok(wrong.json.error.message.includes(US[0]), wrong.json.error.message);
    assertGoogleError(await batchGet('asia', { users: [EU[0]], agentId: AGENT }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await batchGet('us', { users: [US[0]] }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await batchGet('us', { users: [US[0]], agentId: '' }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await batchGet('us', { users: [], agentId: AGENT }), 400, 'INVALID_ARGUMENT');
    const bad = await batchGet('us', { users: [US[0], '1415555'], agentId: AGENT });
    assertGoogleError(bad, 400, 'INVALID_ARGUMENT');
    assert.ok(bad.json.error.message.includes('1415555'));
    assertGoogleError(await batchGet('us', { users: 'x', agentId: AGENT }), 400, 'INVALID_ARGUMENT');
    assert.deepEqual(g.batchGets.map((b) => b.status), [400, 400, 400, 400, 400, 400, 400]);
  });

  test('users.batchGet sample counts: 0 under 500 numbers, else the index % 4 !== 3 sample', async () => {
    const nums = (n, off = 0) => Array.from({ length: n }, (_, i) => `+4477009${String(off + i).padStart(5, '0')}`);
    const small = await batchGet('europe', { users: nums(499), agentId: AGENT });
    assert.equal(small.json.totalRandomSampleUserCount, 0);
    assert.equal(small.json.reachableRandomSampleUserCount, 0);
    assert.equal(small.json.reachableUsers.length, 250);
    const list = nums(1000);
    const big = await batchGet('europe', { users: list, agentId: AGENT });
    assert.equal(big.status, 200);
    assert.equal(big.json.totalRandomSampleUserCount, 750);
    const sample = list.filter((_, i) => i % 4 !== 3);
    assert.equal(big.json.reachableRandomSampleUserCount, sample.filter(isBatchReachable).length);
    assert.equal(big.json.reachableRandomSampleUserCount, 500); // i % 4 in {0,1,2}: the even-ended ones
    assert.deepEqual(big.json, batchGetAnswer(list));
    const b500 = await batchGet('europe', { users: nums(500, 3), agentId: AGENT });
    assert.equal(b500.json.totalRandomSampleUserCount, 375);
  });

  test('users.batchGet records concurrency, scripted failures and the 600-per-minute quota', async () => {
    g.setDelay(150);
    const rs = await Promise.all([['us', US[0]], ['europe', EU[0]], ['asia', ASIA[0]]].map(([h, n]) => batchGet(h, { users: [n], agentId: AGENT })));
    g.setDelay(0);
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200]);
    assert.equal(g.maxBatchGetsInFlight, 3);
    assert.ok(g.batchGets.some((b) => b.inFlight === 3), JSON.stringify(g.batchGets.map((b) => b.inFlight)));
    for (const b of g.batchGets) assert.ok(b.endAt >= b.at && typeof b.at === 'number');

    g.failNextBatchGets(1, 503);
    const failed = await batchGet('us', { users: [US[0]], agentId: AGENT });
    assert.equal(failed.status, 503);
    assert.deepEqual(failed.json, { error: { code: 503, message: 'The service is currently unavailable.', status: 'UNAVAILABLE' } });
    assert.deepEqual(g.batchGets.at(-1).error, failed.json);
    assert.equal(g.batchGets.at(-1).answer, null);
    assert.equal((await batchGet('us', { users: [US[0]], agentId: AGENT })).status, 200);
    assert.throws(() => g.failNextBatchGets(1, 418));

    g.reset();
    g.setBatchGetQpm(2);
    assert.equal((await batchGet('us', { users: [US[0]], agentId: AGENT })).status, 200);
    assert.equal((await batchGet('asia', { users: [ASIA[0]], agentId: AGENT })).status, 200);
    assertGoogleError(await batchGet('europe', { users: [EU[0]], agentId: AGENT }), 429, 'RESOURCE_EXHAUSTED');
    g.reset();
    assert.equal(g.maxBatchGetsInFlight, 0);
    assert.equal((await batchGet('europe', { users: [EU[0]], agentId: AGENT })).status, 200, 'reset restores the quota');
  });

  test('files.create with fileUrl on any host -> {"name":"files/…"}, recorded with its host', async () => {
    for (const host of ['global', 'europe']) {
      const body = { fileUrl: 'https://cdn.example.com/a.png', thumbnailUrl: 'https://cdn.example.com/t.png', contentDescription: 'A cat', agentId: AGENT };
      const r = await call(`${g.hosts[host]}/v1/files`, { method: 'POST', token, body });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(Object.keys(r.json), ['name']);
      assert.match(r.json.name, /^files\/[0-9a-f]{24}$/);
      const f = g.files.at(-1);
      assert.deepEqual({ host: f.host, source: f.source, status: f.status, name: f.name, agentId: f.agentId, fileUrl: f.fileUrl, thumbnailUrl: f.thumbnailUrl, contentDescription: f.contentDescription },
        { host, source: 'url', status: 200, name: r.json.name, agentId: AGENT, fileUrl: body.fileUrl, thumbnailUrl: body.thumbnailUrl, contentDescription: 'A cat' });
      assert.deepEqual(f.body, body);
      assert.equal(g.requests.at(-1).host, host);
    }
    const minimal = await call(`${g.url}/v1/files`, { method: 'POST', token, body: { fileUrl: 'http://127.0.0.1/x.pdf', agentId: AGENT } });
    assert.equal(minimal.status, 200);
    assert.notEqual(minimal.json.name, g.files[0].name, 'fresh ids');
  });

  test('files.create with fileUrl: missing/invalid fileUrl, unknown field, no agentId, no token', async () => {
    const bad = [
      { agentId: AGENT },
      { fileUrl: 'not a url', agentId: AGENT },
      { fileUrl: 'ftp://x/y.png', agentId: AGENT },
      { fileUrl: 42, agentId: AGENT },
      { fileUrl: 'https://x/y.png', thumbnailUrl: 'nope', agentId: AGENT },
      { fileUrl: 'https://x/y.png' },
      { fileUrl: 'https://x/y.png', agentId: AGENT, rbm: {} },
    ];
    for (const body of bad) assertGoogleError(await call(`${g.url}/v1/files`, { method: 'POST', token, body }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await call(`${g.url}/v1/files`, { method: 'POST', token, body: '{nope' }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await call(`${g.url}/v1/files`, { method: 'POST', body: { fileUrl: 'https://x/y.png', agentId: AGENT } }), 401, 'UNAUTHENTICATED');
    assert.ok(g.files.filter((f) => f.source === 'url').every((f) => f.status === 400 && f.name === undefined));
  });

  test('media upload: 5 MiB with a length, and chunked, hashed and recorded with host, type and query', async () => {
    const bytes = crypto.randomBytes(5 * 1024 * 1024);
    const sha = crypto.createHash('sha256').update(bytes).digest('hex');
    const r = await upload(g.regionUrls.asia, bytes, { type: 'video/mp4' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(Object.keys(r.json), ['name']);
    assert.match(r.json.name, /^files\/[0-9a-f]{24}$/);
    const f = g.files.at(-1);
    assert.equal(f.host, 'asia');
    assert.equal(f.source, 'upload');
    assert.equal(f.status, 200);
    assert.equal(f.name, r.json.name);
    assert.equal(f.contentType, 'video/mp4');
    assert.equal(f.contentLength, bytes.length);
    assert.equal(f.chunked, false);
    assert.equal(f.bytes, bytes.length);
    assert.equal(f.sha256, sha);
    assert.equal(f.agentId, AGENT);
    assert.deepEqual(f.query, { uploadType: 'media', agentId: AGENT });
    const rec = g.requests.at(-1);
    assert.equal(rec.path, '/upload/v1/files');
    assert.equal(rec.host, 'asia');
    assert.equal(rec.bytes, bytes.length);
    assert.equal(rec.raw, '', 'the body is not kept');

    const small = crypto.randomBytes(300_000);
    const c = await upload(g.url, small, { type: 'application/pdf', stream: true });
    assert.equal(c.status, 200, c.text);
    const fc = g.files.at(-1);
    assert.equal(fc.host, 'global');
    assert.equal(fc.chunked, true);
    assert.equal(fc.contentLength, null);
    assert.equal(fc.bytes, small.length);
    assert.equal(fc.sha256, crypto.createHash('sha256').update(small).digest('hex'));
    // Every RBM media type is accepted, parameters and case aside.
    for (const type of [...RBM_MEDIA_TYPES, 'IMAGE/PNG', 'audio/ogg; codecs=opus']) {
      assert.equal((await upload(g.url, Buffer.from('x'), { type })).status, 200, type);
    }
  });

  test('media upload errors: type, agentId, uploadType, empty, token; a declared 101 MiB -> 413 before any byte', async () => {
    const one = Buffer.from('hello');
    assertGoogleError(await upload(g.url, one, { type: 'text/plain' }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await upload(g.url, one, { type: 'image/svg+xml' }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await upload(g.url, one, { query: 'uploadType=media' }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await upload(g.url, one, { query: `agentId=${AGENT}` }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await upload(g.url, one, { query: `uploadType=multipart&agentId=${AGENT}` }), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await upload(g.url, Buffer.alloc(0)), 400, 'INVALID_ARGUMENT');
    assertGoogleError(await upload(g.url, one, { t: null }), 401, 'UNAUTHENTICATED');
    assert.ok(g.files.every((f) => f.status !== 200));

    // Headers only: the fake answers from Content-Length, no body needed.
    const t0 = Date.now();
    const r = await new Promise((resolve, reject) => {
      const req = http.request(`${g.regionUrls.us}/upload/v1/files?uploadType=media&agentId=${AGENT}`, {
        method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'image/png', 'content-length': String(101 * 1024 * 1024) },
      });
      const timer = setTimeout(() => { req.destroy(); reject(new Error('no answer within 5 s')); }, 5000);
      req.on('response', (res) => {
        let text = '';
        res.on('data', (c) => { text += c; });
        res.on('end', () => { clearTimeout(timer); req.destroy(); resolve({ status: res.statusCode, json: JSON.parse(text), connection: res.headers.connection }); });
      });
      req.on('error', (e) => { clearTimeout(timer); reject(e); });
      req.flushHeaders();
    });
    assert.ok(Date.now() - t0 < 5000);
    assertGoogleError(r, 413, 'INVALID_ARGUMENT');
    assert.equal(r.connection, 'close');
    const f = g.files.at(-1);
    assert.equal(f.host, 'us');
    assert.equal(f.status, 413);
    assert.equal(f.contentLength, 101 * 1024 * 1024);
  });

  test('reset clears batchGets and files', async () => {
    await batchGet('us', { users: [US[0]], agentId: AGENT });
    await call(`${g.url}/v1/files`, { method: 'POST', token, body: { fileUrl: 'https://x/y.png', agentId: AGENT } });
    assert.equal(g.batchGets.length, 1);
    assert.equal(g.files.length, 1);
    g.reset();
    assert.equal(g.batchGets.length, 0);
    assert.equal(g.files.length, 0);
    assert.equal(g.requests.length, 0);
  });
});

describe('google fake without regions keeps the single-host users.batchGet', () => {
  let g, token;
  before(async () => {
    g = await startGoogleFake();
    token = (await postToken(g.tokenUri, makeJwt(JSON.parse(g.serviceAccountKey)))).json.access_token;
  });
  after(async () => { await g?.close(); });

  test('any region on the one host; odd-ended numbers reachable; no reachableUsersMap; files work', async () => {
    assert.equal(g.regionUrls, undefined);
    assert.deepEqual(g.hosts, { global: g.url });
    const users = ['+12025550101', '+447700900121', '+919812345671', '+15550000500'];
    const r = await call(`${g.url}/v1/users:batchGet`, { method: 'POST', token, body: { users, agentId: AGENT } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { reachableUsers: users.slice(0, 3), totalRandomSampleUserCount: 0, reachableRandomSampleUserCount: 0 });
    assert.equal(g.batchGets.at(-1).host, 'global');
    assert.equal((await call(`${g.url}/v1/files`, { method: 'POST', token, body: { fileUrl: 'https://x/y.png', agentId: AGENT } })).status, 200);
  });
});

describe('sink', () => {
  const secret = `whsec_${crypto.randomBytes(32).toString('base64')}`;
  let s;
  before(async () => { s = await startSink({ secret }); });
  after(async () => { await s.close(); });

  async function deliver({ path = '/events', body = { hello: 'world' }, id = `msg_${crypto.randomUUID()}`, ts = Math.floor(Date.now() / 1000), sign = secret, tamper = false, signature } = {}) {
    const raw = JSON.stringify(body);
    const sig = signature ?? signStandardWebhook(sign, id, ts, raw);
    const res = await fetch(`${s.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': sig },
      body: tamper ? raw.replace('world', 'w0rld') : raw,
      signal: AbortSignal.timeout(5000),
    });
    await res.arrayBuffer();
    return { status: res.status, id };
  }

  test('signStandardWebhook matches the Standard Webhooks reference vector', () => {
    assert.equal(
      signStandardWebhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}'),
      'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    );
  });

  test('accepts a correct signature on any path and records it', async () => {
    const { status, id } = await deliver({ path: '/cb/abc?x=1', body: { event: 'DELIVERED', n: 1 } });
    assert.equal(status, 200);
    const [d] = await s.waitFor((x) => x.id === id, 1000);
    assert.equal(d.signatureValid, true);
    assert.deepEqual(d.body, { event: 'DELIVERED', n: 1 });
    assert.equal(d.raw, '{"event":"DELIVERED","n":1}');
    assert.equal(d.path, '/cb/abc?x=1');
    assert.equal(typeof d.timestamp, 'number');
    assert.equal(d.headers['webhook-id'], id);
    assert.equal(d.status, 200);
  });

  test('accepts when any of several v1 signatures matches', async () => {
    const id = 'msg_multi';
    const ts = Math.floor(Date.now() / 1000);
    const good = signStandardWebhook(secret, id, ts, JSON.stringify({ hello: 'world' }));
    const other = signStandardWebhook(`whsec_${crypto.randomBytes(32).toString('base64')}`, id, ts, JSON.stringify({ hello: 'world' }));
    assert.equal((await deliver({ id, ts, signature: `${other} v1a,xyz ${good}` })).status, 200);
  });

  test('rejects (401) and records tampered body, wrong secret, stale timestamp, missing headers', async () => {
    const bad = [
      await deliver({ tamper: true }),
      await deliver({ sign: `whsec_${crypto.randomBytes(32).toString('base64')}` }),
      await deliver({ ts: Math.floor(Date.now() / 1000) - 301 }),
      await deliver({ ts: Math.floor(Date.now() / 1000) + 301 }),
      await deliver({ signature: 'v1,' }),
    ];
    for (const r of bad) {
      assert.equal(r.status, 401);
      const d = s.deliveries.find((x) => x.id === r.id);
      assert.equal(d.signatureValid, false);
      assert.equal(d.status, 401);
    }
    const res = await fetch(`${s.url}/events`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(5000) });
    await res.arrayBuffer();
    assert.equal(res.status, 401);
    assert.equal(s.deliveries.at(-1).signatureValid, false);
  });

  test('failNext, modes and delay', async () => {
    try {
      s.failNext(2, 503);
      assert.equal((await deliver()).status, 503);
      assert.equal((await deliver({ tamper: true })).status, 401); // bad signatures do not consume failNext
      assert.equal((await deliver()).status, 503);
      assert.equal((await deliver()).status, 200);
      s.setMode('fail500');
      assert.equal((await deliver()).status, 500);
      s.setMode('gone410');
      assert.equal((await deliver()).status, 410);
      s.setMode('slow');
      s.setDelay(200);
      const t0 = Date.now();
      assert.equal((await deliver()).status, 200);
      assert.ok(Date.now() - t0 >= 190);
      assert.throws(() => s.setMode('nope'));
    } finally { s.reset(); }
    assert.equal(s.deliveries.length, 0);
    assert.equal((await deliver()).status, 200);
  });

  test('waitFor is bounded; close() rejects pending waits', async () => {
    await assert.rejects(s.waitFor((d) => d.id === 'never', 100), /timeout/);
    const s2 = await startSink({ secret });
    const pending = s2.waitFor(() => true, 10000);
    await s2.close();
    await assert.rejects(pending, /closed/);
  });
});
