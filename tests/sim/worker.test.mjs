// The whole loop through the real Worker (wrangler dev, the prebuilt build) and the local RBM
// simulator: send → RBM → signed webhooks → status; replies reach the Worker; scripted errors.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startWorker } from '../support/worker.mjs';
import { startSimulator } from '../../sim/simulator.mjs';
import { makeJwt, postToken, call, sleep } from './support.mjs';

const TOKEN = 'sim-loop-client-token';
const KEY = 'sim-loop-api-key';
const AGENT = 'loop_agent';
const T = { deliverMs: 700, readMs: 1200, typingMs: 100, replyMs: 300 };

let sim, w;
const simLines = [];

const api = (method, path, body) => call(`${w.url}${path}`, { method, token: KEY, body, timeout: 10_000 });
const send = (phoneNumber, extra = {}) => api('POST', '/v1/messages', { phoneNumber, contentMessage: { text: 'Hello from the loop', suggestions: [{ reply: { text: 'Yes', postbackData: 'yes_please' } }] }, ...extra });
const status = (id) => api('GET', `/v1/messages/${id}`);

async function pollStatus(id, want, ms = 8000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await status(id);
    if (last.json?.status === want) return last.json;
    await sleep(100);
  }
  assert.fail(`message ${id}: status ${want} not reached in ${ms} ms; last ${last?.status} ${last?.text}`);
}

/** The Worker's "event received" log lines (JSON), polled until `pred` matches one. */
async function eventReceived(pred, ms = 8000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = w.logs().split('\n').flatMap((l) => {
      const i = l.indexOf('{');
      if (i < 0 || !l.includes('"event received"')) return [];
      try { return [JSON.parse(l.slice(i))]; } catch { return []; }
    }).filter(pred);
    if (found.length > 0) return found[0];
    if (Date.now() > deadline) assert.fail(`no matching "event received" log line in ${ms} ms`);
    await sleep(100);
  }
}

before(async () => {
  sim = await startSimulator({ clientToken: TOKEN, agentId: AGENT, log: (l) => simLines.push(l), ...T });
  w = await startWorker({
    name: 'rbm-edge-sim-loop',
    vars: { RBM_AGENT_ID: AGENT, PROCESSING: 'inline', RBM_API_BASE: sim.url },
    secrets: { RBM_CLIENT_TOKEN: TOKEN, API_KEYS: KEY, RBM_SERVICE_ACCOUNT_KEY: sim.serviceAccountKey },
  });
  sim.setWebhook(`${w.url}/webhook`);
  const hs = await sim.verifyWebhook();
  assert.equal(hs.ok, true, `handshake: ${hs.status}`);
});

after(async () => {
  await w?.stop();
  await sim?.stop();
});

describe('through the Worker', () => {
  test('a send to a normal number reaches READ in GET /v1/messages/{id}', async () => {
    const t0 = Date.now();
    const res = await send('+12223334444', { messageTrafficType: 'TRANSACTION', ttl: '86400s' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.status, 'SENT');
    assert.equal(res.json.rbm.name, `phones/+12223334444/agentMessages/${res.json.messageId}`);
    const view = await pollStatus(res.json.messageId, 'READ');
    const ms = Date.now() - t0;
    assert.deepEqual(view.events.map((e) => e.type).sort(), ['DELIVERED', 'READ', 'SENT']);
    assert.ok(ms >= T.readMs, `READ after ${ms} ms`);
    console.log(`# send → READ in ${ms} ms (simulator readMs ${T.readMs})`);
    assert.ok(simLines.some((l) => l.includes('token issued')), 'the Worker got its token from the simulator');
  });

  for (const [phone, kind, extra] of [
    ['+15550000101', 'text', null],
    ['+15550000102', 'suggestionResponse', 'yes_please'],
    ['+15550000103', 'location', null],
  ]) {
    test(`${phone} answers: the Worker logs "event received" kind ${kind}, after IS_TYPING`, async () => {
      const res = await send(phone);
      assert.equal(res.status, 200, res.text);
      const typing = await eventReceived((e) => e.kind === 'IS_TYPING' && e.phone?.endsWith(phone.slice(-4)));
      const got = await eventReceived((e) => e.kind === kind && e.phone?.endsWith(phone.slice(-4)));
      assert.equal(got.agentId, AGENT);
      assert.ok(typing);
      if (extra) {
        const wh = sim.webhooks().find((x) => x.kind === kind && x.phoneNumber === phone);
        assert.equal(wh.event.suggestionResponse.postbackData, extra, 'the tap carries the first suggestion\'s postbackData');
      }
    });
  }

  test('unreachable number: the send answers 404 with rcsReachable:false; capabilities too', async () => {
    const res = await send('+15550000404');
    assert.equal(res.status, 404, res.text);
    assert.equal(res.json.rcsReachable, false);
    assert.equal(res.json.rbm.error.status, 'NOT_FOUND');
    const cap = await api('GET', '/v1/phones/%2B15550000404/capabilities');
    assert.equal(cap.status, 404, cap.text);
    assert.equal(cap.json.rcsReachable, false);
    const ok = await api('GET', '/v1/phones/%2B12223334444/capabilities');
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.rcsReachable, true);
  });

  test('the token endpoint refuses an assertion signed by another key', async () => {
    const sa = JSON.parse(sim.serviceAccountKey);
    const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const r = await postToken(sim.tokenUri, makeJwt(sa, { key: other }));
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' });
  });

  test('revoke of an undelivered message -> 200 REVOKE_REQUESTED, and no DELIVERED follows', async () => {
    const res = await send('+12223330001');
    assert.equal(res.status, 200, res.text);
    const id = res.json.messageId;
    const rv = await api('DELETE', `/v1/messages/${id}`);
    assert.equal(rv.status, 200, rv.text);
    assert.equal(rv.json.status, 'REVOKE_REQUESTED');
    await sleep(T.readMs + 300);
    assert.deepEqual(sim.webhooks().filter((x) => x.messageId === id), [], 'the simulator posted nothing for it');
    const view = (await status(id)).json;
    assert.equal(view.status, 'REVOKED', JSON.stringify(view));
    assert.ok(!view.events.some((e) => e.type === 'DELIVERED'));
    const late = await api('DELETE', `/v1/messages/${id}`);
    assert.equal(late.status, 404, 'a second revoke: RBM no longer has it');
  });

  test('a never-delivering number with a ttl: TTL_EXPIRATION_REVOKED reaches the status', async () => {
    const res = await send('+15550000100', { ttl: '1s' });
    assert.equal(res.status, 200, res.text);
    const view = await pollStatus(res.json.messageId, 'REVOKED', 6000);
    assert.deepEqual(view.events.map((e) => e.type).sort(), ['SENT', 'TTL_EXPIRATION_REVOKED']);
  });

  test('agent events through the Worker: IS_TYPING is shown by the simulator', async () => {
    const r = await api('POST', '/v1/phones/%2B12223334444/events', { eventType: 'IS_TYPING' });
    assert.equal(r.status, 200, r.text);
    assert.ok(simLines.some((l) => l.includes('agent is typing') && l.includes('***4444')));
  });
});
