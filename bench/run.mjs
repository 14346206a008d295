#!/usr/bin/env node
// `make bench`: throughput, latency, CPU per request and cold start of the release build
// (build/index.js + build/index_bg.wasm) in workerd, talking to workerd directly through
// Miniflare's Node API (no wrangler proxy). Prints a table and writes bench/results.json.
// See bench/README.md. Exit: 0 done, 1 harness failure, 2 a workload answered unexpectedly
// (its numbers are not valid), 130/143 interrupted. Never fails on a slow number.
//
// Settings (environment): BENCH_SECONDS (5) per run, BENCH_RUNS (3), BENCH_CONNECTIONS (8),
// BENCH_MAX_REQUESTS (30000) per run, BENCH_QUEUE_EVENTS (2000) per workload-5 run,
// BENCH_WARMUP_SECONDS (1), BENCH_COLD_RUNS (3), BENCH_ONLY ("0,1,2,3,4,5,0k,1k,1s,3k"),
// BENCH_TIME_LIMIT_S (1200: the whole run is killed after this), BENCH_NO_PIN=1.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import * as rbm from '../tests/support/rbm.mjs';
import { startGoogleFake } from '../tests/fakes/google.mjs';
import { runLoad, GENERATOR } from './lib/loadgen.mjs';
import {
  startInstance, disposeAll, killAllSync, readWranglerToml, queueConsumersOf, ratelimitsOf,
  pinnedWorkerdWrapper, makeStdioSink, withTimeout, WORKERD_BIN,
} from './lib/instance.mjs';
import {
  cpuMsOf, machineJiffies, loadAvg, hasTaskset, pin, allowedCpus, cpuModel, CLK_TCK, processTable, topOthers,
} from './lib/procstat.mjs';
import { writeProbe } from './lib/probe.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BUILD = path.join(REPO, 'build');
const OUT_JSON = path.join(REPO, 'bench', 'results.json');
const OUT_DIR = path.join(REPO, 'bench', 'out');

const num = (name, def, min, max) => {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${name}=${v}: expected a number from ${min} to ${max}`);
  return n;
};
const S = {
  seconds: num('BENCH_SECONDS', 5, 0.5, 120),
  runs: num('BENCH_RUNS', 3, 1, 20),
  connections: num('BENCH_CONNECTIONS', 8, 1, 256),
  maxRequests: num('BENCH_MAX_REQUESTS', 30_000, 100, 1_000_000),
  queueEvents: num('BENCH_QUEUE_EVENTS', 2000, 50, 100_000),
  warmupSeconds: num('BENCH_WARMUP_SECONDS', 1, 0, 30),
  coldRuns: num('BENCH_COLD_RUNS', 3, 1, 20),
  timeLimitS: num('BENCH_TIME_LIMIT_S', 1200, 30, 7200),
  only: new Set((process.env.BENCH_ONLY ?? '0,1,2,3,4,5,0k,1k,1s,3k').split(',').map((s) => s.trim()).filter(Boolean)),
};
const DRAIN_TIMEOUT_MS = 60_000;
const DRAIN_POLL_MS = 200;

const CLIENT_TOKEN = 'bench-client-token';
const API_KEY = 'bench-api-key';
const AUTH = { authorization: `Bearer ${API_KEY}` };
const JSON_CT = { 'content-type': 'application/json' };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const round = (x, d = 3) => (typeof x === 'number' && Number.isFinite(x) ? Number(x.toFixed(d)) : x ?? null);
const log = (...a) => console.log(...a);

// ------------------------------------------------------------------ clean-up on every path

let tmpRoot = null;
let fake = null;
let cleaning = null;
async function cleanup() {
  if (!cleaning) {
    cleaning = (async () => {
      await disposeAll();
      if (fake) await withTimeout(fake.close(), 5000, 'fake close').catch(() => {});
      if (tmpRoot && !process.env.BENCH_KEEP_TMP) fs.rmSync(tmpRoot, { recursive: true, force: true });
    })();
  }
  return cleaning;
}
process.on('exit', () => {
  killAllSync();
  if (tmpRoot && !process.env.BENCH_KEEP_TMP) { try { fs.rmSync(tmpRoot, { recursive: true, force: true }); } catch { /* best effort */ } }
});
let interrupted = false;
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
  process.once(sig, () => {
    interrupted = true;
    console.error(`\n[bench] ${sig}: stopping workerd and the fake…`);
    withTimeout(cleanup(), 15_000, 'cleanup').catch(() => {}).finally(() => process.exit(code));
  });
}
const watchdog = setTimeout(() => {
  console.error(`[bench] time limit of ${S.timeLimitS} s reached: stopping.`);
  withTimeout(cleanup(), 15_000, 'cleanup').catch(() => {}).finally(() => process.exit(1));
}, S.timeLimitS * 1000);
watchdog.unref();

// ------------------------------------------------------------------ machine, build, versions

function versionOf(pkg) {
  try { return JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', pkg, 'package.json'), 'utf8')).version; } catch { return null; }
}
function sh(cmd, args) {
  try { return execFileSync(cmd, args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return null; }
}

/** Copies build/ to a temp dir, checking the files did not change during the copy. */
function copyBuild(dest) {
  for (const f of ['index.js', 'index_bg.wasm']) {
    if (!fs.existsSync(path.join(BUILD, f))) throw new Error(`${path.join(BUILD, f)} is missing: run make build`);
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = ['index.js', 'index_bg.wasm'].map((f) => fs.statSync(path.join(BUILD, f)).mtimeMs);
    fs.rmSync(dest, { recursive: true, force: true });
    fs.mkdirSync(dest, { recursive: true });
    for (const f of ['index.js', 'index_bg.wasm']) fs.copyFileSync(path.join(BUILD, f), path.join(dest, f));
    const after = ['index.js', 'index_bg.wasm'].map((f) => fs.statSync(path.join(BUILD, f)).mtimeMs);
    const wasm = fs.readFileSync(path.join(dest, 'index_bg.wasm'));
    const magic = wasm.subarray(0, 4).equals(Buffer.from([0, 0x61, 0x73, 0x6d]));
    if (magic && before.every((t, i) => t === after[i]) && Date.now() - Math.max(...after) > 1000) return;
    execFileSync('sleep', ['2']); // a build is writing build/: wait (bounded: 5 attempts)
  }
  throw new Error('build/ kept changing while being copied (a build is running?)');
}

// ------------------------------------------------------------------ one measured run

/**
 * Runs one load run against `inst`, measuring the workerd processes' CPU, this process's CPU
 * (generator + fake + Miniflare's Node side) and the whole machine's busy time.
 */
async function measuredRun(inst, sink, { request, maxRequests, seconds = S.seconds, connections = S.connections }) {
  const lastKnown = new Map();
  const cpu0 = cpuMsOf(inst.pids, lastKnown);
  const node0 = process.cpuUsage();
  const mach0 = machineJiffies();
  const log0 = { lines: sink.lines, bytes: sink.bytes };
  const r = await runLoad({ origin: inst.url, connections, durationMs: seconds * 1000, maxRequests, request });
  const cpu1 = cpuMsOf(inst.pids, lastKnown);
  const node1 = process.cpuUsage(node0);
  const mach1 = machineJiffies();
  const workerdCpuMs = cpu1 - cpu0;
  const nodeCpuMs = (node1.user + node1.system) / 1000;
  const machineBusyMs = mach0 && mach1 ? ((mach1.busy - mach0.busy) * 1000) / CLK_TCK : null;
  const wall = r.elapsedMs;
  return {
    ...r,
    workerdCpuMs,
    cpuMsPerReq: r.answered ? workerdCpuMs / r.answered : null,
    workerdCpuPct: (100 * workerdCpuMs) / wall,
    nodeCpuPct: (100 * nodeCpuMs) / wall,
    // Busy time of the machine not spent in workerd or this process (other jobs: noise), % of one core.
    otherBusyPct: machineBusyMs === null ? null : Math.max(0, (100 * (machineBusyMs - workerdCpuMs - nodeCpuMs)) / wall),
    logLinesPerReq: r.answered ? (sink.lines - log0.lines) / r.answered : null,
    logBytesPerReq: r.answered ? (sink.bytes - log0.bytes) / r.answered : null,
  };
}

const MEDIAN_KEYS = ['rps', 'p50Ms', 'p90Ms', 'p99Ms', 'cpuMsPerReq', 'workerdCpuPct', 'nodeCpuPct', 'otherBusyPct',
  'logLinesPerReq', 'logBytesPerReq', 'processed', 'eventsPerSec', 'drainLagMs', 'totalCpuMsPerEvent'];
function summarise(runs) {
  const out = {};
  for (const k of MEDIAN_KEYS) {
    if (runs.some((r) => r[k] !== undefined)) out[k] = round(median(runs.map((r) => r[k])), 4);
  }
  out.answered = runs.reduce((a, r) => a + r.answered, 0);
  out.unexpected = runs.reduce((a, r) => a + r.unexpected + r.failures, 0);
  return out;
}
const cleanRun = (r) => {
  const o = {};
  for (const [k, v] of Object.entries(r)) o[k] = typeof v === 'number' ? round(v, 4) : v;
  return o;
};

/** The calibration Worker (plain JS): the storage step of workloads 1 and 3, nothing else. */
const KV_CALIBRATION_JS = `export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    const id = u.searchParams.get('id');
    if (u.pathname === '/put') {
      const body = await request.text();
      const now = new Date().toISOString();
      await env.STATUS.put('msg:' + id + ':' + u.searchParams.get('type'), body, {
        metadata: { at: now, receivedAt: now, source: 'webhook', eventId: crypto.randomUUID(), phoneNumber: '+12223334444', agentId: 'test_agent' },
        expirationTtl: 2592000,
      });
      return Response.json({ ok: true });
    }
    if (u.pathname === '/list') {
      const page = await env.STATUS.list({ prefix: 'msg:' + id + ':' });
      return Response.json({ n: page.keys.length });
    }
    if (u.pathname === '/healthz') return Response.json({ ok: true, version: '0.1.0' });
    return new Response('ok');
  },
};
`;

// ------------------------------------------------------------------ request builders (untimed)

/** A workload's pre-built requests as a function of the request index. */
const asFn = (reqs) => (typeof reqs === 'function' ? reqs : (i) => reqs[i]);

function webhookReq(event) {
  const env = rbm.signedEnvelope(event, CLIENT_TOKEN);
  return { method: 'POST', path: '/webhook', headers: env.headers, body: Buffer.from(env.body) };
}
/** n signed DELIVERED/READ receipts: message k gets DELIVERED then READ (n/2 distinct messages). */
function buildReceipts(n, prefix) {
  const out = new Array(n);
  let id = '';
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) id = `${prefix}-${crypto.randomUUID()}`;
    out[i] = webhookReq(rbm.receipt(i % 2 === 0 ? 'DELIVERED' : 'READ', id));
  }
  return out;
}
function buildTexts(n) {
  return Array.from({ length: n }, () => webhookReq(rbm.userText()));
}
function buildSends(n) {
  return Array.from({ length: n }, () => ({
    method: 'POST', path: '/v1/messages', headers: { ...AUTH, ...JSON_CT },
    body: Buffer.from(JSON.stringify({
      contentMessage: { text: 'Hello, world!' }, messageTrafficType: 'TRANSACTION',
      phoneNumber: rbm.PHONE, messageId: crypto.randomUUID(),
    })),
  }));
}

// ------------------------------------------------------------------ main

async function main() {
  const t0 = Date.now();
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'rbm-edge-bench-'));
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const toml = readWranglerToml(path.join(REPO, 'wrangler.toml'));
  const compatibilityDate = toml.compatibilityDate ?? '2025-09-01';

  const workerDir = path.join(tmpRoot, 'worker');
  copyBuild(workerDir);
  const wasm = fs.readFileSync(path.join(workerDir, 'index_bg.wasm'));
  const glue = fs.readFileSync(path.join(workerDir, 'index.js'));
  const build = {
    wasmRawBytes: wasm.length,
    wasmGzipBytes: zlib.gzipSync(wasm, { level: 9 }).length,
    indexJsBytes: glue.length,
    indexJsGzipBytes: zlib.gzipSync(glue, { level: 9 }).length,
    wasmSha256: crypto.createHash('sha256').update(wasm).digest('hex').slice(0, 16),
    wasmMtime: new Date(fs.statSync(path.join(BUILD, 'index_bg.wasm')).mtimeMs).toISOString(),
    gitHead: sh('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']),
    gitDirty: (sh('git', ['-C', REPO, 'status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock']) ?? '') !== '',
  };
  const probeDir = path.join(tmpRoot, 'probe');
  fs.cpSync(workerDir, probeDir, { recursive: true });

  // ---- pinning: this process (generator, Google fake, Miniflare's Node side) on CPU 0,
  // workerd on CPU 1 (exec'd under taskset through MINIFLARE_WORKERD_PATH, then re-pinned).
  // Counted before this process is pinned (children inherit the affinity, so `nproc` would say 1).
  const ncpu = os.availableParallelism?.() ?? os.cpus().length;
  const nprocOut = Number(sh('nproc', [])) || ncpu;
  let pinning = { applied: false, why: '' };
  let workerdPath = null;
  let serverCpus = null;
  if (process.env.BENCH_NO_PIN) pinning.why = 'BENCH_NO_PIN set';
  else if (ncpu < 2) pinning.why = `only ${ncpu} CPU`;
  else if (!hasTaskset()) pinning.why = 'taskset not installed (util-linux)';
  else if (!pin(process.pid, '0')) pinning.why = 'taskset -p failed on this process';
  else {
    serverCpus = '1';
    workerdPath = pinnedWorkerdWrapper(tmpRoot, serverCpus);
    pinning = { applied: true, generatorCpus: allowedCpus(process.pid), serverCpus };
  }

  const nodeVersion = process.version;
  const info = {
    schema: 1,
    date: new Date(t0).toISOString(),
    command: 'node bench/run.mjs',
    machine: {
      nproc: nprocOut,
      cpuModel: cpuModel(),
      memTotalMiB: Math.round(os.totalmem() / 1048576),
      kernel: os.release(),
      loadAvgStart: loadAvg(),
    },
    versions: {
      node: nodeVersion,
      workerd: WORKERD_BIN ? sh(WORKERD_BIN, ['--version']) : null,
      workerdNpm: versionOf('workerd'),
      miniflare: versionOf('miniflare'),
      wrangler: versionOf('wrangler'),
      undici: versionOf('undici'),
      generator: GENERATOR,
    },
    build,
    settings: { ...S, only: [...S.only], compatibilityDate, drainTimeoutMs: DRAIN_TIMEOUT_MS },
    pinning,
  };
  log(`rbm-edge bench — ${info.date}`);
  log(`machine: ${info.machine.nproc} CPU, ${info.machine.cpuModel}, load ${info.machine.loadAvgStart?.join(' ')}`);
  log(`versions: node ${nodeVersion}, ${info.versions.workerd} (npm ${info.versions.workerdNpm}), miniflare ${info.versions.miniflare}, wrangler ${info.versions.wrangler}; generator: ${GENERATOR}`);
  log(`build: index_bg.wasm ${build.wasmRawBytes} B raw, ${build.wasmGzipBytes} B gzip -9 (sha256 ${build.wasmSha256}…, ${build.wasmMtime}); index.js ${build.indexJsBytes} B`);

  fake = await startGoogleFake();
  const baseBindings = {
    RBM_CLIENT_TOKEN: CLIENT_TOKEN,
    API_KEYS: API_KEY,
    RBM_AGENT_ID: rbm.AGENT_ID,
    RBM_SERVICE_ACCOUNT_KEY: fake.serviceAccountKey,
    RBM_API_BASE: fake.url,
    STATUS_TTL_DAYS: '30',
  };
  const rules = [{ type: 'ESModule', include: ['**/*.js', '**/*.mjs'] }, { type: 'CompiledWasm', include: ['**/*.wasm'] }];
  const workerOptions = (processing, sink, extra = {}) => ({
    name: 'rbm-edge',
    modules: true,
    scriptPath: path.join(workerDir, 'index.js'),
    modulesRoot: workerDir,
    modulesRules: rules,
    compatibilityDate,
    compatibilityFlags: toml.compatibilityFlags,
    kvNamespaces: { STATUS: 'status-bench' },
    durableObjects: { CONVERSATIONS: { className: 'Conversation', useSQLite: true } },
    ratelimits: ratelimitsOf(toml),
    bindings: { ...baseBindings, PROCESSING: processing },
    handleRuntimeStdio: sink.handle,
    ...extra,
  });
  const startOpts = { workerdPath, serverCpus };
  const pinNote = () => (pinning.applied
    ? `generator + Google fake + Miniflare's Node side (node pid ${process.pid}) on CPU ${pinning.generatorCpus}; workerd on CPU ${serverCpus}`
    : `not pinned (${pinning.why})`);

  // ---------------------------------------------------------------- cold start
  const cold = { trivialJs: [], worker: [] };
  log(`\ncold start (${S.coldRuns}× each: new Miniflare() → first 200 over the direct socket)`);
  for (let i = 0; i < S.coldRuns; i++) {
    const sinkT = makeStdioSink(20);
    const triv = await startInstance({
      name: 'trivial', modules: true, script: 'export default { fetch() { return new Response("ok"); } };',
      compatibilityDate, handleRuntimeStdio: sinkT.handle,
    }, { ...startOpts, probePath: '/' });
    cold.trivialJs.push(triv.cold);
    await triv.dispose();
    const sinkW = makeStdioSink(20);
    const w = await startInstance(workerOptions('inline', sinkW), startOpts);
    cold.worker.push(w.cold);
    await w.dispose();
  }
  const coldMed = (arr, k) => round(median(arr.map((c) => c[k])), 1);
  const coldSummary = {};
  for (const k of ['readyMs', 'first200Ms', 'firstRequestMs', 'spawnToFirst200Ms']) {
    coldSummary[k] = { worker: coldMed(cold.worker, k), trivialJs: coldMed(cold.trivialJs, k) };
    coldSummary[k].delta = coldSummary[k].worker !== null && coldSummary[k].trivialJs !== null
      ? round(coldSummary[k].worker - coldSummary[k].trivialJs, 1) : null;
  }

  // ---------------------------------------------------------------- wasm instantiate in workerd
  const probe = writeProbe(probeDir);
  let instantiate = { ok: false, why: probe.why };
  if (probe.ok) {
    const sinkP = makeStdioSink(50);
    const p = await startInstance({
      name: 'probe', modules: true, scriptPath: probe.scriptPath, modulesRoot: probeDir, modulesRules: rules,
      compatibilityDate, handleRuntimeStdio: sinkP.handle,
    }, { ...startOpts, probePath: '/noop' });
    const N = 20;
    const REPS = 7;
    const timeGet = async (p2) => {
      const ts = performance.now();
      const res = await fetch(`${p.url}${p2}`, { signal: AbortSignal.timeout(30_000) });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`probe ${p2}: ${res.status} ${text.slice(0, 300)}`);
      return performance.now() - ts;
    };
    const per = { instantiate: [], reinit: [] };
    const cpuPer = {};
    try {
      for (let i = 0; i < 3; i++) await timeGet('/noop');
      await timeGet('/instantiate?n=2'); // first-time costs (wrappers, lazy tiers) out of the way
      await timeGet('/reinit?n=2');
      for (const kind of ['instantiate', 'reinit']) {
        const known = new Map();
        const c0 = cpuMsOf(p.pids, known);
        for (let r = 0; r < REPS; r++) {
          const base = await timeGet('/noop');
          const t = await timeGet(`/${kind}?n=${N}`);
          per[kind].push(Math.max(0, t - base) / N);
        }
        cpuPer[kind] = (cpuMsOf(p.pids, known) - c0) / (REPS * N); // includes the /noop requests: tiny
      }
      instantiate = {
        ok: true,
        where: "workerd's V8 (probe Worker re-instantiating the CompiledWasm module with the glue's imports)",
        perInstantiateMs: round(median(per.instantiate), 3),
        perReinitMs: round(median(per.reinit), 3),
        cpuPerInstantiateMs: round(cpuPer.instantiate, 3),
        cpuPerReinitMs: round(cpuPer.reinit, 3),
        samplesMs: { instantiate: per.instantiate.map((x) => round(x, 3)), reinit: per.reinit.map((x) => round(x, 3)) },
        n: N,
        reps: REPS,
        compileNote: 'compilation cannot run in-request (workerd forbids runtime wasm compilation); ' +
          'see coldStart delta vs a trivial JS Worker for compile + glue + instantiate at startup. ' +
          "Node 20's V8 cannot compile this module (exnref try_table), so no Node figure.",
      };
    } catch (err) {
      instantiate = { ok: false, why: err.message, logs: sinkP.tail.slice(-10) };
    } finally {
      await p.dispose();
    }
  }
  log(`  worker: first 200 ${coldSummary.first200Ms.worker} ms after new Miniflare() (trivial JS worker ${coldSummary.first200Ms.trivialJs} ms, Δ ${coldSummary.first200Ms.delta} ms); ` +
    `workerd exec → first 200 ${coldSummary.spawnToFirst200Ms.worker} ms (trivial ${coldSummary.spawnToFirst200Ms.trivialJs} ms, 10 ms resolution); first request ${coldSummary.firstRequestMs.worker} ms`);
  log(instantiate.ok
    ? `  wasm instantiate in workerd: ${instantiate.perInstantiateMs} ms (glue reinit incl. __wbindgen_start ${instantiate.perReinitMs} ms; CPU ${instantiate.cpuPerInstantiateMs} / ${instantiate.cpuPerReinitMs} ms)`
    : `  wasm instantiate: not measured (${instantiate.why})`);

  // ---------------------------------------------------------------- workloads
  // Every instance is started first; then each workload gets its set-up and warm-up; then the
  // runs are interleaved (run 1 of every workload, then run 2, …), so slow drifts of the
  // machine's load hit every workload alike and the ratios between rows stay comparable.
  const workloads = [];
  const invalid = [];
  log(`\nworkloads: ${S.runs} runs each, interleaved (median), ≤ ${S.seconds} s and ≤ ${S.maxRequests} requests per run, ${S.connections} connections, ${S.warmupSeconds} s warm-up; pinning: ${pinNote()}`);
  const want = (...ids) => ids.some((id) => S.only.has(id));
  const sinks = { inline: makeStdioSink(200), secret: makeStdioSink(50), calib: makeStdioSink(50), queue: makeStdioSink(200) };
  const inst = {};
  if (want('0', '1', '2', '3', '4')) inst.inline = await startInstance(workerOptions('inline', sinks.inline), startOpts);
  if (want('1s')) {
    // FORWARD_SECRET set (no FORWARD_URL): a receipt first looks for a statusCallback (KV list).
    inst.secret = await startInstance(workerOptions('inline', sinks.secret, {
      bindings: { ...baseBindings, PROCESSING: 'inline', FORWARD_SECRET: 'whsec_YmVuY2gtZm9yd2FyZC1zZWNyZXQtMzItYnl0ZXMhIQ==' },
    }), startOpts);
  }
  if (want('0k', '1k', '3k')) {
    inst.calib = await startInstance({
      name: 'kv-calibration', modules: true, script: KV_CALIBRATION_JS, compatibilityDate,
      kvNamespaces: { STATUS: 'status-calibration' }, handleRuntimeStdio: sinks.calib.handle,
    }, startOpts);
  }
  if (want('5')) {
    inst.queue = await startInstance(workerOptions('queue', sinks.queue, {
      queueProducers: { EVENTS: { queueName: 'rbm-events' } },
      queueConsumers: queueConsumersOf(toml),
    }), startOpts);
  }
  info.pinning.workerdAllowedCpus = Object.entries(inst)
    .map(([k, i]) => `${k}:${i.pids.map((pid) => `${pid}@${allowedCpus(pid)}`).join(',')}`).join(' ');

  /** Reads the messageId out of a pre-built webhook request. */
  const messageIdOf = (req) => JSON.parse(Buffer.from(JSON.parse(req.body.toString()).message.data, 'base64').toString()).messageId;
  /** Pushes `reqs` through `i` untimed; throws unless every answer is the expected one. */
  const seed = async (i, reqs, what) => {
    const r = await runLoad({ origin: i.url, connections: S.connections, durationMs: 60_000, maxRequests: reqs.length, request: (k) => reqs[k] });
    if (r.ok !== reqs.length) throw new Error(`${what}: ${r.ok}/${reqs.length} accepted (${r.samples[0] ?? ''})`);
  };

  const defs = [];
  if (inst.inline) {
    const I = inst.inline;
    let lastReceipts = null;
    const ids3 = [];
    defs.push(
      {
        id: 0, inst: I, sink: sinks.inline, name: 'GET /healthz', what: 'baseline: routing + JSON answer, no I/O', processing: 'n/a',
        build: () => { const r = { method: 'GET', path: '/healthz' }; return () => r; },
      },
      {
        id: 1, inst: I, sink: sinks.inline, name: 'webhook DELIVERED/READ', what: 'signed receipts, a new message every 2 requests; inline KV put per event', processing: 'inline',
        build: (n, tag) => { const a = buildReceipts(n, `b1${tag}`); if (tag !== 'warm') lastReceipts = a; return a; },
        check: async () => {
          const id = messageIdOf(lastReceipts[0]); // the last run's first message must now read DELIVERED or READ
          const res = await rbm.get(I.url, `/v1/messages/${id}`, AUTH);
          const ok = res.status === 200 && ['DELIVERED', 'READ'].includes(res.json?.status);
          return { ok, why: ok ? '' : `GET /v1/messages/${id} -> ${res.status} ${res.text.slice(0, 200)}` };
        },
      },
      {
        id: 2, inst: I, sink: sinks.inline, name: 'webhook user text', what: 'signed user text messages; no forward configured; stored in the conversation object', processing: 'inline',
        build: (n) => buildTexts(n),
      },
      {
        id: 3, inst: I, sink: sinks.inline, name: 'GET /v1/messages/{id}', what: 'status view (one KV list) of 500 messages written before (DELIVERED + READ each), round robin', processing: 'n/a',
        setup: async () => {
          const reqs = buildReceipts(1000, 'b3');
          for (let k = 0; k < reqs.length; k += 2) ids3.push(messageIdOf(reqs[k]));
          await seed(I, reqs, 'workload 3 set-up');
        },
        build: () => {
          const reqs = ids3.map((id) => ({ method: 'GET', path: `/v1/messages/${id}`, headers: AUTH }));
          return (k) => reqs[k % reqs.length];
        },
      },
      {
        id: 4, inst: I, sink: sinks.inline, name: 'POST /v1/messages', what: 'send relay to the loopback RBM fake (token cached), SENT status put', processing: 'n/a',
        setup: async () => {
          const warm = buildSends(1)[0];
          const res = await rbm.request(I.url, warm.path, { method: 'POST', headers: warm.headers, body: warm.body });
          if (res.status !== 200) throw new Error(`workload 4 warm-up send: ${res.status} ${res.text.slice(0, 300)}`);
        },
        beforeRun: async () => { fake.reset(); }, // also forgets what the fake recorded (memory)
        build: (n) => buildSends(n),
        check: async () => ({ ok: fake.stats.tokenRequests === 0, why: `${fake.stats.tokenRequests} token requests during the last run (token not cached)` }),
      },
    );
  }
  if (inst.secret) {
    defs.push({
      id: '1s', inst: inst.secret, sink: sinks.secret, name: 'webhook, FORWARD_SECRET set', what: 'as (1) with FORWARD_SECRET configured (status callbacks possible; decided in the conversation object)', processing: 'inline',
      build: (n, tag) => buildReceipts(n, `b1s${tag}`),
    });
  }
  if (inst.calib) {
    const C = inst.calib;
    const putReq = (event, id) => {
      const env = rbm.signedEnvelope(event, CLIENT_TOKEN);
      return { method: 'POST', path: `/put?id=${id}&type=${event.eventType}`, headers: env.headers, body: Buffer.from(env.body) };
    };
    const idsK = [];
    defs.push(
      {
        id: '0k', inst: C, sink: sinks.calib, name: 'JS: GET /healthz', what: "calibration for (0): plain JS Worker answering the same JSON (workerd's own per-request cost)", processing: 'n/a',
        build: () => { const r = { method: 'GET', path: '/healthz' }; return () => r; },
      },
      {
        id: '1k', inst: C, sink: sinks.calib, name: 'JS: body + KV put only', what: 'calibration for (1): plain JS Worker, reads the body, one KV put with metadata + TTL', processing: 'n/a',
        build: (n, tag) => {
          let id = '';
          return Array.from({ length: n }, (_, k) => {
            if (k % 2 === 0) id = `k1${tag}-${crypto.randomUUID()}`;
            return putReq(rbm.receipt(k % 2 === 0 ? 'DELIVERED' : 'READ', id), id);
          });
        },
      },
      {
        id: '3k', inst: C, sink: sinks.calib, name: 'JS: KV list only', what: 'calibration for (3): plain JS Worker, one KV list of a 2-key prefix', processing: 'n/a',
        setup: async () => {
          const reqs = [];
          for (let k = 0; k < 500; k++) {
            const id = `k3-${crypto.randomUUID()}`;
            idsK.push(id);
            reqs.push(putReq(rbm.receipt('DELIVERED', id), id), putReq(rbm.receipt('READ', id), id));
          }
          await seed(C, reqs, 'workload 3k set-up');
        },
        build: () => {
          const reqs = idsK.map((id) => ({ method: 'GET', path: `/list?id=${id}` }));
          return (k) => reqs[k % reqs.length];
        },
      },
    );
  }
  if (inst.queue) {
    const Q = inst.queue;
    const kv = await Q.mf.getKVNamespace('STATUS');
    /** Keys under `prefix` (bounded: ≤ 200 pages). */
    const countKeys = async (prefix) => {
      let n = 0;
      let cursor;
      for (let page = 0; page < 200; page++) {
        const res = await kv.list({ prefix, cursor });
        n += res.keys.length;
        if (res.list_complete || !res.cursor) break;
        cursor = res.cursor;
      }
      return n;
    };
    /** Polls until `target` keys exist under `prefix` or DRAIN_TIMEOUT_MS; returns {count, at, done}. */
    const drain = async (prefix, target) => {
      const deadline = performance.now() + DRAIN_TIMEOUT_MS;
      let count = 0;
      while (performance.now() < deadline) {
        count = await countKeys(prefix);
        if (count >= target) return { count, at: performance.now(), done: true };
        await sleep(DRAIN_POLL_MS);
      }
      return { count, at: performance.now(), done: false };
    };
    defs.push({
      id: 5, inst: Q, sink: sinks.queue, name: 'webhook via queue', what: `signed receipts enqueued on EVENTS (≤ ${S.queueEvents} per run); the consumer applies them (KV put)`, processing: 'queue',
      maxRequests: Math.min(S.queueEvents, S.maxRequests),
      build: (n, tag) => buildReceipts(n, `b5${tag}`),
      // The consumer must be idle before run 1 (its work would be counted in run 1).
      afterWarmup: async (warm) => { await drain('msg:b5warm-', warm.ok); await sleep(500); },
      measure: async (at, n, r) => {
        const known = new Map();
        const c0 = cpuMsOf(Q.pids, known);
        const tStart = performance.now();
        const send = await measuredRun(Q, sinks.queue, { request: at, maxRequests: n });
        const tSent = performance.now();
        const d = await drain(`msg:b5r${r}-`, send.ok);
        const c2 = cpuMsOf(Q.pids, known);
        return {
          ...send,
          processed: d.count,
          drained: d.done,
          drainLagMs: d.at - tSent,
          eventsPerSec: d.count / ((d.at - tStart) / 1000),
          totalCpuMsPerEvent: send.ok ? (c2 - c0) / send.ok : null,
        };
      },
    });
  }

  const runsOf = new Map(defs.map((d) => [d, []]));
  try {
    for (const def of defs) {
      if (def.setup) await def.setup();
      if (S.warmupSeconds > 0) {
        const n = Math.min(def.maxRequests ?? S.maxRequests, 3000);
        const warm = await runLoad({ origin: def.inst.url, connections: S.connections, durationMs: S.warmupSeconds * 1000, maxRequests: n, request: asFn(def.build(n, 'warm')) });
        if (def.afterWarmup) await def.afterWarmup(warm);
      }
    }
    for (let r = 1; r <= S.runs; r++) {
      for (const def of defs) {
        if (def.beforeRun) await def.beforeRun(r);
        const n = def.maxRequests ?? S.maxRequests;
        const at = asFn(def.build(n, `r${r}`)); // built before the timed run
        const procs0 = processTable();
        const res = def.measure
          ? await def.measure(at, n, r)
          : await measuredRun(def.inst, def.sink, { request: at, maxRequests: n });
        res.noiseTop = topOthers(procs0, processTable(), new Set([process.pid, ...Object.values(inst).flatMap((i) => i.pids)]), res.elapsedMs);
        runsOf.get(def).push(res);
        log(`  [${def.id}] run ${r}: ${res.rps.toFixed(0)} req/s, p50 ${res.p50Ms?.toFixed(2)} ms, p99 ${res.p99Ms?.toFixed(2)} ms, CPU ${res.cpuMsPerReq?.toFixed(3)} ms/req, other ${res.otherBusyPct?.toFixed(0)} %` +
          `${res.eventsPerSec !== undefined ? `, processed ${res.processed} at ${res.eventsPerSec?.toFixed(0)} ev/s` : ''}` +
          `${res.unexpected + res.failures ? `, ${res.unexpected + res.failures} unexpected (${res.samples[0] ?? ''})` : ''}`);
        await sleep(200);
      }
    }
    for (const def of defs) {
      const runs = runsOf.get(def);
      const w = {
        id: def.id, name: def.name, what: def.what, processing: def.processing, connections: S.connections,
        median: summarise(runs), runs: runs.map(cleanRun),
      };
      if (def.check) w.check = await def.check();
      const total = w.median.answered + runs.reduce((a, x) => a + x.failures, 0);
      if (total === 0 || w.median.unexpected / total > 0.01 || (w.check && w.check.ok === false)) {
        invalid.push(`${def.id} ${def.name}: ${w.median.unexpected} unexpected of ${total}${w.check && !w.check.ok ? `; check: ${w.check.why}` : ''}`);
      }
      workloads.push(w);
    }
  } finally {
    fs.writeFileSync(path.join(OUT_DIR, 'workerd-tail.log'),
      Object.entries(sinks).map(([k, s]) => `== ${k}: ${s.lines} lines, ${s.bytes} B\n${s.tail.join('\n')}`).join('\n\n') + '\n');
    await Promise.allSettled(Object.values(inst).map((i) => i.dispose()));
  }

  // ---------------------------------------------------------------- report
  info.machine.loadAvgEnd = loadAvg();
  const ORDER = ['0', '0k', '1', '1k', '1s', '2', '3', '3k', '4', '5'];
  workloads.sort((a, b) => ORDER.indexOf(String(a.id)) - ORDER.indexOf(String(b.id)));
  const byId = Object.fromEntries(workloads.map((w) => [w.id, w.median]));
  const analysis = [];
  if (byId[0] && byId[1]) {
    analysis.push(`webhook receipt (1) costs ${byId[1].cpuMsPerReq} ms CPU/request vs ${byId[0].cpuMsPerReq} ms for GET /healthz (0): ` +
      `${round(byId[1].cpuMsPerReq - byId[0].cpuMsPerReq, 3)} ms above the baseline (×${round(byId[1].cpuMsPerReq / byId[0].cpuMsPerReq, 1)}).`);
  }
  if (byId[1] && byId[2]) {
    analysis.push(`user text (2, same verify + decode + log, no KV write, one conversation-object write) ${byId[2].cpuMsPerReq} ms: the inline KV put of (1) accounts for ~${round(byId[1].cpuMsPerReq - byId[2].cpuMsPerReq, 3)} ms ` +
      '(workerd CPU includes Miniflare\'s local KV simulator, which is not billed on Cloudflare).');
  }
  if (byId[0] && byId['0k']) {
    analysis.push(`fixed cost of the Rust/wasm shell: GET /healthz ${byId[0].cpuMsPerReq} ms/request vs ${byId['0k'].cpuMsPerReq} ms for the same answer from plain JS (0k): ` +
      `~${round(byId[0].cpuMsPerReq - byId['0k'].cpuMsPerReq, 3)} ms per request before any work (glue, Request/Env conversion, Config, routing); ${byId[0].rps} vs ${byId['0k'].rps} req/s.`);
  }
  if (byId[1] && byId['1k']) {
    analysis.push(`the same KV put from a plain JS Worker (1k) costs ${byId['1k'].cpuMsPerReq} ms/request: the Rust Worker's own share of (1) is ~${round(byId[1].cpuMsPerReq - byId['1k'].cpuMsPerReq, 3)} ms ` +
      `(${round(byId[1].cpuMsPerReq / byId['1k'].cpuMsPerReq, 2)}× the JS floor); p50 ${byId[1].p50Ms} vs ${byId['1k'].p50Ms} ms.`);
  }
  if (byId[1] && byId['1s']) {
    analysis.push(`with FORWARD_SECRET set (1s) a receipt costs ${byId['1s'].cpuMsPerReq} ms vs ${byId[1].cpuMsPerReq} ms (1): +${round(byId['1s'].cpuMsPerReq - byId[1].cpuMsPerReq, 3)} ms ` +
      `and p50 ${byId['1s'].p50Ms} vs ${byId[1].p50Ms} ms: callbacks are decided in the conversation object either way, so this is noise.`);
  }
  if (byId[3] && byId['3k']) {
    analysis.push(`status view (3) ${byId[3].cpuMsPerReq} ms/request vs a bare KV list from JS (3k) ${byId['3k'].cpuMsPerReq} ms: ~${round(byId[3].cpuMsPerReq - byId['3k'].cpuMsPerReq, 3)} ms is the Worker (auth, fold, JSON).`);
  }
  if (byId[0] && byId[2]) {
    analysis.push(`verify + decode + log without storage (2 − 0): ${round(byId[2].cpuMsPerReq - byId[0].cpuMsPerReq, 3)} ms/request.`);
  }
  for (const w of workloads) {
    if (w.median.logLinesPerReq > 0.01) analysis.push(`(${w.id}) logs ${round(w.median.logLinesPerReq, 2)} lines / ${round(w.median.logBytesPerReq, 0)} B per request.`);
  }
  if (byId[5]) {
    analysis.push(`queue path (5): time-to-200 ${byId[5].p50Ms} ms p50 at ${byId[5].rps} req/s, ${byId[5].cpuMsPerReq} ms CPU/request to enqueue; ` +
      `consumer drained at ${byId[5].eventsPerSec} events/s overall, ${byId[5].totalCpuMsPerEvent} ms CPU/event end to end (incl. the local queue broker + KV polling).`);
  }
  const allRuns = workloads.flatMap((w) => w.runs);
  const noisiest = allRuns.reduce((m, r) => ((r.otherBusyPct ?? 0) > (m?.otherBusyPct ?? -1) ? r : m), null);
  if (noisiest && noisiest.otherBusyPct > 15) {
    analysis.push(`noise: other processes used ${round(median(allRuns.map((r) => r.otherBusyPct)), 0)} % of a core (median over runs; up to ${round(noisiest.otherBusyPct, 0)} %, ` +
      `busiest: ${noisiest.noiseTop?.join(', ') || 'n/a'}); throughput and latency move with it, CPU/request much less: compare within one run of the bench.`);
  }

  const results = {
    ...info,
    coldStart: { summary: coldSummary, runs: { worker: cold.worker.map(cleanRun), trivialJs: cold.trivialJs.map(cleanRun) } },
    instantiate,
    workloads,
    analysis,
    invalid,
    notes: [
      'CPU ms/request = (utime+stime of the workerd process(es) of the instance, from /proc/PID/stat) delta over the run / answered requests. ' +
        'It includes workerd\'s HTTP handling and Miniflare\'s local KV/Queue simulators (same process), so it overstates billed Worker CPU; ' +
        `resolution is 1/${CLK_TCK} s over the run. It is a mean, not a p50.`,
      'Latency = wall time per request seen by the generator (closed loop, fixed connections): under saturation it includes queueing.',
      'otherBusyPct = machine busy time not spent in workerd or the bench process, in % of one core: noise from other jobs.',
      'nodeCpuPct = CPU of the bench process (generator + Google fake + Miniflare Node side) in % of one core: near 100 means generator-bound.',
      'Cold start: new Miniflare() → first 200 includes Miniflare\'s config generation; "spawnToFirst200Ms" starts at the workerd exec. ' +
        'The delta vs a trivial JS Worker estimates wasm compile + glue evaluation + instantiate at startup.',
    ],
    durationS: round((Date.now() - t0) / 1000, 1),
  };
  fs.writeFileSync(OUT_JSON, `${JSON.stringify(results, null, 2)}\n`);

  printTable(results);
  log(`\nwrote ${path.relative(process.cwd(), OUT_JSON) || OUT_JSON} (${results.durationS} s)`);
  if (invalid.length) {
    console.error(`\n[bench] workloads with unexpected answers (numbers not valid):\n  ${invalid.join('\n  ')}`);
    return 2;
  }
  return 0;
}

function printTable(r) {
  const f = (x, d = 2) => (x === null || x === undefined ? '—' : Number(x).toFixed(d));
  const rows = [['#', 'workload', 'req/s', 'p50 ms', 'p99 ms', 'CPU ms/req', 'workerd %', 'gen %', 'other %', 'log B/req', 'errors']];
  for (const w of r.workloads) {
    const m = w.median;
    rows.push([String(w.id), w.name, f(m.rps, 0), f(m.p50Ms), f(m.p99Ms), f(m.cpuMsPerReq, 3), f(m.workerdCpuPct, 0), f(m.nodeCpuPct, 0), f(m.otherBusyPct, 0), f(m.logBytesPerReq, 0), String(m.unexpected)]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  log('');
  log(`results (median of ${r.settings.runs} runs; pinning: ${r.pinning.applied ? `generator CPU ${r.pinning.generatorCpus}, workerd CPU ${r.pinning.serverCpus}` : `none (${r.pinning.why})`})`);
  for (const [i, row] of rows.entries()) {
    log(row.map((c, k) => (k === 1 ? c.padEnd(widths[k]) : c.padStart(widths[k]))).join('  '));
    if (i === 0) log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  const q = r.workloads.find((w) => w.id === 5);
  if (q) log(`5: events processed ${f(q.median.eventsPerSec, 0)}/s (send start → all stored), drain lag after last 200 ${f(q.median.drainLagMs, 0)} ms, CPU ${f(q.median.totalCpuMsPerEvent, 3)} ms/event end to end`);
  const c = r.coldStart.summary;
  log(`cold start: new Miniflare() → first 200 ${f(c.first200Ms.worker, 0)} ms (trivial JS ${f(c.first200Ms.trivialJs, 0)} ms, Δ ${f(c.first200Ms.delta, 0)} ms); ` +
    `workerd exec → first 200 ${f(c.spawnToFirst200Ms.worker, 0)} ms (trivial ${f(c.spawnToFirst200Ms.trivialJs, 0)} ms); first request ${f(c.firstRequestMs.worker, 1)} ms`);
  log(r.instantiate.ok
    ? `wasm instantiate (workerd V8): ${f(r.instantiate.perInstantiateMs, 3)} ms; glue reinit incl. __wbindgen_start ${f(r.instantiate.perReinitMs, 3)} ms`
    : `wasm instantiate: not measured (${r.instantiate.why})`);
  log(`wasm: ${r.build.wasmRawBytes} B raw, ${r.build.wasmGzipBytes} B gzip -9`);
  if (r.analysis.length) {
    log('\nhot path:');
    for (const a of r.analysis) log(`  - ${a}`);
  }
}

main().then(async (code) => {
  if (interrupted) return; // the signal handler cleans up and exits
  await cleanup();
  process.exit(code);
}, async (err) => {
  if (interrupted) return;
  console.error(`[bench] harness failure: ${err?.stack ?? err}`);
  await withTimeout(cleanup(), 15_000, 'cleanup').catch(() => {});
  process.exit(1);
});
