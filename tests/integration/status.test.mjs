// Message status from receipts (DELIVERED/READ) and TTL notices, read back through
// GET /v1/messages/{messageId}. Inline processing: the webhook's 200 comes after the KV write.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startWorker } from '../support/worker.mjs';
import { prng } from '../soak/soak.mjs';
import { inlineConfig, TOKENS, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs } from '../support/assert.mjs';
import * as rbm from '../support/rbm.mjs';

const { postEvent, get, statusEvent, pollUntil, pool } = rbm;
const [TOK_OLD, TOK_NEW] = TOKENS;
const [KEY_ONE, KEY_TWO] = API_KEYS;
const AUTH = { authorization: `Bearer ${KEY_ONE}` };

/** RBM event type -> the status it stands for, in ascending precedence. */
const STATUS_OF = {
  TTL_EXPIRATION_REVOKE_FAILED: 'EXPIRED',
  TTL_EXPIRATION_REVOKED: 'REVOKED',
  DELIVERED: 'DELIVERED',
  READ: 'READ',
};
const PRECEDENCE = ['FAILED', 'SENT', 'EXPIRED', 'REVOKED', 'DELIVERED', 'READ'];
/** The status a set of RBM event types adds up to (order and repetition irrelevant). */
function fold(types) {
  let best = null;
  for (const t of types) {
    const s = STATUS_OF[t];
    if (best === null || PRECEDENCE.indexOf(s) > PRECEDENCE.indexOf(best)) best = s;
  }
  return best;
}

let worker;
let t0;
const allResponses = [];

async function deliver(event, token = TOK_NEW, opts) {
  const res = await postEvent(worker.url, event, token, opts);
  allResponses.push({ what: `${event.eventType} ${event.messageId}`, status: res.status, text: res.text.slice(0, 200) });
  return res;
}

async function deliverOk(event, token, opts) {
  const res = await deliver(event, token, opts);
  assert.equal(res.status, 200, `${event.eventType} ${event.messageId}: ${res.status} ${res.text}`);
  assert.equal(res.json?.ok, true, res.text);
  assert.equal(res.json?.kind, event.eventType, res.text);
  return res;
}

const readStatus = (id, headers = AUTH) => get(worker.url, `/v1/messages/${id}`, headers);

/** Polls (≤ 5 s) until the message shows `status`; returns the last answer, asserted 200 + status. */
async function expectStatus(id, status) {
  const res = await pollUntil(() => readStatus(id), (r) => r.status === 200 && r.json?.status === status, 5000);
  assert.equal(res.status, 200, `GET ${id}: ${res.status} ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/i);
  assert.equal(res.json.status, status, `GET ${id}: ${res.text}`);
  assert.equal(res.json.messageId, id, res.text);
  return res.json;
}

const entry = (view, type) => view.events.filter((e) => e.type === type);

/** Checks that the view's events are exactly `events` (one entry per type), taken from them. */
function assertEntries(view, events) {
  const byType = new Map(events.map((e) => [e.eventType, e]));
  assert.ok(Array.isArray(view.events), JSON.stringify(view));
  assert.deepEqual(view.events.map((e) => e.type).sort(), [...byType.keys()].sort(), `event types: ${JSON.stringify(view.events)}`);
  for (const [type, ev] of byType) {
    const [e] = entry(view, type);
    assert.equal(e.source, 'webhook', JSON.stringify(e));
    assert.equal(e.at, ev.sendTime, `${type}.at = the event's sendTime: ${JSON.stringify(e)}`);
    assert.equal(e.eventId, ev.eventId, `${type}.eventId: ${JSON.stringify(e)}`);
    const received = Date.parse(e.receivedAt);
    assert.ok(Number.isFinite(received), `${type}.receivedAt is a timestamp: ${JSON.stringify(e)}`);
    assert.ok(received >= t0 - 60_000 && received <= Date.now() + 60_000, `${type}.receivedAt is about now: ${e.receivedAt}`);
  }
  assert.ok(Number.isFinite(Date.parse(view.updatedAt)), `updatedAt is a timestamp: ${view.updatedAt}`);
}

describe('message status from receipts and TTL notices', () => {
  before(async () => {
    t0 = Date.now();
    worker = await startWorker({ ...inlineConfig(), name: 'rbm-edge-status-test' });
  });

  after(async () => {
    await worker?.stop();
  });

  test('DELIVERED then READ -> READ', async () => {
    const id = crypto.randomUUID();
    const evs = [rbm.receipt('DELIVERED', id), rbm.receipt('READ', id)];
    for (const ev of evs) await deliverOk(ev);
    const view = await expectStatus(id, 'READ');
    assertEntries(view, evs);
  });

  test('READ before DELIVERED -> READ', async () => {
    const id = crypto.randomUUID();
    const evs = [rbm.receipt('READ', id), rbm.receipt('DELIVERED', id)];
    for (const ev of evs) await deliverOk(ev);
    const view = await expectStatus(id, 'READ');
    assertEntries(view, evs);
  });

  test('DELIVERED three times (redelivery) -> DELIVERED with one DELIVERED entry', async () => {
    const id = crypto.randomUUID();
    const ev = rbm.receipt('DELIVERED', id);
    for (let i = 0; i < 3; i++) await deliverOk(ev, i === 1 ? TOK_OLD : TOK_NEW, { pubsub: i === 2 });
    const view = await expectStatus(id, 'DELIVERED');
    assert.equal(entry(view, 'DELIVERED').length, 1, JSON.stringify(view.events));
    assertEntries(view, [ev]);
  });

  test('TTL_EXPIRATION_REVOKED then DELIVERED -> DELIVERED (delivery wins)', async () => {
    const id = crypto.randomUUID();
    const evs = [rbm.ttlRevoked(id), rbm.receipt('DELIVERED', id)];
    for (const ev of evs) await deliverOk(ev);
    const view = await expectStatus(id, 'DELIVERED');
    assertEntries(view, evs);
  });

  test('TTL_EXPIRATION_REVOKE_FAILED alone -> EXPIRED', async () => {
    const id = crypto.randomUUID();
    const ev = rbm.ttlRevokeFailed(id);
    await deliverOk(ev);
    assertEntries(await expectStatus(id, 'EXPIRED'), [ev]);
  });

  test('TTL_EXPIRATION_REVOKED alone -> REVOKED', async () => {
    const id = crypto.randomUUID();
    const ev = rbm.ttlRevoked(id);
    await deliverOk(ev);
    assertEntries(await expectStatus(id, 'REVOKED'), [ev]);
  });

  test('phoneNumber, agentId, eventId and at come from the events (senderPhoneNumber on receipts)', async () => {
    const id = crypto.randomUUID();
    const ev = rbm.receipt('DELIVERED', id, {
      senderPhoneNumber: '+15557654321', agentId: 'test_agent', eventId: 'EVT-delivered-1', sendTime: '2018-12-31T15:01:23.045123456Z',
    });
    await deliverOk(ev, TOK_OLD, { pubsub: true });
    const view = await expectStatus(id, 'DELIVERED');
    assert.equal(view.phoneNumber, '+15557654321', JSON.stringify(view));
    assert.equal(view.agentId, 'test_agent', JSON.stringify(view));
    assertEntries(view, [ev]);
    assert.equal(view.events[0].eventId, 'EVT-delivered-1');
    assert.equal(view.events[0].at, '2018-12-31T15:01:23.045123456Z');
  });

  test('phoneNumber comes from phoneNumber on TTL notices (ServerEvent)', async () => {
    const id = crypto.randomUUID();
    const ev = rbm.ttlRevokeFailed(id, { phoneNumber: '+15550001111', eventId: 'EVT-ttl-1', sendTime: '2024-02-29T23:59:59.999999999Z' });
    await deliverOk(ev);
    const view = await expectStatus(id, 'EXPIRED');
    assert.equal(view.phoneNumber, '+15550001111', JSON.stringify(view));
    assert.equal(view.agentId, 'test_agent', JSON.stringify(view));
    assertEntries(view, [ev]);
  });

  test('a 200-character id of every allowed character class is stored and readable', async () => {
    const id = ('Az09._~=+-'.repeat(20)).slice(0, 200);
    assert.equal(id.length, 200);
    const ev = rbm.receipt('READ', id);
    await deliverOk(ev);
    assertEntries(await expectStatus(id, 'READ'), [ev]);
  });

  test('user messages and IS_TYPING create no status record', async () => {
    const text = rbm.userText();
    const typing = rbm.isTyping({ messageId: crypto.randomUUID() });
    for (const ev of [text, typing]) {
      const res = await deliver(ev);
      assert.equal(res.status, 200, res.text);
    }
    for (const id of [text.messageId, typing.messageId]) {
      assertError(await readStatus(id), 404, 'NOT_FOUND', `GET ${id}`);
    }
  });

  test('40 messages, shuffled mix of receipts, duplicates and TTL notices, ≥ 30 concurrent -> each status is the fold', async () => {
    const seed = Number(process.env.STATUS_MIX_SEED ?? crypto.randomInt(2 ** 31));
    const rand = prng(seed);
    const types = Object.keys(STATUS_OF);
    const subsets = [];
    for (let mask = 1; mask < 16; mask++) subsets.push(types.filter((_, i) => mask & (1 << i)));
    const messages = [];
    const sends = [];
    for (let m = 0; m < 40; m++) {
      const id = `mix-${seed}-${m}-${crypto.randomUUID()}`;
      const evs = subsets[m % subsets.length].map((t) => statusEvent(t, id));
      messages.push({ id, evs, want: fold(evs.map((e) => e.eventType)) });
      for (const ev of evs) {
        const copies = 1 + Math.floor(rand() * 3);
        for (let c = 0; c < copies; c++) sends.push({ ev, token: rand() < 0.5 ? TOK_OLD : TOK_NEW, pubsub: rand() < 0.5 });
      }
    }
    while (sends.length < 120) {
      const m = messages[Math.floor(rand() * messages.length)];
      sends.push({ ev: m.evs[0], token: TOK_NEW, pubsub: false });
    }
    for (let i = sends.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [sends[i], sends[j]] = [sends[j], sends[i]];
    }
    const ctx = `seed ${seed} (replay: STATUS_MIX_SEED=${seed})`;
    assert.ok(sends.length >= 120, ctx);
    assert.deepEqual(new Set(messages.map((m) => m.want)), new Set(['READ', 'DELIVERED', 'REVOKED', 'EXPIRED']), ctx);

    const results = await pool(sends, 32, ({ ev, token, pubsub }) => deliver(ev, token, { pubsub }));
    assert.ok(results.maxInFlight >= 30, `only ${results.maxInFlight} requests in flight; ${ctx}`);
    const failed = results.map((r, i) => ({ r, s: sends[i] }))
      .filter(({ r, s }) => r.status !== 200 || r.json?.ok !== true || r.json?.kind !== s.ev.eventType);
    assert.deepEqual(failed.map(({ r, s }) => `${s.ev.eventType} ${s.ev.messageId}: ${r.status} ${r.text}`), [], ctx);

    // Read back (bounded: ≤ 5 s in all), then compare each message with the fold.
    const deadline = Date.now() + 5000;
    let views;
    while (true) {
      views = await pool(messages, 8, (m) => readStatus(m.id));
      const done = views.every((v, i) => v.status === 200 && v.json?.status === messages[i].want);
      if (done || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const wrong = [];
    messages.forEach((m, i) => {
      const v = views[i];
      const gotTypes = (v.json?.events ?? []).map((e) => e.type).sort();
      const wantTypes = m.evs.map((e) => e.eventType).sort();
      if (v.status !== 200 || v.json.status !== m.want || JSON.stringify(gotTypes) !== JSON.stringify(wantTypes)) {
        wrong.push(`${m.id}: sent ${wantTypes.join('+')} want ${m.want}, got ${v.status} ${v.text.slice(0, 300)}`);
      }
    });
    assert.deepEqual(wrong, [], ctx);
    messages.forEach((m, i) => assertEntries(views[i].json, m.evs));
  });

  describe('authentication', () => {
    let id;
    before(async () => {
      id = crypto.randomUUID();
      await deliverOk(rbm.receipt('DELIVERED', id));
      await expectStatus(id, 'DELIVERED');
    });

    test('both API keys are accepted', async () => {
      for (const key of API_KEYS) {
        const res = await readStatus(id, { authorization: `Bearer ${key}` });
        assert.equal(res.status, 200, `${key}: ${res.status} ${res.text}`);
      }
    });

    test('no Authorization / wrong key / non-Bearer scheme -> 401 UNAUTHORIZED', async () => {
      const cases = {
        'no Authorization': {},
        'wrong key': { authorization: 'Bearer key-three' },
        'key prefix': { authorization: 'Bearer key' },
        'key with suffix': { authorization: `Bearer ${KEY_ONE}x` },
        'whole key list': { authorization: `Bearer ${API_KEYS.join(',')}` },
        'empty bearer': { authorization: 'Bearer ' },
        'Basic scheme': { authorization: `Basic ${KEY_ONE}` },
        'Basic base64': { authorization: `Basic ${Buffer.from(`${KEY_ONE}:`).toString('base64')}` },
        'no scheme': { authorization: KEY_TWO },
        'Token scheme': { authorization: `Token ${KEY_TWO}` },
        'client token as key': { authorization: `Bearer ${TOK_NEW}` },
      };
      for (const [what, headers] of Object.entries(cases)) {
        const res = await readStatus(id, headers);
        allResponses.push({ what, status: res.status, text: res.text.slice(0, 200) });
        assertError(res, 401, 'UNAUTHORIZED', what);
        assert.equal(res.json.status, undefined, `${what}: no status leaked`);
      }
    });

    test('401 also for an unknown id (auth is checked first)', async () => {
      const res = await readStatus(crypto.randomUUID(), {});
      assertError(res, 401, 'UNAUTHORIZED');
    });
  });

  test('unknown message id -> 404 NOT_FOUND', async () => {
    for (const id of [crypto.randomUUID(), 'never-seen', 'b'.repeat(200)]) {
      const res = await readStatus(id);
      allResponses.push({ what: `GET ${id}`, status: res.status, text: res.text.slice(0, 200) });
      assertError(res, 404, 'NOT_FOUND', `GET ${id}`);
    }
  });

  test('invalid message id -> 400 INVALID_MESSAGE_ID', async () => {
    for (const id of ['a:b', '%20x', 'a'.repeat(201), 'a%3Ab', 'a!b', encodeURIComponent('ü')]) {
      const res = await readStatus(id);
      allResponses.push({ what: `GET ${id}`, status: res.status, text: res.text.slice(0, 200) });
      assertError(res, 400, 'INVALID_MESSAGE_ID', `GET /v1/messages/${id}`);
    }
  });

  test('receipt with an unstorable messageId (bad:id etc.) -> still 200, no 5xx', async () => {
    const bad = ['bad:id', 'a b', 'x'.repeat(201), '', 'ü-id', 'a%2Fb'];
    for (const id of bad) {
      for (const ev of [rbm.receipt('DELIVERED', id), rbm.receipt('READ', id), rbm.ttlRevoked(id)]) {
        const res = await deliver(ev);
        assert.equal(res.status, 200, `${ev.eventType} messageId ${JSON.stringify(id)}: ${res.status} ${res.text}`);
      }
    }
    const res = await readStatus('bad:id');
    assertError(res, 400, 'INVALID_MESSAGE_ID', 'GET bad:id');
  });

  test('receipt without a (string) messageId -> still 200, no 5xx', async () => {
    for (const messageId of [undefined, 123, null, ['x']]) {
      const ev = rbm.receipt('DELIVERED', 'placeholder');
      if (messageId === undefined) delete ev.messageId; else ev.messageId = messageId;
      const res = await deliver(ev);
      assert.equal(res.status, 200, `messageId ${JSON.stringify(messageId)}: ${res.status} ${res.text}`);
    }
  });

  test('no request produced a 5xx', () => {
    assert.deepEqual(allResponses.filter((r) => r.status >= 500), []);
  });

  test('Worker logs contain no token or API key and no panic', () => {
    assertCleanLogs(worker.logs());
  });
});
