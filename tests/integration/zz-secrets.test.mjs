// No secret in any log (issue 6, "Secrets"). The harness keeps each Worker's logs in memory and
// drops them with the Worker, so this file (named to run last) drives its own end-to-end
// scenario through every route, on one PROCESSING=inline and one PROCESSING=queue Worker, with
// secrets of its own (long random strings, so a hit cannot be a coincidence). Then it searches
// everything captured — wrangler's output and the Worker's console, queue consumer included —
// for: the client tokens, the API keys, the private key (PEM header and 40-character fragments
// of its body), every access token the Google fake issued (and "ya29." at all), the whsec_
// secret and its base64 body, TOKEN_SIGNING_KEY, and every browser token minted. No error body
// and no forwarded document may contain them either.
//
// What is captured: the harness's w.logs() — wrangler's console at --log-level log, so the
// Worker's console.log lines (queue consumer included) are in it; the sanity test below fails
// if they ever go missing.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startWorker } from '../support/worker.mjs';
import { assertError } from '../support/assert.mjs';
import { startGoogleFake } from '../fakes/google.mjs';
import { startSink } from '../fakes/sink.mjs';
import * as rbm from '../support/rbm.mjs';

const { signedEnvelope, request, pollUntil, PHONE, AGENT_ID } = rbm;
const rand = (n) => crypto.randomBytes(n).toString('hex');
const CLIENT_TOKENS = [`zz-client-token-old-${rand(12)}`, `zz-client-token-new-${rand(12)}`];
const API_KEYS = [`zz-api-key-one-${rand(12)}`, `zz-api-key-two-${rand(12)}`];
const FORWARD_KEY_B64 = crypto.randomBytes(32).toString('base64');
const FORWARD_SECRET = `whsec_${FORWARD_KEY_B64}`;
const TOKEN_SIGNING_KEY = `zz-signing-key-${rand(20)}`;
const TIMEOUT_MS = 1500;
const AUTH = { authorization: `Bearer ${API_KEYS[0]}` };
const AUTH2 = { authorization: `Bearer ${API_KEYS[1]}` };

let google;
let sink;
const workers = {};
const responses = []; // {what, status, text}
const minted = new Set();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function call(w, what, method, path, { body, headers = AUTH } = {}) {
  const h = { ...headers };
  let b = body;
  if (b !== undefined && typeof b !== 'string') {
    b = JSON.stringify(b);
    h['content-type'] ??= 'application/json';
  }
  const res = await request(w.url, path, { method, body: b, headers: h });
  responses.push({ what: `${w.name} ${what}`, status: res.status, text: res.text });
  return res;
}

async function hook(w, what, env) {
  const res = await request(w.url, '/webhook', { method: 'POST', body: env.body, headers: env.headers });
  responses.push({ what: `${w.name} webhook ${what}`, status: res.status, text: res.text });
  return res;
}

function expectStatus(res, status, what) {
  assert.equal(res.status, status, `${what}: ${res.status} ${res.text.slice(0, 300)}`);
}

function keyFragments() {
  const pem = JSON.parse(google.serviceAccountKey).private_key;
  const body = pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const out = [];
  for (let i = 0; i + 40 <= body.length; i += Math.floor(body.length / 12)) out.push(body.slice(i, i + 40));
  return out;
}

/** Everything that must never show up, as [label, string]. */
function secrets({ withMinted = true } = {}) {
  const list = [
    ...CLIENT_TOKENS.map((t, i) => [`client token ${i}`, t]),
    ...API_KEYS.map((k, i) => [`API key ${i}`, k]),
    ['PEM header', 'BEGIN PRIVATE KEY'],
    ['PEM header (RSA)', 'BEGIN RSA PRIVATE KEY'],
    ...keyFragments().map((f, i) => [`private key fragment ${i}`, f]),
    ['access token prefix', 'ya29.'],
    ...[...google.tokens.keys()].map((t, i) => [`access token ${i}`, t]),
    ['FORWARD_SECRET', FORWARD_SECRET],
    ['FORWARD_SECRET base64 body', FORWARD_KEY_B64],
    ['TOKEN_SIGNING_KEY', TOKEN_SIGNING_KEY],
  ];
  if (withMinted) {
    for (const t of minted) {
      list.push(['browser token', t]);
      list.push(['browser token signature', t.split('.')[2]]);
    }
  }
  return list;
}

function findSecrets(text, list) {
  const hits = [];
  for (const [label, s] of list) {
    const i = text.indexOf(s);
    if (i >= 0) hits.push(`${label}: ...${text.slice(Math.max(0, i - 120), i + s.length + 40)}...`);
  }
  return hits;
}

function config(processing, name) {
  return {
    name,
    kv: true,
    queues: processing === 'queue',
    secrets: {
      RBM_CLIENT_TOKEN: CLIENT_TOKENS.join(','),
      API_KEYS: API_KEYS.join(','),
      RBM_SERVICE_ACCOUNT_KEY: google.serviceAccountKey,
      FORWARD_SECRET,
      TOKEN_SIGNING_KEY,
    },
    vars: {
      RBM_AGENT_ID: AGENT_ID,
      STATUS_TTL_DAYS: '30',
      PROCESSING: processing,
      RBM_API_BASE: google.url,
      ALLOW_INSECURE_CALLBACKS: 'true', // the sink is plain http on loopback
      RBM_TIMEOUT_MS: String(TIMEOUT_MS),
      FORWARD_URL: `${sink.url}/fwd/${processing}`,
      FORWARD_KINDS: '*',
      RETRY_DELAY_SECONDS: '1',
      ALLOWED_ORIGINS: 'https://app.example.com',
    },
  };
}

/** The whole scenario on one Worker. */
async function scenario(w, mode) {
  const [TOK_OLD, TOK_NEW] = CLIENT_TOKENS;
  const P = encodeURIComponent(PHONE);
  expectStatus(await call(w, 'healthz', 'GET', '/healthz', { headers: {} }), 200, 'healthz');

  // --- webhook: handshake, every kind, bad input
  for (const t of CLIENT_TOKENS) expectStatus(await hook(w, 'handshake', rbm.handshake(t, `secret-${mode}`)), 200, 'handshake');
  expectStatus(await hook(w, 'handshake wrong token', rbm.handshake(`${TOK_NEW}x`)), 403, 'bad handshake');
  const mid = crypto.randomUUID();
  const events = [
    rbm.userText({ text: 'secrets scenario' }), rbm.suggestionResponse(), rbm.location(), rbm.userFile(),
    rbm.isTyping(), rbm.subscribe(), rbm.unsubscribe(),
    rbm.receipt('DELIVERED', mid), rbm.receipt('READ', mid), rbm.ttlRevoked(crypto.randomUUID()), rbm.ttlRevokeFailed(crypto.randomUUID()),
    { agentId: AGENT_ID, somethingNew: { a: 1 } },
    { agentId: AGENT_ID, senderPhoneNumber: PHONE, eventId: crypto.randomUUID(), messageId: crypto.randomUUID(), sendTime: rbm.rbmTime(), eventType: 'REACTION' },
  ];
  for (const [i, ev] of events.entries()) {
    expectStatus(await hook(w, `event ${i}`, signedEnvelope(ev, i % 2 ? TOK_OLD : TOK_NEW, { pubsub: i % 3 === 0 })), 200, `event ${i}`);
  }
  // Verified but not understood: logged whole (the data, never the token).
  expectStatus(await hook(w, 'not JSON', signedEnvelope('not json at all', TOK_NEW)), 200, 'not understood');
  expectStatus(await hook(w, 'wrong types', signedEnvelope({ eventType: 5, messageId: [1] }, TOK_NEW)), 200, 'not understood');
  const env = signedEnvelope(rbm.userText(), TOK_NEW);
  expectStatus(await hook(w, 'bad signature', { ...env, headers: { ...env.headers, 'x-goog-signature': crypto.randomBytes(64).toString('base64') } }), 401, 'bad sig');
  expectStatus(await hook(w, 'other token', signedEnvelope(rbm.userText(), 'zz-not-configured')), 401, 'other token');
  expectStatus(await hook(w, 'missing signature', { body: env.body, headers: { 'content-type': 'application/json' } }), 401, 'missing sig');
  expectStatus(await hook(w, 'not JSON body', { body: `{"clientToken":"${TOK_NEW}"`, headers: {} }), 400, 'bad json');

  // --- sends: ok, with a status callback, invalid, RBM errors, slow, reset
  const cbPath = `/cb/${mode}/${crypto.randomUUID()}`;
  const sent = await call(w, 'send with callback', 'POST', '/v1/messages', { body: { phoneNumber: PHONE, contentMessage: { text: 'hi' }, statusCallback: `${sink.url}${cbPath}` } });
  expectStatus(sent, 200, 'send');
  const sentId = sent.json.messageId;
  expectStatus(await call(w, 'send key two', 'POST', '/v1/messages', { body: { phoneNumber: PHONE, contentMessage: { text: 'hi' } }, headers: AUTH2 }), 200, 'send key two');
  expectStatus(await call(w, 'send invalid', 'POST', '/v1/messages', { body: { phoneNumber: PHONE, contentMessage: { text: 'x'.repeat(4000) } } }), 400, 'invalid send');
  for (const [phone, status] of [['+15550000400', 400], ['+15550000404', 404], ['+15550000500', 500], ['+15550000999', 504], ['+15550000666', 502]]) {
    expectStatus(await call(w, `send ${phone}`, 'POST', '/v1/messages', { body: { phoneNumber: phone, contentMessage: { text: 'hi' } } }), status, `send to ${phone}`);
  }
  // Token failures: the cached token is revoked at Google and the token endpoint refuses.
  for (const mode2 of ['invalid_grant', 'http500']) {
    google.revokeAllTokens();
    google.failTokens(mode2);
    try {
      const res = await call(w, `send token ${mode2}`, 'POST', '/v1/messages', { body: { phoneNumber: PHONE, contentMessage: { text: 'hi' } } });
      assertError(res, 502, 'UPSTREAM_UNAVAILABLE', `token endpoint ${mode2}`);
    } finally {
      google.failTokens(null);
    }
  }
  expectStatus(await call(w, 'send after token recovery', 'POST', '/v1/messages', { body: { phoneNumber: PHONE, contentMessage: { text: 'hi' } } }), 200, 'token back');

  // --- receipts for the sent message: status callbacks (signed with FORWARD_SECRET)
  for (const type of ['DELIVERED', 'READ']) expectStatus(await hook(w, `receipt ${type}`, signedEnvelope(rbm.receipt(type, sentId), TOK_NEW)), 200, type);
  await sink.waitFor((d) => d.path === cbPath && d.body?.status === 'READ', 15_000);

  // --- revoke, status, agent events, capabilities
  expectStatus(await call(w, 'status', 'GET', `/v1/messages/${sentId}`), 200, 'status');
  expectStatus(await call(w, 'status unknown', 'GET', `/v1/messages/${crypto.randomUUID()}`), 404, 'status unknown');
  expectStatus(await call(w, 'revoke', 'DELETE', `/v1/messages/${sentId}`), 200, 'revoke');
  expectStatus(await call(w, 'revoke unknown', 'DELETE', `/v1/messages/${crypto.randomUUID()}?phoneNumber=${P}`), 404, 'revoke unknown');
  expectStatus(await call(w, 'event READ', 'POST', `/v1/phones/${P}/events`, { body: { eventType: 'READ', messageId: crypto.randomUUID() } }), 200, 'event READ');
  expectStatus(await call(w, 'event IS_TYPING', 'POST', `/v1/phones/${P}/events`, { body: { eventType: 'IS_TYPING' } }), 200, 'event typing');
  expectStatus(await call(w, 'event invalid', 'POST', `/v1/phones/${P}/events`, { body: { eventType: 'NOPE' } }), 400, 'event invalid');
  expectStatus(await call(w, 'capabilities', 'GET', `/v1/phones/${P}/capabilities`), 200, 'capabilities');
  expectStatus(await call(w, 'capabilities 404', 'GET', '/v1/phones/%2B15550000404/capabilities'), 404, 'capabilities 404');

  // --- browser tokens: mint, use, misuse
  const mint = await call(w, 'mint', 'POST', '/v1/tokens', { body: { scopes: ['messages:send', 'messages:read'], phoneNumbers: [PHONE], ttlSeconds: 600, maxSends: 5 } });
  expectStatus(mint, 200, 'mint');
  const token = mint.json.token;
  minted.add(token);
  const TA = { authorization: `Bearer ${token}`, 'cf-connecting-ip': '192.0.2.77' };
  const tsend = await call(w, 'token send', 'POST', '/v1/messages', { body: { phoneNumber: PHONE, contentMessage: { text: 'from a page' } }, headers: TA });
  expectStatus(tsend, 200, 'token send');
  expectStatus(await call(w, 'token status', 'GET', `/v1/messages/${tsend.json.messageId}`, { headers: TA }), 200, 'token status');
  expectStatus(await call(w, 'token other phone', 'POST', '/v1/messages', { body: { phoneNumber: '+14155550199', contentMessage: { text: 'x' } }, headers: TA }), 403, 'token scope phone');
  expectStatus(await call(w, 'token capabilities', 'GET', `/v1/phones/${P}/capabilities`, { headers: TA }), 403, 'token scope');
  expectStatus(await call(w, 'token dead letters', 'GET', '/v1/dead-letters', { headers: TA }), 403, 'token api-key route');
  expectStatus(await call(w, 'token mint', 'POST', '/v1/tokens', { body: { scopes: ['messages:read'] }, headers: TA }), 403, 'token mints');
  const forged = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`;
  expectStatus(await call(w, 'forged token', 'GET', `/v1/messages/${tsend.json.messageId}`, { headers: { authorization: `Bearer ${forged}` } }), 401, 'forged');
  const mint2 = await call(w, 'mint capabilities', 'POST', '/v1/tokens', { body: { scopes: ['capabilities:read', 'events:send'] }, headers: AUTH2 });
  expectStatus(mint2, 200, 'mint 2');
  minted.add(mint2.json.token);
  expectStatus(await call(w, 'token2 capabilities', 'GET', `/v1/phones/${P}/capabilities`, { headers: { authorization: `Bearer ${mint2.json.token}` } }), 200, 'token2 caps');
  expectStatus(await call(w, 'mint invalid', 'POST', '/v1/tokens', { body: { scopes: ['admin'] } }), 400, 'mint invalid');

  // --- dead letters, CORS, routing, auth failures
  expectStatus(await call(w, 'dead letters', 'GET', '/v1/dead-letters'), 200, 'dead letters');
  expectStatus(await call(w, 'replay unknown', 'POST', '/v1/dead-letters/zz-none/replay'), 404, 'replay unknown');
  expectStatus(await call(w, 'delete unknown', 'DELETE', '/v1/dead-letters/zz-none'), 404, 'delete unknown');
  expectStatus(await call(w, 'preflight', 'OPTIONS', '/v1/messages', { headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } }), 204, 'preflight');
  expectStatus(await call(w, 'no auth', 'GET', '/v1/dead-letters', { headers: {} }), 401, 'no auth');
  expectStatus(await call(w, 'client token as bearer', 'GET', '/v1/dead-letters', { headers: { authorization: `Bearer ${TOK_NEW}` } }), 401, 'client token as bearer');
  expectStatus(await call(w, 'wrong method', 'PUT', '/v1/messages', { body: {} }), 405, 'wrong method');
  expectStatus(await call(w, 'no route', 'GET', '/nope', { headers: {} }), 404, 'no route');
  return { sentId };
}

describe('no secret in any log (every route, inline and queue)', () => {
  before(async () => {
    google = await startGoogleFake({ slowMs: TIMEOUT_MS + 1500 });
    sink = await startSink({ secret: FORWARD_SECRET });
    const started = await Promise.allSettled([
      startWorker(config('inline', 'rbm-edge-secrets-inline')),
      startWorker(config('queue', 'rbm-edge-secrets-queue')),
    ]);
    [workers.inline, workers.queue] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
    if (workers.inline) workers.inline.name = 'inline';
    if (workers.queue) workers.queue.name = 'queue';
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
  });

  after(async () => {
    await Promise.allSettled(Object.values(workers).map((w) => w?.stop()));
    await Promise.allSettled([google?.close(), sink?.close()]);
  });

  test('scenario on the inline Worker', { timeout: 60_000 }, async () => {
    await scenario(workers.inline, 'inline');
    // Forwarded inline, in the request.
    assert.ok(sink.deliveries.some((d) => d.path === '/fwd/inline' && d.signatureValid), 'forwards reached the sink, signed');
  });

  test('scenario on the queue Worker, plus a dead letter and its replay', { timeout: 90_000 }, async () => {
    const w = workers.queue;
    await scenario(w, 'queue');
    await sink.waitFor((d) => d.path === '/fwd/queue' && d.signatureValid && d.status === 200, 15_000);
    // A forward that keeps failing: retried, dead-lettered, listed, replayed.
    const ev = rbm.userText({ text: 'dead letter for the secrets scan' });
    sink.setMode('fail500');
    let list;
    try {
      expectStatus(await hook(w, 'dead-lettered event', signedEnvelope(ev, CLIENT_TOKENS[1])), 200, 'queued');
      list = await pollUntil(() => call(w, 'dead letters poll', 'GET', '/v1/dead-letters'),
        (r) => r.status === 200 && r.json.deadLetters.some((x) => x.messageId === ev.messageId), 45_000);
    } finally {
      sink.setMode('ok');
    }
    const dl = list.json.deadLetters.find((x) => x.messageId === ev.messageId);
    assert.ok(dl, `dead-lettered within 45 s: ${list.text}`);
    expectStatus(await call(w, 'replay', 'POST', `/v1/dead-letters/${encodeURIComponent(dl.id)}/replay`), 202, 'replay');
    await sink.waitFor((d) => d.id === `rbm_msg_${ev.messageId}` && d.status === 200, 15_000);
    await sleep(1000); // let the consumer's last console lines arrive
  });

  test('the logs are captured (sanity): both Workers logged events, the queue Worker its consumer', () => {
    for (const [name, w] of Object.entries(workers)) {
      const logs = w.logs();
      assert.match(logs, /"msg":"event received"/, `${name}: event logs captured`);
      assert.match(logs, /"msg":"webhook handshake accepted"/, `${name}: info logs captured`);
      assert.match(logs, /"msg":"verified event not understood"/, `${name}: not-understood logs captured`);
      assert.match(logs, /"msg":"request failed"/, `${name}: 5xx logs captured`);
    }
    assert.match(workers.queue.logs(), /"msg":"job dead-lettered; kept for replay"/, 'queue consumer logs captured');
    assert.match(workers.queue.logs(), /"msg":"job failed; will retry"/, 'queue consumer retries captured');
    assert.ok(google.tokens.size >= 3, `the fake issued several access tokens (${google.tokens.size})`);
    assert.ok(minted.size >= 4, `browser tokens minted (${minted.size})`);
  });

  test('no secret in any captured log', () => {
    const list = secrets();
    for (const [name, w] of Object.entries(workers)) {
      const logs = w.logs();
      assert.ok(logs.length > 10_000, `${name}: ${logs.length} characters of logs captured`);
      const hits = findSecrets(logs, [...list, ['panic', 'panicked'], ['wasm trap', 'RuntimeError']]);
      assert.deepEqual(hits, [], `${name} Worker logs`);
    }
  });

  test('no secret in any error body; no secret but the minted token itself in any other body', () => {
    const errors = responses.filter((r) => r.status >= 400);
    assert.ok(errors.length >= 40, `${errors.length} error answers checked`);
    for (const r of errors) assert.deepEqual(findSecrets(r.text, secrets()), [], `${r.what} (${r.status})`);
    const others = responses.filter((r) => r.status < 400 && !r.what.includes(' mint'));
    for (const r of others) assert.deepEqual(findSecrets(r.text, secrets()), [], `${r.what} (${r.status})`);
    for (const r of responses.filter((x) => x.what.includes(' mint') && x.status < 400)) {
      assert.deepEqual(findSecrets(r.text, secrets({ withMinted: false })), [], r.what);
    }
  });

  test('no secret in any forwarded document or status callback', () => {
    assert.ok(sink.deliveries.length >= 20, `${sink.deliveries.length} deliveries`);
    for (const d of sink.deliveries) {
      assert.deepEqual(findSecrets(`${JSON.stringify(d.headers)}\n${d.raw}`, secrets()), [], `${d.path} ${d.id}`);
    }
  });
});
