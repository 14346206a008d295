// Size budget of the release build (issue 5). Deterministic: no timing, no network.
//  1. build/index_bg.wasm raw and gzip (Node zlib, level 9) sizes; fails when gzip exceeds the
//     budget in bench/size-budget.json (the only place the number lives).
//  2. What `wrangler deploy --dry-run --outdir` reports as the upload size (printed; must run,
//     no threshold), on a temp config without [build] pointing at a copy of build/.
// RBM_EDGE_BUILD_DIR points it at another pre-built Worker, as for the other integration tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUILD = process.env.RBM_EDGE_BUILD_DIR || path.join(REPO, 'build');
const BUDGET_FILE = path.join(REPO, 'bench', 'size-budget.json');
const DRY_RUN_TIMEOUT_MS = 60_000;
const KB = 1024;

const kib = (n) => `${(n / KB).toFixed(1)} KiB`;

function compatDate() {
  try {
    const m = fs.readFileSync(path.join(REPO, 'wrangler.toml'), 'utf8').match(/^\s*compatibility_date\s*=\s*["']([0-9-]+)["']/m);
    if (m) return m[1];
  } catch { /* default below */ }
  return '2025-09-01';
}

test('index_bg.wasm gzip size is within bench/size-budget.json', () => {
  const file = path.join(BUILD, 'index_bg.wasm');
  assert.ok(fs.existsSync(file), `${file} is missing: run make build`);
  const budget = JSON.parse(fs.readFileSync(BUDGET_FILE, 'utf8'));
  assert.ok(Number.isInteger(budget.gzipBytes) && budget.gzipBytes > 0, `${BUDGET_FILE}: gzipBytes must be a positive integer`);
  assert.ok(budget.gzipBytes <= 250 * KB, `${BUDGET_FILE}: the budget may never exceed 250 KB (${250 * KB} bytes), got ${budget.gzipBytes}`);

  const wasm = fs.readFileSync(file);
  const gzip = zlib.gzipSync(wasm, { level: 9 }).length;
  const line = `index_bg.wasm: ${wasm.length} B raw (${kib(wasm.length)}), ${gzip} B gzip -9 (${kib(gzip)}); budget ${budget.gzipBytes} B (${kib(budget.gzipBytes)})`;
  console.log(line);
  assert.ok(gzip <= budget.gzipBytes,
    `${line}: over budget by ${gzip - budget.gzipBytes} B. Shrink the wasm (issue 5), or, for a deliberate increase, raise gzipBytes in bench/size-budget.json (never above ${250 * KB}).`);
});

/** Runs a command in its own process group; kills the group after `timeoutMs`. */
function run(cmd, args, { cwd, env, timeoutMs }) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { out += c; });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    child.on('error', (err) => { out += `\n[spawn error] ${err.message}`; });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* group gone */ }
      resolve({ code, signal, timedOut, out });
    });
  });
}

test('wrangler deploy --dry-run --outdir runs on a copy of build/ and reports the upload size', { timeout: DRY_RUN_TIMEOUT_MS + 15_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbm-edge-size-'));
  try {
    const work = path.join(dir, 'worker');
    fs.mkdirSync(work);
    for (const f of ['index.js', 'index_bg.wasm']) fs.copyFileSync(path.join(BUILD, f), path.join(work, f));
    // No [build] (build/ is pre-built) and no bindings: only the bundle matters here.
    fs.writeFileSync(path.join(work, 'wrangler.toml'), `name = "rbm-edge"\nmain = "index.js"\ncompatibility_date = "${compatDate()}"\n`);
    const outdir = path.join(dir, 'out');
    const env = {
      ...process.env,
      CLOUDFLARE_CF_FETCH_ENABLED: 'false',
      WRANGLER_SEND_METRICS: 'false',
      CI: 'true',
      NO_COLOR: '1',
      FORCE_COLOR: '0',
      WRANGLER_LOG_PATH: path.join(dir, 'logs'),
    };
    delete env.NODE_OPTIONS;
    delete env.NODE_TEST_CONTEXT;
    const wrangler = path.join(REPO, 'node_modules', '.bin', 'wrangler');
    const r = await run(wrangler, ['deploy', '--dry-run', '--outdir', outdir, '--config', path.join(work, 'wrangler.toml')],
      { cwd: work, env, timeoutMs: DRY_RUN_TIMEOUT_MS });
    const text = r.out.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '');
    assert.ok(!r.timedOut, `wrangler deploy --dry-run did not finish within ${DRY_RUN_TIMEOUT_MS / 1000} s:\n${text.slice(-2000)}`);
    assert.equal(r.code, 0, `wrangler deploy --dry-run exited ${r.code} (${r.signal ?? ''}):\n${text.slice(-2000)}`);
    const files = fs.readdirSync(outdir);
    assert.ok(files.includes('index.js') && files.some((f) => f.endsWith('.wasm')), `outdir holds the bundle: ${files.join(', ')}`);
    const m = text.match(/Total Upload:\s*([\d.]+)\s*KiB\s*\/\s*gzip:\s*([\d.]+)\s*KiB/);
    if (m) console.log(`wrangler deploy --dry-run: Total Upload ${m[1]} KiB / gzip ${m[2]} KiB (index.js + wasm, wrangler's own bundle)`);
    else console.log(`wrangler deploy --dry-run ran, but printed no "Total Upload: … KiB / gzip: … KiB" line:\n${text.slice(-1000)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
