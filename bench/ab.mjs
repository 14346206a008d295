// A/B of builds next to the plain-JavaScript twin, for one change at a time.
//
//   node bench/ab.mjs <health|text|receipt|status> <seconds> <build dir> [<build dir> ...]
//   e.g. cp -r build /tmp/before; (change, make build); node bench/ab.mjs text 25 /tmp/before build
//
// Each build and the twin run in a workerd of their own, all on the server CPU (1), fed in
// turn in small batches (4 connections) until <seconds> are up, so the machine's drift falls on
// every row alike; CPU per request = workerd's process CPU over its batches ÷ their requests.
// Prints each row's CPU per request and its ratio to the twin. Repeats to about ±2 % at 25 s on
// the 2-vCPU VM, where whole `make bench` runs move by ±6 %. Loopback only; stops every process.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startInstance, disposeAll, readWranglerToml, ratelimitsOf } from './lib/instance.mjs';
import { runLoad } from './lib/loadgen.mjs';
import { cpuMsOf, hasTaskset, pin } from './lib/procstat.mjs';
import { CLIENT_TOKEN, API_KEY, asFn, buildReceipts, buildTexts, statusReq, webhookReq } from './lib/requests.mjs';
import * as rbm from '../tests/support/rbm.mjs';
import { startGoogleFake } from '../tests/fakes/google.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const KINDS = ['health', 'text', 'receipt', 'status'];
const [kind, secondsArg, ...dirs] = process.argv.slice(2);
const seconds = Number(secondsArg);
if (!KINDS.includes(kind) || !(seconds > 0) || dirs.length === 0) {
  console.error(`usage: node bench/ab.mjs <${KINDS.join('|')}> <seconds> <build dir> [<build dir> ...]`);
  process.exit(2);
}
for (const dir of dirs) {
  if (!fs.existsSync(path.join(dir, 'index.js'))) {
    console.error(`ab: ${dir}/index.js is missing (a build dir holds index.js and index_bg.wasm)`);
    process.exit(2);
  }
}

const toml = readWranglerToml(path.join(REPO, 'wrangler.toml'));
const compatibilityDate = toml.compatibilityDate ?? '2025-09-01';
const pinned = hasTaskset() && (pin(process.pid, '0'), true);
const startOpts = { serverCpus: pinned ? '1' : null, tmpDir: fs.existsSync('/dev/shm') ? '/dev/shm' : null };
const quiet = (out, err) => { out.resume(); err.resume(); };
const rules = [{ type: 'ESModule', include: ['**/*.js', '**/*.mjs'] }, { type: 'CompiledWasm', include: ['**/*.wasm'] }];

const fake = await startGoogleFake();
const rows = [{ name: 'JS twin', options: {
  name: 'twin', modules: true, scriptPath: path.join(REPO, 'bench', 'lib', 'calibration-worker.js'), compatibilityDate,
  kvNamespaces: { STATUS: 'status' }, durableObjects: { CONVERSATIONS: { className: 'Conversation', useSQLite: true } },
  bindings: { RBM_CLIENT_TOKEN: CLIENT_TOKEN, API_KEYS: API_KEY, RBM_AGENT_ID: rbm.AGENT_ID }, handleRuntimeStdio: quiet,
} }];
for (const [i, dir] of dirs.entries()) {
  rows.push({ name: dir, options: {
    name: `build${i}`, modules: true, scriptPath: path.join(path.resolve(dir), 'index.js'), modulesRoot: path.resolve(dir),
    modulesRules: rules, compatibilityDate, compatibilityFlags: toml.compatibilityFlags,
    kvNamespaces: { STATUS: 'status' }, durableObjects: { CONVERSATIONS: { className: 'Conversation', useSQLite: true } },
    ratelimits: ratelimitsOf(toml),
    bindings: { RBM_CLIENT_TOKEN: CLIENT_TOKEN, API_KEYS: API_KEY, RBM_AGENT_ID: rbm.AGENT_ID, RBM_SERVICE_ACCOUNT_KEY: fake.serviceAccountKey,
      RBM_API_BASE: fake.url, STATUS_TTL_DAYS: '30', PROCESSING: 'inline' },
    handleRuntimeStdio: quiet,
  } });
}

/** `n` requests of the kind, built before they are timed (the bench's own builders). */
let tag = 0;
function build(n) {
  tag += 1;
  if (kind === 'health') return asFn(() => ({ method: 'GET', path: '/healthz' }));
  if (kind === 'status') return asFn(() => statusReq('ab-status'));
  return asFn(kind === 'text' ? buildTexts(n) : buildReceipts(n, `ab${tag}`));
}
/** One batch over 4 keep-alive connections (the bench's load generator); every answer a 200. */
async function batch(url, n) {
  const res = await runLoad({ origin: url, connections: 4, durationMs: 60_000, maxRequests: n, request: build(n) });
  if (res.ok !== n) throw new Error(`ab: ${url}: ${res.ok}/${n} answered 200 (${res.samples.join('; ')})`);
  return res.answered;
}

try {
  for (const row of rows) row.inst = await startInstance(row.options, startOpts);
  if (kind === 'status') {
    const seed = ['DELIVERED', 'READ'].map((t) => webhookReq(rbm.receipt(t, 'ab-status')));
    for (const row of rows) {
      const res = await runLoad({ origin: row.inst.url, connections: 1, durationMs: 30_000, maxRequests: 2, request: asFn(seed) });
      if (res.ok !== 2) throw new Error(`ab: seeding the status read failed (${res.samples.join('; ')})`);
    }
  }
  for (const row of rows) await batch(row.inst.url, 300); // warm-up: JIT tiers, tables, caches
  const size = { health: 400, status: 200, text: 100, receipt: 100 }[kind];
  for (const row of rows) Object.assign(row, { cpu: 0, n: 0 });
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    for (const row of rows) {
      const c0 = cpuMsOf(row.inst.pids);
      const answered = await batch(row.inst.url, size);
      await new Promise((r) => setTimeout(r, 20)); // let workerd finish the batch's after-work
      row.cpu += cpuMsOf(row.inst.pids) - c0;
      row.n += answered;
    }
  }
  const base = rows[0].cpu / rows[0].n;
  console.log(`${kind}, ${seconds} s, ${pinned ? 'workerd pinned to CPU 1' : 'not pinned'}: CPU per request, ratio to the JS twin`);
  for (const row of rows) {
    const us = (1000 * row.cpu) / row.n;
    console.log(`  ${row.name.padEnd(28)} ${us.toFixed(1).padStart(8)} µs  ${(row.cpu / row.n / base).toFixed(3)}×  (${row.n} requests)`);
  }
} finally {
  await disposeAll();
  await fake.close?.();
}
process.exit(0);
