// The send relay (issue 3) against the built Worker in workerd (wrangler dev --local) and a
// loopback fake of Google's token endpoint + RBM API (tests/fakes/google.mjs).
// Contract: /work/shared/rbm-protocol.md sections 5-7 + `issues show 3`.
//
//   POST   /v1/messages                        -> phones.agentMessages.create
//   DELETE /v1/messages/{id}                   -> phones.agentMessages.delete (revoke)
//   POST   /v1/phones/{phone}/events           -> phones.agentEvents.create
//   GET    /v1/phones/{phone}/capabilities     -> phones.getCapabilities
//
// Workers started here (all stopped in after()):
//   main         the normal configuration; its first send is the cold-start token test
//   tokenFail    same configuration, used while the fake's token endpoint fails (nothing cached)
//   unreachable  RBM_API_BASE = a closed loopback port
// Config errors (missing / malformed RBM_SERVICE_ACCOUNT_KEY) are in send-config.test.mjs.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startWorker, freePort } from '../support/worker.mjs';
import { inlineConfig, TOKENS, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs, assertNoSecrets } from '../support/assert.mjs';
import { startGoogleFake } from '../fakes/google.mjs';
import * as rbm from '../support/rbm.mjs';

const { request, postEvent, pollUntil, PHONE, AGENT_ID } = rbm;
const [, TOK_NEW] = TOKENS;
const [KEY_ONE, KEY_TWO] = API_KEYS;
const AUTH = { authorization: `Bearer ${KEY_ONE}` };
const ALLOWED_ORIGIN = 'https://app.example.com';
const OTHER_ORIGIN = 'https://evil.example.net';
const TIMEOUT_MS = 1500;
const SLOW_MS = 3000;
const MAX_BODY = 250 * 1024;

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const OUR_FIELDS = ['phoneNumber', 'messageId', 'agentId', 'statusCallback'];
const SEND_KEYS = ['agentId', 'messageId', 'phoneNumber', 'rbm', 'status'];

let fake;
const workers = {};
/** Every answer of every Worker, for the "no undocumented 5xx" sweep. */
const seen = [];

/** Worker config of these tests; `over` replaces vars/secrets entries. */
function sendConfig({ vars = {}, secrets = {} } = {}) {
  const base = inlineConfig();
  return {
    kv: true,
    secrets: { ...base.secrets, RBM_SERVICE_ACCOUNT_KEY: fake.serviceAccountKey, ...secrets },
    vars: {
      ...base.vars,
      RBM_API_BASE: fake.url,
      RBM_AGENT_ID: AGENT_ID,
      RBM_TIMEOUT_MS: String(TIMEOUT_MS),
      ALLOWED_ORIGINS: ALLOWED_ORIGIN,
      PROCESSING: 'inline',
      ...vars,
    },
  };
}

/**
 * One request to a Worker; a non-string body is JSON-encoded (content-type added).
 * expect5xx: this test expects a documented 5xx (RBM's own 5xx passed through, 502, 504).
 */
async function call(w, method, path, { body, headers = AUTH, expect5xx = false } = {}) {
  const h = { ...headers };
  let b = body;
  if (b !== undefined && typeof b !== 'string' && !Buffer.isBuffer(b)) b = JSON.stringify(b);
  if (b !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
  const res = await request(w.url, path, { method, body: b, headers: h });
  seen.push({ what: `${method} ${path}`, status: res.status, expect5xx, text: res.text.slice(0, 300) });
  return res;
}

const send = (body, opts = {}) => call(workers.main, 'POST', '/v1/messages', { body, ...opts });
const readStatus = (id, w = workers.main) => call(w, 'GET', `/v1/messages/${id}`);

const reply = (text = 'Yes', postbackData = 'yes') => ({ reply: { text, postbackData } });

/** The protocol sheet's example AgentMessage plus our fields. */
function message(over = {}) {
  return {
    contentMessage: { text: 'Hello, world!', suggestions: [reply()] },
    messageTrafficType: 'TRANSACTION',
    ttl: '86400s',
    phoneNumber: PHONE,
    ...over,
  };
}
const textMessage = (text, over = {}) => message({ contentMessage: { text }, ...over });
const card = (i, over = {}) => ({ title: `Card ${i}`, description: `Description ${i}`, ...over });
const standalone = (cardContent) => message({ contentMessage: { richCard: { standaloneCard: { cardContent } } } });
const carousel = (n) => message({
  contentMessage: { richCard: { carouselCard: { cardWidth: 'MEDIUM', cardContents: Array.from({ length: n }, (_, i) => card(i)) } } },
});

/** The AgentMessage the Worker must relay: the body minus our four fields. */
function agentMessageOf(body) {
  const out = { ...body };
  for (const k of OUR_FIELDS) delete out[k];
  return out;
}

const rbmRequests = (pred = () => true) => fake.requests.filter(pred);
const isBearer = (h) => /^Bearer ya29\.fake-[A-Za-z0-9_-]+$/.test(h ?? '') && fake.tokens.has(h.slice('Bearer '.length));

/** 400 VALIDATION_FAILED whose message starts with `${path}: `, and nothing reached Google. */
async function expectInvalid(body, path, what = path) {
  const rbmBefore = fake.requests.length;
  const tokBefore = fake.stats.tokenRequests;
  const res = await send(body);
  assertError(res, 400, 'VALIDATION_FAILED', what);
  if (path !== null) {
    assert.ok(res.json.error.message.startsWith(`${path}: `),
      `${what}: the message must start with the JSON path "${path}: ", got ${JSON.stringify(res.json.error.message)}`);
  }
  assert.equal(fake.requests.length, rbmBefore, `${what}: RBM must receive no request; got ${JSON.stringify(fake.requests.slice(rbmBefore).map((r) => r.path))}`);
  assert.equal(fake.stats.tokenRequests, tokBefore, `${what}: no token request for an invalid body`);
  return res;
}

/** 200 SENT, and the fake received exactly the AgentMessage part of `body`. */
async function expectRelayed(body, what = '') {
  const before = fake.requests.length;
  const res = await send(body);
  assert.equal(res.status, 200, `${what}: ${res.status} ${res.text.slice(0, 400)}`);
  assert.equal(res.json?.status, 'SENT', `${what}: ${res.text.slice(0, 400)}`);
  const got = fake.requests.slice(before);
  assert.equal(got.length, 1, `${what}: one RBM request`);
  assert.deepEqual(got[0].body, agentMessageOf(body), `${what}: relayed body`);
  return { res, rec: got[0] };
}

/** What the fake answers to the same call (its body is what the Worker must pass on verbatim). */
async function replay(rec) {
  const qs = new URLSearchParams(rec.query).toString();
  const res = await fetch(`${fake.url}${rec.path}${qs ? `?${qs}` : ''}`, {
    method: rec.method,
    headers: { authorization: rec.headers.authorization, ...(rec.raw ? { 'content-type': 'application/json' } : {}) },
    body: rec.raw || undefined,
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, json: JSON.parse(await res.text()) };
}

/** The status view right after (no polling: the relay records before it answers). */
async function statusNow(id, w = workers.main) {
  const res = await readStatus(id, w);
  assert.equal(res.status, 200, `GET /v1/messages/${id}: ${res.status} ${res.text}`);
  return res.json;
}

/** Polls (≤ 5 s) until the status is `status`. */
async function expectStatus(id, status) {
  const res = await pollUntil(() => readStatus(id), (r) => r.status === 200 && r.json?.status === status, 5000);
  assert.equal(res.status, 200, `GET ${id}: ${res.status} ${res.text}`);
  assert.equal(res.json.status, status, `GET ${id}: ${res.text}`);
  return res.json;
}

async function webhook(event) {
  const res = await postEvent(workers.main.url, event, TOK_NEW);
  seen.push({ what: `webhook ${event.eventType} ${event.messageId}`, status: res.status, expect5xx: false, text: res.text.slice(0, 300) });
  assert.equal(res.status, 200, `webhook ${event.eventType}: ${res.status} ${res.text}`);
  return res;
}

/** Fragments that must never appear in logs or answers. */
function keyFragments() {
  const key = JSON.parse(fake.serviceAccountKey).private_key;
  const b64 = key.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const mid = Math.floor(b64.length / 2);
  return { pem: 'BEGIN PRIVATE KEY', fragment: b64.slice(mid - 20, mid + 20) };
}

function assertNoKeyMaterial(text, ctx) {
  const { pem, fragment } = keyFragments();
  assert.ok(!text.includes(pem), `${ctx}: contains ${pem}`);
  assert.ok(!text.includes(fragment), `${ctx}: contains private key material`);
  assert.ok(!/ya29\./.test(text), `${ctx}: contains an access token`);
}

function assertUpstreamError(res, status, code, what) {
  assertError(res, status, code, what);
  assert.equal(res.json.rbm, undefined, `${what}: no rbm on a transport failure`);
  assertNoKeyMaterial(res.text, what);
}

before(async () => {
  fake = await startGoogleFake({ slowMs: SLOW_MS });
});

after(async () => {
  for (const w of Object.values(workers)) await w?.stop();
  await fake?.close();
});

beforeEach(() => fake?.reset());

describe('send relay (main Worker)', () => {
  before(async () => {
    workers.main = await startWorker({ ...sendConfig(), name: 'rbm-edge-send-test' });
  });

  describe('OAuth token', () => {
    test('cold Worker: 12 concurrent sends share ONE token request; 10 more sends reuse it', async () => {
      const ids = Array.from({ length: 12 }, () => crypto.randomUUID());
      const results = await Promise.all(ids.map((messageId) => send(message({ messageId }))));
      assert.deepEqual(results.map((r) => r.status), ids.map(() => 200),
        `every concurrent cold send answers 200; RBM got ${fake.stats.rbmRequests} sends, token endpoint ${fake.stats.tokenRequests} requests; ` +
        `first non-200: ${results.find((r) => r.status !== 200)?.text.slice(0, 300)}`);
      assert.equal(fake.stats.tokenRejected, 0, 'the fake accepted the RS256 assertion');
      assert.equal(fake.stats.tokenRequests, 1, 'one token request for 12 concurrent cold sends (no stampede)');
      assert.equal(rbmRequests().length, 12);
      const bearers = new Set(rbmRequests().map((r) => r.headers.authorization));
      assert.equal(bearers.size, 1, 'every send used the same token');
      assert.ok(isBearer([...bearers][0]), `bearer is the fake's token: ${[...bearers][0]}`);

      for (let i = 0; i < 10; i++) {
        const r = await send(message());
        assert.equal(r.status, 200, `sequential send ${i}: ${r.text}`);
      }
      assert.equal(fake.stats.tokenRequests, 1, 'still one token request after 22 sends');
      assert.equal(rbmRequests().length, 22);
    });

    test('RBM 401 once -> the Worker refreshes the token once and retries once -> 200', async () => {
      fake.rejectNextRbmCalls(1);
      const id = crypto.randomUUID();
      const res = await send(message({ messageId: id }));
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.status, 'SENT', res.text);
      assert.equal(fake.stats.tokenRequests, 1, 'one refresh (2 token requests in all for this Worker)');
      const recs = rbmRequests();
      assert.equal(recs.length, 2, 'the send was tried twice');
      assert.deepEqual(recs.map((r) => r.query.messageId), [id, id], 'the retry reuses the messageId');
      assert.notEqual(recs[0].headers.authorization, recs[1].headers.authorization, 'the retry uses the new token');
      assert.ok(isBearer(recs[1].headers.authorization));
      assert.deepEqual(recs[1].body, recs[0].body);
      assert.equal((await statusNow(id)).status, 'SENT');
    });

    test('RBM 401 twice -> 401 passed through (one retry only), recorded FAILED', async () => {
      fake.rejectNextRbmCalls(2);
      const id = crypto.randomUUID();
      const res = await send(message({ messageId: id }));
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.status, 'FAILED', res.text);
      assert.equal(res.json.rbm?.error?.code, 401, res.text);
      assert.equal(res.json.rbm?.error?.status, 'UNAUTHENTICATED', res.text);
      assert.equal(fake.stats.tokenRequests, 1, 'exactly one refresh');
      assert.equal(rbmRequests().length, 2, 'exactly one retry');
      const view = await statusNow(id);
      assert.equal(view.status, 'FAILED', JSON.stringify(view));
      // Afterwards the (new) token works without another refresh.
      const ok = await send(message());
      assert.equal(ok.status, 200, ok.text);
      assert.equal(fake.stats.tokenRequests, 1);
    });

    test('all tokens revoked at Google -> next send refreshes once and succeeds', async () => {
      fake.revokeAllTokens();
      const res = await send(message());
      assert.equal(res.status, 200, res.text);
      assert.equal(fake.stats.tokenRequests, 1);
      assert.equal(rbmRequests().length, 2);
      const again = await send(message());
      assert.equal(again.status, 200, again.text);
      assert.equal(fake.stats.tokenRequests, 1, 'the refreshed token is cached');
    });
  });

  describe('POST /v1/messages happy path', () => {
    test('relays exactly the AgentMessage to agentMessages.create and answers RBM\'s 200 + body', async () => {
      const id = crypto.randomUUID();
      const body = message({ messageId: id });
      const { res, rec } = await expectRelayed(body);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/i);

      assert.equal(rec.method, 'POST');
      assert.equal(rec.path, '/v1/phones/%2B12223334444/agentMessages', 'the + of the phone is escaped as %2B');
      assert.deepEqual(rec.query, { messageId: id, agentId: AGENT_ID });
      assert.ok(isBearer(rec.headers.authorization), `Authorization: ${rec.headers.authorization}`);
      assert.match(rec.headers['content-type'] ?? '', /^application\/json/i);
      assert.deepEqual(rec.body, {
        contentMessage: { text: 'Hello, world!', suggestions: [{ reply: { text: 'Yes', postbackData: 'yes' } }] },
        messageTrafficType: 'TRANSACTION',
        ttl: '86400s',
      }, 'only the AgentMessage fields are relayed');

      assert.deepEqual(Object.keys(res.json).sort(), SEND_KEYS, res.text);
      assert.equal(res.json.messageId, id);
      assert.equal(res.json.phoneNumber, PHONE);
      assert.equal(res.json.agentId, AGENT_ID);
      assert.equal(res.json.status, 'SENT');
      assert.deepEqual(res.json.rbm, fake.messages.get(id).message, 'rbm = RBM\'s AgentMessage verbatim');
      assert.equal(res.json.rbm.name, `phones/${PHONE}/agentMessages/${id}`);
      assert.equal(typeof res.json.rbm.sendTime, 'string');

      const view = await statusNow(id);
      assert.equal(view.status, 'SENT', JSON.stringify(view));
      assert.equal(view.messageId, id);
      assert.equal(view.phoneNumber, PHONE);
      assert.equal(view.agentId, AGENT_ID);
      const sent = view.events.filter((e) => e.type === 'SENT');
      assert.equal(sent.length, 1, JSON.stringify(view.events));
      assert.equal(sent[0].source, 'api', JSON.stringify(sent[0]));
      assert.equal(sent[0].httpStatus, undefined, JSON.stringify(sent[0]));
    });

    test('agentId in the body overrides RBM_AGENT_ID (query, answer and status record)', async () => {
      const id = crypto.randomUUID();
      const { res, rec } = await expectRelayed(message({ messageId: id, agentId: 'other_agent-1.x' }));
      assert.equal(rec.query.agentId, 'other_agent-1.x');
      assert.equal(res.json.agentId, 'other_agent-1.x');
      assert.equal((await statusNow(id)).agentId, 'other_agent-1.x');
    });

    test('without messageId a fresh UUIDv4 is generated, used for RBM and returned', async () => {
      const a = await expectRelayed(message());
      const b = await expectRelayed(message());
      for (const { res, rec } of [a, b]) {
        assert.match(res.json.messageId, UUID_V4, res.text);
        assert.equal(rec.query.messageId, res.json.messageId);
        assert.equal((await statusNow(res.json.messageId)).status, 'SENT');
      }
      assert.notEqual(a.res.json.messageId, b.res.json.messageId);
    });

    test('a given messageId is used as is; a client retry of a sent one is answered from the record, RBM not called', async () => {
      const id = crypto.randomUUID().toUpperCase();
      const first = await expectRelayed(message({ messageId: id }));
      assert.equal(first.rec.query.messageId, id);
      assert.equal(first.res.json.messageId, id);
      const before = fake.requests.length;
      const second = await send(message({ messageId: id }));
      assert.equal(second.status, 200, second.text);
      assert.equal(second.json.messageId, id);
      assert.equal(second.json.status, 'SENT');
      assert.equal(second.json.replayed, true);
      assert.deepEqual(second.json.rbm, first.res.json.rbm, "the first send's RBM answer");
      assert.equal(fake.requests.length, before, 'RBM not called for the retry');
    });

    test('other content kinds are relayed verbatim (contentInfo, uploadedRbmFile, rich card, expireTime, unknown fields)', async () => {
      const future = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
      const bodies = {
        contentInfo: message({ contentMessage: { contentInfo: { fileUrl: 'https://example.com/a.png', thumbnailUrl: 'https://example.com/t.png', forceRefresh: false } } }),
        uploadedRbmFile: message({ contentMessage: { uploadedRbmFile: { fileName: 'files/abc', thumbnailName: 'files/def' } } }),
        standaloneCard: standalone({ title: 'Hello', description: 'RBM', media: { height: 'TALL', contentInfo: { fileUrl: 'https://example.com/a.png' } }, suggestions: [reply()] }),
        expireTime: message({ ttl: undefined, expireTime: future }),
        unknownField: message({ someFutureField: { nested: [1, 2, 3] } }),
      };
      for (const [what, body] of Object.entries(bodies)) {
        const clean = JSON.parse(JSON.stringify(body)); // drops undefined
        await expectRelayed(clean, what);
      }
    });
  });

  describe('POST /v1/messages validation (400 VALIDATION_FAILED with the JSON path; nothing sent to Google)', () => {
    test('phoneNumber: required, E.164 (+ then 8-15 digits, no leading 0)', async () => {
      await expectRelayed(message({ phoneNumber: '+123456789012345' }), '15 digits');
      await expectRelayed(message({ phoneNumber: '+12345678' }), '8 digits');
      const bad = { missing: undefined, 'no plus': '12223334444', 'leading 0': '+0123456789', spaces: '+1 222 333 4444',
        dashes: '+1-222-333-4444', '7 digits': '+1234567', '16 digits': '+1234567890123456', letters: '+1222333444a', number: 12223334444, empty: '' };
      for (const [what, phoneNumber] of Object.entries(bad)) {
        const body = message({ phoneNumber });
        if (phoneNumber === undefined) delete body.phoneNumber;
        await expectInvalid(body, 'phoneNumber', `phoneNumber ${what}`);
      }
    });

    test('messageId: a UUID', async () => {
      for (const messageId of ['not-a-uuid', '123e4567e89b12d3a456426614174000', '123e4567-e89b-12d3-a456-42661417400g',
        '123e4567-e89b-12d3-a456-4266141740001', 'abc', 42]) {
        await expectInvalid(message({ messageId }), 'messageId', `messageId ${JSON.stringify(messageId)}`);
      }
    });

    test('contentMessage: required, exactly one content kind', async () => {
      const noContent = message();
      delete noContent.contentMessage;
      await expectInvalid(noContent, 'contentMessage', 'no contentMessage');
      await expectInvalid(message({ contentMessage: {} }), 'contentMessage', 'empty contentMessage');
      await expectInvalid(message({ contentMessage: { suggestions: [reply()] } }), 'contentMessage', 'suggestions only');
      await expectInvalid(message({ contentMessage: { text: 'a', contentInfo: { fileUrl: 'https://example.com/a.png' } } }), 'contentMessage', 'text + contentInfo');
      await expectInvalid(message({ contentMessage: { uploadedRbmFile: { fileName: 'f' }, richCard: { standaloneCard: { cardContent: card(1) } } } }), 'contentMessage', 'uploadedRbmFile + richCard');
    });

    test('text: 3072 characters ok, 3073 rejected (counted in characters)', async () => {
      await expectRelayed(textMessage('é'.repeat(3072)), '3072 chars');
      await expectInvalid(textMessage('é'.repeat(3073)), 'contentMessage.text', '3073 chars');
      await expectInvalid(textMessage('a'.repeat(3073)), 'contentMessage.text', '3073 ASCII chars');
    });

    test('suggestions: 11 ok, 12 rejected', async () => {
      const n = (k) => Array.from({ length: k }, (_, i) => reply(`S${i}`, `p${i}`));
      await expectRelayed(message({ contentMessage: { text: 'Hi', suggestions: n(11) } }), '11 suggestions');
      await expectInvalid(message({ contentMessage: { text: 'Hi', suggestions: n(12) } }), 'contentMessage.suggestions', '12 suggestions');
    });

    test('suggestion text: 25 ok, 26 rejected (path names the index)', async () => {
      const list = (t) => [reply('a'), reply('b'), reply('c'), reply(t)];
      await expectRelayed(message({ contentMessage: { text: 'Hi', suggestions: list('x'.repeat(25)) } }), '25');
      await expectInvalid(message({ contentMessage: { text: 'Hi', suggestions: list('x'.repeat(26)) } }), 'contentMessage.suggestions[3].reply.text', '26');
      const action = (text) => ({ action: { text, postbackData: 'p', openUrlAction: { url: 'https://example.com' } } });
      await expectInvalid(message({ contentMessage: { text: 'Hi', suggestions: [reply(), action('y'.repeat(26))] } }), 'contentMessage.suggestions[1].action.text', 'action 26');
    });

    test('postbackData: 2048 ok, 2049 rejected', async () => {
      await expectRelayed(message({ contentMessage: { text: 'Hi', suggestions: [reply('ok', 'p'.repeat(2048))] } }), '2048');
      await expectInvalid(message({ contentMessage: { text: 'Hi', suggestions: [reply('ok', 'p'.repeat(2049))] } }), 'contentMessage.suggestions[0].reply.postbackData', '2049');
    });

    test('URLs: 2048 ok, 2049 rejected (openUrlAction.url, contentInfo.fileUrl)', async () => {
      const url = (n) => `https://example.com/${'a'.repeat(n - 20)}`;
      assert.equal(url(2048).length, 2048);
      const open = (u) => message({ contentMessage: { text: 'Hi', suggestions: [{ action: { text: 'Open', postbackData: 'o', openUrlAction: { url: u } } }] } });
      await expectRelayed(open(url(2048)), 'openUrlAction 2048');
      await expectInvalid(open(url(2049)), 'contentMessage.suggestions[0].action.openUrlAction.url', 'openUrlAction 2049');
      const file = (u) => message({ contentMessage: { contentInfo: { fileUrl: u } } });
      await expectRelayed(file(url(2048)), 'fileUrl 2048');
      await expectInvalid(file(url(2049)), 'contentMessage.contentInfo.fileUrl', 'fileUrl 2049');
    });

    test('card title: 200 ok, 201 rejected', async () => {
      const p = 'contentMessage.richCard.standaloneCard.cardContent';
      await expectRelayed(standalone({ title: 't'.repeat(200) }), 'title 200');
      await expectInvalid(standalone({ title: 't'.repeat(201) }), `${p}.title`, 'title 201');
    });

    test('card description: 2000 ok, 2001 rejected', async () => {
      const p = 'contentMessage.richCard.standaloneCard.cardContent';
      await expectRelayed(standalone({ description: 'd'.repeat(2000) }), 'description 2000');
      await expectInvalid(standalone({ description: 'd'.repeat(2001) }), `${p}.description`, 'description 2001');
    });

    test('card suggestions: 4 ok, 5 rejected (standalone and carousel card)', async () => {
      const n = (k) => Array.from({ length: k }, (_, i) => reply(`S${i}`, `p${i}`));
      await expectRelayed(standalone(card(0, { suggestions: n(4) })), '4 per card');
      await expectInvalid(standalone(card(0, { suggestions: n(5) })), 'contentMessage.richCard.standaloneCard.cardContent.suggestions', '5 per card');
      const c = carousel(3);
      c.contentMessage.richCard.carouselCard.cardContents[2].suggestions = n(5);
      await expectInvalid(c, 'contentMessage.richCard.carouselCard.cardContents[2].suggestions', '5 in carousel card 2');
    });

    test('carousel: 2 and 10 cards ok, 1 and 11 rejected', async () => {
      const p = 'contentMessage.richCard.carouselCard.cardContents';
      await expectRelayed(carousel(2), '2 cards');
      await expectRelayed(carousel(10), '10 cards');
      await expectInvalid(carousel(1), p, '1 card');
      await expectInvalid(carousel(11), p, '11 cards');
      const c = carousel(2);
      c.contentMessage.richCard.carouselCard.cardContents[1].title = 't'.repeat(201);
      await expectInvalid(c, `${p}[1].title`, 'carousel card title 201');
    });

    test('ttl and expireTime together rejected', async () => {
      const res = await send(message({ ttl: '3600s', expireTime: '2030-01-01T00:00:00Z' }));
      assertError(res, 400, 'VALIDATION_FAILED', 'ttl + expireTime');
      assert.match(res.json.error.message, /^(ttl|expireTime): /, res.text);
      assert.match(res.json.error.message, /expireTime/, res.text);
      assert.equal(rbmRequests().length, 0);
    });

    test('ttl: 1296000s (15 days) ok, 1296001s rejected', async () => {
      await expectRelayed(message({ ttl: '1296000s' }), '1296000s');
      await expectInvalid(message({ ttl: '1296001s' }), 'ttl', '1296001s');
      await expectInvalid(message({ ttl: '1296000.000000001s' }), 'ttl', '1296000.000000001s');
      await expectInvalid(message({ ttl: '3600' }), 'ttl', 'no unit');
    });

    test('whole body: 256000 bytes (250 KB) ok, 256001 rejected with 400', async () => {
      const padded = (size) => {
        const body = message({ padding: '' });
        body.padding = 'x'.repeat(size - JSON.stringify(body).length);
        const text = JSON.stringify(body);
        assert.equal(Buffer.byteLength(text), size);
        return text;
      };
      const okText = padded(MAX_BODY);
      await expectRelayed(JSON.parse(okText), '256000 bytes');
      // Sent as the exact bytes (expectInvalid would re-encode the same way).
      const before = fake.requests.length;
      const res = await send(padded(MAX_BODY + 1));
      assertError(res, 400, 'VALIDATION_FAILED', '256001 bytes');
      assert.match(res.json.error.message, /256000|250 KB/i, res.text);
      assert.equal(fake.requests.length, before);
    });

    test('whole body of 300 KB -> 400 VALIDATION_FAILED (issue: a violated limit is a 400)', async () => {
      const body = message({ padding: 'x'.repeat(300 * 1024) });
      const res = await send(body);
      assertError(res, 400, 'VALIDATION_FAILED', '300 KB body');
      assert.equal(rbmRequests().length, 0);
    });

    test('messageTrafficType: the five documented types ok, unknown rejected', async () => {
      for (const t of ['AUTHENTICATION', 'TRANSACTION', 'PROMOTION', 'SERVICEREQUEST', 'ACKNOWLEDGEMENT']) {
        await expectRelayed(message({ messageTrafficType: t }), t);
      }
      for (const t of ['BULK', 'transaction', '', 7]) {
        await expectInvalid(message({ messageTrafficType: t }), 'messageTrafficType', `messageTrafficType ${JSON.stringify(t)}`);
      }
    });

    test('not JSON / not an object -> 400 (VALIDATION_FAILED or INVALID_JSON), nothing sent', async () => {
      for (const body of ['{', 'null', '[]', '"text"', '']) {
        const res = await send(body);
        assertError(res, 400, undefined, `body ${JSON.stringify(body)}`);
        assert.ok(['VALIDATION_FAILED', 'INVALID_JSON'].includes(res.json.error.code), `body ${JSON.stringify(body)}: ${res.text}`);
      }
      assert.equal(rbmRequests().length, 0);
      assert.equal(fake.stats.tokenRequests, 0);
    });
  });

  describe('RBM errors passed through', () => {
    for (const code of [404, 400, 403, 429]) {
      test(`RBM ${code} -> ${code}, RBM's body verbatim, recorded FAILED with httpStatus ${code}`, async () => {
        const phone = `+15550000${code}`;
        const id = crypto.randomUUID();
        const res = await send(message({ messageId: id, phoneNumber: phone }));
        assert.equal(res.status, code, res.text);
        assert.match(res.headers.get('content-type') ?? '', /^application\/json/i);
        const [rec] = rbmRequests();
        assert.equal(rec.path, `/v1/phones/%2B15550000${code}/agentMessages`);
        const direct = await replay(rec);
        assert.equal(direct.status, code);
        assert.deepEqual(res.json.rbm, direct.json, 'rbm is RBM\'s error body verbatim');
        assert.equal(res.json.rbm.error.code, code);
        assert.equal(res.json.status, 'FAILED');
        assert.equal(res.json.messageId, id);
        assert.equal(res.json.phoneNumber, phone);
        assert.equal(res.json.agentId, AGENT_ID);
        if (code === 404) {
          assert.equal(res.json.rcsReachable, false, res.text);
          assert.deepEqual(Object.keys(res.json).sort(), [...SEND_KEYS, 'rcsReachable'].sort());
        } else {
          assert.ok(!('rcsReachable' in res.json), `rcsReachable only on 404: ${res.text}`);
          assert.deepEqual(Object.keys(res.json).sort(), SEND_KEYS);
        }
        const view = await statusNow(id);
        assert.equal(view.status, 'FAILED', JSON.stringify(view));
        assert.equal(view.phoneNumber, phone);
        const failed = view.events.filter((e) => e.type === 'SEND_FAILED');
        assert.equal(failed.length, 1, JSON.stringify(view.events));
        assert.equal(failed[0].httpStatus, code, JSON.stringify(failed[0]));
        assert.equal(failed[0].source, 'api', JSON.stringify(failed[0]));
      });
    }

    for (const code of [500, 503]) {
      test(`RBM ${code} -> ${code}, RBM's body verbatim, nothing recorded`, async () => {
        const id = crypto.randomUUID();
        const res = await send(message({ messageId: id, phoneNumber: `+15550000${code}` }), { expect5xx: true });
        assert.equal(res.status, code, res.text);
        const direct = await replay(rbmRequests()[0]);
        assert.deepEqual(res.json.rbm, direct.json, 'rbm is RBM\'s error body verbatim');
        assert.equal(res.json.status, 'FAILED');
        assert.ok(!('rcsReachable' in res.json), res.text);
        assertError(await readStatus(id), 404, 'NOT_FOUND', `GET after RBM ${code}`);
      });
    }

    test('RBM slower than RBM_TIMEOUT_MS -> 504 UPSTREAM_TIMEOUT after ~1.5 s, nothing recorded', async () => {
      const id = crypto.randomUUID();
      const t = Date.now();
      const res = await send(message({ messageId: id, phoneNumber: '+15550000999' }), { expect5xx: true });
      const elapsed = Date.now() - t;
      assertUpstreamError(res, 504, 'UPSTREAM_TIMEOUT', 'slow RBM');
      assert.ok(elapsed >= TIMEOUT_MS - 100 && elapsed < SLOW_MS, `answered after ${elapsed} ms (timeout ${TIMEOUT_MS}, RBM ${SLOW_MS})`);
      assert.equal(rbmRequests().length, 1);
      assertError(await readStatus(id), 404, 'NOT_FOUND', 'GET after timeout');
    });

    test('connection reset by RBM -> 502 UPSTREAM_UNAVAILABLE, nothing recorded', async () => {
      const id = crypto.randomUUID();
      const res = await send(message({ messageId: id, phoneNumber: '+15550000666' }), { expect5xx: true });
      assertUpstreamError(res, 502, 'UPSTREAM_UNAVAILABLE', 'reset');
      assertError(await readStatus(id), 404, 'NOT_FOUND', 'GET after reset');
    });
  });

  describe('DELETE /v1/messages/{id} (revoke)', () => {
    test('phone from the stored record -> agentMessages.delete; REVOKE_REQUESTED; status REVOKED; a late DELIVERED wins', async () => {
      const id = crypto.randomUUID();
      assert.equal((await send(message({ messageId: id }))).status, 200);
      const res = await call(workers.main, 'DELETE', `/v1/messages/${id}`);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(Object.keys(res.json).sort(), SEND_KEYS, res.text);
      assert.deepEqual(res.json, { messageId: id, phoneNumber: PHONE, agentId: AGENT_ID, status: 'REVOKE_REQUESTED', rbm: {} });
      const del = rbmRequests((r) => r.method === 'DELETE');
      assert.equal(del.length, 1);
      assert.equal(del[0].path, `/v1/phones/%2B12223334444/agentMessages/${id}`);
      assert.deepEqual(del[0].query, { agentId: AGENT_ID });
      assert.ok(isBearer(del[0].headers.authorization));

      const view = await statusNow(id);
      assert.equal(view.status, 'REVOKED', JSON.stringify(view));
      assert.deepEqual(view.events.map((e) => e.type).sort(), ['REVOKE_REQUESTED', 'SENT'], JSON.stringify(view.events));
      assert.equal(view.events.find((e) => e.type === 'REVOKE_REQUESTED').source, 'api');

      await webhook(rbm.receipt('DELIVERED', id));
      await expectStatus(id, 'DELIVERED');
    });

    test('?phoneNumber=%2B… for a message RBM knows but this Worker never recorded -> 200, status REVOKED', async () => {
      const id = crypto.randomUUID();
      // As if sent through another deployment: only the fake knows it.
      fake.messages.set(id, { phone: PHONE, agentId: AGENT_ID, message: { name: `phones/${PHONE}/agentMessages/${id}` } });
      const res = await call(workers.main, 'DELETE', `/v1/messages/${id}?phoneNumber=%2B12223334444`);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { messageId: id, phoneNumber: PHONE, agentId: AGENT_ID, status: 'REVOKE_REQUESTED', rbm: {} });
      const [rec] = rbmRequests();
      assert.equal(rec.path, `/v1/phones/%2B12223334444/agentMessages/${id}`);
      const view = await statusNow(id);
      assert.equal(view.status, 'REVOKED', JSON.stringify(view));
      assert.equal(view.phoneNumber, PHONE);
    });

    test('unknown message with ?phoneNumber -> RBM 404 passed through, FAILED, nothing recorded', async () => {
      const id = crypto.randomUUID();
      const res = await call(workers.main, 'DELETE', `/v1/messages/${id}?phoneNumber=%2B12223334444`);
      assert.equal(res.status, 404, res.text);
      assert.equal(res.json.status, 'FAILED', res.text);
      assert.equal(res.json.messageId, id);
      assert.equal(res.json.rbm?.error?.code, 404, res.text);
      assert.deepEqual(res.json.rbm, (await replay(rbmRequests()[0])).json);
      assertError(await readStatus(id), 404, 'NOT_FOUND', 'GET after failed revoke');
    });

    test('unknown message without ?phoneNumber -> 400 INVALID_REQUEST, nothing sent', async () => {
      const res = await call(workers.main, 'DELETE', `/v1/messages/${crypto.randomUUID()}`);
      assertError(res, 400, 'INVALID_REQUEST');
      assert.equal(rbmRequests().length, 0);
    });

    test('?phoneNumber not E.164 -> 400 INVALID_REQUEST, nothing sent', async () => {
      for (const p of ['12223334444', '%2B0123', 'abc']) {
        const res = await call(workers.main, 'DELETE', `/v1/messages/${crypto.randomUUID()}?phoneNumber=${p}`);
        assertError(res, 400, 'INVALID_REQUEST', `phoneNumber=${p}`);
      }
      assert.equal(rbmRequests().length, 0);
    });

    test('RBM error on revoke (403) -> 403 passed through, FAILED, status unchanged (SENT)', async () => {
      const id = crypto.randomUUID();
      const res = await call(workers.main, 'DELETE', `/v1/messages/${id}?phoneNumber=%2B15550000403`);
      assert.equal(res.status, 403, res.text);
      assert.equal(res.json.status, 'FAILED');
      assert.equal(res.json.rbm?.error?.code, 403);
      assertError(await readStatus(id), 404, 'NOT_FOUND');
    });
  });

  describe('POST /v1/phones/{phone}/events', () => {
    test('READ -> agentEvents.create with a fresh UUID eventId; RBM\'s answer passed on', async () => {
      const userMsg = crypto.randomUUID();
      const res = await call(workers.main, 'POST', `/v1/phones/${PHONE}/events`, { body: { eventType: 'READ', messageId: userMsg } });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(Object.keys(res.json).sort(), ['agentId', 'eventId', 'phoneNumber', 'rbm'], res.text);
      assert.match(res.json.eventId, UUID_V4);
      assert.equal(res.json.phoneNumber, PHONE);
      assert.equal(res.json.agentId, AGENT_ID);
      const [rec] = rbmRequests();
      assert.equal(rec.method, 'POST');
      assert.equal(rec.path, '/v1/phones/%2B12223334444/agentEvents');
      assert.deepEqual(rec.query, { eventId: res.json.eventId, agentId: AGENT_ID });
      assert.deepEqual(rec.body, { eventType: 'READ', messageId: userMsg });
      assert.ok(isBearer(rec.headers.authorization));
      assert.deepEqual(res.json.rbm, { name: `phones/${PHONE}/agentEvents/${res.json.eventId}`, eventType: 'READ', messageId: userMsg });
    });

    test('IS_TYPING, phone as %2B…; each call gets a new eventId', async () => {
      const a = await call(workers.main, 'POST', '/v1/phones/%2B12223334444/events', { body: { eventType: 'IS_TYPING' } });
      const b = await call(workers.main, 'POST', '/v1/phones/%2b12223334444/events', { body: { eventType: 'IS_TYPING' } });
      for (const r of [a, b]) {
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.phoneNumber, PHONE);
        assert.match(r.json.eventId, UUID_V4);
      }
      assert.notEqual(a.json.eventId, b.json.eventId);
      const recs = rbmRequests();
      assert.equal(recs.length, 2);
      for (const rec of recs) assert.deepEqual(rec.body, { eventType: 'IS_TYPING' });
      assert.deepEqual(recs.map((r) => r.query.eventId), [a.json.eventId, b.json.eventId]);
    });

    test('bad bodies -> 400 VALIDATION_FAILED (INVALID_JSON for non-JSON), nothing sent', async () => {
      const cases = [
        [{}, 'eventType'],
        [{ eventType: 'DELIVERED', messageId: 'x' }, 'eventType'],
        [{ eventType: 'READ' }, 'messageId'],
        [{ eventType: 'READ', messageId: '' }, 'messageId'],
        [{ eventType: 7 }, 'eventType'],
        ['not json', null],
        ['[]', null],
      ];
      for (const [body, path] of cases) {
        const res = await call(workers.main, 'POST', `/v1/phones/${PHONE}/events`, { body });
        assertError(res, 400, undefined, `events body ${JSON.stringify(body)}`);
        assert.ok(['VALIDATION_FAILED', 'INVALID_JSON'].includes(res.json.error.code), `events body ${JSON.stringify(body)}: ${res.text}`);
        if (path) assert.ok(res.json.error.message.startsWith(`${path}: `), res.text);
      }
      assert.equal(rbmRequests().length, 0);
    });

    test('phone not E.164 -> 400 INVALID_REQUEST, nothing sent', async () => {
      for (const p of ['12223334444', '%2B0123456789', '+1abc5556666', '%2B12', 'me']) {
        const res = await call(workers.main, 'POST', `/v1/phones/${p}/events`, { body: { eventType: 'IS_TYPING' } });
        assertError(res, 400, 'INVALID_REQUEST', `events phone ${p}`);
      }
      assert.equal(rbmRequests().length, 0);
    });

    test('RBM 404 on an event -> 404 passed through with RBM\'s body', async () => {
      const res = await call(workers.main, 'POST', '/v1/phones/+15550000404/events', { body: { eventType: 'IS_TYPING' } });
      assert.equal(res.status, 404, res.text);
      assert.deepEqual(res.json.rbm, (await replay(rbmRequests()[0])).json);
      assert.match(res.json.eventId, UUID_V4);
    });
  });

  describe('GET /v1/phones/{phone}/capabilities', () => {
    test('200 -> rcsReachable true, features, RBM\'s body; fresh UUID requestId', async () => {
      const res = await call(workers.main, 'GET', `/v1/phones/${PHONE}/capabilities`);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(Object.keys(res.json).sort(), ['agentId', 'features', 'phoneNumber', 'rbm', 'rcsReachable'], res.text);
      assert.equal(res.json.rcsReachable, true);
      assert.equal(res.json.phoneNumber, PHONE);
      assert.equal(res.json.agentId, AGENT_ID);
      assert.ok(Array.isArray(res.json.features) && res.json.features.length > 0, res.text);
      assert.deepEqual(res.json.rbm, { features: res.json.features });
      const [rec] = rbmRequests();
      assert.equal(rec.method, 'GET');
      assert.equal(rec.path, '/v1/phones/%2B12223334444/capabilities');
      assert.match(rec.query.requestId ?? '', UUID_V4);
      assert.equal(rec.query.agentId, AGENT_ID);
      assert.ok(isBearer(rec.headers.authorization));

      const again = await call(workers.main, 'GET', '/v1/phones/%2B12223334444/capabilities');
      assert.equal(again.status, 200, again.text);
      assert.notEqual(rbmRequests()[1].query.requestId, rec.query.requestId, 'a fresh requestId per call');
    });

    test('RBM 404 -> 404 with rcsReachable false', async () => {
      const res = await call(workers.main, 'GET', '/v1/phones/+15550000404/capabilities');
      assert.equal(res.status, 404, res.text);
      assert.equal(res.json.rcsReachable, false, res.text);
      assert.equal(res.json.phoneNumber, '+15550000404');
      assert.deepEqual(res.json.rbm, (await replay(rbmRequests()[0])).json);
    });

    test('phone not E.164 -> 400 INVALID_REQUEST, nothing sent', async () => {
      for (const p of ['12223334444', '%2B0123456789', '+1-222-333-4444']) {
        const res = await call(workers.main, 'GET', `/v1/phones/${p}/capabilities`);
        assertError(res, 400, 'INVALID_REQUEST', `capabilities phone ${p}`);
      }
      assert.equal(rbmRequests().length, 0);
    });
  });

  describe('status: API records and webhook receipts', () => {
    test('SENT, then webhook DELIVERED, then READ -> READ', async () => {
      const id = crypto.randomUUID();
      assert.equal((await send(message({ messageId: id }))).status, 200);
      assert.equal((await statusNow(id)).status, 'SENT');
      await webhook(rbm.receipt('DELIVERED', id));
      await expectStatus(id, 'DELIVERED');
      await webhook(rbm.receipt('READ', id));
      const view = await expectStatus(id, 'READ');
      assert.deepEqual(view.events.map((e) => e.type).sort(), ['DELIVERED', 'READ', 'SENT'], JSON.stringify(view.events));
      assert.equal(view.events.find((e) => e.type === 'SENT').source, 'api');
      assert.equal(view.events.find((e) => e.type === 'READ').source, 'webhook');
    });

    test('webhook READ first, then the send with the same messageId -> READ (not overwritten)', async () => {
      const id = crypto.randomUUID();
      await webhook(rbm.receipt('READ', id));
      await expectStatus(id, 'READ');
      const res = await send(message({ messageId: id }));
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.status, 'SENT', 'the answer is RBM\'s synchronous answer');
      const view = await statusNow(id);
      assert.equal(view.status, 'READ', JSON.stringify(view));
      assert.deepEqual(view.events.map((e) => e.type).sort(), ['READ', 'SENT'], JSON.stringify(view.events));
    });

    test('webhook DELIVERED first, then a send that RBM rejects (400) -> still DELIVERED', async () => {
      const id = crypto.randomUUID();
      await webhook(rbm.receipt('DELIVERED', id));
      await expectStatus(id, 'DELIVERED');
      const res = await send(message({ messageId: id, phoneNumber: '+15550000400' }));
      assert.equal(res.status, 400, res.text);
      assert.equal((await statusNow(id)).status, 'DELIVERED');
    });
  });

  describe('CORS on /v1/*', () => {
    const preflightPaths = ['/v1/messages', `/v1/messages/${crypto.randomUUID()}`, `/v1/phones/${PHONE}/events`, `/v1/phones/${PHONE}/capabilities`];
    const list = (v) => (v ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);

    test('preflight from the allowed origin -> 204 with allow-origin/methods/headers and Vary: Origin (no auth needed)', async () => {
      for (const path of preflightPaths) {
        const res = await call(workers.main, 'OPTIONS', path, {
          headers: { origin: ALLOWED_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
        });
        assert.equal(res.status, 204, `${path}: ${res.status} ${res.text}`);
        assert.equal(res.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN, path);
        const methods = list(res.headers.get('access-control-allow-methods'));
        for (const m of ['post', 'delete', 'get']) assert.ok(methods.includes(m), `${path}: allow-methods ${methods}`);
        const hdrs = list(res.headers.get('access-control-allow-headers'));
        for (const h of ['authorization', 'content-type']) assert.ok(hdrs.includes(h), `${path}: allow-headers ${hdrs}`);
        assert.ok(list(res.headers.get('vary')).includes('origin'), `${path}: vary ${res.headers.get('vary')}`);
      }
      assert.equal(rbmRequests().length, 0);
    });

    test('preflight from another origin -> 204 without access-control-allow-origin, Vary: Origin', async () => {
      for (const origin of [OTHER_ORIGIN, 'https://app.example.com.evil.net', 'http://app.example.com', 'null']) {
        const res = await call(workers.main, 'OPTIONS', '/v1/messages', {
          headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
        });
        assert.equal(res.status, 204, `${origin}: ${res.status}`);
        assert.equal(res.headers.get('access-control-allow-origin'), null, origin);
        assert.equal(res.headers.get('access-control-allow-methods'), null, origin);
        assert.ok(list(res.headers.get('vary')).includes('origin'), `${origin}: vary ${res.headers.get('vary')}`);
      }
    });

    test('actual requests: allow-origin only for the allowed origin (also on errors); Vary: Origin always', async () => {
      const cases = [
        ['send', () => ({ method: 'POST', path: '/v1/messages', body: message() })],
        ['capabilities', () => ({ method: 'GET', path: `/v1/phones/${PHONE}/capabilities` })],
        ['validation error', () => ({ method: 'POST', path: '/v1/messages', body: message({ phoneNumber: 'x' }) })],
        ['401', () => ({ method: 'GET', path: `/v1/messages/${crypto.randomUUID()}`, noAuth: true })],
      ];
      for (const [what, mk] of cases) {
        for (const origin of [ALLOWED_ORIGIN, OTHER_ORIGIN, undefined]) {
          const { method, path, body, noAuth } = mk();
          const headers = { ...(noAuth ? {} : AUTH), ...(origin ? { origin } : {}) };
          const res = await call(workers.main, method, path, { body, headers });
          const ctx = `${what} from ${origin}: ${res.status}`;
          assert.ok(res.status < 500, ctx);
          assert.equal(res.headers.get('access-control-allow-origin'), origin === ALLOWED_ORIGIN ? ALLOWED_ORIGIN : null, ctx);
          assert.ok(list(res.headers.get('vary')).includes('origin'), `${ctx}: vary ${res.headers.get('vary')}`);
        }
      }
    });
  });

  describe('API key auth on every /v1 route', () => {
    test('no / wrong bearer -> 401 UNAUTHORIZED, nothing sent to Google', async () => {
      const id = crypto.randomUUID();
      const routes = [
        ['POST', '/v1/messages', message({ messageId: id })],
        ['GET', `/v1/messages/${id}`],
        ['DELETE', `/v1/messages/${id}?phoneNumber=%2B12223334444`],
        ['POST', `/v1/phones/${PHONE}/events`, { eventType: 'IS_TYPING' }],
        ['GET', `/v1/phones/${PHONE}/capabilities`],
      ];
      const auths = {
        none: {},
        wrong: { authorization: 'Bearer key-three' },
        'client token': { authorization: `Bearer ${TOK_NEW}` },
        basic: { authorization: `Basic ${KEY_TWO}` },
        'key list': { authorization: `Bearer ${API_KEYS.join(',')}` },
      };
      for (const [method, path, body] of routes) {
        for (const [what, headers] of Object.entries(auths)) {
          const res = await call(workers.main, method, path, { body, headers });
          assertError(res, 401, 'UNAUTHORIZED', `${method} ${path} (${what})`);
        }
      }
      assert.equal(rbmRequests().length, 0);
      assert.equal(fake.stats.tokenRequests, 0);
    });

    test('the second API key works too', async () => {
      const res = await send(message(), { headers: { authorization: `Bearer ${KEY_TWO}` } });
      assert.equal(res.status, 200, res.text);
    });
  });
});

describe('token endpoint failures (fresh Worker, nothing cached)', () => {
  before(async () => {
    workers.tokenFail = await startWorker({ ...sendConfig(), name: 'rbm-edge-send-tokenfail-test' });
  });

  const sendVia = (w, body, expect5xx = true) => call(w, 'POST', '/v1/messages', { body, expect5xx });

  function assertTokenFailure(res, what) {
    assertUpstreamError(res, 502, 'UPSTREAM_UNAVAILABLE', what);
    assert.match(res.json.error.message, /token endpoint/i, `${what}: the message names the token endpoint: ${res.text}`);
    assert.ok(!/eyJ[A-Za-z0-9_-]{10,}/.test(res.text), `${what}: no JWT in the answer`);
  }

  for (const mode of ['http500', 'invalid_grant']) {
    test(`token endpoint ${mode} -> 502 UPSTREAM_UNAVAILABLE naming the token endpoint, no key material, nothing sent`, async () => {
      fake.failTokens(mode);
      const id = crypto.randomUUID();
      const res = await sendVia(workers.tokenFail, message({ messageId: id }));
      assertTokenFailure(res, `send, token ${mode}`);
      assert.ok(fake.stats.tokenRequests >= 1, 'the token endpoint was asked');
      const others = [
        await call(workers.tokenFail, 'GET', `/v1/phones/${PHONE}/capabilities`, { expect5xx: true }),
        await call(workers.tokenFail, 'POST', `/v1/phones/${PHONE}/events`, { body: { eventType: 'IS_TYPING' }, expect5xx: true }),
        await call(workers.tokenFail, 'DELETE', `/v1/messages/${id}?phoneNumber=%2B12223334444`, { expect5xx: true }),
      ];
      others.forEach((r, i) => assertTokenFailure(r, `route ${i}, token ${mode}`));
      assert.equal(rbmRequests().length, 0, 'RBM got nothing');
      assertError(await readStatus(id, workers.tokenFail), 404, 'NOT_FOUND', 'nothing recorded');
    });
  }

  test('token endpoint back -> 10 concurrent sends, exactly 1 token request', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => sendVia(workers.tokenFail, message(), false)));
    assert.deepEqual(results.map((r) => r.status), results.map(() => 200),
      `every concurrent send answers 200; RBM got ${fake.stats.rbmRequests} sends; first non-200: ${results.find((r) => r.status !== 200)?.text.slice(0, 300)}`);
    assert.equal(fake.stats.tokenRequests, 1, 'one token request, then cached');
    assert.equal(fake.stats.tokenRejected, 0);
  });
});

describe('RBM unreachable (RBM_API_BASE = a closed loopback port)', () => {
  before(async () => {
    const closed = await freePort();
    workers.unreachable = await startWorker({
      ...sendConfig({ vars: { RBM_API_BASE: `http://127.0.0.1:${closed}` } }),
      name: 'rbm-edge-send-unreachable-test',
    });
  });

  test('send, revoke, event, capabilities -> 502 UPSTREAM_UNAVAILABLE, no rbm, nothing recorded', async () => {
    const id = crypto.randomUUID();
    const w = workers.unreachable;
    const res = await call(w, 'POST', '/v1/messages', { body: message({ messageId: id }), expect5xx: true });
    assertUpstreamError(res, 502, 'UPSTREAM_UNAVAILABLE', 'send');
    assert.match(res.json.error.message, /RBM/, res.text);
    for (const [method, path, body] of [
      ['DELETE', `/v1/messages/${id}?phoneNumber=%2B12223334444`],
      ['POST', `/v1/phones/${PHONE}/events`, { eventType: 'IS_TYPING' }],
      ['GET', `/v1/phones/${PHONE}/capabilities`],
    ]) {
      assertUpstreamError(await call(w, method, path, { body, expect5xx: true }), 502, 'UPSTREAM_UNAVAILABLE', `${method} ${path}`);
    }
    assertError(await readStatus(id, w), 404, 'NOT_FOUND', 'nothing recorded');
    assert.equal(rbmRequests().length, 0);
  });
});

describe('sweep', () => {
  test('no 5xx other than the documented ones (RBM 5xx passed through, 502, 504)', () => {
    const bad = seen.filter((r) => r.status >= 500 && !r.expect5xx);
    assert.deepEqual(bad, []);
    const documented = seen.filter((r) => r.status >= 500);
    assert.ok(documented.every((r) => [500, 502, 503, 504].includes(r.status)), JSON.stringify(documented));
  });

  test('Worker logs: no secrets, no panic, no private key, no access token', () => {
    const { pem, fragment } = keyFragments();
    for (const [name, w] of Object.entries(workers)) {
      const logs = w.logs();
      assertCleanLogs(logs);
      assertNoSecrets(logs, name);
      for (const bad of [pem, fragment, 'ya29.']) {
        const i = logs.indexOf(bad);
        assert.ok(i < 0, `${name} logs contain ${JSON.stringify(bad)}: ...${logs.slice(Math.max(0, i - 200), i + 100)}...`);
      }
    }
  });
});
