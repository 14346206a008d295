// The bad-input corpus (tests/corpus/*.json, format in tests/corpus/README.md) against the built
// Worker in workerd: PROCESSING=inline, the Google fake configured. Each case is sent byte for
// byte with node:http (raw request target, header names as written) and must answer its declared
// status, never a 5xx, the JSON error shape for every status >= 400, and reach neither RBM nor
// the token endpoint unless it says so. Afterwards the Worker's logs must show no panic.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { startWorker, REPO } from '../support/worker.mjs';
import { TOKENS, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs, assertNoSecrets } from '../support/assert.mjs';
import { startGoogleFake } from '../fakes/google.mjs';

const CORPUS_DIR = path.join(REPO, 'tests', 'corpus');
const [, TOK_NEW] = TOKENS;
const [KEY_ONE] = API_KEYS;
const TOKEN_SIGNING_KEY = `corpus-signing-key-${crypto.randomBytes(24).toString('hex')}`;
const REQUEST_TIMEOUT_MS = 15_000;

const CASE_KEYS = new Set(['name', 'method', 'path', 'headers', 'auth', 'body', 'bodyBase64', 'bodyFile', 'bodyRepeat',
  'chunked', 'sign', 'expect', 'code', 'kind', 'text', 'reachesRbm', 'then', 'note']);
const SIGN_KEYS = new Set(['data', 'dataBase64', 'signData', 'token', 'encoding', 'envelope', 'signature']);

// ------------------------------------------------------------------ loading

function loadCorpus() {
  const files = fs.readdirSync(CORPUS_DIR).filter((f) => f.endsWith('.json')).sort();
  const groups = [];
  const names = new Set();
  for (const file of files) {
    const doc = JSON.parse(fs.readFileSync(path.join(CORPUS_DIR, file), 'utf8'));
    assert.equal(typeof doc.group, 'string', `${file}: group`);
    assert.ok(Array.isArray(doc.cases) && doc.cases.length > 0, `${file}: cases`);
    for (const c of doc.cases) {
      const where = `${file}: ${JSON.stringify(c.name)}`;
      assert.equal(typeof c.name, 'string', `${where}: name`);
      assert.ok(!names.has(c.name), `${where}: duplicate name`);
      names.add(c.name);
      assert.deepEqual(Object.keys(c).filter((k) => !CASE_KEYS.has(k)), [], `${where}: unknown fields`);
      assert.equal(typeof c.method, 'string', `${where}: method`);
      assert.equal(typeof c.path, 'string', `${where}: path`);
      assert.ok(Number.isInteger(c.expect) && c.expect >= 100 && c.expect < 600, `${where}: expect`);
      assert.ok(c.expect < 500, `${where}: no case may expect a 5xx`);
      const bodies = ['body', 'bodyBase64', 'bodyFile', 'bodyRepeat', 'sign'].filter((k) => c[k] !== undefined);
      assert.ok(bodies.length <= 1, `${where}: at most one of ${bodies.join(', ')}`);
      if (c.sign) assert.deepEqual(Object.keys(c.sign).filter((k) => !SIGN_KEYS.has(k)), [], `${where}: unknown sign fields`);
    }
    groups.push({ file, ...doc });
  }
  return groups;
}

// ------------------------------------------------------------------ building a request

const hmac = (token, bytes) => crypto.createHmac('sha512', Buffer.from(token, 'utf8')).update(bytes).digest();

function encodeData(bytes, encoding = 'std') {
  const std = bytes.toString('base64');
  switch (encoding) {
    case 'std': return std;
    case 'nopad': return std.replace(/=+$/, '');
    case 'urlsafe': {
      const u = std.replace(/\+/g, '-').replace(/\//g, '_');
      assert.notEqual(u, std, 'encoding urlsafe: pick data whose base64 has + or /');
      return u;
    }
    // Inserted into JSON text: the line breaks are JSON escapes, so the JSON stays valid.
    case 'mime': return std.match(/.{1,76}/g).join('\\r\\n');
    case 'spaces': return std.match(/.{1,8}/g).join(' ');
    case 'surrounding-space': return ` ${std} `;
    case 'extra-padding': return `${std}==`;
    case 'percent': {
      const p = encodeURIComponent(std);
      assert.notEqual(p, std, 'encoding percent: pick data whose base64 has + / or =');
      return p;
    }
    default: throw new Error(`unknown encoding ${encoding}`);
  }
}

function signatureValue(sign, mac, body, encoded) {
  const std = mac.toString('base64');
  const token = sign.token ?? TOK_NEW;
  const v = sign.signature ?? 'valid';
  if (v.startsWith('truncate:')) return mac.subarray(0, Number(v.slice(9))).toString('base64');
  if (v.startsWith('extend:')) return Buffer.concat([mac, Buffer.alloc(Number(v.slice(7)), 0)]).toString('base64');
  switch (v) {
    case 'valid': return std;
    case 'none': return null;
    case 'nopad': return std.replace(/=+$/, '');
    case 'urlsafe': {
      const u = std.replace(/\+/g, '-').replace(/\//g, '_');
      assert.notEqual(u, std, 'signature urlsafe: pick data whose signature has + or /');
      return u;
    }
    case 'hex': return mac.toString('hex');
    case 'sha512-prefix': return `sha512=${std}`;
    case 'flipbit': { const b = Buffer.from(mac); b[10] ^= 1; return b.toString('base64'); }
    case 'space-inside': return `${std.slice(0, 40)} ${std.slice(40)}`;
    case 'over-body': return hmac(token, Buffer.from(body)).toString('base64');
    case 'over-base64': return hmac(token, Buffer.from(encoded)).toString('base64');
    default: throw new Error(`unknown signature variant ${v}`);
  }
}

/** The case as {method, path, headers: [[name, value]...], body: Buffer|null, chunked}. */
function build(c) {
  let body = null;
  let sig = null;
  const headers = [];
  if (c.body !== undefined) body = Buffer.from(c.body, 'utf8');
  if (c.bodyBase64 !== undefined) body = Buffer.from(c.bodyBase64, 'base64');
  if (c.bodyFile !== undefined) body = fs.readFileSync(path.join(CORPUS_DIR, c.bodyFile));
  if (c.bodyRepeat !== undefined) {
    const { prefix = '', unit, times, suffix = '' } = c.bodyRepeat;
    body = Buffer.from(prefix + unit.repeat(times) + suffix, 'utf8');
  }
  if (c.sign) {
    const s = c.sign;
    const data = s.dataBase64 !== undefined ? Buffer.from(s.dataBase64, 'base64') : Buffer.from(s.data, 'utf8');
    const signed = s.signData !== undefined ? Buffer.from(s.signData, 'utf8') : data;
    const encoded = encodeData(data, s.encoding);
    const envelope = s.envelope ?? '{"message":{"data":"$DATA"}}';
    const text = envelope.split('$DATA').join(encoded);
    body = Buffer.from(text, 'utf8');
    sig = signatureValue(s, hmac(s.token ?? TOK_NEW, signed), text, encoded);
  }
  const given = c.headers ?? {};
  const has = (name) => Object.keys(given).some((k) => k.toLowerCase() === name);
  const usesSig = Object.values(given).flat().some((v) => typeof v === 'string' && v.includes('$SIG'));
  const subst = (v) => v.split('$API_KEY').join(KEY_ONE).split('$SIG').join(sig ?? '');
  for (const [k, v] of Object.entries(given)) {
    if (v === null) continue;
    for (const one of [].concat(v)) headers.push([k, subst(one)]);
  }
  if (c.auth && !has('authorization')) headers.push(['Authorization', `Bearer ${KEY_ONE}`]);
  if (c.sign) {
    if (!has('content-type')) headers.push(['content-type', 'application/json']);
    if (sig !== null && !usesSig) headers.push(['x-goog-signature', sig]);
  }
  return { method: c.method, path: c.path, headers, body, chunked: !!c.chunked };
}

/** One raw HTTP/1.1 request (own connection). Resolves {status, headers, text, json, bytes}. */
function send(port, req) {
  return new Promise((resolve, reject) => {
    // Names keep their case (node:http sends object keys as written); a repeated name becomes
    // an array, i.e. the header line is sent several times.
    const headers = {};
    const list = [...req.headers];
    if (req.body && !req.chunked) list.push(['Content-Length', String(req.body.length)]);
    for (const [k, v] of list) {
      const same = Object.keys(headers).find((h) => h.toLowerCase() === k.toLowerCase());
      if (same === undefined) headers[k] = v;
      else headers[same] = [].concat(headers[same], v);
    }
    let done = false;
    const r = http.request({ host: '127.0.0.1', port, method: req.method, path: req.path, headers, agent: false, setHost: true }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        done = true;
        const bytes = Buffer.concat(chunks);
        const text = bytes.toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        const h = res.headers;
        resolve({ status: res.statusCode, headers: { get: (n) => { const v = h[n.toLowerCase()]; return v === undefined ? null : [].concat(v).join(', '); } }, text, json, bytes });
      });
      res.on('error', (e) => { if (!done) reject(e); });
    });
    r.setTimeout(REQUEST_TIMEOUT_MS, () => r.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    // A server that answers 413 before reading the whole body may reset the upload: the answer
    // already received is what counts.
    r.on('error', (e) => { if (!done) reject(e); });
    if (req.body && req.chunked) {
      const CHUNK = 64 * 1024;
      let off = 0;
      const pump = () => {
        while (off < req.body.length) {
          const ok = r.write(req.body.subarray(off, off + CHUNK));
          off += CHUNK;
          if (!ok) { r.once('drain', pump); return; }
        }
        r.end();
      };
      pump();
    } else {
      r.end(req.body ?? undefined);
    }
  });
}

const summary = (req) => `${req.method} ${req.path.length > 120 ? `${req.path.slice(0, 120)}…` : req.path}` +
  ` [${req.headers.map(([k, v]) => `${k}: ${v.length > 60 ? `${v.slice(0, 60)}…` : v}`).join('; ')}]` +
  ` body ${req.body ? `${req.body.length} bytes: ${JSON.stringify(req.body.subarray(0, 160).toString('utf8'))}` : 'none'}`;

// ------------------------------------------------------------------ the run

const groups = loadCorpus();
const total = groups.reduce((n, g) => n + g.cases.length, 0);
let fake;
let worker;
const answers = []; // {name, status, text} of every case, for the sweeps
const findings = []; // cases whose answer differs from the declaration, for the summary

describe(`bad-input corpus (${total} cases in ${groups.length} files)`, () => {
  before(async () => {
    fake = await startGoogleFake();
    worker = await startWorker({
      name: 'rbm-edge-corpus-test',
      kv: true,
      secrets: {
        RBM_CLIENT_TOKEN: TOKENS.join(','),
        API_KEYS: API_KEYS.join(','),
        RBM_SERVICE_ACCOUNT_KEY: fake.serviceAccountKey,
        TOKEN_SIGNING_KEY,
      },
      vars: {
        RBM_AGENT_ID: 'test_agent',
        STATUS_TTL_DAYS: '30',
        PROCESSING: 'inline',
        RBM_API_BASE: fake.url,
        RBM_TIMEOUT_MS: '3000',
        ALLOWED_ORIGINS: 'https://app.example.com',
      },
    });
  });

  after(async () => {
    if (findings.length) console.log(`corpus: ${findings.length} case(s) answered differently:\n${findings.map((f) => `  ${f}`).join('\n')}`);
    await worker?.stop();
    await fake?.close();
  });

  test('the corpus has at least 100 cases', () => {
    assert.ok(total >= 100, `${total} cases`);
  });

  for (const g of groups) {
    describe(`${g.file}: ${g.description}`, () => {
      for (const c of g.cases) {
        test(c.name, async () => {
          const req = build(c);
          const rbmBefore = fake.stats.rbmRequests;
          const tokBefore = fake.stats.tokenRequests;
          const res = await send(worker.port, req);
          answers.push({ name: c.name, status: res.status, text: res.text.slice(0, 300) });
          const ctx = `${c.name}\n  request: ${summary(req)}\n  answer: ${res.status} ${res.headers.get('content-type')} ${JSON.stringify(res.text.slice(0, 400))}`;
          if (res.status !== c.expect || (c.code && res.json?.error?.code !== c.code)) {
            findings.push(`${c.name}: expected ${c.expect}${c.code ? ` ${c.code}` : ''}, got ${res.status} ${res.text.slice(0, 160)}`);
          }
          assert.ok(res.status < 500, `no 5xx; ${ctx}`);
          assert.equal(res.status, c.expect, ctx);
          if (res.status >= 400 && c.method !== 'HEAD') assertError(res, res.status, c.code, ctx);
          assertNoSecrets(res.text, ctx);
          if (res.status === 204 || c.method === 'HEAD') assert.equal(res.bytes.length, 0, `no body; ${ctx}`);
          if (c.kind !== undefined) {
            assert.match(res.headers.get('content-type') ?? '', /^application\/json/i, ctx);
            assert.deepEqual(res.json, { ok: true, kind: c.kind }, ctx);
          }
          if (c.text !== undefined) {
            assert.match(res.headers.get('content-type') ?? '', /^text\/plain/i, ctx);
            assert.equal(res.text, c.text, ctx);
          }
          if (!c.reachesRbm) {
            assert.equal(fake.stats.rbmRequests, rbmBefore, `RBM must not be called; ${ctx}`);
            assert.equal(fake.stats.tokenRequests, tokBefore, `no token request; ${ctx}`);
          }
          if (c.then) {
            const t = c.then;
            const follow = await send(worker.port, {
              method: t.method, path: t.path, body: null, chunked: false,
              headers: t.auth ? [['authorization', `Bearer ${KEY_ONE}`]] : [],
            });
            const fctx = `then ${t.method} ${t.path}: ${follow.status} ${follow.text.slice(0, 300)}; ${ctx}`;
            answers.push({ name: `${c.name} (then)`, status: follow.status, text: follow.text.slice(0, 300) });
            assert.equal(follow.status, t.expect, fctx);
            if (follow.status >= 400) assertError(follow, follow.status, undefined, fctx);
            if (t.status !== undefined) assert.equal(follow.json?.status, t.status, fctx);
          }
        });
      }
    });
  }

  test('no case answered 5xx', () => {
    const bad = answers.filter((a) => a.status >= 500);
    assert.deepEqual(bad, [], `${bad.length} answers were 5xx`);
    assert.ok(answers.length >= total, `every case was sent (${answers.length} answers for ${total} cases)`);
  });

  test('Worker logs: no panic, no RuntimeError, no "unreachable", no secret', async () => {
    await new Promise((r) => setTimeout(r, 500)); // the Worker's last console lines arrive asynchronously
    const logs = worker.logs();
    assert.match(logs, /"msg":"event received"/, 'the Worker\'s console.log lines are captured');
    assertCleanLogs(logs);
    for (const bad of ['panicked', 'RuntimeError', 'unreachable', TOKEN_SIGNING_KEY]) {
      const i = logs.indexOf(bad);
      assert.ok(i < 0, `logs contain ${JSON.stringify(bad)}: ...${logs.slice(Math.max(0, i - 300), i + 300)}...`);
    }
  });
});
