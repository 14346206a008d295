#!/usr/bin/env node
// `make dev`: the Worker under `wrangler dev` on http://127.0.0.1:8787 and the local RBM
// simulator (sim/) on http://127.0.0.1:8788, wired together; Ctrl-C (or SIGTERM) stops both.
//
// Wiring: the Worker gets RBM_API_BASE = the simulator and its service-account key with
// token_uri = the simulator's token endpoint (through a temporary --env-file holding
// .dev.vars plus those two; .dev.vars itself is not changed). The simulator verifies that
// key's assertions and posts signed webhooks to the Worker's /webhook with the first
// RBM_CLIENT_TOKEN. If .dev.vars (or wrangler.toml [vars]) sets RBM_API_BASE to anything but
// the simulator, only the Worker runs, as plain `wrangler dev` would.
//
// Environment (all optional):
//   RBM_DEV_PORT (8787)  RBM_SIM_PORT (8788)  RBM_DEV_VARS (.dev.vars)
//   RBM_EDGE_BUILD_DIR   run this prebuilt Worker (index.js + index_bg.wasm): no build step
//                        (default: wrangler runs [build] of wrangler.toml, and again on changes)
//   RBM_DEV_PERSIST_TO   local KV/queue state (default .wrangler/state)
//   RBM_DEV_INSPECTOR_PORT
//   RBM_SIM_DELIVER_MS, RBM_SIM_READ_MS, RBM_SIM_TYPING_MS, RBM_SIM_REPLY_MS, RBM_SIM_SLOW_MS
// Node 20 standard library only.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSimulator } from '../sim/simulator.mjs';
import { readDotenv, renderDotenv, withTokenUri } from '../sim/devvars.mjs';
import { descendants } from '../sim/proc.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const port = Number(env.RBM_DEV_PORT || 8787);
const simPort = Number(env.RBM_SIM_PORT || 8788);
const devVarsPath = path.resolve(REPO, env.RBM_DEV_VARS || '.dev.vars');
const buildDir = env.RBM_EDGE_BUILD_DIR ? path.resolve(env.RBM_EDGE_BUILD_DIR) : null;
const STOP_GRACE_MS = 5000;
const t0 = Date.now();

const say = (s) => console.log(`dev: ${s}`);
const fail = (s, code = 1) => { console.error(`dev: ${s}`); process.exit(code); };

/** A [vars] value of wrangler.toml (uncommented `NAME = "value"` line), or undefined. */
function tomlVar(text, name) {
  const m = new RegExp(`^\\s*${name}\\s*=\\s*"([^"]*)"`, 'm').exec(text);
  return m?.[1];
}

/** The repo's wrangler.toml for a prebuilt Worker: no [build], main and directories absolute. */
function prebuiltToml(text) {
  const out = [];
  let inBuild = false;
  for (const line of text.split('\n')) {
    if (/^\s*\[/.test(line)) inBuild = /^\s*\[build\]\s*(#.*)?$/.test(line);
    if (inBuild) continue;
    if (/^\s*main\s*=/.test(line)) { out.push(`main = ${JSON.stringify(path.join(buildDir, 'index.js'))}`); continue; }
    const dir = /^(\s*directory\s*=\s*)"([^"]*)"(.*)$/.exec(line);
    if (dir) { out.push(`${dir[1]}${JSON.stringify(path.resolve(REPO, dir[2]))}${dir[3]}`); continue; }
    out.push(line);
  }
  return out.join('\n');
}

function isSimulator(base) {
  try {
    const u = new URL(base);
    return ['127.0.0.1', 'localhost'].includes(u.hostname) && Number(u.port) === simPort;
  } catch { return false; }
}

// ------------------------------------------------------------------ configuration
const vars = readDotenv(devVarsPath);
if (!vars) fail(`${devVarsPath} is missing: run make setup (or make dev)`, 2);
const tomlText = fs.readFileSync(path.join(REPO, 'wrangler.toml'), 'utf8');
const apiBase = vars.RBM_API_BASE ?? tomlVar(tomlText, 'RBM_API_BASE');
const useSim = !apiBase || isSimulator(apiBase);
if (buildDir && !fs.existsSync(path.join(buildDir, 'index.js'))) fail(`${buildDir}/index.js is missing`, 2);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rbm-dev-'));
let sim = null;
let child = null;
let exiting = false;

function cleanupTmp() {
  try { fs.rmSync(tmp, { recursive: true, force: true }); } catch { /* best effort */ }
}


function killTree(pids, signal) {
  for (const p of pids) { try { process.kill(p, signal); } catch { /* gone */ } }
}

const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };

async function shutdown(code, why) {
  if (exiting) return;
  exiting = true;
  if (why) say(why);
  const stops = [];
  if (sim) stops.push(sim.stop().catch(() => {}));
  if (child && child.exitCode === null && child.signalCode === null) {
    const tree = [child.pid, ...descendants(child.pid)];
    try { process.kill(-child.pid, 'SIGTERM'); } catch { killTree(tree, 'SIGTERM'); }
    const deadline = Date.now() + STOP_GRACE_MS;
    while (tree.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* group gone */ }
    killTree(tree.filter(alive), 'SIGKILL');
  }
  await Promise.all(stops);
  cleanupTmp();
  process.exit(code);
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => shutdown(sig === 'SIGINT' ? 130 : 143, `${sig}: stopping the Worker${sim ? ' and the simulator' : ''}`));
}
process.on('exit', () => {
  // Last resort (an exception): no wrangler/workerd may outlive this script.
  if (child && child.exitCode === null) { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }
  cleanupTmp();
});

/** Fails fast when something already listens on the Worker's port (its /healthz would fool us). */
async function portFree(p) {
  const srv = net.createServer();
  return new Promise((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(p, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
if (!(await portFree(port))) await shutdown(1, `port ${port} is in use (another make dev?): set RBM_DEV_PORT`);

// ------------------------------------------------------------------ simulator
let envFile = fs.existsSync(devVarsPath) ? devVarsPath : null;
if (useSim) {
  const clientToken = (vars.RBM_CLIENT_TOKEN ?? '').split(',')[0].trim();
  if (!clientToken) await shutdown(2, `no RBM_CLIENT_TOKEN in ${devVarsPath}: run make setup`);
  const key = vars.RBM_SERVICE_ACCOUNT_KEY || undefined;
  try {
    sim = await startSimulator({
      port: simPort, webhookUrl: `http://127.0.0.1:${port}/webhook`, clientToken, serviceAccountKey: key,
      agentId: vars.RBM_AGENT_ID ?? tomlVar(tomlText, 'RBM_AGENT_ID'),
      deliverMs: env.RBM_SIM_DELIVER_MS, readMs: env.RBM_SIM_READ_MS, typingMs: env.RBM_SIM_TYPING_MS,
      replyMs: env.RBM_SIM_REPLY_MS, slowMs: env.RBM_SIM_SLOW_MS,
    });
  } catch (err) {
    await shutdown(1, err.code === 'EADDRINUSE' ? `port ${simPort} is in use: set RBM_SIM_PORT` : `simulator: ${err.message}`);
  }
  if (!key) say(`no RBM_SERVICE_ACCOUNT_KEY in ${path.relative(REPO, devVarsPath)}: using a key generated for this run (make setup writes one)`);
  envFile = path.join(tmp, 'worker.env');
  // The simulator answers for every region too (reachability goes to regional hosts).
  const workerVars = {
    ...vars, RBM_API_BASE: sim.url, RBM_API_BASE_US: sim.url, RBM_API_BASE_EUROPE: sim.url, RBM_API_BASE_ASIA: sim.url,
    RBM_SERVICE_ACCOUNT_KEY: withTokenUri(sim.serviceAccountKey, sim.tokenUri),
  };
  fs.writeFileSync(envFile, renderDotenv(workerVars), { mode: 0o600 });
} else {
  say(`RBM_API_BASE is ${apiBase}: not starting the RBM simulator`);
}

// ------------------------------------------------------------------ Worker
const args = ['dev', '--ip', '127.0.0.1', '--port', String(port), '--local', '--show-interactive-dev-session=false'];
if (buildDir) {
  const config = path.join(tmp, 'wrangler.toml');
  fs.writeFileSync(config, prebuiltToml(tomlText));
  args.push('--config', config, '--persist-to', path.resolve(REPO, env.RBM_DEV_PERSIST_TO || '.wrangler/state'));
} else if (env.RBM_DEV_PERSIST_TO) {
  args.push('--persist-to', path.resolve(REPO, env.RBM_DEV_PERSIST_TO));
}
if (envFile) args.push('--env-file', envFile);
if (env.RBM_DEV_INSPECTOR_PORT) args.push('--inspector-port', env.RBM_DEV_INSPECTOR_PORT);

const childEnv = { ...env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false' };
delete childEnv.NODE_OPTIONS;
// Own process group (detached): one signal to -pid takes wrangler, workerd and esbuild down together.
child = spawn(path.join(REPO, 'node_modules', '.bin', 'wrangler'), args, {
  cwd: REPO, env: childEnv, detached: true, stdio: ['ignore', 'inherit', 'inherit'],
});
child.on('error', (err) => shutdown(1, `cannot start wrangler: ${err.message} (run make setup)`));
child.on('exit', (code, signal) => {
  if (!exiting) shutdown(code ?? 1, `wrangler exited (${signal ?? `code ${code}`})${sim ? ': stopping the simulator' : ''}`);
});

// Ready: the first 200 from /healthz (the build, if any, happens before).
const url = `http://127.0.0.1:${port}`;
while (!exiting) {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    if (res.status === 200) break;
  } catch { /* not yet */ }
  await new Promise((r) => setTimeout(r, 200));
}
if (!exiting) {
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  const key = (vars.API_KEYS ?? '').split(',')[0].trim();
  const shownKey = key.startsWith('local-') ? key : '<API_KEYS from .dev.vars>';
  if (sim) await sim.verifyWebhook();
  console.log([
    '',
    `rbm-edge dev: ready in ${secs} s`,
    `  Worker          ${url}/   (API key ${shownKey})`,
    sim ? `  RBM simulator   ${sim.url}   (GET ${sim.url}/sim: scripted numbers; /sim/messages: what it received)` : `  RBM             ${apiBase}`,
    `  try             curl -s ${url}/v1/messages -H 'Authorization: Bearer ${shownKey}' -H 'content-type: application/json' \\`,
    `                    -d '{"phoneNumber":"+15550000101","contentMessage":{"text":"Hello"}}'`,
    `  Ctrl-C stops ${sim ? 'both' : 'it'}.`,
    '',
  ].join('\n'));
}
