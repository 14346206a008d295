// Closed-loop HTTP load generator: `connections` keep-alive connections, each sending its next
// request as soon as the previous answer is read. Requests are built before the timed run (the
// caller passes a function returning a pre-built object), so the generator spends its CPU on
// HTTP only. Bounded by time AND by count; per-request timeouts; stops by itself.
//
// Uses undici's Client (shipped in node_modules through wrangler/miniflare) when it loads,
// else node:http with a keep-alive Agent.

import http from 'node:http';

let undici = null;
try { undici = await import('undici'); } catch { undici = null; }

export const GENERATOR = undici ? 'undici Client (pipelining 1, keep-alive)' : 'node:http keep-alive Agent';

const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONSECUTIVE_FAILURES = 50;

/** Sorted-copy percentile (nearest rank) of the first `n` values of `arr`. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

function makeUndiciSender(origin, connections) {
  const clients = Array.from({ length: connections }, () => new undici.Client(origin, {
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  }));
  return {
    async send(lane, r) {
      const res = await clients[lane].request({ method: r.method, path: r.path, headers: r.headers, body: r.body });
      if (res.statusCode === r.expect) {
        await res.body.dump({ limit: 1 << 20 });
        return { status: res.statusCode };
      }
      const text = await res.body.text();
      return { status: res.statusCode, text };
    },
    async close() { await Promise.allSettled(clients.map((c) => c.destroy())); },
  };
}

function makeHttpSender(origin, connections) {
  const u = new URL(origin);
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  return {
    send(_lane, r) {
      return new Promise((resolve, reject) => {
        const req = http.request({
          host: u.hostname, port: u.port, method: r.method, path: r.path, headers: r.headers, agent,
          timeout: REQUEST_TIMEOUT_MS,
        }, (res) => {
          const chunks = [];
          res.on('data', (c) => { if (res.statusCode !== r.expect) chunks.push(c); });
          res.on('end', () => resolve({ status: res.statusCode, text: chunks.length ? Buffer.concat(chunks).toString('utf8') : undefined }));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error('request timeout')));
        req.on('error', reject);
        req.end(r.body);
      });
    },
    async close() { agent.destroy(); },
  };
}

/**
 * Runs one bounded load run.
 *   origin        "http://127.0.0.1:PORT"
 *   connections   concurrent keep-alive connections
 *   durationMs    stop sending after this long
 *   maxRequests   and after this many
 *   request(i)    -> {method, path, headers, body?, expect?=200}: the i-th pre-built request
 * Returns counts, wall time, req/s and latency percentiles (ms) of the answered requests.
 */
export async function runLoad({ origin, connections, durationMs, maxRequests, request }) {
  const sender = undici ? makeUndiciSender(origin, connections) : makeHttpSender(origin, connections);
  const lat = new Float64Array(maxRequests);
  const statuses = new Map();
  const samples = []; // first few unexpected answers / failures, for the report
  let next = 0;
  let done = 0;
  let unexpected = 0;
  let failures = 0;
  const t0 = performance.now();
  const deadline = t0 + durationMs;

  async function lane(k) {
    let consecutiveFailures = 0;
    while (next < maxRequests && performance.now() < deadline) {
      const i = next++;
      const r = request(i);
      const expect = r.expect ?? 200;
      const start = performance.now();
      try {
        const res = await sender.send(k, { ...r, expect });
        lat[done++] = performance.now() - start;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        consecutiveFailures = 0;
        if (res.status !== expect) {
          unexpected++;
          if (samples.length < 5) samples.push(`${r.method} ${r.path} -> ${res.status} ${String(res.text ?? '').slice(0, 300)}`);
        }
      } catch (err) {
        failures++;
        if (samples.length < 5) samples.push(`${r.method} ${r.path} -> ${err.code ?? ''} ${err.message}`);
        if (++consecutiveFailures >= MAX_CONSECUTIVE_FAILURES) return;
      }
    }
  }

  try {
    await Promise.all(Array.from({ length: connections }, (_, k) => lane(k)));
  } finally {
    await sender.close();
  }
  const elapsedMs = performance.now() - t0;
  const sorted = Float64Array.from(lat.subarray(0, done)).sort();
  return {
    sent: next,
    answered: done,
    ok: done - unexpected,
    unexpected,
    failures,
    statuses: Object.fromEntries([...statuses].map(([k, v]) => [String(k), v])),
    samples,
    elapsedMs,
    rps: done / (elapsedMs / 1000),
    p50Ms: percentile(sorted, 50),
    p90Ms: percentile(sorted, 90),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length ? sorted[sorted.length - 1] : null,
  };
}
