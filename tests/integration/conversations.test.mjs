// Conversations: the Conversation Durable Object per (agent, phone) against the built Worker in
// workerd: live frames over WebSocket, history with paging, exact callbacks and budgets,
// CONVERSATION_HISTORY=off, erase, and who may read or watch which conversation.
//
// Workers (stopped in after()):
//   inline   PROCESSING=inline, TOKEN_SIGNING_KEY, ALLOWED_ORIGINS, callbacks to the sink
//   queue    PROCESSING=queue (local Queues), callbacks to the sink
//   nohist   PROCESSING=inline, CONVERSATION_HISTORY=off
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import WebSocket from 'ws';

import { startWorker } from '../support/worker.mjs';
import { TOKENS, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs } from '../support/assert.mjs';
import { startGoogleFake } from '../fakes/google.mjs';
import { startSink } from '../fakes/sink.mjs';
import * as rbm from '../support/rbm.mjs';

const { request, postEvent, pool } = rbm;
const [TOK] = TOKENS;
const KEY = API_KEYS[0];
const AUTH = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
const SECRET = `whsec_${crypto.randomBytes(32).toString('base64')}`;
const SIGNING_KEY = crypto.randomBytes(36).toString('base64url');
const ORIGIN = 'https://app.example.com';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let google;
let sink;
const w = {};
const sockets = new Set();

/** A fresh number per test, so conversations never mix. */
let n = 0;
const freshPhone = () => `+1555${String(process.pid % 1000).padStart(3, '0')}${String(n++).padStart(4, '0')}`;
const seg = (p) => encodeURIComponent(p);

function config(vars = {}) {
  return {
    secrets: {
      RBM_CLIENT_TOKEN: TOKENS.join(','),
      API_KEYS: API_KEYS.join(','),
      FORWARD_SECRET: SECRET,
      TOKEN_SIGNING_KEY: SIGNING_KEY,
      RBM_SERVICE_ACCOUNT_KEY: JSON.stringify(JSON.parse(google.serviceAccountKey)),
    },
    vars: {
      RBM_AGENT_ID: 'test_agent', PROCESSING: 'inline', RBM_API_BASE: google.url, ALLOW_INSECURE_CALLBACKS: 'true',
      ALLOWED_ORIGINS: ORIGIN, RETRY_DELAY_SECONDS: '1', ...vars,
    },
    kv: true,
  };
}

const call = (worker, method, path, { body, headers = AUTH } = {}) =>
  request(worker.url, path, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });

async function send(worker, phone, over = {}) {
  const res = await call(worker, 'POST', '/v1/messages', { body: { phoneNumber: phone, contentMessage: { text: 'Hi there' }, ...over } });
  assert.equal(res.status, 200, res.text);
  return res.json.messageId;
}

async function mint(worker, req) {
  const res = await call(worker, 'POST', '/v1/tokens', { body: req });
  assert.equal(res.status, 200, res.text);
  return res.json.token;
}

/** Opens /live; resolves with {ws, frames, next(pred, ms)} once open, rejects with the HTTP status if refused. */
function live(worker, phone, { credential = KEY, protocols, headers = {}, agentId } = {}) {
  const url = `${worker.url.replace('http', 'ws')}/v1/phones/${seg(phone)}/live${agentId ? `?agentId=${agentId}` : ''}`;
  const ws = new WebSocket(url, protocols ?? ['rbm-edge.v1', `bearer.${credential}`], { headers });
  sockets.add(ws);
  const frames = [];
  const waiters = new Set();
  ws.on('message', (d) => {
    const f = JSON.parse(String(d));
    frames.push(f);
    for (const wt of waiters) if (wt.pred(f)) { waiters.delete(wt); wt.resolve(f); }
  });
  const next = (pred, ms = 2000) => {
    const found = frames.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const wt = { pred, resolve };
      waiters.add(wt);
      setTimeout(() => { if (waiters.delete(wt)) reject(new Error(`no matching frame within ${ms} ms; got ${JSON.stringify(frames)}`)); }, ms);
    });
  };
  return new Promise((resolve, reject) => {
    ws.on('open', () => resolve({ ws, frames, next }));
    ws.on('unexpected-response', (_req, res) => reject(Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode })));
    ws.on('error', reject);
  });
}

const event = (phone, ev) => ({ ...ev, senderPhoneNumber: phone });
const history = (worker, phone, query = '', headers = AUTH) => call(worker, 'GET', `/v1/phones/${seg(phone)}/messages${query}`, { headers });

describe('conversations', { timeout: 240_000 }, () => {
  before(async () => {
    google = await startGoogleFake();
    sink = await startSink({ secret: SECRET });
    [w.inline, w.queue, w.nohist] = await Promise.all([
      startWorker(config()),
      startWorker({ ...config({ PROCESSING: 'queue' }), queues: true }),
      startWorker(config({ CONVERSATION_HISTORY: 'off' })),
    ]);
  });

  after(async () => {
    for (const ws of sockets) ws.terminate();
    await Promise.all(Object.values(w).map((x) => x?.stop()));
    await Promise.all([sink?.close(), google?.close()]);
  });

  test('live: DELIVERED, READ, typing and a reply reach two sockets within 2 s; another number’s socket gets none', async () => {
    const phone = freshPhone();
    const a = await live(w.inline, phone);
    const b = await live(w.inline, phone);
    const other = await live(w.inline, freshPhone());
    assert.equal(a.ws.protocol, 'rbm-edge.v1');
    assert.deepEqual(await a.next((f) => f.type === 'ready'), { type: 'ready', messages: [] });
    const id = await send(w.inline, phone);
    await postEvent(w.inline.url, event(phone, rbm.receipt('DELIVERED', id)), TOK);
    await postEvent(w.inline.url, event(phone, rbm.receipt('READ', id)), TOK);
    await postEvent(w.inline.url, event(phone, rbm.isTyping()), TOK);
    const reply = event(phone, rbm.userText({ text: 'Yes please' }));
    await postEvent(w.inline.url, reply, TOK);
    for (const s of [a, b]) {
      await s.next((f) => f.type === 'message.status' && f.messageId === id && f.status === 'DELIVERED' && f.event === 'DELIVERED');
      await s.next((f) => f.type === 'message.status' && f.messageId === id && f.status === 'READ');
      await s.next((f) => f.type === 'typing' && f.active === true);
      const got = await s.next((f) => f.type === 'message.received');
      assert.equal(got.message.direction, 'inbound');
      assert.equal(got.message.kind, 'text');
      assert.equal(got.message.text, 'Yes please');
      assert.equal(got.message.messageId, reply.messageId);
    }
    await sleep(300);
    assert.deepEqual(other.frames.map((f) => f.type), ['ready'], 'the other conversation saw nothing');
    // a duplicate receipt pushes nothing new
    const before = a.frames.length;
    await postEvent(w.inline.url, event(phone, rbm.receipt('DELIVERED', id)), TOK);
    await sleep(300);
    assert.equal(a.frames.length, before);
  });

  test('live through the queue: the reply and READ arrive within 2 s of their webhooks', async () => {
    const phone = freshPhone();
    const s = await live(w.queue, phone);
    const id = await send(w.queue, phone);
    await postEvent(w.queue.url, event(phone, rbm.receipt('READ', id)), TOK);
    await s.next((f) => f.type === 'message.status' && f.status === 'READ', 4000);
    await postEvent(w.queue.url, event(phone, rbm.suggestionResponse()), TOK);
    const got = await s.next((f) => f.type === 'message.received', 4000);
    assert.equal(got.message.kind, 'suggestionResponse');
    assert.ok(got.message.suggestionResponse.postbackData);
  });

  test('ready frame carries the last messages, oldest first', async () => {
    const phone = freshPhone();
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await send(w.inline, phone, { contentMessage: { text: `m${i}` } }));
    const s = await live(w.inline, phone);
    const ready = await s.next((f) => f.type === 'ready');
    assert.deepEqual(ready.messages.map((m) => m.messageId), ids);
    assert.deepEqual(ready.messages.map((m) => m.status), ['SENT', 'SENT', 'SENT']);
  });

  for (const mode of ['inline', 'queue']) {
    test(`callbacks (${mode}): exactly one per status change under duplicated, shuffled, concurrent receipts`, async () => {
      const phone = freshPhone();
      const messages = [];
      for (let i = 0; i < 4; i++) messages.push(await send(w[mode], phone, { statusCallback: `${sink.url}/cb/${mode}` }));
      const evs = [];
      for (const id of messages) {
        for (const t of ['DELIVERED', 'READ']) for (let k = 0; k < 3; k++) evs.push(event(phone, rbm.receipt(t, id)));
      }
      evs.sort(() => Math.random() - 0.5);
      const answers = await pool(evs, 8, (ev) => postEvent(w[mode].url, ev, TOK));
      assert.ok(answers.every((r) => r.status === 200), answers.map((r) => r.status).join(','));
      // Every change is READ, or DELIVERED then READ: a DELIVERED arriving after READ changes nothing.
      await sink.waitFor((d) => d.path === `/cb/${mode}` && messages.includes(d.body?.messageId) && d.body.status === 'READ', 15_000, messages.length);
      await sleep(1500);
      const got = sink.deliveries.filter((d) => d.path === `/cb/${mode}` && messages.includes(d.body?.messageId));
      const ids = got.map((d) => d.id);
      assert.equal(new Set(ids).size, ids.length, `no change called back twice: ${ids.join(' ')}`);
      for (const id of messages) {
        const mine = got.filter((d) => d.body.messageId === id).map((d) => d.body.status);
        assert.ok(mine.includes('READ'), `${id}: ${mine}`);
        assert.ok(mine.length <= 2, `${id}: ${mine}`);
      }
      assert.ok(got.every((d) => d.signatureValid && d.body.type === 'message.status'));
    });
  }

  test('budget: exactly maxSends of 20 concurrent token sends reach RBM', async () => {
    const phone = freshPhone();
    const t = await mint(w.inline, { scopes: ['messages:send'], maxSends: 5 });
    const before = google.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/agentMessages')).length;
    const results = await pool(Array.from({ length: 20 }, (_, i) => i), 20, (i) =>
      call(w.inline, 'POST', '/v1/messages', { body: { phoneNumber: phone, contentMessage: { text: `b${i}` } }, headers: { authorization: `Bearer ${t}`, 'cf-connecting-ip': `198.51.100.${i + 1}` } }));
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, 5, statuses.join(','));
    for (const r of results.filter((x) => x.status !== 200)) assertError(r, 403, 'BUDGET_EXHAUSTED');
    const after = google.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/agentMessages')).length;
    assert.equal(after - before, 5);
  });

  test('history: inbound and outbound together, newest first, paged with a cursor', async () => {
    const phone = freshPhone();
    const order = [];
    for (let i = 0; i < 5; i++) {
      order.push(await send(w.inline, phone, { contentMessage: { text: `out ${i}` } }));
      await sleep(5);
      const ev = event(phone, rbm.userText({ text: `in ${i}`, sendTime: rbm.rbmTime() }));
      await postEvent(w.inline.url, ev, TOK);
      order.push(ev.messageId);
      await sleep(5);
    }
    const seen = [];
    let cursor;
    let pages = 0;
    do {
      const res = await history(w.inline, phone, `?limit=3${cursor ? `&before=${cursor}` : ''}`);
      assert.equal(res.status, 200, res.text);
      assert.ok(res.json.messages.length <= 3);
      seen.push(...res.json.messages);
      cursor = res.json.cursor;
      pages++;
    } while (cursor && pages < 10);
    assert.equal(pages, 4);
    assert.deepEqual(seen.map((m) => m.messageId), [...order].reverse());
    const out = seen.find((m) => m.direction === 'outbound');
    assert.deepEqual(Object.keys(out).sort(), ['at', 'content', 'direction', 'events', 'messageId', 'status']);
    assert.equal(out.status, 'SENT');
    assert.equal(out.content.contentMessage.text, 'out 4');
    const inb = seen.find((m) => m.direction === 'inbound');
    assert.equal(inb.kind, 'text');
    assert.equal(inb.text, 'in 4');
    assertError(await history(w.inline, phone, '?limit=0'), 400, 'INVALID_REQUEST', 'limit 0');
    assertError(await history(w.inline, phone, '?before=not-a-cursor'), 400, 'INVALID_REQUEST', 'bad cursor');
  });

  test('CONVERSATION_HISTORY=off keeps statuses but no content', async () => {
    const phone = freshPhone();
    const id = await send(w.nohist, phone, { contentMessage: { text: 'secret order 42' } });
    await postEvent(w.nohist.url, event(phone, rbm.receipt('DELIVERED', id)), TOK);
    await postEvent(w.nohist.url, event(phone, rbm.userText({ text: 'my address is …' })), TOK);
    const res = await history(w.nohist, phone);
    assert.equal(res.status, 200, res.text);
    assert.ok(!res.text.includes('secret order') && !res.text.includes('my address'), res.text);
    const out = res.json.messages.find((m) => m.messageId === id);
    assert.equal(out.status, 'DELIVERED');
    assert.equal(out.content, null);
  });

  test('erase (API key only): the content is gone; tokens cannot erase', async () => {
    const phone = freshPhone();
    await send(w.inline, phone);
    await postEvent(w.inline.url, event(phone, rbm.userText()), TOK);
    const t = await mint(w.inline, { scopes: ['messages:read', 'messages:send'] });
    assertError(await call(w.inline, 'DELETE', `/v1/phones/${seg(phone)}/conversation`, { headers: { authorization: `Bearer ${t}` } }), 403, 'FORBIDDEN', 'token erase');
    const del = await call(w.inline, 'DELETE', `/v1/phones/${seg(phone)}/conversation`);
    assert.equal(del.status, 200, del.text);
    const res = await history(w.inline, phone);
    assert.deepEqual(res.json.messages, []);
  });

  test('tokens: scope, number and agent enforced on history and live', async () => {
    const phone = freshPhone();
    const reader = await mint(w.inline, { scopes: ['messages:read'], phoneNumbers: [phone] });
    const sender = await mint(w.inline, { scopes: ['messages:send'] });
    const bearer = (t) => ({ authorization: `Bearer ${t}` });
    assert.equal((await history(w.inline, phone, '', bearer(reader))).status, 200);
    assertError(await history(w.inline, freshPhone(), '', bearer(reader)), 403, 'FORBIDDEN', 'another number');
    assertError(await history(w.inline, phone, '', bearer(sender)), 403, 'FORBIDDEN', 'no messages:read');
    assertError(await history(w.inline, phone, '?agentId=someone_else', bearer(reader)), 403, 'FORBIDDEN', 'another agent');
    const ok = await live(w.inline, phone, { credential: reader, headers: { origin: ORIGIN } });
    assert.equal(ok.ws.protocol, 'rbm-edge.v1');
    for (const [what, opts, status] of [
      ['another number', { credential: reader, phone: freshPhone() }, 403],
      ['no messages:read', { credential: sender }, 403],
      ['another agent', { credential: reader, agentId: 'someone_else' }, 403],
      ['a forged token', { credential: `${reader.slice(0, -4)}AAAA` }, 401],
      ['no bearer subprotocol', { protocols: ['rbm-edge.v1'] }, 401],
      ['no rbm-edge.v1 subprotocol', { protocols: [`bearer.${KEY}`] }, 401],
      ['a disallowed Origin', { headers: { origin: 'https://evil.example' } }, 403],
    ]) {
      await assert.rejects(live(w.inline, opts.phone ?? phone, opts), (e) => e.status === status, what);
    }
    // a plain GET (no upgrade) is told what the route is
    assertError(await call(w.inline, 'GET', `/v1/phones/${seg(phone)}/live`), 400, 'INVALID_REQUEST', 'no upgrade');
  });

  test('no secret or panic in the logs', () => {
    for (const worker of Object.values(w)) assertCleanLogs(worker.logs());
  });
});
