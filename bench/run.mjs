#!/usr/bin/env node
// `make bench`: throughput, latency, CPU per request and cold start of the release build
// (build/index.js + build/index_bg.wasm) in workerd, talking to workerd directly through
// Miniflare's Node API (no wrangler proxy). Prints a table and writes bench/results.json.
// See bench/README.md. Exit: 0 done, 1 harness failure, 2 a workload answered unexpectedly
// (its numbers are not valid), 130/143 interrupted. Never fails on a slow number.
//
// Settings (environment): BENCH_SECONDS (5) per run, BENCH_RUNS (3), BENCH_CONNECTIONS (8),
// BENCH_MAX_REQUESTS (30000) per run, BENCH_QUEUE_EVENTS (2000) per workload-5 run,
// BENCH_WARMUP_SECONDS (1), BENCH_COLD_RUNS (3),
// BENCH_ONLY ("0,1,2,3,4,5,0k,1k,1t,1s,2k,2d,3k,3t"),
// BENCH_TIME_LIMIT_S (1200: the whole run is killed after this), BENCH_NO_PIN=1,
// BENCH_STORAGE_DIR (where Miniflare keeps local storage; default /dev/shm when writable),
// BENCH_PAIRED_SECONDS (12 per pair; 0: no paired phase).
// After the table, "ratios": rbm-edge's CPU per request ÷ its plain-JS twin's, against the
// issue's goals (≤ 1.2× on /healthz, ≤ 1.0× on the webhook paths and the status read), from a
// paired phase: the two rows alternate in batches of ~0.15 s, so the machine's drift (which moves
// whole runs by ±20 % here) falls on both alike. Informative only, never an exit status.

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
import {
  CLIENT_TOKEN, API_KEY, AUTH, asFn, buildReceipts, buildTexts, buildSends, statusReq,
} from './lib/requests.mjs';

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
const DEFAULT_ONLY = '0,1,2,3,4,5,0k,1k,1t,1s,2k,2d,3k,3t';
const S = {
  seconds: num('BENCH_SECONDS', 5, 0.5, 120),
  runs: num('BENCH_RUNS', 3, 1, 20),
  connections: num('BENCH_CONNECTIONS', 8, 1, 256),
  maxRequests: num('BENCH_MAX_REQUESTS', 30_000, 100, 1_000_000),
  queueEvents: num('BENCH_QUEUE_EVENTS', 2000, 50, 100_000),
  warmupSeconds: num('BENCH_WARMUP_SECONDS', 1, 0, 30),
  coldRuns: num('BENCH_COLD_RUNS', 3, 1, 20),
  timeLimitS: num('BENCH_TIME_LIMIT_S', 1200, 30, 7200),
  pairedSeconds: num('BENCH_PAIRED_SECONDS', 12, 0, 600),
  only: new Set((process.env.BENCH_ONLY ?? DEFAULT_ONLY).split(',').map((s) => s.trim()).filter(Boolean)),
};
const DRAIN_TIMEOUT_MS = 60_000;
const DRAIN_POLL_MS = 200;


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
/** Miniflare's temp dirs (its local KV, Durable Object and queue storage); see storageBase(). */
let storageRoot = null;
const removeTmp = () => {
  if (process.env.BENCH_KEEP_TMP) return;
  for (const d of [tmpRoot, storageRoot]) {
    if (d) { try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ } }
  }
};
let fake = null;
let cleaning = null;
async function cleanup() {
  if (!cleaning) {
    cleaning = (async () => {
      await disposeAll();
      if (fake) await withTimeout(fake.close(), 5000, 'fake close').catch(() => {});
      removeTmp();
    })();
  }
  return cleaning;
}
process.on('exit', () => {
  killAllSync();
  removeTmp();
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

/**
 * The plain-JS calibration Worker (rows 0k, 1k, 1t, 2k, 2d, 3k, 3t): floors (one step of a
 * workload) and twins (what a TypeScript Worker of the same design does on the same path).
 * See its header.
 */
const CALIBRATION_WORKER = path.join(REPO, 'bench', 'lib', 'calibration-worker.js');

/**
 * Goals of the performance issue: rbm-edge's CPU per request ÷ its JS twin's, same run.
 * [rbm-edge row, JS row, goal]. Never fails the bench: printed and written to results.json.
 */
const RATIO_PAIRS = [
  ['0', '0k', 1.2],
  ['1', '1t', 1.0],
  ['1s', '1t', 1.0],
  ['2', '2k', 1.0],
  ['2', '2d', 1.0],
  ['3', '3t', 1.0],
];

// ------------------------------------------------------------------ storage

/** The file system type of the mount holding `dir` (from /proc/mounts), or null. */
function fsTypeOf(dir) {
  try {
    const real = fs.realpathSync(dir);
    let best = null;
    for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [, mnt, type] = line.split(' ');
      if (!mnt) continue;
      const m = mnt.replace(/\\040/g, ' ');
      if ((real === m || real.startsWith(m.endsWith('/') ? m : `${m}/`)) && (!best || m.length > best.m.length)) best = { m, type };
    }
    return best?.type ?? null;
  } catch { return null; }
}

/**
 * Where Miniflare keeps its local storage: KV, Durable Objects and queues are SQLite files with
 * an fsync per commit. On a disk that puts kernel time and I/O waits (and other jobs' disk
 * traffic) into workerd's CPU and latency; on a tmpfs the fsync costs nothing. BENCH_STORAGE_DIR,
 * else /dev/shm when writable, else the OS temp dir. The bench creates and removes its own
 * directory there (Miniflare's dispose removes its temp dir fire-and-forget, which never
 * completes when the process exits right after).
 */
function storageBase() {
  let dir = process.env.BENCH_STORAGE_DIR || null;
  if (!dir) {
    try {
      fs.accessSync('/dev/shm', fs.constants.W_OK);
      if (fs.statSync('/dev/shm').isDirectory()) dir = '/dev/shm';
    } catch { /* no /dev/shm */ }
  }
  dir ??= os.tmpdir();
  return { dir, fsType: fsTypeOf(dir) };
}

// ------------------------------------------------------------------ main

async function main() {
  const t0 = Date.now();
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'rbm-edge-bench-'));
  const storage = storageBase();
  storageRoot = fs.mkdtempSync(path.join(storage.dir, 'rbm-edge-bench-storage-'));
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
    storage: { dir: storageRoot, fsType: storage.fsType },
  };
  log(`rbm-edge bench — ${info.date}`);
  log(`machine: ${info.machine.nproc} CPU, ${info.machine.cpuModel}, load ${info.machine.loadAvgStart?.join(' ')}`);
  log(`versions: node ${nodeVersion}, ${info.versions.workerd} (npm ${info.versions.workerdNpm}), miniflare ${info.versions.miniflare}, wrangler ${info.versions.wrangler}; generator: ${GENERATOR}`);
  log(`storage (Miniflare's local KV, Durable Objects, queues): ${storageRoot} (${storage.fsType ?? 'unknown fs'}${storage.fsType === 'tmpfs' ? ': fsync is free' : ': fsync per commit reaches the device'})`);
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
  const startOpts = { workerdPath, serverCpus, tmpDir: storageRoot };
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
  let paired = {};
  log(`\nworkloads: ${S.runs} runs each, interleaved (median), ≤ ${S.seconds} s and ≤ ${S.maxRequests} requests per run, ${S.connections} connections, ${S.warmupSeconds} s warm-up; pinning: ${pinNote()}`);
  const want = (...ids) => ids.some((id) => S.only.has(id));
  const sinks = {
    inline: makeStdioSink(200), read: makeStdioSink(50), secret: makeStdioSink(50), calib: makeStdioSink(50), calibRead: makeStdioSink(50), queue: makeStdioSink(200),
  };
  const inst = {};
  if (want('0', '1', '2', '4')) inst.inline = await startInstance(workerOptions('inline', sinks.inline), startOpts);
  // The status reads (3, 3k, 3t) get instances of their own: Miniflare's local KV `list` scans
  // every key of the namespace (`WHERE substr(key, …) = prefix`, no index range), so a list
  // costs more the more keys the other rows have put, and rbm-edge and the JS Worker put
  // different numbers. Here both namespaces hold the same 1000 keys.
  if (want('3')) inst.read = await startInstance(workerOptions('inline', sinks.read), startOpts);
  if (want('1s')) {
    // FORWARD_SECRET set (no FORWARD_URL): status callbacks are possible (decided in the
    // conversation object; no message here has one).
    inst.secret = await startInstance(workerOptions('inline', sinks.secret, {
      bindings: { ...baseBindings, PROCESSING: 'inline', FORWARD_SECRET: 'whsec_YmVuY2gtZm9yd2FyZC1zZWNyZXQtMzItYnl0ZXMhIQ==' },
    }), startOpts);
  }
  const calibOptions = (name, sink) => ({
    name, modules: true, scriptPath: CALIBRATION_WORKER, compatibilityDate,
    kvNamespaces: { STATUS: `status-${name}` },
    durableObjects: { CONVERSATIONS: { className: 'Conversation', useSQLite: true } },
    bindings: { RBM_CLIENT_TOKEN: CLIENT_TOKEN, API_KEYS: API_KEY, RBM_AGENT_ID: rbm.AGENT_ID },
    handleRuntimeStdio: sink.handle,
  });
  if (want('0k', '1k', '1t', '2k', '2d')) inst.calib = await startInstance(calibOptions('js-calibration', sinks.calib), startOpts);
  if (want('3k', '3t')) inst.calibRead = await startInstance(calibOptions('js-calibration-read', sinks.calibRead), startOpts);
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

  /** Every receipt workload's check: the last run's first message must now read DELIVERED or READ. */
  const receiptCheck = (I, last) => async () => {
    const id = messageIdOf(last()[0]);
    const res = await rbm.get(I.url, `/v1/messages/${id}`, AUTH);
    const ok = res.status === 200 && ['DELIVERED', 'READ'].includes(res.json?.status);
    return { ok, why: ok ? '' : `GET /v1/messages/${id} -> ${res.status} ${res.text.slice(0, 200)}` };
  };
  /** 500 messages (DELIVERED + READ each) written through `I`'s webhook; returns their ids. */
  const seedStatuses = async (I, prefix, webhookPath, what) => {
    const reqs = buildReceipts(1000, prefix, webhookPath);
    const ids = [];
    for (let k = 0; k < reqs.length; k += 2) ids.push(messageIdOf(reqs[k]));
    await seed(I, reqs, what);
    return ids;
  };
  /** Requests for `ids`, round robin. */
  const roundRobin = (ids, toReq) => {
    const reqs = ids.map(toReq);
    return (k) => reqs[k % reqs.length];
  };

  const defs = [];
  if (inst.inline) {
    const I = inst.inline;
    let lastReceipts = null;
    defs.push(
      {
        id: 0, inst: I, sink: sinks.inline, name: 'GET /healthz', what: 'baseline: routing + JSON answer, no I/O', processing: 'n/a',
        build: () => { const r = { method: 'GET', path: '/healthz' }; return () => r; },
      },
      {
        id: 1, inst: I, sink: sinks.inline, name: 'webhook DELIVERED/READ', what: 'signed receipts, a new message every 2 requests; verify + decode + log, KV put, conversation object records it', processing: 'inline',
        build: (n, tag) => { const a = buildReceipts(n, `b1${tag}`); if (tag !== 'warm') lastReceipts = a; return a; },
        check: receiptCheck(I, () => lastReceipts),
      },
      {
        id: 2, inst: I, sink: sinks.inline, name: 'webhook user text', what: 'signed user text messages; verify + decode + log; stored in the conversation object; no forward configured', processing: 'inline',
        build: (n) => buildTexts(n),
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
  let ids3 = [];
  if (inst.read) {
    const R = inst.read;
    defs.push({
      id: 3, inst: R, sink: sinks.read, name: 'GET /v1/messages/{id}', what: 'status view (API key, one KV list, fold, JSON) of 500 messages written before (DELIVERED + READ each; 1000 keys in the namespace), round robin', processing: 'n/a',
      setup: async () => { ids3 = await seedStatuses(R, 'b3', '/webhook', 'workload 3 set-up'); },
      build: () => roundRobin(ids3, statusReq),
    });
  }
  if (inst.secret) {
    let last = null;
    defs.push({
      id: '1s', inst: inst.secret, sink: sinks.secret, name: 'webhook, FORWARD_SECRET set', what: 'as (1) with FORWARD_SECRET configured (status callbacks possible; decided in the conversation object)', processing: 'inline',
      build: (n, tag) => { const a = buildReceipts(n, `b1s${tag}`); if (tag !== 'warm') last = a; return a; },
      check: receiptCheck(inst.secret, () => last),
    });
  }
  if (inst.calib) {
    const C = inst.calib;
    const putReq = (event, id) => {
      const env = rbm.signedEnvelope(event, CLIENT_TOKEN);
      return { method: 'POST', path: `/put?id=${id}&type=${event.eventType}`, headers: env.headers, body: Buffer.from(env.body) };
    };
    let last1t = null;
    defs.push(
      {
        id: '0k', inst: C, sink: sinks.calib, name: 'JS: GET /healthz', what: "calibration for (0): plain JS Worker answering the same JSON (workerd's own per-request cost)", processing: 'n/a',
        build: () => { const r = { method: 'GET', path: '/healthz' }; return () => r; },
      },
      {
        id: '1k', inst: C, sink: sinks.calib, name: 'JS: body + KV put only', what: "floor of (1): plain JS Worker, reads the body, one KV put with metadata + TTL (no verify, no conversation object)", processing: 'n/a',
        build: (n, tag) => {
          let id = '';
          return Array.from({ length: n }, (_, k) => {
            if (k % 2 === 0) id = `k1${tag}-${crypto.randomUUID()}`;
            return putReq(rbm.receipt(k % 2 === 0 ? 'DELIVERED' : 'READ', id), id);
          });
        },
      },
      {
        id: '1t', inst: C, sink: sinks.calib, name: 'JS twin: webhook DELIVERED/READ', what: "twin of (1): same requests; crypto.subtle HMAC-SHA512 verify, decode, JSON.parse, one log line, KV put with metadata + TTL, then one RPC call to a JS conversation object (SQLite: SELECT the message's events, SELECT its callback_url, INSERT OR IGNORE the event)", processing: 'inline',
        build: (n, tag) => { const a = buildReceipts(n, `k1t${tag}`, '/webhook'); if (tag !== 'warm') last1t = a; return a; },
        check: receiptCheck(C, () => last1t),
      },
      {
        id: '2k', inst: C, sink: sinks.calib, name: 'JS twin: user text, no storage', what: 'twin of (2) without storage: same requests; crypto.subtle HMAC-SHA512 verify, decode, JSON.parse, one log line (phone masked), 200', processing: 'inline',
        build: (n) => buildTexts(n, '/webhook/no-conversation'),
      },
      {
        id: '2d', inst: C, sink: sinks.calib, name: 'JS twin: user text + DO', what: 'twin of (2): as (2k), then one fetch to a JS conversation object (SQLite-backed, one per agent + phone) doing one INSERT OR IGNORE of the message row', processing: 'inline',
        build: (n) => buildTexts(n, '/webhook'),
      },
    );
  }
  if (inst.calibRead) {
    const CR = inst.calibRead;
    let idsT = [];
    let seeding = null;
    const seedT = () => (seeding ??= seedStatuses(CR, 'k3', '/webhook', 'workload 3k/3t set-up').then((ids) => { idsT = ids; }));
    defs.push(
      {
        id: '3k', inst: CR, sink: sinks.calibRead, name: 'JS: KV list only', what: 'floor of (3): plain JS Worker, one KV list of a 2-key prefix (1000 keys in the namespace, as in 3)', processing: 'n/a',
        setup: seedT,
        build: () => roundRobin(idsT, (id) => ({ method: 'GET', path: `/list?id=${id}` })),
      },
      {
        id: '3t', inst: CR, sink: sinks.calibRead, name: 'JS twin: GET /v1/messages/{id}', what: 'twin of (3): same requests; API key compared in constant time, one KV list of the prefix, fold, the same JSON view', processing: 'n/a',
        setup: seedT,
        build: () => roundRobin(idsT, statusReq),
        check: async () => {
          // The twin answers the same document as rbm-edge (same fields, same status).
          const js = await rbm.get(CR.url, `/v1/messages/${idsT[0]}`, AUTH);
          if (js.status !== 200) return { ok: false, why: `GET /v1/messages/${idsT[0]} -> ${js.status} ${js.text.slice(0, 200)}` };
          if (!inst.read || ids3.length === 0) return { ok: true, why: '' };
          const rs = await rbm.get(inst.read.url, `/v1/messages/${ids3[0]}`, AUTH);
          // Two different messages (their receipts' times differ): events compared as a set, not in time order.
          const shape = (v) => JSON.stringify({ top: Object.keys(v ?? {}).sort(), events: (v?.events ?? []).map((e) => [e.type, ...Object.keys(e).sort()]).sort(), status: v?.status });
          const ok = rs.status === 200 && shape(js.json) === shape(rs.json);
          return { ok, why: ok ? '' : `JS view ${shape(js.json)} differs from rbm-edge's ${rs.status} ${shape(rs.json)}` };
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

  // Only the rows asked for (an instance serves several rows).
  for (let k = defs.length - 1; k >= 0; k--) if (!S.only.has(String(defs[k].id))) defs.splice(k, 1);
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
    paired = await pairedPhase(defs, runsOf);
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
  const ORDER = ['0', '0k', '1', '1s', '1k', '1t', '2', '2k', '2d', '3', '3k', '3t', '4', '5'];
  workloads.sort((a, b) => ORDER.indexOf(String(a.id)) - ORDER.indexOf(String(b.id)));
  const byId = Object.fromEntries(workloads.map((w) => [w.id, w.median]));
  const analysis = [];
  if (byId[0] && byId[1]) {
    analysis.push(`webhook receipt (1) costs ${byId[1].cpuMsPerReq} ms CPU/request vs ${byId[0].cpuMsPerReq} ms for GET /healthz (0): ` +
      `${round(byId[1].cpuMsPerReq - byId[0].cpuMsPerReq, 3)} ms above the baseline (×${round(byId[1].cpuMsPerReq / byId[0].cpuMsPerReq, 1)}).`);
  }
  if (byId[1] && byId[2]) {
    analysis.push(`user text (2: verify + decode + log, one conversation-object insert, no KV) ${byId[2].cpuMsPerReq} ms vs receipt (1) ${byId[1].cpuMsPerReq} ms: ` +
      `~${round(byId[1].cpuMsPerReq - byId[2].cpuMsPerReq, 3)} ms for the receipt's KV put and its heavier conversation-object record ` +
      '(workerd CPU includes Miniflare\'s local KV and Durable Object storage, which are not billed as Worker CPU on Cloudflare).');
  }
  if (byId[0] && byId['0k']) {
    analysis.push(`fixed cost of the Rust/wasm shell: GET /healthz ${byId[0].cpuMsPerReq} ms/request vs ${byId['0k'].cpuMsPerReq} ms for the same answer from plain JS (0k): ` +
      `~${round(byId[0].cpuMsPerReq - byId['0k'].cpuMsPerReq, 3)} ms per request before any work (glue, Request/Env conversion, Config, routing); ${byId[0].rps} vs ${byId['0k'].rps} req/s.`);
  }
  if (byId[1] && byId['1k']) {
    analysis.push(`a bare KV put from a plain JS Worker (1k) costs ${byId['1k'].cpuMsPerReq} ms/request: (1) spends ~${round(byId[1].cpuMsPerReq - byId['1k'].cpuMsPerReq, 3)} ms more ` +
      `(verify, decode, log, the conversation object, the wasm shell; ${round(byId[1].cpuMsPerReq / byId['1k'].cpuMsPerReq, 2)}× the put alone); p50 ${byId[1].p50Ms} vs ${byId['1k'].p50Ms} ms.`);
  }
  if (byId[1] && byId['1s']) {
    analysis.push(`with FORWARD_SECRET set (1s) a receipt costs ${byId['1s'].cpuMsPerReq} ms vs ${byId[1].cpuMsPerReq} ms (1): +${round(byId['1s'].cpuMsPerReq - byId[1].cpuMsPerReq, 3)} ms ` +
      `and p50 ${byId['1s'].p50Ms} vs ${byId[1].p50Ms} ms: callbacks are decided in the conversation object either way, so this is noise.`);
  }
  if (byId[3] && byId['3k']) {
    analysis.push(`status view (3) ${byId[3].cpuMsPerReq} ms/request vs a bare KV list from JS (3k) ${byId['3k'].cpuMsPerReq} ms: ~${round(byId[3].cpuMsPerReq - byId['3k'].cpuMsPerReq, 3)} ms is the Worker (auth, fold, JSON).`);
  }
  if (byId['0k'] && byId['2k']) {
    analysis.push(`JS twin: verify + decode + log without storage (2k − 0k) ${round(byId['2k'].cpuMsPerReq - byId['0k'].cpuMsPerReq, 3)} ms/request` +
      `${byId['2d'] ? `; its conversation-object insert (2d − 2k) ${round(byId['2d'].cpuMsPerReq - byId['2k'].cpuMsPerReq, 3)} ms` : ''}` +
      `${byId['1t'] ? `; a receipt (1t) ${byId['1t'].cpuMsPerReq} ms` : ''}.`);
  }
  if (byId[2] && byId['2d']) {
    analysis.push(`rbm-edge's user text (2) ${byId[2].cpuMsPerReq} ms vs its JS twin (2d) ${byId['2d'].cpuMsPerReq} ms: ~${round(byId[2].cpuMsPerReq - byId['2d'].cpuMsPerReq, 3)} ms more per request ` +
      '(the wasm shell: async glue, Request/Response objects, JSON through serde; rbm-edge\'s object also broadcasts the live frame; both do one INSERT).');
  }
  if (byId[3] && byId['3t']) {
    analysis.push(`status view (3) ${byId[3].cpuMsPerReq} ms vs its JS twin (3t) ${byId['3t'].cpuMsPerReq} ms; both over a namespace of the same 1000 keys (Miniflare's local KV list scans the whole namespace).`);
  }
  for (const w of workloads) {
    if (w.median.logLinesPerReq > 0.01) analysis.push(`(${w.id}) logs ${round(w.median.logLinesPerReq, 2)} lines / ${round(w.median.logBytesPerReq, 0)} B per request.`);
  }
  if (byId[5]) {
    analysis.push(`queue path (5): time-to-200 ${byId[5].p50Ms} ms p50 at ${byId[5].rps} req/s, ${byId[5].cpuMsPerReq} ms CPU/request to enqueue; ` +
      `consumer drained at ${byId[5].eventsPerSec} events/s overall, ${byId[5].totalCpuMsPerEvent} ms CPU/event end to end (incl. the local queue broker + KV polling).`);
  }
  const ratios = ratiosOf(workloads, invalid, paired);
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
    ratios,
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
      'ratios: rbm-edge row ÷ its plain-JS twin (bench/lib/calibration-worker.js); cpuRatio (against the goal: ≤ 1.2 on /healthz, ≤ 1.0 ' +
        'elsewhere) comes from the paired phase (method "paired": the two rows alternate in ~0.15 s batches for BENCH_PAIRED_SECONDS, so ' +
        'machine drift falls on both), else from the runs\' medians. medianCpuRatio: the runs\' medians ÷; rpsRatio > 1 means rbm-edge ' +
        'answered more requests per second; cpuRatioRuns: run k ÷ run k. Informative only: never an exit status.',
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

/**
 * The paired phase: for each RATIO_PAIRS pair whose two rows ran, the rows alternate in batches
 * of about 0.15 s each (sized from the row's median req/s) for BENCH_PAIRED_SECONDS, and each
 * batch's workerd CPU is summed per row. Drift of the machine between runs cancels out; /proc's
 * 10 ms CPU ticks average out over the batches. Returns { "r/j": { ... } }.
 */
async function pairedPhase(defs, runsOf) {
  const out = {};
  if (S.pairedSeconds <= 0) return out;
  const defOf = new Map(defs.map((d) => [String(d.id), d]));
  const batchOf = (def) => {
    const rps = runsOf.get(def).map((x) => x.rps).sort((x, y) => x - y)[Math.floor(runsOf.get(def).length / 2)] ?? 200;
    return Math.max(40, Math.min(2000, Math.round(0.15 * rps)));
  };
  log(`\npaired phase: ${S.pairedSeconds} s per pair, rows alternating in ~0.15 s batches`);
  for (const [r, j] of RATIO_PAIRS) {
    const pair = [defOf.get(r), defOf.get(j)];
    if (!pair[0] || !pair[1] || pair.some((d) => d.measure)) continue;
    const acc = pair.map((def) => ({ cpuMs: 0, n: 0, batches: 0, batch: batchOf(def) }));
    const end = performance.now() + S.pairedSeconds * 1000;
    for (let b = 0; performance.now() < end; b++) {
      for (const [k, def] of pair.entries()) {
        const at = asFn(def.build(acc[k].batch, `p${b}`)); // built before its batch
        const known = new Map();
        const c0 = cpuMsOf(def.inst.pids, known);
        const res = await runLoad({ origin: def.inst.url, connections: S.connections, durationMs: 60_000, maxRequests: acc[k].batch, request: at });
        await sleep(20); // the batch's trailing work (logs, storage) lands in its own CPU
        acc[k].cpuMs += cpuMsOf(def.inst.pids, known) - c0;
        acc[k].n += res.answered;
        acc[k].batches++;
      }
    }
    const per = acc.map((a) => (a.n ? a.cpuMs / a.n : null));
    out[`${r}/${j}`] = {
      cpuMsPerReq: { rbmEdge: round(per[0], 4), js: round(per[1], 4) },
      cpuRatio: per[0] !== null && per[1] ? round(per[0] / per[1], 3) : null,
      requests: { rbmEdge: acc[0].n, js: acc[1].n },
      batches: acc[0].batches,
      batchSize: { rbmEdge: acc[0].batch, js: acc[1].batch },
    };
    log(`  ${r}/${j}: ${per[0]?.toFixed(3)} / ${per[1]?.toFixed(3)} ms/req = ${out[`${r}/${j}`].cpuRatio?.toFixed(3)}× (${acc[0].batches} batch pairs, ${acc[0].n} + ${acc[1].n} requests)`);
  }
  return out;
}

/** rbm-edge ÷ JS twin for each RATIO_PAIRS pair present in this run (paired phase first). */
function ratiosOf(workloads, invalid, paired = {}) {
  const byId = new Map(workloads.map((w) => [String(w.id), w]));
  const bad = new Set(invalid.map((line) => line.split(' ')[0]));
  const div = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? a / b : null);
  const out = [];
  for (const [r, j, goal] of RATIO_PAIRS) {
    const a = byId.get(r);
    const b = byId.get(j);
    if (!a || !b) continue;
    const p = paired[`${r}/${j}`];
    const cpuRatio = p?.cpuRatio ?? div(a.median.cpuMsPerReq, b.median.cpuMsPerReq);
    out.push({
      pair: `${r}/${j}`,
      rbmEdge: r,
      js: j,
      goal,
      cpuRatio: round(cpuRatio, 3),
      rpsRatio: round(div(a.median.rps, b.median.rps), 3),
      method: p ? 'paired' : 'medians',
      cpuMsPerReq: p ? p.cpuMsPerReq : { rbmEdge: a.median.cpuMsPerReq, js: b.median.cpuMsPerReq },
      ...(p && { paired: p }),
      medianCpuRatio: round(div(a.median.cpuMsPerReq, b.median.cpuMsPerReq), 3),
      rps: { rbmEdge: a.median.rps, js: b.median.rps },
      cpuRatioRuns: a.runs.map((x, k) => round(div(x.cpuMsPerReq, b.runs[k]?.cpuMsPerReq), 3)),
      verdict: bad.has(r) || bad.has(j) ? 'invalid' : cpuRatio === null ? 'n/a' : cpuRatio <= goal ? 'pass' : 'over',
    });
  }
  return out;
}

function printRatios(ratios) {
  if (!ratios?.length) return;
  const f = (x, d) => (x === null || x === undefined ? '—' : Number(x).toFixed(d));
  const rows = [['pair', 'CPU ms/req rbm-edge / JS', 'CPU ratio', 'goal', '', 'req/s ratio', 'medians', 'CPU ratio per run']];
  for (const q of ratios) {
    rows.push([q.pair, `${f(q.cpuMsPerReq.rbmEdge, 3)} / ${f(q.cpuMsPerReq.js, 3)}`, `${f(q.cpuRatio, 3)}×`, `≤ ${q.goal.toFixed(1)}×`, q.verdict,
      `${f(q.rpsRatio, 2)}×`, `${f(q.medianCpuRatio, 2)}×`, q.cpuRatioRuns.map((x) => f(x, 2)).join(' ')]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const how = ratios.some((q) => q.method === 'paired') ? 'paired phase' : 'medians of the runs';
  log(`\nratios: rbm-edge ÷ plain-JS twin, CPU per request (${how}) against the goal; req/s and the runs' medians for comparison`);
  for (const [i, row] of rows.entries()) {
    log(`  ${row.map((c, k) => (k === 0 || k >= 4 ? c.padEnd(widths[k]) : c.padStart(widths[k]))).join('  ').trimEnd()}`);
    if (i === 0) log(`  ${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  }
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
  printRatios(r.ratios);
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
