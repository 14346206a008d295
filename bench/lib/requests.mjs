// The bench's requests, built before they are timed: signed webhooks (the Worker's client
// token), the status read and the relay's send (its API key). Shared by bench/run.mjs and
// bench/ab.mjs.
import crypto from 'node:crypto';

import * as rbm from '../../tests/support/rbm.mjs';

export const CLIENT_TOKEN = 'bench-client-token';
export const API_KEY = 'bench-api-key';
export const AUTH = { authorization: `Bearer ${API_KEY}` };
export const JSON_CT = { 'content-type': 'application/json' };

/** A workload's pre-built requests as a function of the request index. */
export const asFn = (reqs) => (typeof reqs === 'function' ? reqs : (i) => reqs[i]);

export function webhookReq(event, path = '/webhook') {
  const env = rbm.signedEnvelope(event, CLIENT_TOKEN);
  return { method: 'POST', path, headers: env.headers, body: Buffer.from(env.body) };
}
/** n signed DELIVERED/READ receipts: message k gets DELIVERED then READ (n/2 distinct messages). */
export function buildReceipts(n, prefix, path = '/webhook') {
  const out = new Array(n);
  let id = '';
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) id = `${prefix}-${crypto.randomUUID()}`;
    out[i] = webhookReq(rbm.receipt(i % 2 === 0 ? 'DELIVERED' : 'READ', id), path);
  }
  return out;
}
export function buildTexts(n, path = '/webhook') {
  return Array.from({ length: n }, () => webhookReq(rbm.userText(), path));
}
export function buildSends(n) {
  return Array.from({ length: n }, () => ({
    method: 'POST', path: '/v1/messages', headers: { ...AUTH, ...JSON_CT },
    body: Buffer.from(JSON.stringify({
      contentMessage: { text: 'Hello, world!' }, messageTrafficType: 'TRANSACTION',
      phoneNumber: rbm.PHONE, messageId: crypto.randomUUID(),
    })),
  }));
}
/** The status read of message `id`. */
export const statusReq = (id) => ({ method: 'GET', path: `/v1/messages/${id}`, headers: AUTH });
