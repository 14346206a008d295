// Fault behaviour (issue 6, "Faults"): what RBM and API callers get when something the Worker
// depends on fails. The rule under test: an event is acknowledged (200) only once it is stored
// or safely queued; otherwise RBM gets a non-200 and retries. Callers of /v1 get 502/503/504
// with a message naming the cause.
//
// Miniflare cannot make a KV write or a queue send fail, so those faults use the second build
// (build-faults/, cargo feature `fault-injection`, src/faults.rs): its FAULTS var makes
// StatusStore writes ("kv_put") or EVENTS sends ("queue_send") fail. Everything else fails for
// real: a token endpoint on a closed port, one that never answers, the Google fake's scripted
// numbers (slow, connection reset), the sink's 5xx / 410 / slow modes.
//
// Workers (all started in before(), stopped in after()):
//   normal     build/, inline, forwards to sinkInline; RBM_TIMEOUT_MS 1500
//   kvInline   build-faults/, FAULTS=kv_put, inline
//   kvQueue    build-faults/, FAULTS=kv_put, queue;  token_uri = a closed loopback port
//   qFail      build-faults/, FAULTS=queue_send, queue; token_uri = a server that never answers
//   queue      build/, queue, forwards to sinkQueue; RETRY_DELAY_SECONDS 1, RBM_TIMEOUT_MS 1500
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

import { startWorker, REPO } from '../support/worker.mjs';
import { TOKENS, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs } from '../support/assert.mjs';
import { startGoogleFake } from '../fakes/google.mjs';
import { startSink } from '../fakes/sink.mjs';
import * as rbm from '../support/rbm.mjs';

const { signedEnvelope, post, get, request, pollUntil, PHONE, AGENT_ID } = rbm;
const [, TOK_NEW] = TOKENS;
const [KEY_ONE] = API_KEYS;
const AUTH = { authorization: `Bearer ${KEY_ONE}` };
const JSON_AUTH = { ...AUTH, 'content-type': 'application/json' };
const FORWARD_SECRET = `whsec_${crypto.randomBytes(32).toString('base64')}`;
const FAULTS_BUILD = path.join(REPO, 'build-faults');
const TIMEOUT_MS = 1500;
const SLOW_MS = 3000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let google;
let sinkInline;
let sinkQueue;
let hangingTokenServer;
const hangingSockets = new Set();
const w = {};
const answers = []; // every answer: {what, status, expected5xx}
let kvQueueEvent; // sent in before(): dead-lettered while the other tests run
let closedPortHolder;

async function call(worker, what, method, p, { body, headers = AUTH, expected5xx = false } = {}) {
  const h = { ...headers };
  let b = body;
  if (b !== undefined && typeof b !== 'string') {
    b = JSON.stringify(b);
    h['content-type'] ??= 'application/json';
  }
  const res = await request(worker.url, p, { method, body: b, headers: h });
  answers.push({ what, status: res.status, expected5xx, text: res.text.slice(0, 200) });
  return res;
}

async function webhook(worker, what, env, expected5xx = false) {
  const res = await post(worker.url, '/webhook', env);
  answers.push({ what, status: res.status, expected5xx, text: res.text.slice(0, 200) });
  return res;
}

const readStatus = (worker, id) => get(worker.url, `/v1/messages/${id}`, AUTH);
const sendBody = (over = {}) => ({ phoneNumber: PHONE, contentMessage: { text: 'fault test' }, ...over });

/** Parsed JSON log lines of a Worker whose msg matches. */
function logLines(worker, msg) {
  const out = [];
  for (const line of worker.logs().split('\n')) {
    const i = line.indexOf('{"');
    if (i < 0) continue;
    try {
      const o = JSON.parse(line.slice(i));
      if (o.msg === msg) out.push(o);
    } catch { /* not one of ours */ }
  }
  return out;
}

function saKeyWithTokenUri(uri) {
  const key = JSON.parse(google.serviceAccountKey);
  key.token_uri = uri;
  return JSON.stringify(key);
}

function config({ build, processing, queues = false, vars = {}, secrets = {} }) {
  return {
    buildDir: build,
    kv: true,
    queues,
    secrets: {
      RBM_CLIENT_TOKEN: TOKENS.join(','),
      API_KEYS: API_KEYS.join(','),
      RBM_SERVICE_ACCOUNT_KEY: google.serviceAccountKey,
      ...secrets,
    },
    vars: {
      RBM_AGENT_ID: AGENT_ID,
      STATUS_TTL_DAYS: '30',
      PROCESSING: processing,
      RBM_API_BASE: google.url,
      RBM_TIMEOUT_MS: String(TIMEOUT_MS),
      ...vars,
    },
  };
}

const forwardsOf = (sink, id) => sink.deliveries.filter((d) => d.id === id);

describe('faults', () => {
  before(async () => {
    assert.ok(fs.existsSync(path.join(FAULTS_BUILD, 'index_bg.wasm')), 'build-faults/ is missing: make build-faults/index_bg.wasm');
    google = await startGoogleFake({ slowMs: SLOW_MS });
    sinkInline = await startSink({ secret: FORWARD_SECRET });
    sinkQueue = await startSink({ secret: FORWARD_SECRET });
    hangingTokenServer = http.createServer(() => { /* never answers */ });
    hangingTokenServer.on('connection', (s) => { hangingSockets.add(s); s.on('close', () => hangingSockets.delete(s)); });
    await new Promise((r) => hangingTokenServer.listen(0, '127.0.0.1', r));
    // The "closed" port is held by a listener of ours while the Workers start (so none of them
    // can get it), and closed just before the test that needs it refused.
    closedPortHolder = http.createServer();
    await new Promise((r) => closedPortHolder.listen(0, '127.0.0.1', r));
    const closedPort = closedPortHolder.address().port;
    const forward = (sink) => ({ FORWARD_URL: `${sink.url}/rbm` });
    const started = await Promise.allSettled([
      startWorker({ name: 'rbm-edge-faults-normal', ...config({ build: path.join(REPO, 'build'), processing: 'inline', vars: forward(sinkInline), secrets: { FORWARD_SECRET } }) }),
      startWorker({ name: 'rbm-edge-faults-kv-inline', ...config({ build: FAULTS_BUILD, processing: 'inline', vars: { FAULTS: 'kv_put' } }) }),
      startWorker({
        name: 'rbm-edge-faults-kv-queue',
        ...config({ build: FAULTS_BUILD, processing: 'queue', queues: true, vars: { FAULTS: 'kv_put', RETRY_DELAY_SECONDS: '1' },
          secrets: { RBM_SERVICE_ACCOUNT_KEY: saKeyWithTokenUri(`http://127.0.0.1:${closedPort}/token`) } }),
      }),
      startWorker({
        name: 'rbm-edge-faults-queue-send',
        ...config({ build: FAULTS_BUILD, processing: 'queue', queues: true, vars: { FAULTS: 'queue_send' },
          secrets: { RBM_SERVICE_ACCOUNT_KEY: saKeyWithTokenUri(`http://127.0.0.1:${hangingTokenServer.address().port}/token`) } }),
      }),
      startWorker({ name: 'rbm-edge-faults-queue', ...config({ build: path.join(REPO, 'build'), processing: 'queue', queues: true, vars: { ...forward(sinkQueue), RETRY_DELAY_SECONDS: '1' }, secrets: { FORWARD_SECRET } }) }),
    ]);
    [w.normal, w.kvInline, w.kvQueue, w.qFail, w.queue] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    // Dead-lettering takes 4 attempts with growing delays: start it now, check it last.
    kvQueueEvent = rbm.receipt('DELIVERED', crypto.randomUUID());
    const res = await webhook(w.kvQueue, 'kvQueue DELIVERED', signedEnvelope(kvQueueEvent, TOK_NEW));
    assert.equal(res.status, 200, `queued, so acknowledged: ${res.text}`);
  });

  after(async () => {
    await Promise.allSettled(Object.values(w).map((x) => x?.stop()));
    for (const s of hangingSockets) s.destroy();
    await Promise.allSettled([
      google?.close(), sinkInline?.close(), sinkQueue?.close(),
      hangingTokenServer && new Promise((r) => hangingTokenServer.close(r)),
      closedPortHolder?.listening && new Promise((r) => closedPortHolder.close(r)),
    ]);
  });

  describe('KV write failure, PROCESSING=inline (FAULTS=kv_put)', () => {
    test('receipts and TTL notices -> 503 STORAGE_UNAVAILABLE, nothing recorded; the same signed event succeeds on a normal Worker', async () => {
      for (const type of ['DELIVERED', 'READ', 'TTL_EXPIRATION_REVOKED', 'TTL_EXPIRATION_REVOKE_FAILED']) {
        const id = crypto.randomUUID();
        const env = signedEnvelope(rbm.statusEvent(type, id), TOK_NEW, { pubsub: true });
        for (let attempt = 1; attempt <= 2; attempt++) { // RBM's retry meets the same answer
          const res = await webhook(w.kvInline, `kv_put ${type} #${attempt}`, env, true);
          assertError(res, 503, 'STORAGE_UNAVAILABLE', `${type} with KV writes failing, attempt ${attempt}`);
          assert.match(res.json.error.message, /status store/i, res.text);
        }
        assertError(await readStatus(w.kvInline, id), 404, 'NOT_FOUND', `${type}: nothing recorded`);
        const ok = await webhook(w.normal, `normal ${type}`, env);
        assert.equal(ok.status, 200, `the same bytes on a normal Worker: ${ok.text}`);
        assert.deepEqual(ok.json, { ok: true, kind: type });
        const view = await readStatus(w.normal, id);
        assert.equal(view.status, 200, view.text);
        assert.equal(view.json.status, { DELIVERED: 'DELIVERED', READ: 'READ', TTL_EXPIRATION_REVOKED: 'REVOKED', TTL_EXPIRATION_REVOKE_FAILED: 'EXPIRED' }[type]);
      }
    });

    test('what needs no storage is unaffected: handshake, user messages, IS_TYPING -> 200', async () => {
      const hs = await webhook(w.kvInline, 'kv_put handshake', rbm.handshake(TOK_NEW, 'still-here'));
      assert.equal(hs.status, 200, hs.text);
      assert.equal(hs.text, 'still-here');
      for (const ev of [rbm.userText(), rbm.location(), rbm.isTyping()]) {
        const res = await webhook(w.kvInline, 'kv_put no-status event', signedEnvelope(ev, TOK_NEW));
        assert.equal(res.status, 200, res.text);
      }
    });

    test('a send whose status write fails still answers RBM\'s 200 (status SENT); nothing recorded; logged "status not recorded"', async () => {
      const messageId = crypto.randomUUID();
      const res = await call(w.kvInline, 'kv_put send', 'POST', '/v1/messages', { body: sendBody({ messageId }), headers: JSON_AUTH });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.status, 'SENT', res.text);
      assert.equal(res.json.messageId, messageId);
      assert.ok(google.messages.has(messageId), 'RBM has the message: the send happened');
      assertError(await readStatus(w.kvInline, messageId), 404, 'NOT_FOUND', 'SENT not recorded');
      // RBM rejects (400): the answer is passed on, SEND_FAILED is not recorded either.
      const failedId = crypto.randomUUID();
      const rejected = await call(w.kvInline, 'kv_put send RBM 400', 'POST', '/v1/messages', { body: sendBody({ messageId: failedId, phoneNumber: '+15550000400' }), headers: JSON_AUTH });
      assert.equal(rejected.status, 400, rejected.text);
      assert.equal(rejected.json.status, 'FAILED', rejected.text);
      // Revoke: RBM says 200, REVOKE_REQUESTED cannot be written, the answer is still RBM's.
      const revoke = await call(w.kvInline, 'kv_put revoke', 'DELETE', `/v1/messages/${messageId}?phoneNumber=%2B12223334444`);
      assert.equal(revoke.status, 200, revoke.text);
      assert.equal(revoke.json.status, 'REVOKE_REQUESTED', revoke.text);
      const lines = await pollUntil(() => logLines(w.kvInline, 'status not recorded'), (l) => l.length >= 3, 5000);
      const seen = lines.map((l) => `${l.messageId} ${l.type}`);
      for (const want of [`${messageId} SENT`, `${failedId} SEND_FAILED`, `${messageId} REVOKE_REQUESTED`]) {
        assert.ok(seen.includes(want), `log "status not recorded" for ${want}; got ${JSON.stringify(lines)}`);
      }
      for (const l of lines) {
        assert.equal(l.level, 'error', JSON.stringify(l));
        assert.match(l.error, /did not accept the write/, JSON.stringify(l));
      }
    });
  });

  describe('queue send failure, PROCESSING=queue (FAULTS=queue_send)', () => {
    test('every event -> 503 QUEUE_UNAVAILABLE (RBM retries), nothing processed; the handshake still works', async () => {
      const id = crypto.randomUUID();
      for (const ev of [rbm.receipt('DELIVERED', id), rbm.userText(), rbm.ttlRevoked(crypto.randomUUID())]) {
        const res = await webhook(w.qFail, `queue_send ${ev.eventType ?? 'text'}`, signedEnvelope(ev, TOK_NEW), true);
        assertError(res, 503, 'QUEUE_UNAVAILABLE', `queue send failing: ${ev.eventType ?? 'text'}`);
        assert.match(res.json.error.message, /EVENTS queue/, res.text);
      }
      const hs = await webhook(w.qFail, 'queue_send handshake', rbm.handshake(TOK_NEW, 'hs'));
      assert.equal(hs.status, 200, hs.text);
      await sleep(1500); // a consumer would have run within a batch timeout
      assertError(await readStatus(w.qFail, id), 404, 'NOT_FOUND', 'nothing was queued, so nothing recorded');
    });
  });

  describe('token endpoint down', () => {
    test('token endpoint answers 500 -> 502 UPSTREAM_UNAVAILABLE naming it (HTTP 500), RBM not called; recovers when it does', async () => {
      google.failTokens('http500');
      try {
        const before = google.stats.rbmRequests;
        const tokBefore = google.stats.tokenRequests;
        const id = crypto.randomUUID();
        for (const [method, p, body] of [
          ['POST', '/v1/messages', sendBody({ messageId: id })],
          ['GET', `/v1/phones/${encodeURIComponent(PHONE)}/capabilities`],
          ['POST', `/v1/phones/${encodeURIComponent(PHONE)}/events`, { eventType: 'IS_TYPING' }],
        ]) {
          const res = await call(w.normal, `token 500 ${method} ${p}`, method, p, { body, expected5xx: true });
          assertError(res, 502, 'UPSTREAM_UNAVAILABLE', `${method} ${p} with the token endpoint failing`);
          assert.match(res.json.error.message, /token endpoint .*HTTP 500/i, res.text);
        }
        assert.equal(google.stats.rbmRequests, before, 'RBM got nothing');
        assert.ok(google.stats.tokenRequests > tokBefore, 'the token endpoint was asked (no token was cached)');
        assertError(await readStatus(w.normal, id), 404, 'NOT_FOUND', 'nothing recorded');
      } finally {
        google.failTokens(null);
      }
      const ok = await call(w.normal, 'token back', 'POST', '/v1/messages', { body: sendBody() });
      assert.equal(ok.status, 200, ok.text);
    });

    test('token_uri on a closed port -> 502 UPSTREAM_UNAVAILABLE "could not be reached"', async () => {
      await new Promise((r) => closedPortHolder.close(r));
      const res = await call(w.kvQueue, 'token closed port', 'POST', '/v1/messages', { body: sendBody(), expected5xx: true });
      assertError(res, 502, 'UPSTREAM_UNAVAILABLE', 'token endpoint on a closed port');
      assert.match(res.json.error.message, /token endpoint .*could not be reached/i, res.text);
    });

    test('token endpoint never answers -> 504 UPSTREAM_TIMEOUT naming it, after RBM_TIMEOUT_MS', async () => {
      const t = Date.now();
      const res = await call(w.qFail, 'token hangs', 'GET', `/v1/phones/${encodeURIComponent(PHONE)}/capabilities`, { expected5xx: true });
      const elapsed = Date.now() - t;
      assertError(res, 504, 'UPSTREAM_TIMEOUT', 'token endpoint hanging');
      assert.match(res.json.error.message, /token endpoint .*did not answer within 1500 ms/i, res.text);
      assert.ok(elapsed >= TIMEOUT_MS - 100 && elapsed < TIMEOUT_MS + 5000, `answered after ${elapsed} ms`);
    });
  });

  describe('RBM slow or closing the connection', () => {
    test(`RBM slower than RBM_TIMEOUT_MS (${TIMEOUT_MS} ms) -> 504 UPSTREAM_TIMEOUT, nothing recorded`, async () => {
      const id = crypto.randomUUID();
      const t = Date.now();
      const res = await call(w.normal, 'RBM slow send', 'POST', '/v1/messages', { body: sendBody({ messageId: id, phoneNumber: '+15550000999' }), expected5xx: true });
      const elapsed = Date.now() - t;
      assertError(res, 504, 'UPSTREAM_TIMEOUT', 'slow RBM');
      assert.match(res.json.error.message, /RBM did not answer within 1500 ms/, res.text);
      assert.ok(elapsed >= TIMEOUT_MS - 100 && elapsed < SLOW_MS, `answered after ${elapsed} ms`);
      assertError(await readStatus(w.normal, id), 404, 'NOT_FOUND', 'nothing recorded after a timeout');
      const caps = await call(w.normal, 'RBM slow capabilities', 'GET', '/v1/phones/%2B15550000999/capabilities', { expected5xx: true });
      assertError(caps, 504, 'UPSTREAM_TIMEOUT', 'slow RBM, capabilities');
    });

    test('RBM closes the connection (+15550000666) -> 502 UPSTREAM_UNAVAILABLE, nothing recorded', async () => {
      const id = crypto.randomUUID();
      const res = await call(w.normal, 'RBM reset send', 'POST', '/v1/messages', { body: sendBody({ messageId: id, phoneNumber: '+15550000666' }), expected5xx: true });
      assertError(res, 502, 'UPSTREAM_UNAVAILABLE', 'RBM reset');
      assert.match(res.json.error.message, /RBM could not be reached/, res.text);
      assertError(await readStatus(w.normal, id), 404, 'NOT_FOUND', 'nothing recorded after a reset');
      const ev = await call(w.normal, 'RBM reset event', 'POST', '/v1/phones/%2B15550000666/events', { body: { eventType: 'IS_TYPING' }, expected5xx: true });
      assertError(ev, 502, 'UPSTREAM_UNAVAILABLE', 'RBM reset, events');
    });
  });

  describe('backend failures, PROCESSING=inline (the webhook answer carries them to RBM)', () => {
    test('backend 5xx -> webhook 502 (RBM retries); 410 -> 200 (dropped); slower than RBM_TIMEOUT_MS -> 504', async () => {
      sinkInline.failNext(1, 500);
      const e1 = rbm.userText({ text: 'inline 500' });
      const r1 = await webhook(w.normal, 'inline backend 500', signedEnvelope(e1, TOK_NEW), true);
      assertError(r1, 502, 'UPSTREAM_UNAVAILABLE', 'inline forward, backend 500');
      assert.match(r1.json.error.message, /answered HTTP 500/, r1.text);
      sinkInline.setMode('gone410');
      const r2 = await webhook(w.normal, 'inline backend 410', signedEnvelope(rbm.userText({ text: 'inline 410' }), TOK_NEW));
      sinkInline.setMode('ok');
      assert.equal(r2.status, 200, `410 = the backend asks us to stop: dropped, acknowledged: ${r2.text}`);
      sinkInline.setMode('slow');
      sinkInline.setDelay(SLOW_MS);
      const t = Date.now();
      const r3 = await webhook(w.normal, 'inline backend slow', signedEnvelope(rbm.userText({ text: 'inline slow' }), TOK_NEW), true);
      const elapsed = Date.now() - t;
      sinkInline.setMode('ok');
      sinkInline.setDelay(0);
      assertError(r3, 504, 'UPSTREAM_TIMEOUT', 'inline forward, backend slow');
      assert.ok(elapsed >= TIMEOUT_MS - 100 && elapsed < SLOW_MS, `answered after ${elapsed} ms`);
      // RBM's redelivery of the first event, backend healthy again -> 200.
      const again = await webhook(w.normal, 'inline backend recovered', signedEnvelope(e1, TOK_NEW));
      assert.equal(again.status, 200, again.text);
    });
  });

  describe('backend failures, PROCESSING=queue (the webhook already answered 200)', () => {
    test('backend 5xx twice -> retried with the same webhook-id until 200', { timeout: 30_000 }, async () => {
      const ev = rbm.userText({ text: 'queue 5xx' });
      const id = `rbm_msg_${ev.messageId}`;
      sinkQueue.failNext(2, 503);
      const res = await webhook(w.queue, 'queue backend 5xx', signedEnvelope(ev, TOK_NEW));
      assert.equal(res.status, 200, res.text);
      await sinkQueue.waitFor((d) => d.id === id && d.status === 200, 25_000);
      assert.deepEqual(forwardsOf(sinkQueue, id).map((d) => d.status), [503, 503, 200]);
    });

    test('backend 410 -> dropped after one attempt, not dead-lettered', { timeout: 30_000 }, async () => {
      const ev = rbm.userText({ text: 'queue 410' });
      const id = `rbm_msg_${ev.messageId}`;
      sinkQueue.setMode('gone410');
      try {
        const res = await webhook(w.queue, 'queue backend 410', signedEnvelope(ev, TOK_NEW));
        assert.equal(res.status, 200, res.text);
        await sinkQueue.waitFor((d) => d.id === id, 10_000);
        await sleep(4000); // a retry would come within ~2 s (delay 1 s + batch timeout 1 s)
      } finally {
        sinkQueue.setMode('ok');
      }
      assert.deepEqual(forwardsOf(sinkQueue, id).map((d) => d.status), [410]);
      const list = await get(w.queue.url, '/v1/dead-letters', AUTH);
      assert.equal(list.status, 200, list.text);
      assert.ok(!list.json.deadLetters.some((x) => x.messageId === ev.messageId), list.text);
    });

    test(`backend slower than RBM_TIMEOUT_MS -> the attempt is abandoned and retried`, { timeout: 30_000 }, async () => {
      const ev = rbm.userText({ text: 'queue slow' });
      const id = `rbm_msg_${ev.messageId}`;
      sinkQueue.setMode('slow');
      sinkQueue.setDelay(SLOW_MS);
      try {
        const res = await webhook(w.queue, 'queue backend slow', signedEnvelope(ev, TOK_NEW));
        assert.equal(res.status, 200, res.text);
        await sinkQueue.waitFor((d) => d.id === id, 10_000);
      } finally {
        sinkQueue.setMode('ok');
        sinkQueue.setDelay(0);
      }
      const attempts = await sinkQueue.waitFor((d) => d.id === id, 20_000, 2);
      assert.ok(attempts.length >= 2, 'retried');
      const retryLogs = await pollUntil(
        () => logLines(w.queue, 'job failed; will retry').filter((l) => /did not answer within 1500 ms/.test(l.error)),
        (l) => l.length >= 1, 5000);
      assert.ok(retryLogs.length >= 1, 'the consumer logged the timeout and a retry');
      await sinkQueue.waitFor((d) => d.id === id && d.status === 200 && d !== attempts[0], 10_000);
    });
  });

  describe('KV write failure behind the queue (FAULTS=kv_put, PROCESSING=queue)', () => {
    test('the queued event is retried, then dead-lettered (kept for replay), never recorded', { timeout: 45_000 }, async () => {
      const list = await pollUntil(
        () => get(w.kvQueue.url, '/v1/dead-letters', AUTH),
        (r) => r.status === 200 && r.json.deadLetters.some((x) => x.messageId === kvQueueEvent.messageId),
        40_000);
      assert.equal(list.status, 200, list.text);
      const dl = list.json.deadLetters.find((x) => x.messageId === kvQueueEvent.messageId);
      assert.ok(dl, `dead-lettered: ${list.text}`);
      assert.equal(dl.kind, 'DELIVERED');
      assert.equal(dl.job, 'event');
      assertError(await readStatus(w.kvQueue, kvQueueEvent.messageId), 404, 'NOT_FOUND', 'never recorded');
      const retries = logLines(w.kvQueue, 'job failed; will retry');
      assert.ok(retries.length >= 3, `retried before dead-lettering: ${retries.length} retries logged`);
    });
  });

  test('no unexpected 5xx; logs hold no secret and no panic', () => {
    const unexpected = answers.filter((a) => a.status >= 500 && !a.expected5xx);
    assert.deepEqual(unexpected, []);
    for (const [name, worker] of Object.entries(w)) {
      const logs = worker.logs();
      assertCleanLogs(logs);
      for (const bad of ['RuntimeError', FORWARD_SECRET.slice('whsec_'.length), 'BEGIN PRIVATE KEY', 'ya29.']) {
        assert.ok(!logs.includes(bad), `${name} logs contain ${JSON.stringify(bad)}`);
      }
    }
  });
});
