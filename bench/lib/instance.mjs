// Starts a Worker in workerd through Miniflare's Node API (the `miniflare` that wrangler ships),
// talking to workerd directly: `unsafeDirectSockets` (no Miniflare entry worker, no Node proxy)
// and `logRequests: false`. Tracks the workerd processes it spawned (for CPU accounting and
// pinning) and disposes them, also on SIGINT/SIGTERM/exit through `disposeAll()`.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

import { descendants, pin, procStartSec, uptimeSec } from './procstat.mjs';

const require = createRequire(import.meta.url);
const { Miniflare } = require('miniflare');

export const WORKERD_BIN = (() => {
  try { return require('workerd').default; } catch { return null; }
})();

const READY_TIMEOUT_MS = 60_000;
const FIRST_200_TIMEOUT_MS = 30_000;
const DISPOSE_TIMEOUT_MS = 10_000;

const live = new Set();

// ------------------------------------------------------------------ wrangler.toml (the subset we need)

/** compatibility_date, queue consumers and rate limiters of wrangler.toml (minimal reader). */
export function readWranglerToml(file) {
  const text = fs.readFileSync(file, 'utf8');
  const out = { compatibilityDate: null, compatibilityFlags: [], consumers: [], ratelimits: [] };
  let section = '';
  let cur = null;
  const value = (raw) => {
    const v = raw.replace(/\s+#.*$/, '').trim();
    if (/^".*"$/.test(v) || /^'.*'$/.test(v)) return v.slice(1, -1);
    if (/^-?\d+(\.\d+)?$/.test(v)) return Number(v);
    if (v === 'true' || v === 'false') return v === 'true';
    if (v.startsWith('{')) {
      const o = {};
      for (const m of v.slice(1, -1).matchAll(/([A-Za-z0-9_]+)\s*=\s*("[^"]*"|[^,}]+)/g)) o[m[1]] = value(m[2]);
      return o;
    }
    if (v.startsWith('[')) return [...v.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
    return v;
  };
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const head = line.match(/^\[\[?\s*([^\]]+?)\s*\]\]?$/);
    if (head) {
      section = head[1];
      cur = {};
      if (section === 'queues.consumers') out.consumers.push(cur);
      else if (section === 'ratelimits') out.ratelimits.push(cur);
      continue;
    }
    const kv = line.match(/^([A-Za-z0-9_]+)\s*=\s*(.+)$/);
    if (!kv) continue;
    if (section === '') {
      if (kv[1] === 'compatibility_date') out.compatibilityDate = value(kv[2]);
      if (kv[1] === 'compatibility_flags') out.compatibilityFlags = value(kv[2]);
    } else if (cur) {
      cur[kv[1]] = value(kv[2]);
    }
  }
  return out;
}

/** Miniflare's queueConsumers option from wrangler.toml's [[queues.consumers]]. */
export function queueConsumersOf(toml) {
  const out = {};
  for (const c of toml.consumers) {
    if (!c.queue) continue;
    out[c.queue] = {
      ...(c.max_batch_size !== undefined && { maxBatchSize: c.max_batch_size }),
      ...(c.max_batch_timeout !== undefined && { maxBatchTimeout: c.max_batch_timeout }),
      ...(c.max_retries !== undefined && { maxRetries: c.max_retries }),
      ...(c.dead_letter_queue !== undefined && { deadLetterQueue: c.dead_letter_queue }),
      ...(c.retry_delay !== undefined && { retryDelay: c.retry_delay }),
    };
  }
  return out;
}

/** Miniflare's ratelimits option from wrangler.toml's [[ratelimits]]. */
export function ratelimitsOf(toml) {
  const out = {};
  for (const r of toml.ratelimits) {
    if (r.name && r.simple && typeof r.simple.limit === 'number') {
      out[r.name] = { simple: { limit: r.simple.limit, ...(r.simple.period && { period: r.simple.period }) } };
    }
  }
  return out;
}

// ------------------------------------------------------------------ workerd pinned from its first instruction

/**
 * A wrapper for MINIFLARE_WORKERD_PATH that execs workerd under `taskset -c CPUS` (exec keeps
 * the pid and the control fd Miniflare passes), so workerd starts on its CPU. null if unusable.
 */
export function pinnedWorkerdWrapper(dir, cpus, tasksetBin = '/usr/bin/taskset') {
  if (!WORKERD_BIN || !fs.existsSync(tasksetBin)) return null;
  const file = path.join(dir, 'workerd-pinned.sh');
  fs.writeFileSync(file, `#!/bin/sh\nexec ${tasksetBin} -c ${cpus} '${WORKERD_BIN.replace(/'/g, "'\\''")}' "$@"\n`, { mode: 0o755 });
  return file;
}

// ------------------------------------------------------------------ log capture

/** Counts workerd's stdout/stderr (the Worker's console output) and keeps the last lines. */
export function makeStdioSink(keep = 200) {
  const sink = { lines: 0, bytes: 0, tail: [] };
  const take = (tag) => (chunk) => {
    const s = chunk.toString('utf8');
    sink.bytes += Buffer.byteLength(s);
    const parts = s.split('\n');
    for (const p of parts) {
      if (p === '') continue;
      sink.lines++;
      sink.tail.push(`${tag} ${p.length > 2000 ? `${p.slice(0, 2000)}…` : p}`);
      if (sink.tail.length > keep) sink.tail.shift();
    }
  };
  sink.handle = (stdout, stderr) => {
    stdout.on('data', take('[out]'));
    stderr.on('data', take('[err]'));
  };
  return sink;
}

// ------------------------------------------------------------------ start / stop

/**
 * Starts one Miniflare instance from `options` (Miniflare worker options) and waits for the
 * first `expectStatus` answer on `probePath` through the direct socket. `tmpDir`: where
 * Miniflare makes its temp dir (its local KV / Durable Object / queue storage); the caller
 * removes it.
 * Returns {mf, url, pids, cold: {readyMs, first200Ms, firstRequestMs, spawnToFirst200Ms}, dispose}.
 */
export async function startInstance(options, { probePath = '/healthz', expectStatus = 200, workerdPath = null, serverCpus = null, tmpDir = null } = {}) {
  const before = new Set(descendants(process.pid).filter((p) => p.comm === 'workerd').map((p) => p.pid));
  const prevPath = process.env.MINIFLARE_WORKERD_PATH;
  const prevTmp = process.env.TMPDIR;
  if (workerdPath) process.env.MINIFLARE_WORKERD_PATH = workerdPath;
  // Miniflare puts its temp dir (local storage included) under os.tmpdir(), read in its constructor.
  if (tmpDir) process.env.TMPDIR = tmpDir;
  const t0 = performance.now();
  let mf;
  const inst = { mf: null, pids: [], url: null, disposed: false };
  try {
    mf = new Miniflare({
      logRequests: false,
      unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }],
      ...options,
    });
  } finally {
    if (workerdPath) {
      if (prevPath === undefined) delete process.env.MINIFLARE_WORKERD_PATH;
      else process.env.MINIFLARE_WORKERD_PATH = prevPath;
    }
    if (tmpDir) {
      if (prevTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = prevTmp;
    }
  }
  inst.mf = mf;
  inst.dispose = () => disposeInstance(inst);
  live.add(inst);

  let url;
  try {
    url = await withTimeout(mf.unsafeGetDirectURL(), READY_TIMEOUT_MS, 'Miniflare did not get ready');
  } catch (err) {
    // Older/newer Miniflare without unsafeGetDirectURL: fall back to the entry URL.
    if (typeof mf.unsafeGetDirectURL !== 'function') url = await withTimeout(mf.ready, READY_TIMEOUT_MS, 'Miniflare did not get ready');
    else { await disposeInstance(inst); throw err; }
  }
  const tReady = performance.now();
  inst.url = url.href.replace(/\/$/, '');
  inst.pids = descendants(process.pid).filter((p) => p.comm === 'workerd' && !before.has(p.pid)).map((p) => p.pid);
  if (serverCpus !== null) inst.pinned = inst.pids.length > 0 && inst.pids.every((pid) => pin(pid, serverCpus));

  // First answer (bounded).
  const deadline = performance.now() + FIRST_200_TIMEOUT_MS;
  let lastErr = '';
  let firstRequestMs = null;
  let first200Ms = null;
  let uptimeAt200 = null;
  while (performance.now() < deadline) {
    const ts = performance.now();
    try {
      const res = await fetch(`${inst.url}${probePath}`, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      if (res.status === expectStatus) {
        const now = performance.now();
        uptimeAt200 = uptimeSec();
        firstRequestMs = now - ts;
        first200Ms = now - t0;
        break;
      }
      lastErr = `status ${res.status}`;
    } catch (err) {
      lastErr = err.cause?.code ?? err.message;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  if (first200Ms === null) {
    await disposeInstance(inst);
    throw new Error(`no ${expectStatus} from ${probePath} within ${FIRST_200_TIMEOUT_MS} ms (last: ${lastErr})`);
  }
  const started = inst.pids.map(procStartSec).filter((x) => x !== null);
  inst.cold = {
    readyMs: tReady - t0,
    first200Ms,
    firstRequestMs,
    // exec of workerd (CLK_TCK = 10 ms resolution) -> first 200
    spawnToFirst200Ms: started.length && uptimeAt200 !== null ? (uptimeAt200 - Math.min(...started)) * 1000 : null,
  };
  return inst;
}

async function disposeInstance(inst) {
  if (inst.disposed) return;
  inst.disposed = true;
  live.delete(inst);
  try {
    await withTimeout(inst.mf.dispose(), DISPOSE_TIMEOUT_MS, 'dispose timed out');
  } catch { /* killed below */ }
  for (const pid of inst.pids) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

/** Disposes every live instance (SIGINT/SIGTERM path). */
export async function disposeAll() {
  await Promise.allSettled([...live].map(disposeInstance));
}

/** Synchronous last resort for process 'exit': SIGKILL the workerd processes we started. */
export function killAllSync() {
  for (const inst of live) {
    for (const pid of inst.pids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} (${ms} ms)`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}
