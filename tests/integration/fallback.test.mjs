// SMS fallback against the built Worker in workerd: the three triggers (RBM 404 on send, a
// deadline passed undelivered then revoked, a TTL revocation), at most one fallback per message
// whatever races, the revoke rules (404 → none; errors retried, then REVOKE_FAILED and no
// SMS), Twilio with retries and idempotency, and what the backend receives.
//
// Workers (stopped in after()): `main` (PROCESSING=inline, Twilio configured, a 6 s revoke
// window so "an hour of retries" fits a test), `notwilio` (no Twilio: NOT_CONFIGURED).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startWorker } from '../support/worker.mjs';
import { TOKENS, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs } from '../support/assert.mjs';
import { startGoogleFake } from '../fakes/google.mjs';
import { startSink } from '../fakes/sink.mjs';
import { startTwilioFake } from '../fakes/twilio.mjs';
import { startRbmProxy, googleError } from '../support/rbm-proxy.mjs';
import * as rbm from '../support/rbm.mjs';

const { request, postEvent, pollUntil } = rbm;
const [TOK] = TOKENS;
const AUTH = { authorization: `Bearer ${API_KEYS[0]}`, 'content-type': 'application/json' };
const SECRET = `whsec_${crypto.randomBytes(32).toString('base64')}`;
const UNREACHABLE = '+15550000404';
const FROM = '+15005550006';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let google;
let proxy;
let sink;
let twilio;
const w = {};
/** messageId -> status the proxy answers revokes with (else the fake's own answer). */
const revokeAnswers = new Map();

let n = 0;
const freshPhone = () => `+1444${String(process.pid % 1000).padStart(3, '0')}${String(n++).padStart(4, '0')}`;

function config(vars = {}, secrets = {}) {
  return {
    secrets: {
      RBM_CLIENT_TOKEN: TOKENS.join(','),
      API_KEYS: API_KEYS.join(','),
      FORWARD_SECRET: SECRET,
      TOKEN_SIGNING_KEY: crypto.randomBytes(36).toString('base64url'),
      RBM_SERVICE_ACCOUNT_KEY: JSON.stringify(JSON.parse(google.serviceAccountKey)),
      ...secrets,
    },
    vars: {
      RBM_AGENT_ID: 'test_agent', PROCESSING: 'inline', RBM_API_BASE: proxy.url, ALLOW_INSECURE_CALLBACKS: 'true',
      FORWARD_URL: `${sink.url}/fwd`, FALLBACK_REVOKE_WINDOW_SECONDS: '6', ...vars,
    },
    kv: true,
  };
}

const call = (worker, method, path, body) =>
  request(worker.url, path, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: AUTH });

async function send(worker, phone, over = {}, expect = 200) {
  const res = await call(worker, 'POST', '/v1/messages', {
    phoneNumber: phone, contentMessage: { text: 'Your code is 123456' }, statusCallback: `${sink.url}/cb`, ...over,
  });
  assert.equal(res.status, expect, res.text);
  return res.json.messageId;
}

const status = (worker, id) => call(worker, 'GET', `/v1/messages/${id}`);
const waitStatus = (worker, id, done, ms = 20_000) => pollUntil(() => status(worker, id), (r) => r.status === 200 && done(r.json), ms);
const smsTo = (phone) => twilio.messages.filter((m) => m.to === phone);
const forwards = (id) => sink.deliveries.filter((d) => d.path === '/fwd' && d.body?.kind === 'FALLBACK' && d.body.messageId === id);
const callbacks = (id, st) => sink.deliveries.filter((d) => d.path === '/cb' && d.body?.messageId === id && (!st || d.body.status === st));

describe('SMS fallback', { timeout: 300_000 }, () => {
  before(async () => {
    google = await startGoogleFake();
    proxy = await startRbmProxy(google.url, ({ method, url, res }) => {
      const id = decodeURIComponent(url.pathname.split('/').pop());
      if (method === 'DELETE' && revokeAnswers.has(id)) {
        const code = revokeAnswers.get(id);
        const st = code === 404 ? 'NOT_FOUND' : 'UNAVAILABLE';
        res.writeHead(code, { 'content-type': 'application/json' }).end(googleError(code, st, 'scripted'));
        return true;
      }
      return false;
    });
    sink = await startSink({ secret: SECRET });
    twilio = await startTwilioFake();
    const twilioSecrets = { TWILIO_ACCOUNT_SID: twilio.accountSid, TWILIO_AUTH_TOKEN: twilio.authToken };
    [w.main, w.notwilio] = await Promise.all([
      startWorker(config({ TWILIO_FROM: FROM, TWILIO_API_BASE: twilio.url }, twilioSecrets)),
      startWorker(config()),
    ]);
  });

  after(async () => {
    await Promise.all(Object.values(w).map((x) => x?.stop()));
    await Promise.all([proxy?.close(), sink?.close(), twilio?.close(), google?.close()]);
  });

  test('RBM 404 on send (not RCS-reachable): falls back at once — one SMS, FALLBACK, one callback, one forward', async () => {
    const id = await send(w.main, UNREACHABLE, { fallback: { afterSeconds: 600, sms: { text: 'Code 123456 (SMS)' } } }, 404);
    const view = await waitStatus(w.main, id, (v) => v.fallback?.sms?.status === 'SENT');
    assert.equal(view.json.status, 'FALLBACK');
    assert.equal(view.json.fallback.reason, 'NOT_REACHABLE');
    assert.match(view.json.fallback.sms.sid, /^SM/);
    const sms = smsTo(UNREACHABLE);
    assert.equal(sms.length, 1);
    assert.equal(sms[0].body, 'Code 123456 (SMS)');
    assert.equal(sms[0].from, FROM);
    assert.equal(sms[0].idempotencyToken, `rbm-edge-fallback-${id}`);
    await sink.waitFor((d) => forwards(id).includes(d), 10_000);
    await sink.waitFor((d) => callbacks(id, 'FALLBACK').includes(d), 10_000);
    await sleep(1000);
    assert.equal(forwards(id).length, 1);
    const doc = forwards(id)[0].body;
    assert.equal(doc.type, 'event');
    assert.equal(doc.reason, 'NOT_REACHABLE');
    assert.equal(doc.sms.text, 'Code 123456 (SMS)');
    assert.equal(doc.sms.status, 'SENT');
    assert.equal(doc.content.contentMessage.text, 'Your code is 123456');
    assert.ok(forwards(id)[0].signatureValid);
    assert.equal(callbacks(id, 'FALLBACK').length, 1);
  });

  test('deadline of 5 s, never delivered: revoked through RBM, then one SMS, FALLBACK, one callback, one forward', async () => {
    const phone = freshPhone();
    const id = await send(w.main, phone, { fallback: { afterSeconds: 5 } });
    const view = await waitStatus(w.main, id, (v) => v.fallback?.sms?.status === 'SENT', 30_000);
    assert.equal(view.json.status, 'FALLBACK');
    assert.equal(view.json.fallback.reason, 'DEADLINE');
    assert.ok(view.json.events.some((e) => e.type === 'REVOKE_REQUESTED'));
    assert.equal(proxy.deletes().filter((c) => c.path.endsWith(`/${id}`)).length, 1, 'one revoke reached RBM');
    assert.equal(smsTo(phone).length, 1);
    assert.equal(smsTo(phone)[0].body, 'Your code is 123456', 'the message text by default');
    await sink.waitFor((d) => forwards(id).includes(d), 10_000);
    await sleep(1000);
    assert.equal(forwards(id).length, 1);
    assert.equal(callbacks(id, 'FALLBACK').length, 1);
  });

  test('DELIVERED 1 s before the deadline: no revoke, no SMS', async () => {
    const phone = freshPhone();
    const id = await send(w.main, phone, { fallback: { afterSeconds: 5 } });
    await sleep(4000);
    await postEvent(w.main.url, { ...rbm.receipt('DELIVERED', id), senderPhoneNumber: phone }, TOK);
    await sleep(5000);
    assert.equal(proxy.deletes().filter((c) => c.path.endsWith(`/${id}`)).length, 0);
    assert.equal(smsTo(phone).length, 0);
    assert.equal((await status(w.main, id)).json.status, 'DELIVERED');
  });

  test('revoke answered 404 (delivered meanwhile): no SMS', async () => {
    const phone = freshPhone();
    const id = crypto.randomUUID();
    revokeAnswers.set(id, 404);
    await send(w.main, phone, { messageId: id, fallback: { afterSeconds: 5 } });
    await pollUntil(async () => proxy.deletes().filter((c) => c.path.endsWith(`/${id}`)).length, (k) => k >= 1, 20_000);
    await sleep(2000);
    assert.equal(smsTo(phone).length, 0);
    const v = (await status(w.main, id)).json;
    assert.equal(v.status, 'SENT');
    assert.equal(v.fallback, undefined);
  });

  test('revoke failing (503): retried with backoff, then REVOKE_FAILED and no SMS', async () => {
    const phone = freshPhone();
    const id = crypto.randomUUID();
    revokeAnswers.set(id, 503);
    await send(w.main, phone, { messageId: id, fallback: { afterSeconds: 5 } });
    const view = await waitStatus(w.main, id, (v) => v.status === 'REVOKE_FAILED', 40_000);
    assert.equal(view.json.status, 'REVOKE_FAILED');
    assert.ok(proxy.deletes().filter((c) => c.path.endsWith(`/${id}`)).length >= 2, 'the revoke was retried');
    assert.equal(smsTo(phone).length, 0);
    await sink.waitFor((d) => callbacks(id, 'REVOKE_FAILED').includes(d), 10_000);
  });

  test('TTL_EXPIRATION_REVOKED twice (and concurrently): one SMS', async () => {
    const phone = freshPhone();
    const id = await send(w.main, phone, { ttl: '60s', fallback: { sms: { text: 'SMS instead' } } });
    const ev = { ...rbm.ttlRevoked(id), phoneNumber: phone };
    const answers = await Promise.all([postEvent(w.main.url, ev, TOK), postEvent(w.main.url, ev, TOK)]);
    assert.deepEqual(answers.map((r) => r.status), [200, 200]);
    await postEvent(w.main.url, ev, TOK);
    const view = await waitStatus(w.main, id, (v) => v.fallback?.sms?.status === 'SENT');
    assert.equal(view.json.fallback.reason, 'TTL_EXPIRED');
    await sleep(1500);
    assert.equal(smsTo(phone).length, 1);
    assert.equal(smsTo(phone)[0].body, 'SMS instead');
    // a TTL revocation that failed never falls back
    const other = await send(w.main, freshPhone(), { ttl: '60s', fallback: { sms: { text: 'x' } } });
    await postEvent(w.main.url, { ...rbm.ttlRevokeFailed(other), phoneNumber: phone }, TOK);
  });

  test('Twilio 500, then 201: the SMS is retried with the same idempotency token and sent once', async () => {
    twilio.failNext(1, 500);
    const phone = freshPhone();
    const id = await send(w.main, phone, { ttl: '60s', fallback: { sms: { text: 'retry me' } } });
    await postEvent(w.main.url, { ...rbm.ttlRevoked(id), phoneNumber: phone }, TOK);
    const view = await waitStatus(w.main, id, (v) => v.fallback?.sms?.status === 'SENT', 40_000);
    assert.match(view.json.fallback.sms.sid, /^SM/);
    const attempts = twilio.requests.filter((r) => r.form.To === phone);
    assert.equal(attempts.length, 2, 'one failed try, one retry');
    assert.deepEqual(new Set(attempts.map((r) => r.headers['i-twilio-idempotency-token'])).size, 1);
    assert.equal(smsTo(phone).length, 1);
  });

  test('Twilio not configured: NOT_CONFIGURED, and the forwarded FALLBACK document is the cue', async () => {
    const id = await send(w.notwilio, UNREACHABLE, { fallback: { afterSeconds: 60 } }, 404);
    const view = await waitStatus(w.notwilio, id, (v) => v.fallback?.sms?.status === 'NOT_CONFIGURED');
    assert.equal(view.json.status, 'FALLBACK');
    await sink.waitFor((d) => forwards(id).includes(d), 10_000);
    assert.equal(forwards(id)[0].body.sms.status, 'NOT_CONFIGURED');
  });

  test('validation: a rich card without sms.text → 400 naming fallback.sms.text; no deadline and no TTL → 400', async () => {
    const card = { richCard: { standaloneCard: { cardContent: { title: 'Sale' } } } };
    const res = await call(w.main, 'POST', '/v1/messages', { phoneNumber: freshPhone(), contentMessage: card, fallback: { afterSeconds: 60 } });
    assertError(res, 400, 'VALIDATION_FAILED');
    assert.match(res.json.error.message, /^fallback\.sms\.text: /);
    const none = await call(w.main, 'POST', '/v1/messages', { phoneNumber: freshPhone(), contentMessage: { text: 'x' }, fallback: {} });
    assertError(none, 400, 'VALIDATION_FAILED');
    assert.match(none.json.error.message, /^fallback\.afterSeconds: /);
  });

  test('browser tokens: a fallback reserves the SMS in maxSends', async () => {
    const mint = await call(w.main, 'POST', '/v1/tokens', { scopes: ['messages:send'], maxSends: 3 });
    const t = mint.json.token;
    const tok = (body) => request(w.main.url, '/v1/messages', { method: 'POST', body: JSON.stringify(body), headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' } });
    const phone = freshPhone();
    assert.equal((await tok({ phoneNumber: phone, contentMessage: { text: 'a' }, fallback: { afterSeconds: 600 } })).status, 200);
    assertError(await tok({ phoneNumber: phone, contentMessage: { text: 'b' }, fallback: { afterSeconds: 600 } }), 403, 'BUDGET_EXHAUSTED');
    assert.equal((await tok({ phoneNumber: phone, contentMessage: { text: 'c' } })).status, 200);
  });

  test('no secret or panic in the logs', () => {
    for (const worker of Object.values(w)) assertCleanLogs(worker.logs());
    assert.ok(!w.main.logs().includes(twilio.authToken), 'the Twilio auth token is never logged');
  });
});
