// Fake business backend ("sink") for rbm-edge tests: receives forwarded events and status callbacks
// signed per Standard Webhooks (https://www.standardwebhooks.com):
//   webhook-id: <msg id>
//   webhook-timestamp: <unix seconds>
//   webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")> [v1,<...> ...]
//   key = base64-decode(secret without its "whsec_" prefix)
// Independent implementation on node:crypto (no standardwebhooks package). Node 20 stdlib only.

import http from 'node:http';
import crypto from 'node:crypto';

const TOLERANCE_S = 5 * 60;
const MAX_BODY_BYTES = 1024 * 1024;
const DEFAULT_SLOW_MS = 5000;

/** Secret "whsec_<base64>" (prefix optional) -> key bytes. */
function secretKey(secret) {
  if (typeof secret !== 'string' || secret === '') throw new Error('sink: secret must be a non-empty string');
  const b64 = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
  const key = Buffer.from(b64, 'base64');
  if (key.length === 0) throw new Error('sink: secret does not decode to any key bytes');
  return key;
}

function hmac(key, id, ts, body) {
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(String(body), 'utf8');
  return crypto.createHmac('sha256', key).update(`${id}.${ts}.`, 'utf8').update(payload).digest();
}

/**
 * Signature header value for a delivery: "v1,<base64>".
 * body: string or Buffer (exact bytes sent); a plain object is JSON.stringify'd.
 */
export function signStandardWebhook(secret, id, ts, body) {
  const bytes = (typeof body === 'string' || Buffer.isBuffer(body)) ? body : JSON.stringify(body);
  return `v1,${hmac(secretKey(secret), id, ts, bytes).toString('base64')}`;
}

/** Returns { ok: true } or { ok: false, reason }. rawBody: Buffer. */
function verify(key, headers, rawBody, nowS = Math.floor(Date.now() / 1000)) {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const sigHeader = headers['webhook-signature'];
  if (!id || !ts || !sigHeader) return { ok: false, reason: 'missing webhook-id, webhook-timestamp or webhook-signature' };
  if (!/^[0-9]+$/.test(ts)) return { ok: false, reason: 'webhook-timestamp is not unix seconds' };
  if (Math.abs(nowS - Number(ts)) > TOLERANCE_S) return { ok: false, reason: 'webhook-timestamp outside the 5 min tolerance' };
  const expected = hmac(key, id, ts, rawBody);
  for (const entry of sigHeader.split(' ')) {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== 'v1') continue; // other versions (v1a, ...) are ignored
    const given = Buffer.from(entry.slice(comma + 1), 'base64');
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) return { ok: true };
  }
  return { ok: false, reason: 'no matching v1 signature' };
}

/**
 * Start the sink on 127.0.0.1 (random port).
 * Answers: bad signature/timestamp -> 401 (still recorded, signatureValid:false);
 * otherwise failNext() first, then the mode: 'ok' 200, 'fail500' 500, 'gone410' 410,
 * 'slow' 200 after the delay (setDelay(ms), default 5000 ms in slow mode). A delay set with
 * setDelay() also applies before answers in the other modes.
 */
export async function startSink({ secret } = {}) {
  const key = secretKey(secret);
  const deliveries = [];
  const state = { mode: 'ok', delay: 0, failNext: 0, failStatus: 500 };
  const sockets = new Set();
  const timers = new Set();
  const waiters = new Set();

  const sleep = (ms) => new Promise((resolve) => {
    if (ms <= 0) return resolve();
    const t = setTimeout(() => { timers.delete(t); resolve(); }, ms);
    timers.add(t);
  });

  function answer(res, delivery, status, text) {
    if (delivery) delivery.status = status;
    if (res.destroyed || res.writableEnded) return;
    const body = JSON.stringify(status < 300 ? { ok: true } : { error: text ?? http.STATUS_CODES[status] });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) { req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', async () => {
      if (req.method !== 'POST') return answer(res, null, 405, 'POST only');
      const rawBuf = Buffer.concat(chunks);
      const raw = rawBuf.toString('utf8');
      let body = null;
      try { body = raw === '' ? null : JSON.parse(raw); } catch { body = null; }
      const v = verify(key, req.headers, rawBuf);
      const delivery = {
        id: req.headers['webhook-id'] ?? null,
        timestamp: req.headers['webhook-timestamp'] !== undefined ? Number(req.headers['webhook-timestamp']) : null,
        signatureValid: v.ok,
        reason: v.ok ? null : v.reason,
        headers: { ...req.headers },
        body,
        raw,
        path: req.url,
        at: Date.now(),
        status: null, // filled in when answered
      };
      deliveries.push(delivery);
      if (!v.ok) return answer(res, delivery, 401, v.reason);

      if (state.failNext > 0) {
        state.failNext--;
        await sleep(state.delay);
        return answer(res, delivery, state.failStatus);
      }
      switch (state.mode) {
        case 'fail500': await sleep(state.delay); return answer(res, delivery, 500);
        case 'gone410': await sleep(state.delay); return answer(res, delivery, 410);
        case 'slow': await sleep(state.delay || DEFAULT_SLOW_MS); return answer(res, delivery, 200);
        default: await sleep(state.delay); return answer(res, delivery, 200);
      }
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}`;

  let closed = null;
  return {
    url,
    deliveries,
    /** The next n validly signed deliveries answer `status`. */
    failNext(n, status = 500) { state.failNext = n; state.failStatus = status; },
    setMode(mode) {
      if (!['ok', 'fail500', 'gone410', 'slow'].includes(mode)) throw new Error(`sink: unknown mode ${mode}`);
      state.mode = mode;
    },
    setDelay(ms) { state.delay = ms; },
    /**
     * Poll deliveries until at least `min` match predicate; resolves with the matches,
     * rejects after timeoutMs (or when the sink is closed).
     */
    waitFor(predicate = () => true, timeoutMs = 5000, min = 1) {
      return new Promise((resolve, reject) => {
        const deadline = Date.now() + timeoutMs;
        let timer = null;
        const cancel = () => { clearTimeout(timer); waiters.delete(cancel); reject(new Error('sink closed while waiting')); };
        const done = (fn, v) => { clearTimeout(timer); waiters.delete(cancel); fn(v); };
        waiters.add(cancel);
        const tick = () => {
          let found;
          try { found = deliveries.filter(predicate); } catch (e) { return done(reject, e); }
          if (found.length >= min) return done(resolve, found);
          if (Date.now() >= deadline) return done(reject, new Error(`sink: timeout after ${timeoutMs} ms (have ${found.length} matching of ${deliveries.length}, want ${min})`));
          timer = setTimeout(tick, Math.min(20, Math.max(1, deadline - Date.now())));
        };
        tick();
      });
    },
    reset() {
      deliveries.length = 0;
      state.mode = 'ok'; state.delay = 0; state.failNext = 0; state.failStatus = 500;
    },
    close() {
      if (!closed) {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        for (const cancel of waiters) cancel();
        closed = new Promise((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        server.closeAllConnections?.();
      }
      return closed;
    },
  };
}
