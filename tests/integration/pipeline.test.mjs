// The async pipeline (issue 4): POST /webhook enqueues on the EVENTS queue and answers 200; the
// queue consumer records status, forwards events to the backend (Standard Webhooks signed) and
// sends per-message status callbacks; jobs that exhaust their retries land in the DLQ and are
// kept in KV, listable / replayable / deletable through /v1/dead-letters.
// Runs the built Worker in wrangler dev with local Queues (max_retries 3, batch timeout 1 s).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startWorker } from '../support/worker.mjs';
import { TOKENS, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs } from '../support/assert.mjs';
import * as rbm from '../support/rbm.mjs';
import { startSink } from '../fakes/sink.mjs';
import { startGoogleFake } from '../fakes/google.mjs';

const { postEvent, get, post, request, pollUntil } = rbm;
const [TOK_OLD, TOK_NEW] = TOKENS;
const [KEY_ONE] = API_KEYS;
const AUTH = { authorization: `Bearer ${KEY_ONE}` };
const JSON_AUTH = { ...AUTH, 'content-type': 'application/json' };
const FORWARD_SECRET = `whsec_${crypto.randomBytes(32).toString('base64')}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

let google;
let sinkA; // backend of worker A (default FORWARD_KINDS) + status callbacks
let sinkB; // backend of worker B (FORWARD_KINDS="text,IS_TYPING")
let workerA;
let workerB;
let workerC; // PROCESSING=queue without any EVENTS binding, no FORWARD_SECRET
const t0 = Date.now();
const allResponses = [];

function queueConfig(sink, extraVars = {}) {
  return {
    secrets: {
      RBM_CLIENT_TOKEN: TOKENS.join(','),
      API_KEYS: API_KEYS.join(','),
      FORWARD_SECRET,
      RBM_SERVICE_ACCOUNT_KEY: JSON.stringify(JSON.parse(google.serviceAccountKey)),
    },
    vars: {
      RBM_AGENT_ID: 'test_agent',
      STATUS_TTL_DAYS: '30',
      PROCESSING: 'queue',
      FORWARD_URL: `${sink.url}/rbm`,
      RETRY_DELAY_SECONDS: '1',
      RBM_API_BASE: google.url,
      ALLOW_INSECURE_CALLBACKS: 'true', // the sink is plain http on loopback
      ...extraVars,
    },
    kv: true,
    queues: true,
  };
}

/** Independent Standard Webhooks check (node:crypto), on top of the sink's own. */
function assertSigned(d, what = '') {
  const ctx = `${what} ${d.path} webhook-id=${d.id}: ${d.reason ?? ''}`;
  assert.equal(d.signatureValid, true, `sink rejected the signature; ${ctx}`);
  const id = d.headers['webhook-id'];
  const ts = d.headers['webhook-timestamp'];
  const sigs = String(d.headers['webhook-signature'] ?? '').split(' ');
  assert.match(ts ?? '', /^[0-9]+$/, ctx);
  assert.ok(Math.abs(Number(ts) - Date.now() / 1000) < 300, `webhook-timestamp ${ts} is about now; ${ctx}`);
  const key = Buffer.from(FORWARD_SECRET.slice('whsec_'.length), 'base64');
  const want = crypto.createHmac('sha256', key).update(`${id}.${ts}.${d.raw}`, 'utf8').digest('base64');
  assert.ok(sigs.includes(`v1,${want}`), `webhook-signature ${sigs.join(' ')} has v1,${want}; ${ctx}`);
  assert.match(d.headers['content-type'] ?? '', /^application\/json/i, ctx);
}

async function webhook(worker, event, token = TOK_NEW, opts) {
  const res = await postEvent(worker.url, event, token, opts);
  allResponses.push({ what: `webhook ${event.eventType ?? 'message'} ${event.messageId ?? ''}`, status: res.status, text: res.text.slice(0, 200) });
  return res;
}

function kindOf(ev) {
  if (ev.eventType) return ev.eventType;
  return ['text', 'suggestionResponse', 'location', 'userFile'].find((k) => ev[k] !== undefined);
}

async function webhookOk(worker, event, token, opts) {
  const res = await webhook(worker, event, token, opts);
  assert.equal(res.status, 200, `webhook ${kindOf(event)}: ${res.status} ${res.text}`);
  assert.deepEqual(res.json, { ok: true, kind: kindOf(event) }, res.text);
  return res;
}

/** The webhook-id the contract documents for an event (no Pub/Sub id involved). */
const expectedWebhookId = (ev) => (ev.eventId ? `rbm_evt_${ev.eventId}` : `rbm_msg_${ev.messageId}`);

/** Deliveries of one forwarded event, by webhook-id, on a forward path. */
const forwardsOf = (sink, id) => sink.deliveries.filter((d) => d.path === '/rbm' && d.id === id);

async function waitForForwards(sink, id, min = 1, timeoutMs = 10_000, what = '') {
  try {
    return await sink.waitFor((d) => d.path === '/rbm' && d.id === id, timeoutMs, min);
  } catch (e) {
    const seen = sink.deliveries.map((d) => `${d.path} ${d.id} -> ${d.status}`).slice(-20).join('\n  ');
    throw new Error(`${what}: waiting for ${min} forward(s) of ${id}: ${e.message}\nlast deliveries:\n  ${seen}`);
  }
}

/** Checks a forward document against the event that was sent. */
function assertForwardDoc(d, ev, what) {
  const ctx = `${what}: ${d.raw.slice(0, 600)}`;
  assertSigned(d, what);
  const doc = d.body;
  assert.ok(doc && typeof doc === 'object', ctx);
  const kind = kindOf(ev);
  const isUserMessage = !ev.eventType;
  assert.equal(d.id, expectedWebhookId(ev), `webhook-id; ${ctx}`);
  assert.equal(doc.id, d.id, `doc.id = webhook-id; ${ctx}`);
  assert.equal(doc.kind, kind, ctx);
  assert.equal(doc.agentId, ev.agentId, ctx);
  assert.equal(doc.phoneNumber, ev.senderPhoneNumber ?? ev.phoneNumber, ctx);
  if (ev.messageId !== undefined) assert.equal(doc.messageId, ev.messageId, ctx);
  else assert.ok(!('messageId' in doc), `no messageId; ${ctx}`);
  if (isUserMessage) assert.ok(!('eventId' in doc), `no eventId on a user message; ${ctx}`);
  else assert.equal(doc.eventId, ev.eventId, ctx);
  assert.equal(doc.sentAt, ev.sendTime, ctx);
  const received = Date.parse(doc.receivedAt);
  assert.ok(Number.isFinite(received) && received >= t0 - 60_000 && received <= Date.now() + 60_000, `receivedAt about now; ${ctx}`);
  assert.deepEqual(doc.event, ev, `event is RBM's JSON verbatim; ${ctx}`);
  assert.equal(doc.type, 'event', `type tells a forward from a callback; ${ctx}`);
  const allowed = new Set(['type', 'id', 'kind', 'agentId', 'phoneNumber', 'messageId', 'eventId', 'sentAt', 'receivedAt', 'webhookType', 'event']);
  assert.deepEqual(Object.keys(doc).filter((k) => !allowed.has(k)), [], `no undocumented fields; ${ctx}`);
}

const readStatus = (worker, id) => get(worker.url, `/v1/messages/${id}`, AUTH);

async function expectStatus(worker, id, status, timeoutMs = 8000) {
  const res = await pollUntil(() => readStatus(worker, id), (r) => r.status === 200 && r.json?.status === status, timeoutMs);
  assert.equal(res.status, 200, `GET /v1/messages/${id}: ${res.status} ${res.text}`);
  assert.equal(res.json.status, status, `GET /v1/messages/${id}: ${res.text}`);
  return res.json;
}

const listDeadLetters = (worker, headers = AUTH) => get(worker.url, '/v1/dead-letters', headers);

describe('async pipeline (EVENTS queue, forwarding, callbacks, dead letters)', () => {
  before(async () => {
    google = await startGoogleFake();
    sinkA = await startSink({ secret: FORWARD_SECRET });
    sinkB = await startSink({ secret: FORWARD_SECRET });
    [workerA, workerB, workerC] = await Promise.all([
      startWorker({ ...queueConfig(sinkA), name: 'rbm-edge-pipeline-a' }),
      startWorker({ ...queueConfig(sinkB, { FORWARD_KINDS: 'text,IS_TYPING' }), name: 'rbm-edge-pipeline-b' }),
      startWorker({
        secrets: { RBM_CLIENT_TOKEN: TOKENS.join(','), API_KEYS: API_KEYS.join(','), RBM_SERVICE_ACCOUNT_KEY: JSON.stringify(JSON.parse(google.serviceAccountKey)) },
        vars: { RBM_AGENT_ID: 'test_agent', PROCESSING: 'queue', RBM_API_BASE: google.url },
        kv: true,
        queues: false,
        name: 'rbm-edge-pipeline-c',
      }),
    ]);
  });

  after(async () => {
    await Promise.allSettled([workerA?.stop(), workerB?.stop(), workerC?.stop()]);
    await Promise.allSettled([sinkA?.close(), sinkB?.close(), google?.close()]);
  });

  test('each forwarded kind reaches the backend once per webhook delivery, signed, in the documented shape; IS_TYPING is not forwarded by default; status records are written', { timeout: 60_000 }, async () => {
    const ids = { DELIVERED: crypto.randomUUID(), READ: crypto.randomUUID(), REVOKED: crypto.randomUUID(), FAILED: crypto.randomUUID() };
    const events = [
      rbm.userText(),
      rbm.suggestionResponse(),
      rbm.location(),
      rbm.userFile(),
      rbm.subscribe(),
      rbm.unsubscribe(),
      rbm.receipt('DELIVERED', ids.DELIVERED),
      rbm.receipt('READ', ids.READ),
      rbm.ttlRevoked(ids.REVOKED),
      rbm.ttlRevokeFailed(ids.FAILED),
    ];
    const typing = rbm.isTyping();
    for (const ev of [...events, typing]) await webhookOk(workerA, ev);
    for (const ev of events) await waitForForwards(sinkA, expectedWebhookId(ev), 1, 15_000, kindOf(ev));
    await sleep(2500); // a second copy or a late IS_TYPING would show up within this
    for (const ev of events) {
      const got = forwardsOf(sinkA, expectedWebhookId(ev));
      assert.equal(got.length, 1, `${kindOf(ev)}: forwarded ${got.length} times`);
      assertForwardDoc(got[0], ev, kindOf(ev));
      assert.equal(got[0].status, 200);
    }
    const typingSeen = sinkA.deliveries.filter((d) => d.id === expectedWebhookId(typing) || d.body?.kind === 'IS_TYPING');
    assert.deepEqual(typingSeen.map((d) => d.raw), [], 'IS_TYPING is not forwarded by default');
    // Status records come from the consumer too.
    await expectStatus(workerA, ids.DELIVERED, 'DELIVERED');
    await expectStatus(workerA, ids.READ, 'READ');
    await expectStatus(workerA, ids.REVOKED, 'REVOKED');
    await expectStatus(workerA, ids.FAILED, 'EXPIRED');
  });

  test('duplicate RBM deliveries of one event: each forwarded, all with the same webhook-id', { timeout: 30_000 }, async () => {
    const text = rbm.userText();
    const receipt = rbm.receipt('READ', crypto.randomUUID());
    for (const ev of [text, receipt]) {
      await webhookOk(workerA, ev, TOK_NEW);
      await webhookOk(workerA, ev, TOK_OLD, { pubsub: true }); // another envelope, same event
      await webhookOk(workerA, ev, TOK_NEW, { pubsub: true });
    }
    for (const ev of [text, receipt]) await waitForForwards(sinkA, expectedWebhookId(ev), 3, 15_000, `duplicates of ${kindOf(ev)}`);
    await sleep(1500);
    for (const ev of [text, receipt]) {
      const got = forwardsOf(sinkA, expectedWebhookId(ev));
      assert.equal(got.length, 3, `${kindOf(ev)}: 3 deliveries -> ${got.length} forwards`);
      for (const d of got) assertForwardDoc(d, ev, `duplicate ${kindOf(ev)}`);
      assert.deepEqual(new Set(got.map((d) => d.headers['webhook-id'])), new Set([expectedWebhookId(ev)]));
    }
  });

  test('sink fails twice, then succeeds -> delivered after retries, same webhook-id on every attempt', { timeout: 45_000 }, async () => {
    const ev = rbm.userText({ text: 'retry me' });
    const id = expectedWebhookId(ev);
    sinkA.failNext(2);
    const start = Date.now();
    await webhookOk(workerA, ev);
    const ok = await waitForForwards(sinkA, id, 3, 30_000, 'failNext(2)');
    const got = forwardsOf(sinkA, id);
    console.log(`# retries: attempts at +${got.map((d) => d.at - start).join(' ms, +')} ms, answers ${got.map((d) => d.status).join(',')}`);
    assert.deepEqual(got.slice(0, 3).map((d) => d.status), [500, 500, 200]);
    for (const d of ok) assertForwardDoc(d, ev, 'retried forward');
    await sleep(2500);
    assert.equal(forwardsOf(sinkA, id).length, 3, 'no delivery after the 200');
  });

  test('410 Gone from the backend -> dropped: one delivery, no retry, no dead letter', { timeout: 30_000 }, async () => {
    const ev = rbm.userText({ text: 'gone' });
    const id = expectedWebhookId(ev);
    sinkA.setMode('gone410');
    try {
      await webhookOk(workerA, ev);
      await waitForForwards(sinkA, id, 1, 10_000, '410');
      await sleep(4000); // first retry would come after ~1 s (+ batch timeout 1 s)
    } finally {
      sinkA.setMode('ok');
    }
    const got = forwardsOf(sinkA, id);
    assert.deepEqual(got.map((d) => d.status), [410], 'exactly one delivery');
    const list = await listDeadLetters(workerA);
    assert.equal(list.status, 200, list.text);
    assert.ok(!list.json.deadLetters.some((x) => x.messageId === ev.messageId), `not dead-lettered: ${list.text}`);
  });

  describe('dead letters', () => {
    let evReplay;
    let evDelete;
    let dlReplay;
    let dlDelete;

    test('backend always failing -> the jobs land in /v1/dead-letters after max_retries', { timeout: 60_000 }, async () => {
      evReplay = rbm.userText({ text: 'dead, then replayed' });
      evDelete = rbm.location();
      sinkA.setMode('fail500');
      const start = Date.now();
      let list;
      try {
        await webhookOk(workerA, evReplay);
        await webhookOk(workerA, evDelete);
        list = await pollUntil(
          () => listDeadLetters(workerA),
          (r) => r.status === 200 && [evReplay, evDelete].every((ev) => r.json.deadLetters.some((x) => x.messageId === ev.messageId)),
          40_000,
        );
      } finally {
        sinkA.setMode('ok');
      }
      const elapsed = Date.now() - start;
      assert.equal(list.status, 200, list.text);
      assert.match(list.headers.get('content-type') ?? '', /^application\/json/i);
      assert.ok(Array.isArray(list.json.deadLetters), list.text);
      assert.ok(list.json.cursor === null || typeof list.json.cursor === 'string', list.text);
      dlReplay = list.json.deadLetters.find((x) => x.messageId === evReplay.messageId);
      dlDelete = list.json.deadLetters.find((x) => x.messageId === evDelete.messageId);
      assert.ok(dlReplay && dlDelete, `both jobs dead-lettered within 40 s: ${list.text}`);
      for (const [dl, kind] of [[dlReplay, 'text'], [dlDelete, 'location']]) {
        assert.equal(typeof dl.id, 'string', JSON.stringify(dl));
        assert.ok(dl.id.length > 0, JSON.stringify(dl));
        assert.equal(dl.job, 'event', JSON.stringify(dl));
        assert.equal(dl.kind, kind, JSON.stringify(dl));
        const deadAt = Date.parse(dl.deadAt);
        assert.ok(Number.isFinite(deadAt) && deadAt >= start - 5000 && deadAt <= Date.now() + 5000, `deadAt about now: ${JSON.stringify(dl)}`);
      }
      const attempts = forwardsOf(sinkA, expectedWebhookId(evReplay));
      console.log(`# dead letter: listed after ${elapsed} ms; ${attempts.length} attempts at +${attempts.map((d) => d.at - start).join(' ms, +')} ms`);
      assert.ok(attempts.every((d) => d.status === 500), attempts.map((d) => d.status).join(','));
      assert.equal(attempts.length, 4, 'one attempt + max_retries (3) retries');
    });

    test('replay after the backend recovers -> 202, delivered, gone from the list', { timeout: 30_000 }, async () => {
      assert.ok(dlReplay, 'needs the dead letter of the previous test');
      const id = expectedWebhookId(evReplay);
      const before = forwardsOf(sinkA, id).length;
      const res = await post(workerA.url, `/v1/dead-letters/${encodeURIComponent(dlReplay.id)}/replay`, { headers: AUTH });
      allResponses.push({ what: 'replay', status: res.status, text: res.text });
      assert.equal(res.status, 202, res.text);
      assert.deepEqual(res.json, { id: dlReplay.id, replayed: true, job: 'event' });
      const ok = await sinkA.waitFor((d) => d.path === '/rbm' && d.id === id && d.status === 200, 15_000);
      assertForwardDoc(ok[0], evReplay, 'replayed forward');
      assert.equal(forwardsOf(sinkA, id).length, before + 1, 'one more delivery');
      const list = await listDeadLetters(workerA);
      assert.equal(list.status, 200, list.text);
      assert.ok(!list.json.deadLetters.some((x) => x.id === dlReplay.id), `replayed dead letter is gone: ${list.text}`);
      assertError(await post(workerA.url, `/v1/dead-letters/${encodeURIComponent(dlReplay.id)}/replay`, { headers: AUTH }), 404, 'NOT_FOUND', 'second replay');
    });

    test('DELETE a dead letter -> 200, gone, not delivered; then 404', { timeout: 30_000 }, async () => {
      assert.ok(dlDelete, 'needs the dead letter of the earlier test');
      const path = `/v1/dead-letters/${encodeURIComponent(dlDelete.id)}`;
      const before = forwardsOf(sinkA, expectedWebhookId(evDelete)).length;
      const res = await request(workerA.url, path, { method: 'DELETE', headers: AUTH });
      allResponses.push({ what: 'delete', status: res.status, text: res.text });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { id: dlDelete.id, deleted: true });
      const list = await listDeadLetters(workerA);
      assert.ok(!list.json.deadLetters.some((x) => x.id === dlDelete.id), `deleted dead letter is gone: ${list.text}`);
      assertError(await request(workerA.url, path, { method: 'DELETE', headers: AUTH }), 404, 'NOT_FOUND', 'second DELETE');
      assertError(await post(workerA.url, `${path}/replay`, { headers: AUTH }), 404, 'NOT_FOUND', 'replay after DELETE');
      await sleep(1500);
      assert.equal(forwardsOf(sinkA, expectedWebhookId(evDelete)).length, before, 'a deleted dead letter is not delivered');
    });

    test('unknown id -> 404 NOT_FOUND; no or wrong API key -> 401', async () => {
      const unknown = `no-such-${crypto.randomUUID()}`;
      assertError(await post(workerA.url, `/v1/dead-letters/${unknown}/replay`, { headers: AUTH }), 404, 'NOT_FOUND', 'replay unknown');
      assertError(await request(workerA.url, `/v1/dead-letters/${unknown}`, { method: 'DELETE', headers: AUTH }), 404, 'NOT_FOUND', 'DELETE unknown');
      for (const [what, headers] of [['no key', {}], ['wrong key', { authorization: 'Bearer nope' }], ['client token', { authorization: `Bearer ${TOK_NEW}` }]]) {
        assertError(await listDeadLetters(workerA, headers), 401, 'UNAUTHORIZED', `list, ${what}`);
        assertError(await post(workerA.url, `/v1/dead-letters/${unknown}/replay`, { headers }), 401, 'UNAUTHORIZED', `replay, ${what}`);
        assertError(await request(workerA.url, `/v1/dead-letters/${unknown}`, { method: 'DELETE', headers }), 401, 'UNAUTHORIZED', `DELETE, ${what}`);
      }
    });
  });

  describe('status callbacks', () => {
    async function sendWithCallback(tag) {
      const cbPath = `/cb/${tag}-${crypto.randomUUID()}`;
      const body = JSON.stringify({ phoneNumber: rbm.PHONE, statusCallback: `${sinkA.url}${cbPath}`, contentMessage: { text: 'Hi' } });
      const res = await post(workerA.url, '/v1/messages', { body, headers: JSON_AUTH });
      allResponses.push({ what: 'send', status: res.status, text: res.text.slice(0, 200) });
      assert.equal(res.status, 200, `send: ${res.text}`);
      assert.equal(res.json.status, 'SENT', res.text);
      const messageId = res.json.messageId;
      assert.equal(typeof messageId, 'string', res.text);
      await expectStatus(workerA, messageId, 'SENT');
      return { messageId, cbPath };
    }

    const callbacksAt = (cbPath) => sinkA.deliveries.filter((d) => d.path === cbPath);

    async function waitCallback(cbPath, status, timeoutMs = 10_000) {
      try {
        const got = await sinkA.waitFor((d) => d.path === cbPath && d.body?.status === status, timeoutMs);
        return got[0];
      } catch (e) {
        throw new Error(`callback ${status} at ${cbPath}: ${e.message}; seen there: ${JSON.stringify(callbacksAt(cbPath).map((d) => [d.id, d.body?.status]))}`);
      }
    }

    function assertCallback(d, messageId, status) {
      assertSigned(d, `callback ${status}`);
      const ctx = d.raw.slice(0, 600);
      assert.equal(d.headers['webhook-id'], `${messageId}.${status}`, ctx);
      const v = d.body;
      assert.equal(v.messageId, messageId, ctx);
      assert.equal(v.status, status, ctx);
      assert.equal(v.phoneNumber, rbm.PHONE, ctx);
      assert.equal(v.agentId, 'test_agent', ctx);
      assert.ok(Array.isArray(v.events), ctx);
      assert.ok(v.events.some((e) => e.type === 'SENT'), `events include SENT: ${ctx}`);
      assert.ok(Number.isFinite(Date.parse(v.updatedAt)), ctx);
      assert.equal(v.type, 'message.status', `type tells a callback from a forward: ${ctx}`);
      const allowed = new Set(['type', 'messageId', 'phoneNumber', 'agentId', 'status', 'events', 'updatedAt']);
      assert.deepEqual(Object.keys(v).filter((k) => !allowed.has(k)), [], `no undocumented fields: ${ctx}`);
    }

    test('SENT -> DELIVERED -> READ: two callbacks (DELIVERED, READ); none for SENT or a duplicate DELIVERED', { timeout: 45_000 }, async () => {
      const { messageId, cbPath } = await sendWithCallback('dr');
      const delivered = rbm.receipt('DELIVERED', messageId);
      await webhookOk(workerA, delivered);
      await webhookOk(workerA, delivered, TOK_OLD, { pubsub: true }); // RBM redelivery
      const cbDelivered = await waitCallback(cbPath, 'DELIVERED');
      assertCallback(cbDelivered, messageId, 'DELIVERED');
      assert.ok(cbDelivered.body.events.some((e) => e.type === 'DELIVERED' && e.eventId === delivered.eventId), cbDelivered.raw);
      await sleep(1500);
      await webhookOk(workerA, rbm.receipt('DELIVERED', messageId)); // another DELIVERED event, same status
      const read = rbm.receipt('READ', messageId);
      await webhookOk(workerA, read);
      const cbRead = await waitCallback(cbPath, 'READ');
      assertCallback(cbRead, messageId, 'READ');
      assert.ok(cbRead.body.events.some((e) => e.type === 'READ' && e.eventId === read.eventId), cbRead.raw);
      await webhookOk(workerA, read); // duplicate READ
      await sleep(3000);
      const all = callbacksAt(cbPath);
      assert.deepEqual(all.map((d) => d.headers['webhook-id']), [`${messageId}.DELIVERED`, `${messageId}.READ`], JSON.stringify(all.map((d) => d.body)));
      assert.ok(all.every((d) => d.status === 200));
      await expectStatus(workerA, messageId, 'READ');
      // The receipts are forwarded too (default FORWARD_KINDS), independently of the callback.
      await waitForForwards(sinkA, expectedWebhookId(read), 1, 10_000, 'READ forward');
    });

    test('DELIVERED after READ changes nothing -> no callback', { timeout: 30_000 }, async () => {
      const { messageId, cbPath } = await sendWithCallback('rd');
      await webhookOk(workerA, rbm.receipt('READ', messageId));
      assertCallback(await waitCallback(cbPath, 'READ'), messageId, 'READ');
      const late = rbm.receipt('DELIVERED', messageId);
      await webhookOk(workerA, late);
      await waitForForwards(sinkA, expectedWebhookId(late), 1, 10_000, 'late DELIVERED forward'); // it was processed
      await sleep(2000);
      const view = await expectStatus(workerA, messageId, 'READ');
      assert.ok(view.events.some((e) => e.type === 'DELIVERED'), `DELIVERED recorded: ${JSON.stringify(view)}`);
      assert.deepEqual(callbacksAt(cbPath).map((d) => d.headers['webhook-id']), [`${messageId}.READ`]);
    });

    test('a send with statusCallback while FORWARD_SECRET is not configured -> 500 CONFIG_MISSING, nothing sent to RBM', { timeout: 20_000 }, async () => {
      const body = JSON.stringify({ phoneNumber: rbm.PHONE, statusCallback: `${sinkA.url}/cb/never`, contentMessage: { text: 'Hi' } });
      const before = google.requests.length;
      const res = await post(workerC.url, '/v1/messages', { body, headers: JSON_AUTH });
      allResponses.push({ what: 'send without FORWARD_SECRET', status: res.status, text: res.text.slice(0, 200) });
      assertError(res, 500, 'CONFIG_MISSING', 'statusCallback without FORWARD_SECRET');
      assert.match(res.json.error.message, /FORWARD_SECRET/, res.text);
      assert.equal(google.requests.length, before, 'nothing was sent to RBM');
    });
  });

  test('FORWARD_KINDS="text,IS_TYPING": text and IS_TYPING forwarded, DELIVERED not (but still recorded)', { timeout: 30_000 }, async () => {
    const text = rbm.userText();
    const typing = rbm.isTyping();
    const mid = crypto.randomUUID();
    const delivered = rbm.receipt('DELIVERED', mid);
    const sub = rbm.subscribe();
    for (const ev of [text, typing, delivered, sub]) await webhookOk(workerB, ev);
    for (const ev of [text, typing]) {
      const [d] = await waitForForwards(sinkB, expectedWebhookId(ev), 1, 10_000, `B ${kindOf(ev)}`);
      assertForwardDoc(d, ev, `B ${kindOf(ev)}`);
    }
    await expectStatus(workerB, mid, 'DELIVERED');
    await sleep(2000);
    const others = sinkB.deliveries.filter((d) => d.body?.kind !== 'text' && d.body?.kind !== 'IS_TYPING');
    assert.deepEqual(others.map((d) => `${d.id} ${d.body?.kind}`), [], 'only text and IS_TYPING are forwarded');
    for (const ev of [text, typing]) assert.equal(forwardsOf(sinkB, expectedWebhookId(ev)).length, 1);
  });

  test('user message without messageId: webhook-id from the Pub/Sub id, else a content hash; stable on redelivery', { timeout: 30_000 }, async () => {
    const withPubsub = rbm.userText({ text: 'no id, pubsub' });
    delete withPubsub.messageId;
    const env = rbm.signedEnvelope(withPubsub, TOK_NEW, { pubsub: true });
    const pubsubId = env.envelope.message.messageId;
    for (let i = 0; i < 2; i++) {
      const res = await post(workerB.url, '/webhook', env);
      assert.equal(res.status, 200, res.text);
    }
    const bare = rbm.userText({ text: 'no id, no pubsub' });
    delete bare.messageId;
    await webhookOk(workerB, bare);
    await webhookOk(workerB, bare, TOK_OLD);
    const p = await waitForForwards(sinkB, `rbm_pubsub_${pubsubId}`, 2, 10_000, 'pubsub id');
    for (const d of p) {
      assertSigned(d, 'pubsub id');
      assert.deepEqual(d.body.event, withPubsub);
      assert.ok(!('messageId' in d.body), d.raw);
    }
    const hashed = await sinkB.waitFor((d) => d.path === '/rbm' && d.body?.event?.text === 'no id, no pubsub', 10_000, 2);
    assert.match(hashed[0].id, /^rbm_sha256_[0-9a-f]+$/, hashed[0].id);
    assert.equal(hashed[1].id, hashed[0].id, 'same id on redelivery');
    for (const d of hashed) assertSigned(d, 'sha256 id');
  });

  test('PROCESSING=queue without an EVENTS binding -> 503 QUEUE_UNAVAILABLE (RBM retries)', async () => {
    for (const ev of [rbm.userText(), rbm.receipt('DELIVERED', crypto.randomUUID())]) {
      const res = await postEvent(workerC.url, ev, TOK_NEW);
      assertError(res, 503, 'QUEUE_UNAVAILABLE', `webhook ${kindOf(ev)}`);
    }
  });

  describe('measurements (printed, not asserted)', () => {
    test('end-to-end latency webhook -> backend receipt (queue path, sink answering at once)', { timeout: 60_000 }, async () => {
      const ack = [];
      const e2e = [];
      for (let i = 0; i < 10; i++) {
        const ev = rbm.userText({ text: `latency ${i}` });
        const start = performance.now();
        const wall = Date.now();
        await webhookOk(workerA, ev);
        ack.push(performance.now() - start);
        const [d] = await waitForForwards(sinkA, expectedWebhookId(ev), 1, 10_000, `latency ${i}`);
        e2e.push(d.at - wall);
      }
      console.log(`# webhook time-to-200 (sink ok): median ${median(ack).toFixed(1)} ms, min ${Math.min(...ack).toFixed(1)}, max ${Math.max(...ack).toFixed(1)} (n=${ack.length})`);
      console.log(`# end-to-end webhook -> sink receipt: median ${median(e2e)} ms, min ${Math.min(...e2e)}, max ${Math.max(...e2e)} (n=${e2e.length}; local max_batch_timeout = 1 s)`);
    });

    test('webhook time-to-200 with a backend that takes 2 s to answer', { timeout: 60_000 }, async () => {
      sinkB.setMode('slow');
      sinkB.setDelay(2000);
      const times = [];
      const evs = [];
      for (let i = 0; i < 10; i++) {
        const ev = rbm.userText({ text: `slow ${i}` });
        evs.push(ev);
        const start = performance.now();
        await webhookOk(workerB, ev);
        times.push(performance.now() - start);
        await sleep(100);
      }
      console.log(`# webhook time-to-200 (sink slow, 2000 ms): median ${median(times).toFixed(1)} ms, min ${Math.min(...times).toFixed(1)}, max ${Math.max(...times).toFixed(1)} (n=${times.length})`);
      // The backend does see them (slowly): the first one is answered after ~2 s.
      const [first] = await sinkB.waitFor((d) => d.id === expectedWebhookId(evs[0]) && d.status === 200, 15_000);
      assertForwardDoc(first, evs[0], 'slow forward');
    });
  });

  test('no unexpected 5xx; Worker logs contain no secret and no panic', () => {
    assert.deepEqual(allResponses.filter((r) => r.status >= 500 && !/without FORWARD_SECRET/.test(r.what)), []);
    for (const w of [workerA, workerB, workerC]) {
      const logs = w.logs();
      assertCleanLogs(logs);
      assert.ok(!logs.includes(FORWARD_SECRET.slice('whsec_'.length)), 'FORWARD_SECRET not logged');
    }
  });
});
