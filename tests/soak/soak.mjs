// Soak: at-least-once delivery against the built Worker in workerd with real local KV.
//
//   node tests/soak/soak.mjs            (make soak)
//
// Sends SOAK_RECEIPTS signed receipts (DELIVERED, READ, TTL_EXPIRATION_REVOKED,
// TTL_EXPIRATION_REVOKE_FAILED) for SOAK_MESSAGES messages, SOAK_DUP_RATE of them redeliveries
// of an event already in the set (same event, other envelope), all shuffled with a printed
// seed, over SOAK_CONCURRENCY keep-alive connections. A non-200 answer is retried the way RBM
// would (bounded). Then every message's status is read and compared with the fold of the set
// of event types sent to it (precedence READ > DELIVERED > REVOKED > EXPIRED, computed here).
//
// Reports lost (events sent, 404), regressed (status below the fold), wrong (status not the
// fold otherwise), event-type mismatches, non-200 answers, throughput and p50/p99 latency; exits
// non-zero if anything was lost, regressed or wrong, or the Worker panicked.
//
// Environment: SOAK_RECEIPTS (10000), SOAK_MESSAGES (2000), SOAK_CONCURRENCY (32),
// SOAK_DUP_RATE (0.2), SOAK_SEED (random), SOAK_QUEUE=1 (also run PROCESSING=queue, polling until
// drained, bounded by SOAK_DRAIN_TIMEOUT_MS, default 600000), SOAK_BUILD_DIR (build/),
// SOAK_HARNESS=wrangler (use tests/support/worker.mjs instead of Miniflare's Node API).
//
// The Worker runs through Miniflare's Node API (the miniflare that wrangler ships), talking to
// workerd directly (no wrangler dev proxy). Loopback only; everything it starts it stops.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TOKENS = ['soak-token-old', 'soak-token-new'];
const API_KEY = 'soak-api-key';
const AGENT_ID = 'soak_agent';
const TYPES = ['DELIVERED', 'READ', 'TTL_EXPIRATION_REVOKED', 'TTL_EXPIRATION_REVOKE_FAILED'];
const TYPE_WEIGHTS = [0.35, 0.25, 0.2, 0.2];
/** The status each event type gives, and the precedence of statuses (higher wins). */
const STATUS_OF = { DELIVERED: 'DELIVERED', READ: 'READ', TTL_EXPIRATION_REVOKED: 'REVOKED', TTL_EXPIRATION_REVOKE_FAILED: 'EXPIRED' };
const RANK = { READ: 5, DELIVERED: 4, REVOKED: 3, EXPIRED: 2, SENT: 1, FAILED: 0 };
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_ATTEMPTS = 6; // RBM retries for days; a soak gives up after a few attempts
const READY_TIMEOUT_MS = 60_000;

// ------------------------------------------------------------------ pure parts

/** mulberry32: a small seeded PRNG, [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uuid(rand) {
  const b = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) b[i] = Math.floor(rand() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function pick(rand, weights) {
  let x = rand();
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i];
    if (x < 0) return i;
  }
  return weights.length - 1;
}

/** The status the Worker must show for a set of RBM event types: the highest precedence wins. */
export function fold(types) {
  let best = null;
  for (const t of types) {
    const s = STATUS_OF[t];
    if (best === null || RANK[s] > RANK[best]) best = s;
  }
  return best;
}

function rbmTime(rand, baseMs) {
  const ms = baseMs - Math.floor(rand() * 3_600_000);
  const nanos = String(Math.floor(rand() * 1_000_000)).padStart(6, '0');
  return `${new Date(ms).toISOString().slice(0, -1)}${nanos}Z`;
}

/**
 * The workload: `messages` message ids, `receipts` deliveries of which round(receipts * dupRate)
 * repeat an event already in the set (same JSON, other envelope and token), shuffled.
 * Returns {messages: [{id, types:Set}], deliveries: [{body, signature, eventId, messageId, type, dup}]}.
 */
export function makeWorkload({ receipts, messages, dupRate, seed }) {
  const rand = prng(seed);
  const unique = receipts - Math.round(receipts * dupRate);
  if (unique < messages) throw new Error(`soak: ${unique} unique events cannot cover ${messages} messages`);
  const baseMs = Date.now();
  const msgs = Array.from({ length: messages }, () => ({ id: uuid(rand), types: new Set() }));
  const events = [];
  for (let i = 0; i < unique; i++) {
    const m = i < messages ? msgs[i] : msgs[Math.floor(rand() * messages)]; // every message gets one
    const type = TYPES[pick(rand, TYPE_WEIGHTS)];
    m.types.add(type);
    const ttl = type.startsWith('TTL_');
    const ev = ttl
      ? { phoneNumber: '+12223334444', agentId: AGENT_ID, messageId: m.id, eventId: uuid(rand), eventType: type, sendTime: rbmTime(rand, baseMs) }
      : { senderPhoneNumber: '+12223334444', agentId: AGENT_ID, eventType: type, eventId: uuid(rand), messageId: m.id, sendTime: rbmTime(rand, baseMs) };
    events.push({ json: JSON.stringify(ev), eventId: ev.eventId, messageId: m.id, type });
  }
  const chosen = [...events.map((e) => ({ e, dup: false }))];
  for (let i = unique; i < receipts; i++) chosen.push({ e: events[Math.floor(rand() * events.length)], dup: true });
  for (let i = chosen.length - 1; i > 0; i--) { // Fisher-Yates
    const j = Math.floor(rand() * (i + 1));
    [chosen[i], chosen[j]] = [chosen[j], chosen[i]];
  }
  const deliveries = chosen.map(({ e, dup }) => {
    const data = Buffer.from(e.json, 'utf8');
    const token = TOKENS[Math.floor(rand() * TOKENS.length)];
    const signature = crypto.createHmac('sha512', token).update(data).digest('base64');
    const message = { data: data.toString('base64') };
    let envelope = { message };
    if (rand() < 0.5) { // Pub/Sub-style extras, as on a push subscription
      message.messageId = String(1e11 + Math.floor(rand() * 9e11));
      message.publishTime = new Date(baseMs).toISOString();
      envelope = { message, subscription: 'projects/p/subscriptions/soak' };
    }
    return { body: JSON.stringify(envelope), signature, eventId: e.eventId, messageId: e.messageId, type: e.type, dup };
  });
  return { messages: msgs, deliveries, unique };
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

// ------------------------------------------------------------------ the Worker

function compatDate() {
  const m = fs.readFileSync(path.join(REPO, 'wrangler.toml'), 'utf8').match(/^\s*compatibility_date\s*=\s*"([^"]+)"/m);
  return m ? m[1] : '2025-09-01';
}

/**
 * Watches the Worker's console output: counts lines, keeps panics and (the first 30) lines that
 * are not the Worker's routine info lines, never the whole text.
 */
function makeLogWatch() {
  const t0 = performance.now();
  const watch = { lines: 0, bad: [], notable: [] };
  watch.take = (chunk) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      watch.lines++;
      if (/panicked|RuntimeError|unreachable/.test(line) && watch.bad.length < 20) watch.bad.push(line.slice(0, 2000));
      else if (!line.startsWith('{"agentId"') && !line.includes('"level":"info"') && watch.notable.length < 30) {
        watch.notable.push(`+${((performance.now() - t0) / 1000).toFixed(1)} s ${line.slice(0, 500)}`);
      }
    }
  };
  return watch;
}

async function startMiniflare({ buildDir, queue, dir }) {
  const require = createRequire(path.join(REPO, 'package.json'));
  const { Miniflare } = require('miniflare');
  const logs = makeLogWatch();
  const queueOpts = queue ? {
    queueProducers: { EVENTS: { queueName: 'rbm-events' }, EVENTS_DLQ: { queueName: 'rbm-events-dlq' } },
    queueConsumers: {
      'rbm-events': { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 10, deadLetterQueue: 'rbm-events-dlq' },
      'rbm-events-dlq': { maxBatchSize: 10, maxBatchTimeout: 5 },
    },
  } : {};
  const mf = new Miniflare({
    modules: true,
    modulesRoot: buildDir, // module names relative to the build, whatever the cwd
    scriptPath: path.join(buildDir, 'index.js'),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'], fallthrough: true }],
    compatibilityDate: compatDate(),
    kvNamespaces: ['STATUS'],
    kvPersist: path.join(dir, 'kv'),
    durableObjects: { CONVERSATIONS: { className: 'Conversation', useSQLite: true } },
    durableObjectsPersist: path.join(dir, 'do'),
    ...(queue ? { queuesPersist: path.join(dir, 'queues') } : {}),
    bindings: {
      RBM_CLIENT_TOKEN: TOKENS.join(','),
      API_KEYS: API_KEY,
      RBM_AGENT_ID: AGENT_ID,
      STATUS_TTL_DAYS: '30',
      PROCESSING: queue ? 'queue' : 'inline',
      RETRY_DELAY_SECONDS: '1',
    },
    ...queueOpts,
    logRequests: false,
    unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }],
    handleRuntimeStdio(stdout, stderr) { stdout.on('data', logs.take); stderr.on('data', logs.take); },
  });
  let timer;
  const url = await Promise.race([
    mf.unsafeGetDirectURL(),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('Miniflare did not get ready')), READY_TIMEOUT_MS); }),
  ]).finally(() => clearTimeout(timer));
  return { url: url.href.replace(/\/$/, ''), logs, stop: () => mf.dispose() };
}

async function startWrangler({ buildDir, queue }) {
  const { startWorker } = await import('../support/worker.mjs');
  const w = await startWorker({
    name: `rbm-edge-soak-${queue ? 'queue' : 'inline'}`,
    buildDir,
    kv: true,
    queues: queue,
    secrets: { RBM_CLIENT_TOKEN: TOKENS.join(','), API_KEYS: API_KEY },
    vars: { RBM_AGENT_ID: AGENT_ID, STATUS_TTL_DAYS: '30', PROCESSING: queue ? 'queue' : 'inline', RETRY_DELAY_SECONDS: '1' },
  });
  const logs = makeLogWatch();
  return {
    url: w.url,
    get logs() { const l = makeLogWatch(); l.take(w.logs()); return l; },
    stop: () => w.stop(),
  };
}

// ------------------------------------------------------------------ HTTP

function httpRequest(agent, base, { method, path: p, headers, body }) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path: p, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('socket', (s) => agent.seen?.add(s));
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Runs fn over items with `limit` lanes (each lane one request at a time). */
async function lanes(items, limit, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  }));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ one run

/**
 * One soak run against a fresh Worker. Returns the figures; `ok` is false if anything was lost,
 * regressed or wrong, a delivery was given up, or the Worker logged a panic.
 */
export async function runSoak({
  receipts = 10_000, messages = 2_000, concurrency = 32, dupRate = 0.2, seed = crypto.randomInt(1, 2 ** 31),
  queue = false, buildDir = path.join(REPO, 'build'), harness = 'miniflare', drainTimeoutMs = 600_000,
  log = (s) => console.log(s),
} = {}) {
  if (!fs.existsSync(path.join(buildDir, 'index_bg.wasm'))) throw new Error(`soak: ${buildDir}/index_bg.wasm is missing: run make build`);
  const mode = queue ? 'queue' : 'inline';
  log(`soak (${mode}): ${receipts} receipts for ${messages} messages, ${Math.round(dupRate * 100)} % duplicated, ${concurrency} connections, seed ${seed}`);
  const work = makeWorkload({ receipts, messages, dupRate, seed });
  const expected = new Map(work.messages.map((m) => [m.id, { status: fold(m.types), types: m.types }]));
  const byStatus = {};
  for (const { status } of expected.values()) byStatus[status] = (byStatus[status] ?? 0) + 1;

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbm-edge-soak-'));
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  agent.seen = new Set();
  let worker;
  const onSignal = () => { worker?.stop().finally(() => process.exit(130)); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const t0 = performance.now();
    worker = harness === 'wrangler' ? await startWrangler({ buildDir, queue }) : await startMiniflare({ buildDir, queue, dir });
    log(`  Worker ready in ${Math.round(performance.now() - t0)} ms (${harness}) at ${worker.url}`);

    // ---- send
    const latencies = [];
    const answers = {};
    let non200 = 0;
    let retried = 0;
    let gaveUp = 0;
    const failures = [];
    const sendStart = performance.now();
    await lanes(work.deliveries, concurrency, async (d) => {
      for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        const t = performance.now();
        let res;
        try {
          res = await httpRequest(agent, worker.url, {
            method: 'POST', path: '/webhook',
            headers: { 'content-type': 'application/json', 'x-goog-signature': d.signature, 'content-length': Buffer.byteLength(d.body) },
            body: d.body,
          });
        } catch (e) {
          res = { status: 0, text: String(e.message) };
        }
        latencies.push(performance.now() - t);
        answers[res.status] = (answers[res.status] ?? 0) + 1;
        if (res.status === 200) return;
        non200++;
        if (failures.length < 10) failures.push(`+${((performance.now() - sendStart) / 1000).toFixed(1)} s after ${Math.round(performance.now() - t)} ms: ${d.type} ${d.messageId}: ${res.status} ${res.text.slice(0, 200)}`);
        if (attempt === MAX_ATTEMPTS) { gaveUp++; return; }
        retried++;
        await sleep(50 * 2 ** attempt); // RBM backs off too
      }
    });
    const sendMs = performance.now() - sendStart;
    latencies.sort((a, b) => a - b);

    // ---- read (queue mode: until every status is the fold, bounded)
    const readOne = async (id) => {
      const res = await httpRequest(agent, worker.url, { method: 'GET', path: `/v1/messages/${id}`, headers: { authorization: `Bearer ${API_KEY}` } })
        .catch((e) => ({ status: 0, text: String(e.message) }));
      let json;
      try { json = JSON.parse(res.text); } catch { json = undefined; }
      return { status: res.status, json, text: res.text };
    };
    const seen = new Map();
    const typesOf = (r) => new Set((r.json?.events ?? []).map((e) => e.type));
    const sameTypes = (a, b) => a.size === b.size && [...a].every((t) => b.has(t));
    // Drained: the fold AND every event type recorded (the queue may still hold lower ones).
    const matches = (id, r) => r.status === 200 && r.json?.status === expected.get(id).status && sameTypes(typesOf(r), expected.get(id).types);
    const readStart = performance.now();
    // Inline: one pass over every message. Queue: read the pending ones a chunk at a time (so
    // polling does not starve the consumer), moving on while a chunk is complete and waiting a
    // second when it is not, until everything matches or the drain timeout passes.
    let pending = [...expected.keys()];
    let rounds = 0;
    const chunkSize = queue ? 100 : pending.length;
    const deadline = Date.now() + (queue ? drainTimeoutMs : 0);
    do {
      rounds++;
      const chunk = pending.slice(0, chunkSize);
      await lanes(chunk, concurrency, async (id) => { seen.set(id, await readOne(id)); });
      const still = chunk.filter((id) => !matches(id, seen.get(id)));
      pending = still.concat(pending.slice(chunk.length));
      if (still.length > 0 && Date.now() < deadline) await sleep(1000);
    } while (pending.length > 0 && Date.now() < deadline);
    const readMs = performance.now() - readStart;

    // ---- compare
    let lost = 0;
    let regressed = 0;
    let wrong = 0;
    let typeMismatch = 0;
    let readErrors = 0;
    const examples = [];
    for (const [id, want] of expected) {
      const r = seen.get(id);
      const note = (what) => { if (examples.length < 10) examples.push(`${what} ${id}: want ${want.status} (${[...want.types].join(',')}), got ${r.status} ${r.text.slice(0, 300)}`); };
      if (r.status === 404) { lost++; note('lost'); continue; }
      if (r.status !== 200) { readErrors++; note('read error'); continue; }
      const got = r.json?.status;
      if (got !== want.status) {
        if (got in RANK && RANK[got] < RANK[want.status]) { regressed++; note('regressed'); } else { wrong++; note('wrong'); }
        continue;
      }
      if (!sameTypes(typesOf(r), want.types)) { typeMismatch++; note('event types'); }
    }
    const logs = worker.logs;
    const result = {
      mode, seed, receipts, messages, uniqueEvents: work.unique, duplicates: receipts - work.unique, concurrency,
      connections: agent.seen.size,
      expectedStatuses: byStatus,
      lost, regressed, wrong, typeMismatch, readErrors,
      non200, retried, gaveUp, answers,
      sendSeconds: +(sendMs / 1000).toFixed(2),
      throughputPerSec: +(latencies.length / (sendMs / 1000)).toFixed(1),
      receiptsPerSec: +(receipts / (sendMs / 1000)).toFixed(1),
      p50Ms: +percentile(latencies, 50).toFixed(2),
      p99Ms: +percentile(latencies, 99).toFixed(2),
      maxMs: +latencies[latencies.length - 1].toFixed(2),
      readSeconds: +(readMs / 1000).toFixed(2), readRounds: rounds,
      logLines: logs.lines, panics: logs.bad.length, notableLogLines: logs.notable.length,
    };
    result.ok = lost + regressed + wrong + typeMismatch + readErrors + gaveUp + result.panics === 0;
    log(`  sent ${receipts} receipts (${result.uniqueEvents} events + ${result.duplicates} duplicates) in ${result.sendSeconds} s over ${result.connections} connections: ` +
      `${result.receiptsPerSec} receipts/s, latency p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms`);
    log(`  answers ${JSON.stringify(answers)}; non-200 ${non200}, retried ${retried}, given up ${gaveUp}`);
    log(`  expected statuses ${JSON.stringify(byStatus)}; read ${messages} statuses in ${result.readSeconds} s (${rounds} read round${rounds > 1 ? 's' : ''}${pending.length ? `, ${pending.length} still pending at the drain timeout` : ''})`);
    log(`  lost ${lost}, regressed ${regressed}, wrong ${wrong}, event-type mismatches ${typeMismatch}, read errors ${readErrors}; Worker log lines ${logs.lines}, panics ${result.panics}`);
    for (const f of failures) log(`    non-200: ${f}`);
    for (const e of examples) log(`    ${e}`);
    for (const b of logs.bad) log(`    panic: ${b}`);
    for (const n of logs.notable) log(`    worker log: ${n}`);
    log(`  => ${result.ok ? 'OK' : 'FAILED'}`);
    return result;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    agent.destroy();
    await worker?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ CLI

function envNum(name, def) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number, got ${v}`);
  return n;
}

async function main() {
  const opts = {
    receipts: envNum('SOAK_RECEIPTS', 10_000),
    messages: envNum('SOAK_MESSAGES', 2_000),
    concurrency: envNum('SOAK_CONCURRENCY', 32),
    dupRate: envNum('SOAK_DUP_RATE', 0.2),
    seed: process.env.SOAK_SEED ? envNum('SOAK_SEED', 1) : crypto.randomInt(1, 2 ** 31),
    drainTimeoutMs: envNum('SOAK_DRAIN_TIMEOUT_MS', 600_000),
    buildDir: process.env.SOAK_BUILD_DIR ? path.resolve(process.env.SOAK_BUILD_DIR) : path.join(REPO, 'build'),
    harness: process.env.SOAK_HARNESS === 'wrangler' ? 'wrangler' : 'miniflare',
  };
  const results = [await runSoak({ ...opts, queue: false })];
  if (process.env.SOAK_QUEUE === '1') results.push(await runSoak({ ...opts, queue: true }));
  console.log(`SOAK_RESULT ${JSON.stringify(results)}`);
  console.log(`reproduce: SOAK_SEED=${opts.seed} SOAK_RECEIPTS=${opts.receipts} SOAK_MESSAGES=${opts.messages} SOAK_CONCURRENCY=${opts.concurrency}${process.env.SOAK_QUEUE === '1' ? ' SOAK_QUEUE=1' : ''} make soak`);
  process.exitCode = results.every((r) => r.ok) ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e?.stack ?? e);
    process.exitCode = 2;
  });
}
