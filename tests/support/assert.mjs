// Assertions shared by the integration tests.
import assert from 'node:assert/strict';
import { SECRET_STRINGS } from './config.mjs';

/** A JSON error answer: exact status, application/json, {"error":{"code","message"}}, no secrets. */
export function assertError(res, status, code, what = '') {
  const ctx = `${what ? what + ': ' : ''}got ${res.status} ${res.headers.get('content-type')} ${res.text.slice(0, 300)}`;
  assert.equal(res.status, status, ctx);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/i, ctx);
  assert.ok(res.json && typeof res.json === 'object' && !Array.isArray(res.json), `body is a JSON object; ${ctx}`);
  const e = res.json.error;
  assert.ok(e && typeof e === 'object', `body has an "error" object; ${ctx}`);
  assert.equal(typeof e.code, 'string', ctx);
  assert.match(e.code, /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/, `code is UPPER_SNAKE; ${ctx}`);
  if (code !== undefined) assert.equal(e.code, code, ctx);
  assert.equal(typeof e.message, 'string', ctx);
  assert.ok(e.message.trim().length > 0, `message is a non-empty sentence; ${ctx}`);
  assertNoSecrets(res.text, ctx);
}

export function assertNoSecrets(text, ctx = '') {
  for (const s of SECRET_STRINGS) assert.ok(!text.includes(s), `must not contain ${JSON.stringify(s)}; ${ctx}`);
}

export function assertNot5xx(res, what = '') {
  assert.ok(res.status < 500, `${what}: no 5xx, got ${res.status} ${res.text.slice(0, 300)}`);
}

/** What the captured Worker logs must never contain. */
export function assertCleanLogs(logs) {
  for (const s of SECRET_STRINGS) {
    const i = logs.indexOf(s);
    assert.ok(i < 0, `logs contain ${JSON.stringify(s)}: ...${logs.slice(Math.max(0, i - 200), i + 100)}...`);
  }
  for (const bad of ['panicked', 'RuntimeError: unreachable']) {
    const i = logs.indexOf(bad);
    assert.ok(i < 0, `logs contain ${JSON.stringify(bad)}: ...${logs.slice(Math.max(0, i - 300), i + 500)}...`);
  }
}
