// Preload (`node --import ./tests/support/openapi-hook.mjs --test …`): every answer a test gets
// from a Worker started by the harness is checked against public/openapi.json, so the document
// cannot drift from the code. The test files are unchanged.
//
// - Which URLs are test Workers: the harness (tests/support/worker.mjs) spawns `wrangler dev
//   --port N`; this module wraps child_process.spawn (and re-syncs the ESM named export the
//   harness imports) to learn each N, whether its config serves [assets], and forgets N when
//   that wrangler exits. Only loopback URLs on those ports are checked; the fakes (Google, the
//   sink) are not. RBM_EDGE_OPENAPI_ORIGINS=http://127.0.0.1:8787,… adds Workers started
//   elsewhere (`make dev`).
// - globalThis.fetch is wrapped: the answer is cloned, read, and checked (tests/support/
//   openapi.mjs: operation by method + path template, status documented, required headers,
//   Content-Type, body against the schema with ajv; other paths against the standard 404/405
//   error, OPTIONS /v1/… against the preflight). A mismatch throws from fetch, failing the
//   calling test with the operation, status, ajv errors and a body excerpt. The test gets the
//   original, unread Response otherwise.
// - Raw node:http requests (the bad-input corpus sends byte-exact requests that way) are
//   checked too when the caller reads the answer with 'data' listeners: a mismatch becomes an
//   'error' on the response in place of its 'end' (the caller's promise rejects with the same
//   message); with no 'error' listener it is printed and the test process exits non-zero.
//   WebSocket upgrades (101) are not checked.
// - RBM_EDGE_OPENAPI_STATS=<file>: each test process appends one JSON line
//   {"pid","checked","byOperation":{"getHealth 200":n,…}} when it exits.
// - RBM_EDGE_OPENAPI_HOOK=off disables the checks (the fetch is left alone).

import childProcess from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';

import { createChecker } from './openapi.mjs';

const enabled = process.env.RBM_EDGE_OPENAPI_HOOK !== 'off';
/** port -> { assets } of every live `wrangler dev` child. */
const workers = new Map();
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
const stats = { checked: 0, byOperation: {} };

/** `wrangler dev … --port N [--config F]` -> { port, assets }, else null. */
function wranglerDev(command, args, options) {
  if (!Array.isArray(args)) return null;
  const words = [String(command), ...args.map(String)];
  const wrangler = words.findIndex((w) => /(^|[/\\])wrangler(\.cmd|\.js)?$/.test(w));
  if (wrangler < 0 || words[wrangler + 1] !== 'dev') return null;
  const flag = (name) => {
    const i = words.indexOf(name);
    if (i >= 0) return words[i + 1];
    const eq = words.find((w) => w.startsWith(`${name}=`));
    return eq?.slice(name.length + 1);
  };
  const port = Number(flag('--port'));
  if (!Number.isInteger(port) || port <= 0) return null;
  const config = flag('--config') ?? flag('-c') ?? path.join(options?.cwd ?? process.cwd(), 'wrangler.toml');
  let assets = false;
  try { assets = /^\s*\[assets\]/m.test(fs.readFileSync(path.resolve(options?.cwd ?? process.cwd(), config), 'utf8')); } catch { /* no config: no assets */ }
  return { port, assets };
}

if (enabled) {
  const spawn = childProcess.spawn;
  childProcess.spawn = function spawnWatched(command, args, options) {
    const child = spawn.apply(this, arguments);
    try {
      const w = wranglerDev(command, args, Array.isArray(args) ? options : args);
      if (w) {
        workers.set(w.port, w);
        child.once('exit', () => { if (workers.get(w.port) === w) workers.delete(w.port); });
      }
    } catch { /* never break a spawn */ }
    return child;
  };
  syncBuiltinESMExports(); // `import { spawn } from 'node:child_process'` now sees the wrapper

  for (const origin of (process.env.RBM_EDGE_OPENAPI_ORIGINS ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const u = new URL(origin);
    workers.set(Number(u.port || (u.protocol === 'https:' ? 443 : 80)), { assets: true, fixed: true });
  }

  let checker;
  const original = globalThis.fetch;

  /** The Worker a URL points at, if it is one of ours. */
  const workerOf = (url) => {
    let u;
    try { u = new URL(url); } catch { return null; }
    if (!LOOPBACK.has(u.hostname) || u.protocol !== 'http:') return null;
    return workers.get(Number(u.port || 80)) ?? null;
  };

  /** fetch's method normalisation: the six standard ones upper-cased, others as written. */
  const normalise = (m) => {
    const up = String(m).toUpperCase();
    return ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'].includes(up) ? up : String(m);
  };

  globalThis.fetch = async function fetch(input, init) {
    const url = input instanceof Request ? input.url : String(input instanceof URL ? input.href : input);
    const worker = workerOf(url);
    if (worker?.pending) {
      const err = worker.pending;
      worker.pending = null;
      throw err;
    }
    const res = await original(input, init);
    if (!worker) return res;
    const method = normalise(init?.method ?? (input instanceof Request ? input.method : 'GET'));
    if (res.status === 101) return res;
    let body = '';
    if (method !== 'HEAD') {
      try {
        body = await res.clone().text();
      } catch {
        return res; // the body could not be read (aborted): the test sees that itself
      }
    }
    const err = checkAnswer({ method, url, status: res.status, headers: res.headers, body }, worker);
    if (err && !worker.ready && res.ok) {
      // The harness's readiness probe swallows errors (and would retry for a minute): let it
      // pass, and fail the Worker's first request from a test instead.
      worker.pending = err;
    } else if (err) {
      try { await res.body?.cancel(); } catch { /* already closed */ }
      throw err;
    }
    worker.ready = true;
    return res;
  };

  /** Checks one answer; returns the mismatch as an Error, or null. */
  const checkAnswer = (answer, worker) => {
    checker ??= createChecker();
    const result = checker.check({ ...answer, assets: worker.assets });
    stats.checked++;
    const key = `${result.operationId} ${result.statusKey}`;
    stats.byOperation[key] = (stats.byOperation[key] ?? 0) + 1;
    if (result.problems.length === 0) return null;
    const err = new Error(checker.describe(result, answer));
    err.name = 'OpenApiMismatch';
    return err;
  };

  // node:http: tap the answer of requests to a test Worker, check it before 'end'.
  const unreported = [];
  const watchHttp = (req) => {
    req.on('response', (res) => {
      const worker = workerOf(`http://127.0.0.1:${req.socket?.remotePort}/`);
      if (!worker || res.statusCode === 101 || !['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(req.socket?.remoteAddress)) return;
      // The caller reads already (a callback given to http.request runs before this
      // listener): tap now, before the first chunk flows. Else its listener may come after this
      // one (req.on('response') after http.request): tap on the next tick, still before the
      // stream it starts flows (its resume is queued after this).
      if (res.listenerCount('data') > 0) tap(req, res, worker);
      else process.nextTick(() => tap(req, res, worker));
    });
  };
  const tap = (req, res, worker) => {
    // Only answers the caller is already reading: an extra 'data' listener must not start a
    // stream someone means to read later.
    if (res.listenerCount('data') === 0) return;
    const chunks = [];
    res.on('data', (c) => chunks.push(Buffer.from(c)));
    const emit = res.emit;
    res.emit = function (event, ...rest) {
      if (event !== 'end') return emit.call(this, event, ...rest);
      res.emit = emit;
      const headers = new Headers();
      for (const [k, v] of Object.entries(res.headers)) headers.set(k, [].concat(v).join(', '));
      let err = null;
      try {
        err = checkAnswer({
          method: req.method, url: `http://127.0.0.1:${req.socket?.remotePort ?? 0}${req.path}`,
          status: res.statusCode, headers, body: Buffer.concat(chunks).toString('utf8'),
        }, worker);
      } catch { /* a request target URL cannot express: not checked */ }
      if (err && res.listenerCount('error') > 0) return emit.call(this, 'error', err);
      if (err) {
        unreported.push(err.message);
        process.exitCode = 1;
      }
      return emit.call(this, event, ...rest);
    };
  };
  for (const name of ['request', 'get']) {
    const fn = http[name];
    http[name] = function watched(...args) {
      const req = fn.apply(this, args);
      try { watchHttp(req); } catch { /* never break a request */ }
      return req;
    };
  }
  syncBuiltinESMExports();
  process.on('exit', () => {
    for (const m of unreported) process.stderr.write(`${m}\n`);
  });

  if (process.env.RBM_EDGE_OPENAPI_STATS) {
    process.on('exit', () => {
      if (stats.checked === 0) return;
      try {
        fs.appendFileSync(process.env.RBM_EDGE_OPENAPI_STATS,
          JSON.stringify({ pid: process.pid, argv: process.argv.slice(1), ...stats }) + '\n');
      } catch { /* stats are best effort */ }
    });
  }
}

/** For tests of the hook itself: the Workers it currently checks. */
export const watchedWorkers = () => new Map(workers);
