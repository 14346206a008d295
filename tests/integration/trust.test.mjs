// Trust: the ten holes found by trying rbm-edge as a new user and as an attacker would, each
// reproduced against the built Worker in workerd and now refused or kept; plus the contract
// around them (callback origins and keys, idempotent sends, upstream statuses, dead letters,
// per-token limits, settings parsed once, phone numbers out of logs).
//
// Workers (all stopped in after()):
//   inline  PROCESSING=inline, TOKEN_SIGNING_KEY, CALLBACK_ORIGINS=<callback sink>,
//           ALLOW_INSECURE_CALLBACKS=true, CALLBACK_SECRET (≠ FORWARD_SECRET), FORWARD_URL,
//           TOKEN_RATE_LIMITER 10/60 s; RBM behind a loopback proxy that can misbehave.
//   queue   PROCESSING=queue with local Queues, FORWARD_URL.
//   strict  no CALLBACK_ORIGINS, no ALLOW_INSECURE_CALLBACKS; bad CALLBACK_ORIGINS on `broken`.
//   noqueue PROCESSING=queue without the EVENTS binding (what is acknowledged without a queue write).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startWorker } from '../support/worker.mjs';
import { TOKENS, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs } from '../support/assert.mjs';
import { startGoogleFake } from '../fakes/google.mjs';
import { startSink } from '../fakes/sink.mjs';
import * as rbm from '../support/rbm.mjs';
import { startRbmProxy, googleError } from '../support/rbm-proxy.mjs';

const { request, postEvent, pollUntil, PHONE } = rbm;
const [TOK] = TOKENS;
const AUTH = { authorization: `Bearer ${API_KEYS[0]}`, 'content-type': 'application/json' };
const FORWARD_SECRET = `whsec_${crypto.randomBytes(32).toString('base64')}`;
const CALLBACK_SECRET = `whsec_${crypto.randomBytes(32).toString('base64')}`;
const SIGNING_KEY = crypto.randomBytes(36).toString('base64url');
const TOKEN_RATE = 10;
// Numbers the proxy in front of the fake answers oddly for (every other number is relayed).
const PHONE_204 = '+15550002040';
const PHONE_302 = '+15550003020';
const PHONE_101 = '+15550001010';
const PHONE_409 = '+15550004090';
/** Every number used here: none may appear whole in a log line. */
const NUMBERS = [PHONE, PHONE_204, PHONE_302, PHONE_101, PHONE_409, '+14155550123'];

let google;
let proxy;
let forwardSink;
let callbackSink;
const w = {};

/**
 * RBM behind a proxy that misbehaves for the numbers above: a 204, a 302, a reset, or (on the
 * second create of one id) RBM's 409 ALREADY_EXISTS.
 */
async function startProxy(target) {
  const seen = new Set();
  return startRbmProxy(target, ({ method, url, phone, res }) => {
    const messages = url.pathname.includes('/agentMessages');
    if (messages && phone === PHONE_204) return res.writeHead(204).end(), true;
    if (messages && phone === PHONE_302) return res.writeHead(302, { location: 'http://127.0.0.1:9/elsewhere' }).end(), true;
    if (messages && phone === PHONE_101) return res.socket.destroy(), true;
    if (method === 'POST' && phone === PHONE_409 && url.pathname.endsWith('/agentMessages')) {
      const id = url.searchParams.get('messageId');
      if (seen.has(id)) {
        res.writeHead(409, { 'content-type': 'application/json' }).end(googleError(409, 'ALREADY_EXISTS', 'Requested entity already exists'));
        return true;
      }
      seen.add(id);
    }
    return false;
  });
}

const b64u = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
function jwt(claims, key = SIGNING_KEY) {
  const input = `${b64u({ alg: 'HS256', typ: 'JWT' })}.${b64u(claims)}`;
  return `${input}.${crypto.createHmac('sha256', Buffer.from(key)).update(input).digest('base64url')}`;
}
const nowS = () => Math.floor(Date.now() / 1000);
const jti = () => `t_${crypto.randomBytes(8).toString('hex')}`;

async function call(worker, method, path, { body, headers = AUTH } = {}) {
  const b = body === undefined || typeof body === 'string' ? body : JSON.stringify(body);
  return request(worker.url, path, { method, body: b, headers: { 'content-type': 'application/json', ...headers } });
}
async function mint(worker, req) {
  const res = await call(worker, 'POST', '/v1/tokens', { body: req });
  assert.equal(res.status, 200, res.text);
  return res.json.token;
}
const bearer = (t, ip = `198.51.100.${crypto.randomInt(1, 250)}`) => ({ authorization: `Bearer ${t}`, 'cf-connecting-ip': ip });
const text = (phoneNumber = PHONE, over = {}) => ({ phoneNumber, contentMessage: { text: 'Hi' }, ...over });

function baseConfig(extraVars = {}, extraSecrets = {}) {
  return {
    secrets: {
      RBM_CLIENT_TOKEN: TOKENS.join(','),
      API_KEYS: API_KEYS.join(','),
      TOKEN_SIGNING_KEY: SIGNING_KEY,
      FORWARD_SECRET,
      RBM_SERVICE_ACCOUNT_KEY: JSON.stringify(JSON.parse(google.serviceAccountKey)),
      ...extraSecrets,
    },
    vars: { RBM_AGENT_ID: 'test_agent', PROCESSING: 'inline', RBM_API_BASE: proxy.url, RETRY_DELAY_SECONDS: '1', ...extraVars },
    kv: true,
  };
}

function verifySignature(secret, d) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const { 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': sig } = d.headers;
  const want = crypto.createHmac('sha256', key).update(`${id}.${ts}.${d.raw}`).digest('base64');
  return String(sig).split(' ').includes(`v1,${want}`);
}

describe('trust', { timeout: 240_000 }, () => {
  before(async () => {
    google = await startGoogleFake();
    proxy = await startProxy(google.url);
    forwardSink = await startSink({ secret: FORWARD_SECRET });
    callbackSink = await startSink({ secret: CALLBACK_SECRET });
    const rateToml = `[[ratelimits]]\nname = "TOKEN_RATE_LIMITER"\nnamespace_id = "1002"\nsimple = { limit = ${TOKEN_RATE}, period = 60 }`;
        [w.inline, w.queue, w.strict, w.broken, w.noqueue] = await Promise.all([
      startWorker({
        ...baseConfig(
          { CALLBACK_ORIGINS: callbackSink.url, ALLOW_INSECURE_CALLBACKS: 'true', FORWARD_URL: `${forwardSink.url}/rbm` },
          { CALLBACK_SECRET },
        ),
        extraToml: rateToml,
      }),
      startWorker({ ...baseConfig({ PROCESSING: 'queue', FORWARD_URL: `${forwardSink.url}/rbm` }), queues: true }),
      startWorker(baseConfig()),
            startWorker(baseConfig({ CALLBACK_ORIGINS: 'hooks.example.com/rbm' }, { TOKEN_SIGNING_KEY: 'too-short' })),
      startWorker(baseConfig({ PROCESSING: 'queue' })),
    ]);
  });

  after(async () => {
    await Promise.all(Object.values(w).map((x) => x?.stop()));
    await Promise.all([proxy?.close(), forwardSink?.close(), callbackSink?.close(), google?.close()]);
  });

  // 1 ---------------------------------------------------------------------------------------
  describe('1. tokens are bound to one agent', () => {
    test('a token for the default agent cannot send, revoke, send events or check capabilities as another agent (403)', async () => {
      const t = await mint(w.inline, { scopes: ['messages:send', 'events:send', 'capabilities:read'] });
      const before = proxy.calls.length;
      assertError(await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE, { agentId: 'someone_elses_agent' }), headers: bearer(t) }), 403, 'FORBIDDEN', 'send');
      assertError(await call(w.inline, 'DELETE', `/v1/messages/${crypto.randomUUID()}?phoneNumber=%2B12223334444&agentId=someone_elses_agent`, { headers: bearer(t) }), 403, 'FORBIDDEN', 'revoke');
      assertError(await call(w.inline, 'POST', '/v1/phones/%2B12223334444/events?agentId=someone_elses_agent', { body: { eventType: 'IS_TYPING' }, headers: bearer(t) }), 403, 'FORBIDDEN', 'event');
      assertError(await call(w.inline, 'GET', '/v1/phones/%2B12223334444/capabilities?agentId=someone_elses_agent', { headers: bearer(t) }), 403, 'FORBIDDEN', 'capabilities');
      assert.equal(proxy.calls.length, before, 'nothing reached RBM');
      const ok = await call(w.inline, 'POST', '/v1/messages', { body: text(), headers: bearer(t) });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.agentId, 'test_agent');
    });

    test('a token minted with agentId acts for that agent by default, and only for it', async () => {
      const res = await call(w.inline, 'POST', '/v1/tokens', { body: { scopes: ['messages:send'], agentId: 'brand_b' } });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.agentId, 'brand_b');
      const sent = await call(w.inline, 'POST', '/v1/messages', { body: text(), headers: bearer(res.json.token) });
      assert.equal(sent.status, 200, sent.text);
      assert.equal(proxy.creates().at(-1).query.agentId, 'brand_b');
      assertError(await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE, { agentId: 'test_agent' }), headers: bearer(res.json.token) }), 403, 'FORBIDDEN', 'the default agent');
      // API keys act for any agent
      const api = await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE, { agentId: 'someone_elses_agent' }) });
      assert.equal(api.status, 200, api.text);
    });
  });

  // 2 ---------------------------------------------------------------------------------------
  describe('2. callbacks go only where the business allows', () => {
    test('a token cannot point statusCallback at an arbitrary host (403 naming CALLBACK_ORIGINS); nothing sent', async () => {
      const t = await mint(w.inline, { scopes: ['messages:send'] });
      const before = proxy.creates().length;
      const res = await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE, { statusCallback: 'https://attacker.example/steal' }), headers: bearer(t) });
      assertError(res, 403, 'FORBIDDEN', 'token callback to another origin');
      assert.match(res.json.error.message, /CALLBACK_ORIGINS/);
      const tStrict = await mint(w.strict, { scopes: ['messages:send'] });
      const strict = await call(w.strict, 'POST', '/v1/messages', { body: text(PHONE, { statusCallback: 'https://hooks.example.com/x' }), headers: bearer(tStrict) });
      assertError(strict, 403, 'FORBIDDEN', 'token callback with no CALLBACK_ORIGINS');
      assert.match(strict.json.error.message, /none is set/);
      assert.equal(proxy.creates().length, before);
    });

    test('API keys: any https URL when CALLBACK_ORIGINS is unset; plain http only with ALLOW_INSECURE_CALLBACKS and only to loopback', async () => {
      const ok = await call(w.strict, 'POST', '/v1/messages', { body: text(PHONE, { statusCallback: 'https://hooks.example.com/x' }) });
      assert.equal(ok.status, 200, ok.text);
      assertError(await call(w.strict, 'POST', '/v1/messages', { body: text(PHONE, { statusCallback: `${callbackSink.url}/cb` }) }), 403, 'FORBIDDEN', 'http without ALLOW_INSECURE_CALLBACKS');
      assertError(await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE, { statusCallback: 'https://elsewhere.example/x' }) }), 403, 'FORBIDDEN', 'API key, origin not listed');
    });

    test('a listed origin works for tokens; callbacks are signed with CALLBACK_SECRET and typed message.status, forwards typed event', async () => {
      const t = await mint(w.inline, { scopes: ['messages:send'] });
      const res = await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE, { statusCallback: `${callbackSink.url}/cb` }), headers: bearer(t) });
      assert.equal(res.status, 200, res.text);
      const id = res.json.messageId;
      assert.equal((await postEvent(w.inline.url, rbm.receipt('DELIVERED', id), TOK)).status, 200);
      const [cb] = await callbackSink.waitFor((d) => d.id === `${id}.DELIVERED`, 10_000);
      assert.ok(cb, 'callback delivered');
      assert.equal(cb.signatureValid, true, 'verifies with CALLBACK_SECRET');
      assert.equal(verifySignature(FORWARD_SECRET, cb), false, 'not signed with FORWARD_SECRET');
      assert.equal(JSON.parse(cb.raw).type, 'message.status');
      const [fwd] = await forwardSink.waitFor((d) => JSON.parse(d.raw).messageId === id, 10_000);
      assert.equal(JSON.parse(fwd.raw).type, 'event');
      assert.equal(fwd.signatureValid, true);
    });
  });

  // 3 ---------------------------------------------------------------------------------------
  describe('3. sends are idempotent', () => {
    test('re-sending a sent messageId with another statusCallback: 200 replayed, RBM not called, the first callback kept', async () => {
      const id = crypto.randomUUID();
      const first = await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE, { messageId: id, statusCallback: `${callbackSink.url}/first` }) });
      assert.equal(first.status, 200, first.text);
      const creates = proxy.creates().length;
      const again = await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE, { messageId: id, statusCallback: `${callbackSink.url}/second` }) });
      assert.equal(again.status, 200, again.text);
      assert.equal(again.json.replayed, true);
      assert.equal(again.json.status, 'SENT');
      assert.equal(again.json.messageId, id);
      assert.equal(again.json.rbm.name, first.json.rbm.name, 'the stored RBM answer');
      assert.equal(proxy.creates().length, creates, 'RBM not called again');
      await postEvent(w.inline.url, rbm.receipt('DELIVERED', id), TOK);
      const [cb] = await callbackSink.waitFor((d) => d.id === `${id}.DELIVERED`, 10_000);
      assert.equal(cb.path, '/first');
    });

    test("RBM's 409 ALREADY_EXISTS is a 200 replay: SENT recorded, never SEND_FAILED", async () => {
      const id = crypto.randomUUID();
      // Sent once behind our back (another deployment), so only RBM knows the id.
      const direct = await fetch(`${proxy.url}/v1/phones/${encodeURIComponent(PHONE_409)}/agentMessages?messageId=${id}&agentId=test_agent`, {
        method: 'POST', headers: { authorization: 'Bearer x', 'content-type': 'application/json' }, body: '{"contentMessage":{"text":"x"}}',
      });
      await direct.arrayBuffer();
      const res = await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE_409, { messageId: id }) });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.replayed, true);
      assert.equal(res.json.status, 'SENT');
      const view = await call(w.inline, 'GET', `/v1/messages/${id}`);
      assert.equal(view.json.status, 'SENT');
      assert.deepEqual(view.json.events.map((e) => e.type), ['SENT']);
    });
  });

  // 4 ---------------------------------------------------------------------------------------
  test('4. RBM answering 204, 302 or resetting: 502 UPSTREAM_INVALID / UPSTREAM_UNAVAILABLE, never a hang or a crash', async () => {
    for (const [phone, code] of [[PHONE_204, 'UPSTREAM_INVALID'], [PHONE_302, 'UPSTREAM_INVALID'], [PHONE_101, 'UPSTREAM_UNAVAILABLE']]) {
      assertError(await call(w.inline, 'POST', '/v1/messages', { body: text(phone) }), 502, code, `send to ${phone}`);
      assertError(await call(w.inline, 'DELETE', `/v1/messages/${crypto.randomUUID()}?phoneNumber=${encodeURIComponent(phone)}`), 502, code, `revoke ${phone}`);
    }
    const health = await call(w.inline, 'GET', '/healthz');
    assert.equal(health.status, 200, 'the isolate survived');
  });

  // 5 ---------------------------------------------------------------------------------------
  test('5. a verified event whose data is not JSON: 200, kept as an unparseable dead letter; not replayable; deletable', async () => {
    const data = 'not json at all, +12223334444';
    const res = await postEvent(w.inline.url, data, TOK);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.kind, 'unparseable');
    const list = await pollUntil(() => call(w.inline, 'GET', '/v1/dead-letters'), (r) => r.json?.deadLetters?.some((d) => d.kind === 'unparseable'));
    const dl = list.json.deadLetters.find((d) => d.kind === 'unparseable');
    assert.ok(dl, list.text);
    assert.equal(dl.job, 'unparseable');
    // RBM redelivers the same bytes: still one entry
    assert.equal((await postEvent(w.inline.url, data, TOK)).status, 200);
    const again = await call(w.inline, 'GET', '/v1/dead-letters');
    assert.equal(again.json.deadLetters.filter((d) => d.kind === 'unparseable').length, 1);
    assertError(await call(w.inline, 'POST', `/v1/dead-letters/${dl.id}/replay`), 409, 'CONFLICT', 'replay of undecodable data');
    const del = await call(w.inline, 'DELETE', `/v1/dead-letters/${dl.id}`);
    assert.equal(del.status, 200, del.text);
    assertError(await call(w.inline, 'DELETE', `/v1/dead-letters/${dl.id}`), 404, 'NOT_FOUND', 'second delete');
  });

  // 6 ---------------------------------------------------------------------------------------
  test('6. a signed user text of 45 000 quotes (≈ 90 KB of JSON) is queued, not refused, and forwarded', async () => {
    const ev = rbm.userText({ text: '"'.repeat(45_000), messageId: `big-${crypto.randomUUID()}` });
    const res = await postEvent(w.queue.url, ev, TOK);
    assert.equal(res.status, 200, res.text);
    const [d] = await forwardSink.waitFor((x) => x.id === `rbm_msg_${ev.messageId}`, 20_000);
    assert.ok(d, 'forwarded through the queue');
    assert.equal(JSON.parse(d.raw).event.text.length, 45_000);
  });

    test('events with nothing to queue (typing, SUBSCRIBE not forwarded) are acknowledged without a queue write', async () => {
    // A queue Worker without its EVENTS binding: any queue write would answer 503.
    for (const ev of [rbm.isTyping(), rbm.subscribe()]) {
      const res = await postEvent(w.noqueue.url, ev, TOK);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.kind, ev.eventType);
    }
    assertError(await postEvent(w.noqueue.url, rbm.userText(), TOK), 503, 'QUEUE_UNAVAILABLE', 'a user message is queued');
  });

  // 7 ---------------------------------------------------------------------------------------
  test(`7. every token route is rate limited per token (${TOKEN_RATE}/60 s): 45 capability checks do not all reach RBM`, async () => {
    const t = await mint(w.inline, { scopes: ['capabilities:read'] });
    const before = proxy.calls.filter((c) => c.path.endsWith('/capabilities')).length;
    const statuses = [];
    for (let i = 0; i < 45; i++) {
      const r = await call(w.inline, 'GET', '/v1/phones/%2B12223334444/capabilities', { headers: bearer(t) });
      statuses.push(r.status);
      if (r.status === 429) {
        assertError(r, 429, 'RATE_LIMITED');
        assert.match(r.headers.get('retry-after') ?? '', /^[0-9]+$/);
      }
    }
    const reached = proxy.calls.filter((c) => c.path.endsWith('/capabilities')).length - before;
    // Miniflare's windows are aligned to the clock: a run across a boundary may allow 2 windows.
    assert.ok(reached <= 2 * TOKEN_RATE, `${reached} checks reached RBM`);
    assert.ok(statuses.filter((s) => s === 429).length >= 45 - 2 * TOKEN_RATE, statuses.join(','));
  });

  // 8 ---------------------------------------------------------------------------------------
  test('8. a token minted offline without aud is refused (401); with aud it works', async () => {
    const claims = { iat: nowS(), exp: nowS() + 300, jti: jti(), scope: 'capabilities:read' };
    const res = await call(w.strict, 'GET', '/v1/phones/%2B12223334444/capabilities', { headers: bearer(jwt(claims)) });
    assertError(res, 401, 'UNAUTHORIZED', 'no aud');
    assert.match(res.json.error.message, /aud/);
    const ok = await call(w.strict, 'GET', '/v1/phones/%2B12223334444/capabilities', { headers: bearer(jwt({ ...claims, jti: jti(), aud: 'rbm-edge' })) });
    assert.equal(ok.status, 200, ok.text);
  });

  // 9 ---------------------------------------------------------------------------------------
  test('9. maxSends used up: 403 BUDGET_EXHAUSTED without Retry-After', async () => {
    const t = await mint(w.strict, { scopes: ['messages:send'], maxSends: 1 });
    assert.equal((await call(w.strict, 'POST', '/v1/messages', { body: text(), headers: bearer(t) })).status, 200);
    const res = await call(w.strict, 'POST', '/v1/messages', { body: text(), headers: bearer(t) });
    assertError(res, 403, 'BUDGET_EXHAUSTED', 'second send');
    assert.equal(res.headers.get('retry-after'), null);
  });

  // 10 --------------------------------------------------------------------------------------
  test('10. the dead-letter consumer has explicit retries (wrangler.toml)', async () => {
    const fs = await import('node:fs');
    const toml = fs.readFileSync(new URL('../../wrangler.toml', import.meta.url), 'utf8');
    const dlq = toml.split('[[queues.consumers]]').find((b) => /^queue\s*=\s*"rbm-events-dlq"/m.test(b));
    assert.ok(dlq, 'a consumer of rbm-events-dlq');
    const retries = Number(/max_retries\s*=\s*([0-9]+)/.exec(dlq)?.[1]);
    assert.ok(retries >= 50, `max_retries ${retries}`);
  });

  // contract ---------------------------------------------------------------------------------
  test('unusable settings are a 500 naming them on the routes that need them; other routes work', async () => {
    const t = 'x.y.z';
    const tok = await call(w.broken, 'GET', '/v1/phones/%2B12223334444/capabilities', { headers: bearer(t) });
    assertError(tok, 500, 'CONFIG_INVALID', 'short TOKEN_SIGNING_KEY');
    assert.match(tok.json.error.message, /TOKEN_SIGNING_KEY/);
    const cb = await call(w.broken, 'POST', '/v1/messages', { body: text(PHONE, { statusCallback: 'https://hooks.example.com/x' }) });
    assertError(cb, 500, 'CONFIG_INVALID', 'bad CALLBACK_ORIGINS');
    assert.match(cb.json.error.message, /CALLBACK_ORIGINS/);
    const plain = await call(w.broken, 'POST', '/v1/messages', { body: text() });
    assert.equal(plain.status, 200, plain.text);
  });

  test('inline callbacks never hold RBM’s request: the webhook answers while the callback is still pending', async () => {
    const res = await call(w.inline, 'POST', '/v1/messages', { body: text(PHONE, { statusCallback: `${callbackSink.url}/slow` }) });
    const id = res.json.messageId;
    callbackSink.setMode('slow');
    callbackSink.setDelay(8000);
    try {
      const hook = await postEvent(w.inline.url, rbm.receipt('READ', id), TOK);
      assert.equal(hook.status, 200);
      const pending = callbackSink.deliveries.find((d) => d.id === `${id}.READ`);
      assert.ok(!pending || pending.status === null, 'the callback had not been answered when RBM got its 200');
      const [cb] = await callbackSink.waitFor((d) => d.id === `${id}.READ`, 15_000);
      assert.ok(cb, 'the callback still went out');
    } finally {
      callbackSink.reset();
    }
  });

  test('no full phone number in any log line; no secret, no panic', () => {
    let lines = 0;
    for (const worker of Object.values(w)) {
      const logs = worker.logs();
      assertCleanLogs(logs);
      const workerLines = logs.split('\n').filter((l) => l.includes('"level":"'));
      lines += workerLines.length;
      for (const line of workerLines) {
        for (const n of NUMBERS) assert.ok(!line.includes(n.slice(1)), `log line shows ${n}: ${line.slice(0, 300)}`);
      }
    }
    assert.ok(lines >= 10, `the Workers logged (${lines} lines)`);
  });
});
