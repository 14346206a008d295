// `make dev` itself: scripts/dev-vars.sh writes a .dev.vars-like file (with an openssl key),
// scripts/dev.mjs runs the prebuilt Worker and the simulator on free ports; the loop works end
// to end; SIGTERM stops everything it started (no process left, temp files gone).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, REPO } from '../support/worker.mjs';
import { readDotenv } from '../../sim/devvars.mjs';
import { call, sleep } from './support.mjs';
import { descendants } from '../../sim/proc.mjs';

const BUILD = process.env.RBM_EDGE_BUILD_DIR || path.join(REPO, 'build');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rbm-dev-test-'));
const varsFile = path.join(tmp, 'dev.vars');
const runs = [];

const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };

/** Starts scripts/dev.mjs; resolves once it printed "ready" (or rejects with its output). */
async function startDev(extraEnv = {}) {
  const ports = { dev: await freePort(), sim: await freePort(), inspector: await freePort() };
  const t0 = Date.now();
  const child = spawn(process.execPath, [path.join(REPO, 'scripts', 'dev.mjs')], {
    cwd: REPO,
    env: {
      ...process.env, NODE_OPTIONS: '', CI: 'true', NO_COLOR: '1',
      RBM_DEV_VARS: varsFile, RBM_EDGE_BUILD_DIR: BUILD, RBM_DEV_PERSIST_TO: path.join(tmp, `state-${ports.dev}`),
      RBM_DEV_PORT: String(ports.dev), RBM_SIM_PORT: String(ports.sim), RBM_DEV_INSPECTOR_PORT: String(ports.inspector),
      RBM_SIM_DELIVER_MS: '200', RBM_SIM_READ_MS: '500', RBM_SIM_TYPING_MS: '50', RBM_SIM_REPLY_MS: '150',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run = { child, ports, out: '', exited: null, t0 };
  run.exit = new Promise((resolve) => child.on('exit', (code, signal) => { run.exited = { code, signal }; resolve(run.exited); }));
  child.stdout.on('data', (c) => { run.out += c; });
  child.stderr.on('data', (c) => { run.out += c; });
  runs.push(run);
  const deadline = Date.now() + 45_000;
  while (!/ready in [\d.]+ s/.test(run.out)) {
    if (run.exited || Date.now() > deadline) throw new Error(`dev.mjs not ready (${JSON.stringify(run.exited)}):\n${run.out.slice(-3000)}`);
    await sleep(100);
  }
  run.readyMs = Date.now() - t0;
  return run;
}

/** SIGTERM, bounded wait; returns the pids that were running under it. */
async function stopDev(run) {
  const tree = descendants(run.child.pid);
  run.child.kill('SIGTERM');
  const t = setTimeout(() => run.child.kill('SIGKILL'), 10_000);
  await run.exit;
  clearTimeout(t);
  const deadline = Date.now() + 3000;
  while (tree.some(alive) && Date.now() < deadline) await sleep(100);
  return tree;
}

async function refused(port) {
  try {
    await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
    return false;
  } catch (err) { return err.cause?.code === 'ECONNREFUSED'; }
}

after(async () => {
  for (const run of runs) {
    if (!run.exited) {
      for (const p of descendants(run.child.pid)) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
      run.child.kill('SIGKILL');
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('set-up: scripts/dev-vars.sh', () => {
  test('creates the file with a Google-shaped local key (openssl, PKCS#8) and ALLOW_INSECURE_CALLBACKS; a second run changes nothing and says nothing', () => {
    const first = execFileSync('bash', [path.join(REPO, 'scripts', 'dev-vars.sh'), varsFile], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(first, '');
    const text = fs.readFileSync(varsFile, 'utf8');
    const vars = readDotenv(varsFile);
    const key = JSON.parse(vars.RBM_SERVICE_ACCOUNT_KEY);
    for (const k of ['type', 'project_id', 'private_key_id', 'private_key', 'client_email', 'token_uri']) assert.equal(typeof key[k], 'string', k);
    assert.equal(key.type, 'service_account');
    assert.match(key.private_key, /^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/);
    assert.match(key.client_email, /@.+\.iam\.gserviceaccount\.com$/);
    assert.equal(key.token_uri, 'http://127.0.0.1:8788/token');
    assert.equal(vars.ALLOW_INSECURE_CALLBACKS, 'true');
    assert.equal(vars.API_KEYS, 'local-api-key');
    assert.equal(fs.statSync(varsFile).mode & 0o077, 0, 'not readable by others');
    const second = execFileSync('bash', [path.join(REPO, 'scripts', 'dev-vars.sh'), varsFile], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(second, '');
    assert.equal(fs.readFileSync(varsFile, 'utf8'), text, 'idempotent');
  });
});

describe('make dev: scripts/dev.mjs', () => {
  test('Worker + simulator wired; send → READ and the reply reach the Worker; SIGTERM leaves nothing behind', async () => {
    const run = await startDev();
    const { dev, sim } = run.ports;
    console.log(`# dev.mjs ready (first 200 from the Worker) in ${run.readyMs} ms`);
    assert.match(run.out, /verified \(handshake answered with the secret\)/);
    const envFile = /Using secrets defined in (\S+)/.exec(run.out)?.[1];

    const t0 = Date.now();
    const res = await call(`http://127.0.0.1:${dev}/v1/messages`, {
      method: 'POST', token: 'local-api-key', timeout: 10_000,
      body: { phoneNumber: '+15550000101', contentMessage: { text: 'Hello from make dev' } },
    });
    assert.equal(res.status, 200, res.text);
    const id = res.json.messageId;
    let view;
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(100)) {
      view = (await call(`http://127.0.0.1:${dev}/v1/messages/${id}`, { token: 'local-api-key' })).json;
      if (view?.status === 'READ') break;
    }
    assert.equal(view?.status, 'READ', JSON.stringify(view));
    console.log(`# send → READ through make dev (queue path) in ${Date.now() - t0} ms`);
    for (const deadline = Date.now() + 8000; !/"kind":"text"[^\n]*"msg":"event received"|"msg":"event received"[^\n]*"kind":"text"/.test(run.out) && Date.now() < deadline;) await sleep(100);
    assert.match(run.out, /"kind":"text"[^\n]*"msg":"event received"|"msg":"event received"[^\n]*"kind":"text"/, 'the reply reached the Worker');
    assert.match(run.out, /\[sim\] webhook READ \*\*\*0101/);
    const simView = await call(`http://127.0.0.1:${sim}/sim/messages/${id}`);
    assert.equal(simView.json.state, 'read');
    assert.ok(!/\[sim\][^\n]*15550000101/.test(run.out), 'the simulator masks numbers');

    const tree = await stopDev(run);
    assert.ok(tree.length >= 2, `wrangler and workerd ran under dev.mjs (${tree.length} processes)`);
    assert.deepEqual(tree.filter(alive), [], 'no process left');
    assert.ok(await refused(dev), 'Worker port closed');
    assert.ok(await refused(sim), 'simulator port closed');
    if (envFile) assert.ok(!fs.existsSync(path.resolve(REPO, envFile)), 'the temporary env file is gone');
    assert.match(run.out, /SIGTERM: stopping the Worker and the simulator/);
  });

  test('RBM_API_BASE pointing elsewhere: only the Worker runs', async () => {
    const elsewhere = path.join(tmp, 'google.vars');
    fs.writeFileSync(elsewhere, `${fs.readFileSync(varsFile, 'utf8')}RBM_API_BASE="https://europe-rcsbusinessmessaging.googleapis.com"\n`);
    const run = await startDev({ RBM_DEV_VARS: elsewhere });
    assert.match(run.out, /not starting the RBM simulator/);
    assert.ok(await refused(run.ports.sim), 'no simulator');
    const health = await call(`http://127.0.0.1:${run.ports.dev}/healthz`);
    assert.equal(health.status, 200);
    const tree = await stopDev(run);
    assert.deepEqual(tree.filter(alive), [], 'no process left');
  });
});
