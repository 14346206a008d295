// POST /webhook against the built Worker in workerd (wrangler dev --local), inline processing.
// Contract: /work/shared/rbm-protocol.md sections 1-4 + the rbm-edge HTTP contract.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { startWorker, REPO } from '../support/worker.mjs';
import { inlineConfig, TOKENS } from '../support/config.mjs';
import { assertError, assertCleanLogs, assertNoSecrets } from '../support/assert.mjs';
import * as rbm from '../support/rbm.mjs';

const { signedEnvelope, handshake, post, get, request, sign } = rbm;
const [TOK_OLD, TOK_NEW] = TOKENS;
const MIB = 1048576;

let worker;
const seen = []; // every response to a bad input, for the "no 5xx" sweep

async function send(what, body, headers = { 'content-type': 'application/json' }) {
  const res = await post(worker.url, '/webhook', { body, headers });
  seen.push({ what, status: res.status, text: res.text.slice(0, 200) });
  return res;
}

/** A well-formed X-Goog-Signature value that matches nothing (64 random bytes). */
const randomSig = () => crypto.randomBytes(64).toString('base64');

function cargoVersion() {
  const text = fs.readFileSync(path.join(REPO, 'Cargo.toml'), 'utf8');
  const pkg = text.split(/^\[/m).find((s) => s.startsWith('package]'));
  return pkg.match(/^version\s*=\s*"([^"]+)"/m)[1];
}

function assertAck(res, kind, what) {
  const ctx = `${what}: got ${res.status} ${res.headers.get('content-type')} ${res.text.slice(0, 300)}`;
  assert.equal(res.status, 200, ctx);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/i, ctx);
  assert.equal(res.json?.ok, true, ctx);
  if (kind !== undefined) assert.equal(res.json?.kind, kind, ctx);
}

describe('webhook', () => {
  before(async () => {
    worker = await startWorker({ ...inlineConfig(), name: 'rbm-edge-webhook-test' });
  });

  after(async () => {
    await worker?.stop();
  });

  test('GET /healthz answers 200 {"ok":true,"version":<Cargo.toml version>}', async () => {
    const res = await get(worker.url, '/healthz');
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/i);
    assert.deepEqual(res.json, { ok: true, version: cargoVersion() });
  });

  describe('registration handshake', () => {
    for (const token of TOKENS) {
      test(`clientToken ${token} -> 200 text/plain, body is exactly the secret`, async () => {
        const res = await send(`handshake ${token}`, handshake(token, '1234567890').body);
        assert.equal(res.status, 200, res.text);
        assert.match(res.headers.get('content-type') ?? '', /^text\/plain/i);
        assert.equal(res.text, '1234567890');
      });
    }

    test('echoes whatever secret it is given, byte for byte', async () => {
      for (const secret of ['abc-XYZ_987', 'x', 'with space & "quotes" ü']) {
        const res = await send('handshake secret echo', handshake(TOK_NEW, secret).body);
        assert.equal(res.status, 200, res.text);
        assert.match(res.headers.get('content-type') ?? '', /^text\/plain/i);
        assert.equal(res.text, secret);
      }
    });

    test('wrong clientToken -> 403 JSON error, token not echoed', async () => {
      for (const bad of ['tok-bad', 'TOK-NEW', 'tok', 'tok-new ', '', TOKENS.join(',')]) {
        const res = await send(`handshake bad token ${JSON.stringify(bad)}`, handshake(bad).body);
        assertError(res, 403, undefined, `clientToken ${JSON.stringify(bad)}`);
        assert.ok(!res.text.includes('1234567890'), 'the secret is not echoed on failure');
      }
    });

    test('non-string secret -> 400 JSON error', async () => {
      for (const secret of [1234567890, null, { a: 1 }, ['x'], true]) {
        const body = JSON.stringify({ clientToken: TOK_NEW, secret });
        const res = await send(`handshake secret ${JSON.stringify(secret)}`, body);
        assertError(res, 400, undefined, `secret ${JSON.stringify(secret)}`);
      }
    });

    test('non-string clientToken -> 4xx JSON error (not 5xx)', async () => {
      for (const clientToken of [123, null, ['tok-new'], { t: 'tok-new' }]) {
        const body = JSON.stringify({ clientToken, secret: '1234567890' });
        const res = await send(`handshake clientToken ${JSON.stringify(clientToken)}`, body);
        assert.ok(res.status >= 400 && res.status < 500, `clientToken ${JSON.stringify(clientToken)}: ${res.status} ${res.text}`);
        assertError(res, res.status, undefined, `clientToken ${JSON.stringify(clientToken)}`);
      }
    });
  });

  describe('signed events are acknowledged with their kind', () => {
    const mid = () => crypto.randomUUID();
    const kinds = [
      ['text', () => rbm.userText()],
      ['suggestionResponse', () => rbm.suggestionResponse()],
      ['location', () => rbm.location()],
      ['userFile', () => rbm.userFile()],
      ['DELIVERED', () => rbm.receipt('DELIVERED', mid())],
      ['READ', () => rbm.receipt('READ', mid())],
      ['IS_TYPING', () => rbm.isTyping()],
      ['SUBSCRIBE', () => rbm.subscribe()],
      ['UNSUBSCRIBE', () => rbm.unsubscribe()],
      ['TTL_EXPIRATION_REVOKED', () => rbm.ttlRevoked(mid())],
      ['TTL_EXPIRATION_REVOKE_FAILED', () => rbm.ttlRevokeFailed(mid())],
      ['unknown', () => ({ agentId: rbm.AGENT_ID, somethingNew: { a: 1 } })],
      ['REACTION', () => ({ agentId: rbm.AGENT_ID, senderPhoneNumber: rbm.PHONE, eventId: mid(), messageId: mid(), sendTime: rbm.rbmTime(), eventType: 'REACTION' })],
    ];
    for (const [kind, make] of kinds) {
      for (const pubsub of [false, true]) {
        test(`${kind} (${pubsub ? 'with Pub/Sub extras' : 'minimal envelope'}) -> 200 {"ok":true,"kind":"${kind}"}`, async () => {
          const res = await send(`event ${kind}`, ...bodyAndHeaders(signedEnvelope(make(), TOK_NEW, { pubsub })));
          assertAck(res, kind, kind);
        });
      }
    }

    test('both configured tokens verify (tok-old and tok-new)', async () => {
      for (const token of TOKENS) {
        const res = await send(`signed with ${token}`, ...bodyAndHeaders(signedEnvelope(rbm.userText(), token)));
        assertAck(res, 'text', `signed with ${token}`);
      }
    });

    test('unknown fields are tolerated (richMessageClassification, carrier, extras)', async () => {
      const ev = rbm.userText({ richMessageClassification: { category: 'X' }, carrier: 'Carrier', futureField: [1, 2] });
      const res = await send('text with extra fields', ...bodyAndHeaders(signedEnvelope(ev, TOK_OLD, { pubsub: true })));
      assertAck(res, 'text', 'text with extra fields');
    });

    test('unknown ServerEvent eventType is acknowledged with that kind', async () => {
      const ev = rbm.ttlRevoked(crypto.randomUUID(), { eventType: 'SOME_NEW_SERVER_EVENT' });
      const res = await send('unknown server event', ...bodyAndHeaders(signedEnvelope(ev, TOK_NEW)));
      assertAck(res, 'SOME_NEW_SERVER_EVENT', 'unknown server event');
    });

    test('verified data that is not JSON -> 200 (acknowledged: a retry cannot help)', async () => {
      const res = await send('verified non-JSON', ...bodyAndHeaders(signedEnvelope('not json', TOK_NEW)));
      assert.equal(res.status, 200, res.text);
    });

    test('verified data that is JSON but not an object ([], "s", 1, null) -> 200', async () => {
      for (const raw of ['[]', '"s"', '1', 'null']) {
        const res = await send(`verified ${raw}`, ...bodyAndHeaders(signedEnvelope(raw, TOK_NEW)));
        assert.equal(res.status, 200, `${raw}: ${res.status} ${res.text}`);
      }
    });

    test('a body of exactly 1 MiB is accepted', async () => {
      const env = signedEnvelope(rbm.userText(), TOK_NEW);
      const body = env.body.slice(0, -1) + ' '.repeat(MIB - Buffer.byteLength(env.body)) + '}';
      assert.equal(Buffer.byteLength(body), MIB);
      const res = await send('exactly 1 MiB', body, env.headers);
      assertAck(res, 'text', 'exactly 1 MiB');
    });
  });

  describe('bad inputs -> JSON errors, never 5xx', () => {
    test('missing X-Goog-Signature -> 401 MISSING_SIGNATURE', async () => {
      for (const pubsub of [false, true]) {
        const env = signedEnvelope(rbm.receipt('DELIVERED', crypto.randomUUID()), TOK_NEW, { pubsub });
        const res = await send('missing signature', env.body, { 'content-type': 'application/json' });
        assertError(res, 401, 'MISSING_SIGNATURE');
      }
    });

    test('empty X-Goog-Signature -> 401', async () => {
      const env = signedEnvelope(rbm.userText(), TOK_NEW);
      const res = await send('empty signature', env.body, { ...env.headers, 'x-goog-signature': '' });
      assertError(res, 401, undefined, 'empty signature');
      assert.ok(['MISSING_SIGNATURE', 'BAD_SIGNATURE'].includes(res.json.error.code), res.text);
    });

    test('signature that matches nothing -> 401 BAD_SIGNATURE', async () => {
      const env = signedEnvelope(rbm.userText(), TOK_NEW);
      const res = await send('random signature', env.body, { ...env.headers, 'x-goog-signature': randomSig() });
      assertError(res, 401, 'BAD_SIGNATURE');
    });

    test('signed with an unconfigured token -> 401 BAD_SIGNATURE', async () => {
      for (const token of ['tok-other', 'tok', 'TOK-NEW', TOKENS.join(','), `${TOK_NEW} `, '']) {
        const env = signedEnvelope(rbm.userText(), token);
        const res = await send(`signed with ${JSON.stringify(token)}`, env.body, env.headers);
        assertError(res, 401, 'BAD_SIGNATURE', `signed with ${JSON.stringify(token)}`);
      }
    });

    test('signature over the raw HTTP body instead of the decoded data -> 401 BAD_SIGNATURE', async () => {
      const env = signedEnvelope(rbm.userText(), TOK_NEW);
      const res = await send('signed raw body', env.body, { ...env.headers, 'x-goog-signature': sign(env.body, TOK_NEW) });
      assertError(res, 401, 'BAD_SIGNATURE');
    });

    test('data tampered after signing -> 401 BAD_SIGNATURE', async () => {
      const ev = rbm.userText({ text: 'pay 10' });
      const env = signedEnvelope(ev, TOK_NEW, { pubsub: true });
      const tampered = { ...env.envelope, message: { ...env.envelope.message, data: Buffer.from(JSON.stringify({ ...ev, text: 'pay 99' })).toString('base64') } };
      const res = await send('tampered data', JSON.stringify(tampered), env.headers);
      assertError(res, 401, 'BAD_SIGNATURE');
      // Same data, other signature bytes: flip one bit of the valid signature.
      const sig = Buffer.from(env.signature, 'base64');
      sig[63] ^= 1;
      const res2 = await send('flipped signature bit', env.body, { ...env.headers, 'x-goog-signature': sig.toString('base64') });
      assertError(res2, 401, 'BAD_SIGNATURE', 'one bit flipped');
    });

    test('signature header not base64 of 64 bytes -> 401 BAD_SIGNATURE', async () => {
      const env = signedEnvelope(rbm.userText(), TOK_NEW);
      const cases = {
        'not base64': '!!!not-base64!!!',
        '32 bytes': crypto.randomBytes(32).toString('base64'),
        '65 bytes': crypto.randomBytes(65).toString('base64'),
        'valid signature truncated (48 bytes)': Buffer.from(env.signature, 'base64').subarray(0, 48).toString('base64'),
        'valid signature + 1 byte': Buffer.concat([Buffer.from(env.signature, 'base64'), Buffer.from([0])]).toString('base64'),
        'hex of the valid signature': Buffer.from(env.signature, 'base64').toString('hex'),
      };
      for (const [what, value] of Object.entries(cases)) {
        const res = await send(`signature ${what}`, env.body, { ...env.headers, 'x-goog-signature': value });
        assertError(res, 401, 'BAD_SIGNATURE', `signature ${what}`);
      }
    });

    test('body not JSON -> 400 INVALID_JSON', async () => {
      for (const body of ['not json', '{"message":', '{"message":{"data":"aGk="}} trailing', '']) {
        const res = await send(`not JSON ${JSON.stringify(body)}`, body, { 'content-type': 'application/json', 'x-goog-signature': randomSig() });
        assertError(res, 400, 'INVALID_JSON', `body ${JSON.stringify(body)}`);
      }
    });

    test('JSON that is neither handshake nor envelope -> 400 INVALID_ENVELOPE', async () => {
      const bodies = ['{}', '[]', '{"message":{}}', '{"message":null}', '{"message":"x"}', '{"message":{"data":123}}',
        '{"message":{"data":null}}', '"string"', '42', 'null', '{"subscription":"projects/p/subscriptions/s"}'];
      for (const body of bodies) {
        const res = await send(`envelope ${body}`, body, { 'content-type': 'application/json', 'x-goog-signature': randomSig() });
        assertError(res, 400, 'INVALID_ENVELOPE', `body ${body}`);
      }
    });

    test('message.data not base64 -> 400 INVALID_BASE64', async () => {
      for (const data of ['!!!not base64***', 'aGVsbG8@d29ybGQ=', 'a b c d', '====']) {
        const body = JSON.stringify({ message: { data } });
        const res = await send(`data ${JSON.stringify(data)}`, body, { 'content-type': 'application/json', 'x-goog-signature': sign(data, TOK_NEW) });
        assertError(res, 400, 'INVALID_BASE64', `data ${JSON.stringify(data)}`);
      }
    });

    test('body over 1 MiB -> 413 PAYLOAD_TOO_LARGE', async () => {
      const env = signedEnvelope(rbm.userText(), TOK_NEW);
      const body = env.body.slice(0, -1) + ' '.repeat(MIB + 1 - Buffer.byteLength(env.body)) + '}';
      assert.equal(Buffer.byteLength(body), MIB + 1);
      const res = await send('1 MiB + 1', body, env.headers);
      assertError(res, 413, 'PAYLOAD_TOO_LARGE', '1 MiB + 1 byte');
      const res2 = await send('4 MiB of x', 'x'.repeat(4 * MIB), env.headers);
      assertError(res2, 413, 'PAYLOAD_TOO_LARGE', '4 MiB');
    });

    test('body over 1 MiB sent chunked (no Content-Length) -> 413 PAYLOAD_TOO_LARGE', async () => {
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      const stream = new ReadableStream({
        pull(controller) {
          if (sent >= 2 * MIB) { controller.close(); return; }
          sent += chunk.length;
          controller.enqueue(new Uint8Array(chunk));
        },
      });
      const res = await request(worker.url, '/webhook', {
        method: 'POST', body: stream, headers: { 'content-type': 'application/json', 'x-goog-signature': randomSig() },
      });
      seen.push({ what: 'chunked 2 MiB', status: res.status, text: res.text.slice(0, 200) });
      assertError(res, 413, 'PAYLOAD_TOO_LARGE', 'chunked 2 MiB');
    });
  });

  describe('routing', () => {
    test('other methods on /webhook -> 405 METHOD_NOT_ALLOWED', async () => {
      for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
        const res = await request(worker.url, '/webhook', { method, body: method === 'GET' || method === 'DELETE' ? undefined : '{}' });
        seen.push({ what: `${method} /webhook`, status: res.status, text: res.text.slice(0, 200) });
        assertError(res, 405, 'METHOD_NOT_ALLOWED', `${method} /webhook`);
      }
    });

    test('unknown path -> 404 NOT_FOUND', async () => {
      for (const [method, p] of [['GET', '/'], ['GET', '/nope'], ['POST', '/webhooks'], ['POST', '/webhook/x'], ['GET', '/healthz/x']]) {
        const res = await request(worker.url, p, { method, body: method === 'POST' ? '{}' : undefined });
        seen.push({ what: `${method} ${p}`, status: res.status, text: res.text.slice(0, 200) });
        assertError(res, 404, 'NOT_FOUND', `${method} ${p}`);
      }
    });
  });

  test('no bad input produced a 5xx, and no answer echoed a token', () => {
    assert.ok(seen.length > 40, `sweep saw ${seen.length} responses`);
    const fivexx = seen.filter((r) => r.status >= 500);
    assert.deepEqual(fivexx, [], '5xx answers');
    for (const r of seen) assertNoSecrets(r.text, r.what);
  });

  test('Worker logs contain no token or API key and no panic', () => {
    assertCleanLogs(worker.logs());
  });
});

/** signedEnvelope() result -> [body, headers], spread into send(what, body, headers). */
function bodyAndHeaders({ body, headers }) {
  return [body, headers];
}
