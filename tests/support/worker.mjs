// Test harness: runs the pre-built Worker (make build -> build/) under `wrangler dev` (local
// workerd) on a free loopback port, with its own config, secrets and KV state in a temp dir.
//
//   const w = await startWorker({ vars: {...}, secrets: {...}, kv: true, queues: false });
//   await fetch(`${w.url}/healthz`); ...; w.logs(); await w.stop();
//
// The temp dir (config, .dev.vars, KV state, wrangler.log) is removed by stop() unless
// RBM_EDGE_KEEP_TMP=1. RBM_EDGE_BUILD_DIR points the harness at another pre-built Worker.
// Node 20 standard library only.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEFAULT_COMPAT_DATE = '2025-09-01';
const READY_TIMEOUT_MS = 60_000;
const READY_POLL_MS = 200;
const STOP_GRACE_MS = 5_000;

/** Every child still running (-> its temp dir), so an abrupt exit of the test process can take them down. */
const live = new Map();
let exitHookInstalled = false;
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAll);
  // The children run in their own process group, so a Ctrl-C or a runner's SIGTERM does not
  // reach them: take them down, then die of the same signal (the listener is gone by then).
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      killAll();
      process.kill(process.pid, sig);
    });
  }
}

function killAll() {
  for (const [child, dir] of live) {
    killGroup(child, 'SIGKILL');
    if (!process.env.RBM_EDGE_KEEP_TMP) {
      try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
    }
  }
  live.clear();
}

function killGroup(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // the whole process group: wrangler + its workerd children
  } catch {
    try { child.kill(signal); } catch { /* already gone */ }
  }
}

/**
 * The kernel's ephemeral range: ports it hands to `listen(0)` and to outgoing connections.
 * workerd binds several of those for itself, so a port picked there can be taken between
 * our pick and wrangler's bind (seen in CI as "Address already in use").
 */
function ephemeralRange() {
  try {
    const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo > 0 && hi >= lo) return [lo, hi];
  } catch { /* not Linux */ }
  return [32768, 60999];
}

function tryListen(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(null));
    srv.listen(port, '127.0.0.1', () => {
      const got = srv.address().port;
      srv.close(() => resolve(got));
    });
  });
}

/**
 * A TCP port that was free a moment ago, outside the ephemeral range when there is room
 * (so neither the kernel nor another workerd hands it out meanwhile); random, so concurrent
 * suites rarely pick the same one. Falls back to `listen(0)`.
 */
export async function freePort() {
  const [lo, hi] = ephemeralRange();
  const span = lo > 11_000 ? [10_000, lo - 1] : hi < 64_000 ? [hi + 1, 65_000] : null;
  if (span) {
    for (let i = 0; i < 50; i++) {
      const candidate = span[0] + Math.floor(Math.random() * (span[1] - span[0] + 1));
      const port = await tryListen(candidate);
      if (port !== null) return port;
    }
  }
  const port = await tryListen(0);
  if (port === null) throw new Error('freePort: cannot listen on 127.0.0.1');
  return port;
}

/** TOML basic string: quotes, backslashes and control characters escaped. */
function tomlString(s) {
  return '"' + String(s).replace(/[\\"\u0000-\u001f\u007f]/g, (c) => {
    switch (c) {
      case '\\': return '\\\\';
      case '"': return '\\"';
      case '\n': return '\\n';
      case '\r': return '\\r';
      case '\t': return '\\t';
      default: return '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0');
    }
  }) + '"';
}

function tomlKey(k) {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : tomlString(k);
}

/** compatibility_date from the repo's wrangler.toml, if there is one. */
function repoCompatDate() {
  try {
    const text = fs.readFileSync(path.join(REPO, 'wrangler.toml'), 'utf8');
    const m = text.match(/^\s*compatibility_date\s*=\s*["']([0-9]{4}-[0-9]{2}-[0-9]{2})["']/m);
    if (m) return m[1];
  } catch { /* no wrangler.toml yet */ }
  return DEFAULT_COMPAT_DATE;
}

/** The wrangler.toml written for one test Worker (no [build]: build/ is pre-built). */
export function renderWranglerToml({ name, vars = {}, kv = true, queues = false, assets = false, extraToml = '' }) {
  const lines = [
    `name = ${tomlString(name)}`,
    `main = "index.js"`,
    `compatibility_date = ${tomlString(repoCompatDate())}`,
    '',
  ];
  if (Object.keys(vars).length > 0) {
    lines.push('[vars]');
    for (const [k, v] of Object.entries(vars)) lines.push(`${tomlKey(k)} = ${tomlString(v)}`);
    lines.push('');
  }
  if (assets) {
    // The repo's static files (console page, OpenAPI document), served before the Worker.
    lines.push('[assets]', `directory = ${tomlString(path.join(REPO, 'public'))}`, '');
  }
  // The Conversation Durable Object (history, live frames, callbacks, budgets): every test
  // Worker has it, as every deployment does.
  lines.push(
    '[[durable_objects.bindings]]', 'name = "CONVERSATIONS"', 'class_name = "Conversation"', '',
    '[[migrations]]', 'tag = "v1"', 'new_sqlite_classes = ["Conversation"]', '',
  );
  if (kv) {
    lines.push('[[kv_namespaces]]', 'binding = "STATUS"', 'id = "status-local"', '');
  }
  if (queues) {
    lines.push(
      '[[queues.producers]]', 'binding = "EVENTS"', 'queue = "rbm-events"', '',
      '[[queues.producers]]', 'binding = "EVENTS_DLQ"', 'queue = "rbm-events-dlq"', '',
      '[[queues.consumers]]', 'queue = "rbm-events"', 'max_batch_size = 10', 'max_batch_timeout = 1',
      'max_retries = 3', 'dead_letter_queue = "rbm-events-dlq"', '',
      '[[queues.consumers]]', 'queue = "rbm-events-dlq"', 'max_batch_size = 10', 'max_batch_timeout = 1', '',
    );
  }
  if (extraToml) lines.push(String(extraToml), '');
  return lines.join('\n');
}

/**
 * .dev.vars (read by wrangler with dotenv 16): one KEY=<quoted value> line per secret. dotenv has
 * no escapes inside quotes (double quotes only expand \n), so the value is wrapped in a quote
 * character it does not contain: '…' (literal), else `…`, else "…".
 */
function renderDevVars(secrets) {
  return Object.entries(secrets).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`startWorker: bad secret name ${JSON.stringify(k)}`);
    const value = String(v);
    const q = ["'", '`', '"'].find((c) => !value.includes(c) && !(c === '"' && value.includes('\\n')));
    if (!q || value.endsWith('\\') || value.includes('\r')) {
      throw new Error(`startWorker: secret ${k} cannot be written to .dev.vars faithfully`);
    }
    return `${k}=${q}${value}${q}`;
  }).join('\n') + '\n';
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts the built Worker under `wrangler dev --local`.
 *
 * @param {object} [opts]
 * @param {Record<string,string>} [opts.vars]     [vars] (plain settings)
 * @param {Record<string,string>} [opts.secrets]  written to .dev.vars
 * @param {boolean} [opts.kv=true]                bind KV namespace STATUS
 * @param {boolean} [opts.queues=false]           bind EVENTS / EVENTS_DLQ producers + consumers
 * @param {boolean} [opts.assets=false]           serve <repo>/public as static assets ([assets])
 * @param {string}  [opts.extraToml]              raw TOML appended to wrangler.toml
 * @param {string}  [opts.name]                   Worker name (default rbm-edge-test)
 * @param {string}  [opts.buildDir]               pre-built Worker dir (default $RBM_EDGE_BUILD_DIR or <repo>/build)
 * @returns {Promise<{url:string, port:number, stop:()=>Promise<void>, logs:()=>string, dir:string}>}
 */
export async function startWorker(opts = {}) {
  // A port can still be taken between the pick and wrangler's bind (two suites picking the
  // same one): start again on fresh ports, a bounded number of times.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startWorkerOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/Address already in use|EADDRINUSE/.test(err.message)) throw err;
    }
  }
}

async function startWorkerOnce({
  vars = {}, secrets = {}, kv = true, queues = false, assets = false, extraToml = '', name = 'rbm-edge-test',
  buildDir = process.env.RBM_EDGE_BUILD_DIR || path.join(REPO, 'build'),
} = {}) {
  if (!fs.existsSync(path.join(buildDir, 'index.js'))) {
    throw new Error(`startWorker: ${path.join(buildDir, 'index.js')} is missing: run make build`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbm-edge-it-'));
  const work = path.join(dir, 'worker');
  fs.cpSync(buildDir, work, { recursive: true });
  const config = path.join(work, 'wrangler.toml');
  fs.writeFileSync(config, renderWranglerToml({ name, vars, kv, queues, assets, extraToml }));
  if (Object.keys(secrets).length > 0) fs.writeFileSync(path.join(work, '.dev.vars'), renderDevVars(secrets));
  fs.mkdirSync(path.join(dir, 'state'));

  const port = await freePort();
  const inspectorPort = await freePort();
  const wrangler = path.join(REPO, 'node_modules', '.bin', 'wrangler');
  const args = [
    'dev', '--config', config, '--ip', '127.0.0.1', '--port', String(port),
    '--inspector-port', String(inspectorPort),
    '--persist-to', path.join(dir, 'state'), '--local', '--log-level', 'log',
    '--show-interactive-dev-session=false',
  ];
  const env = {
    ...process.env,
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    WRANGLER_SEND_METRICS: 'false',
    CI: 'true',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    WRANGLER_LOG_PATH: path.join(dir, 'wrangler-debug-logs'), // not ~/.config/.wrangler/logs
  };
  delete env.NODE_OPTIONS; // e.g. --test flags of the runner must not leak into wrangler

  const logFile = path.join(dir, 'wrangler.log');
  const logFd = fs.openSync(logFile, 'a');
  let text = '';
  const child = spawn(wrangler, args, { cwd: work, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  installExitHook();
  live.set(child, dir);
  const onData = (chunk) => {
    const s = chunk.toString('utf8');
    text += s;
    try { fs.writeSync(logFd, s); } catch { /* debugging copy only */ }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => { live.delete(child); resolve({ code, signal }); });
    child.on('error', (err) => { text += `\n[harness] spawn error: ${err.message}\n`; });
  });
  let exitInfo = null;
  exited.then((info) => { exitInfo = info; });

  let stopped = false;
  async function stop() {
    if (stopped) return exited;
    stopped = true;
    killGroup(child, 'SIGTERM');
    let timer;
    const grace = new Promise((r) => { timer = setTimeout(() => r('timeout'), STOP_GRACE_MS); });
    const outcome = await Promise.race([exited, grace]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      killGroup(child, 'SIGKILL');
      await exited;
    }
    // Any leftover member of the group (a workerd that outlived wrangler) goes too.
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* group is gone */ }
    child.stdout.destroy();
    child.stderr.destroy();
    try { fs.closeSync(logFd); } catch { /* closed */ }
    // The logs stay available through logs(); RBM_EDGE_KEEP_TMP=1 keeps the dir for debugging.
    if (!process.env.RBM_EDGE_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
  }

  const url = `http://127.0.0.1:${port}`;
  // Miniflare colours the Worker's console output even with NO_COLOR: strip ANSI escapes.
  const logs = () => text.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '');
  const lastLines = (n) => logs().split('\n').slice(-n).join('\n');
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastErr = '';
  while (true) {
    if (exitInfo) {
      await stop();
      throw new Error(`startWorker: wrangler exited early (code ${exitInfo.code}, signal ${exitInfo.signal}); last log lines:\n${lastLines(40)}`);
    }
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
      lastErr = `GET /healthz -> ${res.status}`;
    } catch (err) {
      lastErr = err.cause?.code ?? err.message;
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`startWorker: GET ${url}/healthz did not answer 200 within ${READY_TIMEOUT_MS / 1000} s (last: ${lastErr}); last log lines:\n${lastLines(40)}`);
    }
    await sleep(READY_POLL_MS);
  }

  return { url, port, stop, logs, dir };
}
