// The local RBM simulator on its own (sim/simulator.mjs): token endpoint, RBM answers, the
// webhooks its simulated users post (signed, retried) and its inspection routes. Fast timings.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startSimulator } from '../../sim/simulator.mjs';
import { makeJwt, postToken, call, startReceiver, sleep } from './support.mjs';

const TOKEN = 'sim-test-client-token';
const AGENT = 'sim_agent';
const NORMAL = '+12223334444';
const T = { deliverMs: 100, readMs: 250, typingMs: 50, replyMs: 120, slowMs: 600, retryBaseMs: 50, retryMaxMs: 200 };

let sim, rx, sa, bearer;
const lines = [];
/** Status of the n-th post to the receiver; tests swap it. */
let answer = () => 200;

const msgUrl = (phone, id = crypto.randomUUID()) => `${sim.url}/v1/phones/${encodeURIComponent(phone)}/agentMessages?messageId=${id}&agentId=${AGENT}`;
const send = (phone, body = { contentMessage: { text: 'Hello' } }, id = crypto.randomUUID()) =>
  call(msgUrl(phone, id), { method: 'POST', token: bearer, body }).then((r) => ({ ...r, id }));
const revoke = (phone, id) => call(`${sim.url}/v1/phones/${encodeURIComponent(phone)}/agentMessages/${id}?agentId=${AGENT}`, { method: 'DELETE', token: bearer });
const eventsFor = (phone) => rx.posts.filter((p) => (p.event?.senderPhoneNumber ?? p.event?.phoneNumber) === phone);

before(async () => {
  rx = await startReceiver(TOKEN, (n, e) => answer(n, e));
  sim = await startSimulator({ clientToken: TOKEN, webhookUrl: rx.url, agentId: AGENT, log: (l) => lines.push(l), ...T });
  sa = JSON.parse(sim.serviceAccountKey);
  const r = await postToken(sim.tokenUri, makeJwt(sa));
  assert.equal(r.status, 200, JSON.stringify(r.json));
  bearer = r.json.access_token;
});
after(async () => {
  await sim?.stop();
  await rx?.close();
});

describe('token endpoint', () => {
  test('a correctly signed assertion gets Google\'s token answer', async () => {
    const r = await postToken(sim.tokenUri, makeJwt(sa));
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.json).sort(), ['access_token', 'expires_in', 'token_type']);
    assert.equal(r.json.expires_in, 3599);
    assert.equal(r.json.token_type, 'Bearer');
  });

  test('refuses an assertion signed by another key, a wrong aud, scope or iss, an expired one', async () => {
    const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const now = Math.floor(Date.now() / 1000);
    for (const [what, jwt] of [
      ['another key', makeJwt(sa, { key: other })],
      ['aud Google', makeJwt(sa, { claims: { aud: 'https://oauth2.googleapis.com/token' } })],
      ['scope', makeJwt(sa, { claims: { scope: 'https://www.googleapis.com/auth/cloud-platform' } })],
      ['iss', makeJwt(sa, { claims: { iss: 'x@y.iam.gserviceaccount.com' } })],
      ['expired', makeJwt(sa, { claims: { iat: now - 7200, exp: now - 3600 } })],
    ]) {
      const r = await postToken(sim.tokenUri, jwt);
      assert.equal(r.status, 400, what);
      assert.equal(r.json.error, 'invalid_grant', what);
    }
    assert.ok(lines.some((l) => l.includes('token REFUSED: Invalid JWT Signature.')), 'refusals are logged');
  });

  test('the RBM API wants a token it issued', async () => {
    const r = await call(`${sim.url}/v1/phones/%2B12223334444/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`, { token: 'ya29.nope' });
    assert.equal(r.status, 401);
    assert.equal(r.json.error.status, 'UNAUTHENTICATED');
  });
});

describe('agentMessages.create and the webhooks that follow', () => {
  test('normal number: the created AgentMessage, then signed DELIVERED (~deliverMs) and READ (~readMs)', async () => {
    const body = { contentMessage: { text: 'Your order shipped' }, messageTrafficType: 'TRANSACTION', ttl: '86400s' };
    const t0 = Date.now();
    const r = await send(NORMAL, body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.name, `phones/${NORMAL}/agentMessages/${r.id}`);
    assert.match(r.json.sendTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    assert.deepEqual({ ...r.json, name: undefined, sendTime: undefined }, { ...body, name: undefined, sendTime: undefined });
    const got = await rx.waitFor((e) => e.messageId === r.id && e.eventType === 'READ');
    assert.equal(got.length, 1);
    const mine = rx.posts.filter((p) => p.event?.messageId === r.id);
    assert.deepEqual(mine.map((p) => p.event.eventType), ['DELIVERED', 'READ']);
    for (const p of mine) {
      assert.equal(p.signatureOk, true);
      assert.equal(p.path, '/webhook');
      assert.deepEqual(Object.keys(p.envelope).sort(), ['message', 'subscription']);
      assert.deepEqual(Object.keys(p.envelope.message).sort(), ['data', 'messageId', 'publishTime']);
      assert.deepEqual(Object.keys(p.event).sort(), ['agentId', 'eventId', 'eventType', 'messageId', 'sendTime', 'senderPhoneNumber']);
      assert.equal(p.event.agentId, AGENT);
      assert.equal(p.event.senderPhoneNumber, NORMAL);
    }
    assert.ok(mine[0].at - t0 >= T.deliverMs - 5, `DELIVERED after ${mine[0].at - t0} ms`);
    assert.ok(mine[1].at - t0 >= T.readMs - 5, `READ after ${mine[1].at - t0} ms`);
    const view = await call(`${sim.url}/sim/messages/${r.id}`);
    assert.equal(view.json.state, 'read');
    assert.deepEqual(view.json.webhooks.map((w) => [w.kind, w.status, w.attempts]), [['DELIVERED', 200, 1], ['READ', 200, 1]]);
  });

  test('a reused messageId (or an event id reused as a message id) -> 409 ALREADY_EXISTS', async () => {
    const first = await send(NORMAL);
    assert.equal(first.status, 200);
    const again = await send(NORMAL, undefined, first.id);
    assert.deepEqual(again.json, { error: { code: 409, message: 'Requested entity already exists', status: 'ALREADY_EXISTS' } });
    assert.equal(again.status, 409);
    const eventId = crypto.randomUUID();
    const ev = await call(`${sim.url}/v1/phones/%2B12223334444/agentEvents?eventId=${eventId}&agentId=${AGENT}`, { method: 'POST', token: bearer, body: { eventType: 'IS_TYPING' } });
    assert.equal(ev.status, 200);
    assert.equal((await send(NORMAL, undefined, eventId)).status, 409);
  });

  for (const [phone, kind, check] of [
    ['+15550000101', 'text', (e) => assert.equal(typeof e.text, 'string')],
    ['+15550000102', 'suggestionResponse', (e) => assert.deepEqual(e.suggestionResponse, { postbackData: 'track', text: 'Track', type: 'REPLY' })],
    ['+15550000103', 'location', (e) => assert.deepEqual(e.location, { latitude: 37.422, longitude: -122.084056 })],
  ]) {
    test(`${phone} reads, types, then answers with a ${kind}`, async () => {
      const r = await send(phone, { contentMessage: { text: 'Track it?', suggestions: [{ reply: { text: 'Track', postbackData: 'track' } }, { reply: { text: 'No', postbackData: 'no' } }] } });
      assert.equal(r.status, 200);
      const [reply] = await rx.waitFor((e) => e.senderPhoneNumber === phone && e[kind] !== undefined);
      assert.ok(reply, `a ${kind} from ${phone}`);
      const seq = eventsFor(phone).map((p) => p.event.eventType ?? Object.keys(p.event).find((k) => ['text', 'suggestionResponse', 'location'].includes(k)));
      assert.deepEqual(seq, ['DELIVERED', 'READ', 'IS_TYPING', kind]);
      assert.equal(reply.signatureOk, true);
      assert.deepEqual(Object.keys(reply.event).sort(), ['agentId', 'messageId', 'sendTime', 'senderPhoneNumber', kind].sort());
      assert.notEqual(reply.event.messageId, r.id, 'a user message has its own id');
      check(reply.event);
    });
  }

  test('a tap on the first suggestion of a rich card', async () => {
    const phone = '+15550000102';
    const before = eventsFor(phone).length;
    const card = { title: 'T', suggestions: [{ action: { text: 'Call us', postbackData: 'call', dialAction: { phoneNumber: '+15551234567' } } }] };
    assert.equal((await send(phone, { contentMessage: { richCard: { standaloneCard: { cardOrientation: 'VERTICAL', cardContent: card } } } })).status, 200);
    const got = await rx.waitFor((e) => e.senderPhoneNumber === phone && e.suggestionResponse?.postbackData === 'call');
    assert.deepEqual(got[0].event.suggestionResponse, { postbackData: 'call', text: 'Call us', type: 'ACTION' });
    assert.ok(eventsFor(phone).length > before);
  });

  test('+15550000104 is delivered but never read', async () => {
    const r = await send('+15550000104');
    await rx.waitFor((e) => e.messageId === r.id);
    await sleep(T.readMs + 100);
    assert.deepEqual(rx.posts.filter((p) => p.event?.messageId === r.id).map((p) => p.event.eventType), ['DELIVERED']);
  });
});

describe('never-delivering numbers, TTLs and revoke', () => {
  test('+15550000100 with ttl: no DELIVERED; TTL_EXPIRATION_REVOKED (ServerEvent, phoneNumber) when it expires', async () => {
    const phone = '+15550000100';
    const t0 = Date.now();
    const r = await send(phone, { contentMessage: { text: 'OTP 123456' }, ttl: '0.4s' });
    assert.equal(r.status, 200);
    const [ev] = await rx.waitFor((e) => e.messageId === r.id);
    assert.ok(ev.at - t0 >= 390, `expired after ${ev.at - t0} ms`);
    assert.deepEqual(Object.keys(ev.event).sort(), ['agentId', 'eventId', 'eventType', 'messageId', 'phoneNumber', 'sendTime']);
    assert.equal(ev.event.eventType, 'TTL_EXPIRATION_REVOKED');
    assert.equal(ev.event.phoneNumber, phone);
    assert.equal(ev.signatureOk, true);
    assert.equal((await revoke(phone, r.id)).status, 404, 'an expired message cannot be revoked');
    assert.equal((await call(`${sim.url}/sim/messages/${r.id}`)).json.state, 'expired');
  });

  test('+15550000105 with expireTime: TTL_EXPIRATION_REVOKE_FAILED', async () => {
    const r = await send('+15550000105', { contentMessage: { text: 'Sale ends' }, expireTime: new Date(Date.now() + 300).toISOString() });
    const [ev] = await rx.waitFor((e) => e.messageId === r.id);
    assert.equal(ev.event.eventType, 'TTL_EXPIRATION_REVOKE_FAILED');
  });

  test('a normal number with a ttl shorter than the delivery delay expires instead', async () => {
    const r = await send(NORMAL, { contentMessage: { text: 'x' }, ttl: '0.03s' });
    await rx.waitFor((e) => e.messageId === r.id);
    await sleep(T.readMs);
    assert.deepEqual(rx.posts.filter((p) => p.event?.messageId === r.id).map((p) => p.event.eventType), ['TTL_EXPIRATION_REVOKED']);
  });

  test('revoke: 200 {} while undelivered (then never delivered), 404 when delivered, revoked again or unknown', async () => {
    const pending = await send(NORMAL);
    const ok = await revoke(NORMAL, pending.id);
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, {});
    assert.equal((await revoke(NORMAL, pending.id)).status, 404);
    const delivered = await send(NORMAL);
    await rx.waitFor((e) => e.messageId === delivered.id && e.eventType === 'DELIVERED');
    const late = await revoke(NORMAL, delivered.id);
    assert.deepEqual(late.json, { error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND' } });
    assert.equal((await revoke(NORMAL, crypto.randomUUID())).status, 404);
    assert.equal((await revoke('+12223330000', delivered.id)).status, 404, 'another number');
    await sleep(T.readMs + 100);
    assert.equal(rx.posts.filter((p) => p.event?.messageId === pending.id).length, 0, 'no webhook for the revoked message');
    assert.equal((await call(`${sim.url}/sim/messages/${pending.id}`)).json.state, 'revoked');
  });
});

describe('other calls and scripted answers', () => {
  test('capabilities: features for a normal number, 404 NOT_FOUND for the unreachable one', async () => {
    const cap = (p) => call(`${sim.url}/v1/phones/${encodeURIComponent(p)}/capabilities?requestId=${crypto.randomUUID()}&agentId=${AGENT}`, { token: bearer });
    const ok = await cap(NORMAL);
    assert.equal(ok.status, 200);
    assert.ok(ok.json.features.includes('RICHCARD_STANDALONE'));
    const nf = await cap('+15550000404');
    assert.deepEqual(nf.json, { error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND' } });
  });

  test('send: 404 unreachable, 429 rate limited, 500 failing, slow number after slowMs', async () => {
    for (const [p, code, status] of [['+15550000404', 404, 'NOT_FOUND'], ['+15550000429', 429, 'RESOURCE_EXHAUSTED'], ['+15550000500', 500, 'INTERNAL']]) {
      const r = await send(p);
      assert.equal(r.status, code);
      assert.equal(r.json.error.status, status);
    }
    const t0 = Date.now();
    const slow = await send('+15550000999');
    assert.equal(slow.status, 200);
    assert.ok(Date.now() - t0 >= T.slowMs - 10);
  });

  test('agentEvents: READ and IS_TYPING; typing is logged visibly; users:batchGet', async () => {
    const base = `${sim.url}/v1/phones/%2B12223334444/agentEvents`;
    assert.equal((await call(`${base}?eventId=${crypto.randomUUID()}&agentId=${AGENT}`, { method: 'POST', token: bearer, body: { eventType: 'IS_TYPING' } })).status, 200);
    const read = await call(`${base}?eventId=${crypto.randomUUID()}&agentId=${AGENT}`, { method: 'POST', token: bearer, body: { eventType: 'READ', messageId: 'user-msg-1' } });
    assert.equal(read.status, 200);
    assert.equal(read.json.messageId, 'user-msg-1');
    assert.ok(lines.some((l) => /agent is typing/.test(l) && l.includes('***4444')));
    const evs = (await call(`${sim.url}/sim/events?phoneNumber=%2B12223334444`)).json.events;
    assert.deepEqual(evs.slice(-2).map((e) => e.eventType), ['IS_TYPING', 'READ']);
    const bg = await call(`${sim.url}/v1/users:batchGet`, { method: 'POST', token: bearer, body: { users: [NORMAL, '+15550000404', '+15550000101'], agentId: AGENT } });
    assert.deepEqual(bg.json.reachableUsers, [NORMAL, '+15550000101']);
  });
});

describe('webhook retries', () => {
  test('non-200 answers are retried with backoff until 200', async () => {
    let left = 2;
    const id = crypto.randomUUID();
    answer = (n, e) => (e?.messageId === id && left-- > 0 ? 503 : 200);
    try {
      const r = await send('+15550000104', undefined, id);
      const got = await rx.waitFor((e) => e.messageId === r.id, 3);
      assert.deepEqual(got.map((p) => p.status), [503, 503, 200]);
      assert.ok(got[1].at - got[0].at >= T.retryBaseMs - 5 && got[2].at - got[1].at >= 2 * T.retryBaseMs - 5, 'backoff grows');
      assert.equal(got[0].envelope.message.messageId, got[2].envelope.message.messageId, 'the same Pub/Sub message each time');
      assert.ok(lines.some((l) => l.includes('→ 503; retry 1/4')));
    } finally { answer = () => 200; }
  });

  test('bounded: gives up after 1 + retries attempts', async () => {
    const id = crypto.randomUUID();
    answer = (n, e) => (e?.messageId === id ? 500 : 200);
    try {
      const r = await send('+15550000104', undefined, id);
      await sleep(T.retryBaseMs + 2 * T.retryBaseMs + 2 * T.retryMaxMs + T.deliverMs + 300);
      assert.equal(rx.posts.filter((p) => p.event?.messageId === r.id).length, 5);
      assert.ok(lines.some((l) => l.includes('giving up after 5 attempts')));
    } finally { answer = () => 200; }
  });
});

describe('inspection and logs', () => {
  test('GET /sim lists the scripted numbers; /sim/messages filters by number; POST /sim/inbound', async () => {
    const info = (await call(`${sim.url}/sim`)).json;
    assert.equal(info.webhookUrl, rx.url);
    assert.match(info.numbers['+15550000101'], /text/);
    assert.match(info.numbers['+15550000404'], /404/);
    const mine = (await call(`${sim.url}/sim/messages?phoneNumber=%2B15550000103`)).json.messages;
    assert.ok(mine.length >= 1 && mine.every((m) => m.phoneNumber === '+15550000103'));
    const inbound = await call(`${sim.url}/sim/inbound`, { method: 'POST', body: { phoneNumber: '+12223335555', text: 'Hi there' } });
    assert.equal(inbound.status, 202, inbound.text);
    const [got] = await rx.waitFor((e) => e.senderPhoneNumber === '+12223335555' && e.text === 'Hi there');
    assert.equal(got.signatureOk, true);
    assert.equal(got.event.agentId, AGENT);
    assert.equal((await call(`${sim.url}/sim/inbound`, { method: 'POST', body: { phoneNumber: 'x', text: 'a' } })).status, 400);
  });

  test('log lines mask phone numbers to the last 4 digits and hold no token', () => {
    const all = lines.join('\n');
    for (const p of [NORMAL, '+15550000101', '+12223335555']) assert.ok(!all.includes(p), `full number ${p} in logs`);
    assert.ok(all.includes('***4444'));
    assert.ok(!/ya29\./.test(all), 'no access token in logs');
    assert.ok(!all.includes(TOKEN), 'no client token in logs');
    assert.ok(lines.every((l) => l.length < 200), 'one concise line each');
  });
});
