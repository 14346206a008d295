// Calls to the Worker's API on this origin. Errors come back as ApiError with the API's own
// code and message ({"error":{"code","message"}}), so the page can show exactly what it said.

import { REQUEST_TIMEOUT_MS } from './config.js';

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0: no answer)
   * @param {string} code   the API's UPPER_SNAKE code, or one of the page's own
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** "/v1/phones/%2B12223334444/…" (the + must be percent-encoded in a path segment). */
export const phonePath = (phone, rest = '') => `/v1/phones/${encodeURIComponent(phone)}${rest}`;

/**
 * One request. `bearer` is the credential for the Authorization header (never put in a URL).
 * Returns {status, body} for 2xx answers and for RBM's own answers relayed with RBM's status
 * (a send RBM refused: 4xx {"status":"FAILED","rbm":{…}}; a capability check of an unreachable
 * number: 404 {"rcsReachable":false,"rbm":{…}}), which are not the error shape; throws ApiError
 * for `{"error":{…}}` bodies, other non-2xx answers, network failures and timeouts.
 */
export async function apiFetch(path, { method = 'GET', body, bearer, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  const headers = { accept: 'application/json' };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  init.signal = controller.signal;
  let res;
  let text;
  try {
    res = await fetch(path, init);
    text = await res.text();
  } catch (err) {
    if (controller.signal.aborted) {
      throw new ApiError(0, 'TIMEOUT', `No answer from the Worker within ${Math.round(timeoutMs / 1000)} s.`);
    }
    throw new ApiError(0, 'NETWORK_ERROR', 'The Worker could not be reached. Check your connection and try again.');
  } finally {
    clearTimeout(timer);
  }
  let json;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  const e = json && typeof json === 'object' ? json.error : undefined;
  if (e && typeof e === 'object' && typeof e.code === 'string') {
    throw new ApiError(res.status, e.code, typeof e.message === 'string' ? e.message : `HTTP ${res.status}`);
  }
  if (res.ok) return { status: res.status, body: json };
  if (json && typeof json === 'object' && !Array.isArray(json) && 'rbm' in json) return { status: res.status, body: json };
  throw new ApiError(res.status, `HTTP_${res.status}`, `The Worker answered ${res.status} ${res.statusText || ''}`.trim() + '.');
}

/** The message of RBM's own error inside a relayed answer ({"rbm":{"error":{…}}}), if any. */
export function rbmErrorText(body) {
  const e = body?.rbm?.error;
  if (!e || typeof e !== 'object') return '';
  const parts = [];
  if (typeof e.status === 'string') parts.push(e.status);
  if (typeof e.message === 'string') parts.push(e.message);
  return parts.join(': ');
}
