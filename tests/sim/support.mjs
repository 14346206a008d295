// Helpers of the simulator tests: a webhook receiver that checks RBM's signature, an RS256
// assertion builder and a token fetcher. Node 20 standard library only.
import http from 'node:http';
import crypto from 'node:crypto';

export const SCOPE = 'https://www.googleapis.com/auth/rcsbusinessmessaging';
export const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

/** An RS256 service-account assertion, as Google's client libraries build it. */
export function makeJwt(sa, { claims = {}, header = {}, key = sa.private_key } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const h = { alg: 'RS256', typ: 'JWT', kid: sa.private_key_id, ...header };
  const c = { iss: sa.client_email, scope: SCOPE, aud: sa.token_uri, iat: now, exp: now + 3600, ...claims };
  const input = `${b64url(h)}.${b64url(c)}`;
  return `${input}.${crypto.sign('RSA-SHA256', Buffer.from(input), key).toString('base64url')}`;
}

export async function postToken(tokenUri, assertion) {
  const res = await fetch(tokenUri, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: GRANT, assertion }).toString(),
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, json: await res.json() };
}

export async function call(url, { method = 'GET', token, body, timeout = 5000 } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, {
    method, headers, signal: AbortSignal.timeout(timeout),
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

/**
 * A webhook receiver on a free loopback port. Every POST is recorded with its decoded event and
 * whether X-Goog-Signature matches `clientToken`; `answer(n)` picks the status of the n-th post.
 */
export async function startReceiver(clientToken, answer = () => 200) {
  const posts = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let envelope = null, event = null, signatureOk = false;
      try {
        envelope = JSON.parse(raw);
        const data = Buffer.from(envelope.message.data, 'base64');
        event = JSON.parse(data.toString('utf8'));
        const want = crypto.createHmac('sha512', Buffer.from(clientToken)).update(data).digest('base64');
        signatureOk = want === req.headers['x-goog-signature'];
      } catch { /* recorded as is */ }
      const status = answer(posts.length, event);
      posts.push({ at: Date.now(), path: req.url, headers: req.headers, envelope, event, signatureOk, status });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(status === 200 ? '{"ok":true}' : '{"error":"nope"}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/webhook`,
    posts,
    /** Events (decoded) for which `pred` holds, polled until `min` are there or `ms` passed. */
    async waitFor(pred, min = 1, ms = 5000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const got = posts.filter((p) => p.event && pred(p.event));
        if (got.length >= min || Date.now() > deadline) return got;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
