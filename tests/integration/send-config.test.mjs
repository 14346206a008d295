// The send relay's configuration errors (issue 3): RBM_SERVICE_ACCOUNT_KEY missing -> 500
// CONFIG_MISSING, malformed -> 500 CONFIG_INVALID, both naming the setting and never its
// content; the Worker still serves the routes that do not need the key.
// One Worker per configuration (the key is read once per isolate), all against the loopback
// Google fake (tests/fakes/google.mjs), stopped in after().
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startWorker } from '../support/worker.mjs';
import { inlineConfig, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs } from '../support/assert.mjs';
import { startGoogleFake } from '../fakes/google.mjs';
import { request, PHONE, AGENT_ID } from '../support/rbm.mjs';

const AUTH = { authorization: `Bearer ${API_KEYS[0]}` };
const SETTING = 'RBM_SERVICE_ACCOUNT_KEY';

let fake;
const workers = {};
const seen = [];

/** A PEM whose body is random base64: not a key WebCrypto accepts. */
const garbageBody = crypto.randomBytes(600).toString('base64');
const garbagePem = `-----BEGIN PRIVATE KEY-----\n${garbageBody.match(/.{1,64}/g).join('\n')}\n-----END PRIVATE KEY-----\n`;

/** What must never show in answers or logs: parts of the real and of the garbage key. */
function forbidden() {
  const key = JSON.parse(fake.serviceAccountKey).private_key;
  const b64 = key.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const mid = Math.floor(b64.length / 2);
  const gmid = Math.floor(garbageBody.length / 2);
  return ['BEGIN PRIVATE KEY', b64.slice(mid - 20, mid + 20), garbageBody.slice(gmid - 20, gmid + 20), 'ya29.', 'not json at all'];
}

const CASES = {
  missing: { key: undefined, code: 'CONFIG_MISSING' },
  emptyObject: { key: '{}', code: 'CONFIG_INVALID' },
  notJson: { key: 'not json at all', code: 'CONFIG_INVALID' },
  garbagePrivateKey: { key: null /* set in before(): the fake's key with garbagePem */, code: 'CONFIG_INVALID' },
};

function config(key) {
  const base = inlineConfig();
  const secrets = { ...base.secrets };
  if (key !== undefined) secrets[SETTING] = key;
  return {
    kv: true,
    secrets,
    vars: {
      ...base.vars,
      RBM_API_BASE: fake.url,
      RBM_AGENT_ID: AGENT_ID,
      RBM_TIMEOUT_MS: '1500',
      ALLOWED_ORIGINS: 'https://app.example.com',
      PROCESSING: 'inline',
    },
  };
}

async function call(w, method, path, body) {
  const headers = { ...AUTH };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(w.url, path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  seen.push({ what: `${method} ${path}`, status: res.status, text: res.text.slice(0, 300) });
  return res;
}

before(async () => {
  fake = await startGoogleFake();
  CASES.garbagePrivateKey.key = JSON.stringify({ ...JSON.parse(fake.serviceAccountKey), private_key: garbagePem });
  for (const [name, { key }] of Object.entries(CASES)) {
    workers[name] = await startWorker({ ...config(key), name: `rbm-edge-send-config-${name.toLowerCase()}` });
  }
});

after(async () => {
  for (const w of Object.values(workers)) await w?.stop();
  await fake?.close();
});

beforeEach(() => fake?.reset());

for (const [name, { code }] of Object.entries(CASES)) {
  describe(`${SETTING} ${name}`, () => {
    test(`send, revoke, event, capabilities -> 500 ${code} naming ${SETTING}, no key material, nothing sent to Google`, async () => {
      const w = workers[name];
      const id = crypto.randomUUID();
      const routes = [
        ['POST', '/v1/messages', { contentMessage: { text: 'Hello' }, phoneNumber: PHONE, messageId: id }],
        ['DELETE', `/v1/messages/${id}?phoneNumber=%2B12223334444`],
        ['POST', `/v1/phones/${PHONE}/events`, { eventType: 'IS_TYPING' }],
        ['GET', `/v1/phones/${PHONE}/capabilities`],
      ];
      for (const [method, path, body] of routes) {
        const res = await call(w, method, path, body);
        const what = `${name}: ${method} ${path}`;
        assertError(res, 500, code, what);
        assert.ok(res.json.error.message.includes(SETTING), `${what}: the message names ${SETTING}: ${res.text}`);
        for (const bad of forbidden()) assert.ok(!res.text.includes(bad), `${what}: answer contains ${JSON.stringify(bad)}`);
      }
      assert.equal(fake.stats.tokenRequests, 0, 'no token request with an unusable key');
      assert.equal(fake.stats.rbmRequests, 0, 'RBM got nothing');
    });

    test('routes that do not need the key still work (healthz, status read, validation)', async () => {
      const w = workers[name];
      const health = await request(w.url, '/healthz');
      assert.equal(health.status, 200, health.text);
      assertError(await call(w, 'GET', `/v1/messages/${crypto.randomUUID()}`), 404, 'NOT_FOUND', `${name}: status read`);
      const bad = await call(w, 'POST', '/v1/messages', { contentMessage: { text: 'Hello' }, phoneNumber: 'nope' });
      assertError(bad, 400, 'VALIDATION_FAILED', `${name}: invalid body`);
    });
  });
}

describe('sweep', () => {
  test('no 5xx other than the expected 500 CONFIG_* answers', () => {
    const bad = seen.filter((r) => r.status >= 500 && !/"code":"CONFIG_(MISSING|INVALID)"/.test(r.text));
    assert.deepEqual(bad, []);
  });

  test('Worker logs: no secrets, no panic, no key material, no access token', () => {
    for (const [name, w] of Object.entries(workers)) {
      const logs = w.logs();
      assertCleanLogs(logs);
      for (const bad of forbidden()) {
        const i = logs.indexOf(bad);
        assert.ok(i < 0, `${name} logs contain ${JSON.stringify(bad)}: ...${logs.slice(Math.max(0, i - 200), i + 100)}...`);
      }
    }
  });
});
