// GET /openapi.json from a Worker serving public/ as static assets (as wrangler.toml deploys
// it), and the response check of tests/support/openapi-hook.mjs live against that Worker: it
// must know the harness's Worker, and every answer below goes through it (a mismatch with the
// document throws from fetch). Imports the hook itself, so it also runs without the preload.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';

import { watchedWorkers } from '../support/openapi-hook.mjs';
import { DOC_PATH } from '../support/openapi.mjs';
import { startWorker } from '../support/worker.mjs';
import { inlineConfig, API_KEYS } from '../support/config.mjs';

let worker;

describe('GET /openapi.json (static asset) and the response check', () => {
  before(async () => {
    worker = await startWorker({ ...inlineConfig(), assets: true, name: 'rbm-edge-openapi-test' });
  });
  after(async () => { await worker?.stop(); });

  test('the hook checks this Worker (it learnt the port from the harness\'s wrangler)', () => {
    const watched = watchedWorkers().get(worker.port);
    assert.equal(watched?.port, worker.port);
    assert.equal(watched?.assets, true);
  });

  test('GET /openapi.json answers the document, as JSON', async () => {
    const res = await fetch(`${worker.url}/openapi.json`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(await res.json(), JSON.parse(fs.readFileSync(DOC_PATH, 'utf8')));
  });

  test('answers outside the document\'s operations still match it (404, 405, 401, preflight, HEAD)', async () => {
    const key = { authorization: `Bearer ${API_KEYS[0]}` };
    for (const [method, p, status, headers, body] of [
      ['GET', '/healthz', 200],
      ['HEAD', '/healthz', 200],
      ['GET', '/no/such/path', 404],
      ['GET', '/v1/nothing-here', 404, key],
      ['PUT', '/healthz', 405],
      ['DELETE', '/v1/tokens', 405, key],
      ['OPTIONS', '/v1/messages', 204, { origin: 'https://app.example.com', 'access-control-request-method': 'POST' }],
      ['GET', '/v1/messages/0f8a2c1e-1b2c-4d5e-8f90-123456789abc', 401],
      ['GET', '/v1/messages/0f8a2c1e-1b2c-4d5e-8f90-123456789abc', 404, key],
      ['GET', '/v1/messages/bad:id', 400, key],
      ['POST', '/webhook', 400, { 'content-type': 'application/json' }, '[]'],
      ['GET', '/v1/phones/%2B12223334444/messages', 401],
      ['GET', '/v1/phones/%2B12223334444/messages?limit=0', 400, key],
      ['DELETE', '/v1/phones/%2B12223334444/conversation', 401],
      ['DELETE', '/v1/phones/12223334444/conversation', 400, key],
      ['GET', '/v1/phones/%2B12223334444/live', 400, key],
    ]) {
      const res = await fetch(`${worker.url}${p}`, { method, headers, body });
      await res.arrayBuffer();
      assert.equal(res.status, status, `${method} ${p}`);
    }
  });

  test('WebSocket refusals before the upgrade (raw node:http, checked by the hook too): 401 without the bearer subprotocol, 403 for a foreign Origin', async () => {
    const upgrade = (headers) => new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port: worker.port, path: '/v1/phones/%2B12223334444/live',
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
      });
      req.on('upgrade', (res, socket) => { socket.destroy(); resolve({ status: 101 }); });
      req.on('response', (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    const noBearer = await upgrade({ 'sec-websocket-protocol': 'rbm-edge.v1' });
    assert.equal(noBearer.status, 401, noBearer.body);
    const foreign = await upgrade({ 'sec-websocket-protocol': `rbm-edge.v1, bearer.${API_KEYS[0]}`, origin: 'https://evil.example' });
    assert.equal(foreign.status, 403, foreign.body);
  });

  test('the webhook handshake answers text/plain, as documented', async () => {
    const res = await fetch(`${worker.url}/webhook`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ clientToken: 'tok-new', secret: '1234567890' }),
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), '1234567890');
  });
});
