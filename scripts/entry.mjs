#!/usr/bin/env node
// Post-processes worker-build's JavaScript entry (built unminified: NO_MINIFY=1), then minifies
// it with esbuild. worker-build's default export is a Proxy around a WorkerEntrypoint class:
// workerd constructs the class for every request and the Proxy wraps every method call in a
// new Proxy and an async function, which costs more CPU than a small request's own work
// (GET /healthz: 1.44x a plain JS Worker with it, 1.07x without). The default export becomes a
// plain module-worker object calling the same glue, with the same recovery after a wasm trap
// (checkReinitialize before, handleMaybeCritical on a throw or a rejection). The Durable Object
// class gets a plain wrapper class instead of the Proxy (which made a new Proxy and an async
// function on every call), keeping what the Proxy did: the wasm object is rebuilt with the
// same constructor arguments after a reinitialisation. The wrapper extends the runtime's
// DurableObject, which is what makes its methods (the `op` method) callable over RPC.
//
// Usage: node scripts/entry.mjs <out-dir> <esbuild binary>
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const [outDir, esbuild] = process.argv.slice(2);
const file = path.join(outDir, 'index.js');
const src = fs.readFileSync(file, 'utf8');
const target = 'var shim_default = new Proxy(Entrypoint, classProxyHooks);';
for (const needed of [target, 'function checkReinitialize()', 'function handleMaybeCritical(e)']) {
  if (!src.includes(needed)) {
    console.error(`scripts/entry.mjs: ${needed} not found in ${file} (worker-build's shim changed?)`);
    process.exit(1);
  }
}
const objectClass = 'var Conversation2 = new Proxy(Conversation, classProxyHooks);';
if (!src.includes(objectClass)) {
  console.error(`scripts/entry.mjs: ${objectClass} not found in ${file}`);
  process.exit(1);
}
const entry = `
function rbmGuard(run) {
  checkReinitialize();
  try {
    const out = run();
    return out && typeof out.then === "function" ? out.catch((e) => { handleMaybeCritical(e); throw e; }) : out;
  } catch (e) {
    handleMaybeCritical(e);
    throw e;
  }
}
var shim_default = {
  fetch: (request, env, ctx) => rbmGuard(() => fetch(request, env, ctx)),
  queue: (batch, env, ctx) => rbmGuard(() => queue(batch, env, ctx)),
};
function rbmWrapClass(Inner) {
  class Wrapped extends RbmDurableObject {
    constructor(...args) {
      super(...args);
      checkReinitialize();
      this.rbmArgs = args;
      this.rbmId = initState.instanceId;
      this.rbmInner = new Inner(...args);
    }
  }
  for (const name of Object.getOwnPropertyNames(Inner.prototype)) {
    const d = Object.getOwnPropertyDescriptor(Inner.prototype, name);
    if (name === "constructor" || typeof d.value !== "function") continue;
    Wrapped.prototype[name] = function (...args) {
      return rbmGuard(() => {
        if (this.rbmId !== initState.instanceId) {
          this.rbmInner = new Inner(...this.rbmArgs);
          this.rbmId = initState.instanceId;
        }
        return this.rbmInner[name](...args);
      });
    };
  }
  return Wrapped;
}`;
// wasm-bindgen's executor queues each task poll with queueMicrotask, which workerd implements
// as a binding that wraps the callback (async context, error reporting) on every call: about
// 4 us per poll, several polls per request. A resolved promise's then() queues the same
// microtask natively. A wasm trap inside it becomes an unhandled rejection rather than an
// error event, so that event gets the same recovery.
const microtask = /(__wbg_queueMicrotask_[0-9a-f]+: function\((\w+)\) \{\s*)queueMicrotask\(\2\);/;
if (!microtask.test(src)) {
  console.error(`scripts/entry.mjs: the queueMicrotask import not found in ${file}`);
  process.exit(1);
}
const errorEvent = 'addEventListener("error", (e) => {';
if (!src.includes(errorEvent)) {
  console.error(`scripts/entry.mjs: ${errorEvent} not found in ${file}`);
  process.exit(1);
}
// Every closure wasm-bindgen hands to JS (two per awaited promise) is registered with a
// FinalizationRegistry, so that one JS drops without calling it can still be freed: a weak cell
// per closure for the GC to track, about 3.5 % of a text webhook's CPU (paired bench). Here every
// closure is owned by Rust and dropped by it (JsFuture's callbacks, the executor's queue,
// worker's Delay), which frees it through its refcount and unregisters it; the registry never
// has anything to do. Code that gives a closure to JS for good (`Closure::into_js_value`,
// `forget`, `once_into_js` left uncalled) would leak without it: none in this crate does, and
// worker's one use (`State::block_concurrency_while`) is not called.
const closureDtors = /var CLOSURE_DTORS = typeof FinalizationRegistry === "undefined" \?[\s\S]*?\n\}\);\n/;
if (!closureDtors.test(src)) {
  console.error(`scripts/entry.mjs: CLOSURE_DTORS not found in ${file}`);
  process.exit(1);
}
const workersImport = 'import { WorkerEntrypoint } from "cloudflare:workers";';
if (!src.includes(workersImport)) {
  console.error(`scripts/entry.mjs: ${workersImport} not found in ${file}`);
  process.exit(1);
}
fs.writeFileSync(
  file,
  src
    .replace(workersImport, 'import { WorkerEntrypoint, DurableObject as RbmDurableObject } from "cloudflare:workers";')
    .replace(target, entry)
    .replace(objectClass, 'var Conversation2 = rbmWrapClass(Conversation);')
    .replace(microtask, '$1Promise.resolve().then($2);')
    .replace(closureDtors, 'var CLOSURE_DTORS = { register: () => {}, unregister: () => {} };\n')
    .replace(errorEvent, `addEventListener("unhandledrejection", (e) => handleMaybeCritical(e.reason));\n${errorEvent}`),
);
// RBM_ENTRY_DUMP=<path>: a copy of the rewritten entry before minification, for reading.
if (process.env.RBM_ENTRY_DUMP) fs.copyFileSync(file, process.env.RBM_ENTRY_DUMP);
execFileSync(esbuild, [
  file, '--minify', '--format=esm', '--allow-overwrite', `--outfile=${file}`, '--log-level=warning',
], { stdio: 'inherit' });
