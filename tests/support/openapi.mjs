// The OpenAPI document (public/openapi.json) as a response checker: finds the operation of a
// request by method + path template and checks an answer's status, headers, content type and
// body against it with ajv (JSON Schema 2020-12, OpenAPI 3.1's dialect). Each schema is compiled
// once, on first use. Used by tests/support/openapi-hook.mjs (every fetch to a test Worker) and
// tests/openapi/.
//
//   const checker = createChecker();
//   const { problems, label } = checker.check({ method, url, status, headers, body, assets });
//   // problems: [] when the answer matches the document
//
// Requests the document does not describe are held to what the Worker promises for them (its
// routing table, src/http/mod.rs): a path outside the document answers 404 NOT_FOUND (405 for a
// method the Worker does not know), a documented path with another method 405
// METHOD_NOT_ALLOWED, OPTIONS on /v1/… the CORS preflight 204; all in the standard error shape
// (components.responses.NoRoute / MethodNotAllowed / CorsPreflight). Static files of public/
// are accepted as they are when the Worker serves assets.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DOC_PATH = path.join(REPO, 'public', 'openapi.json');
export const PUBLIC_DIR = path.join(REPO, 'public');
/** The id under which the document is registered with ajv ($refs resolve against it). */
export const DOC_ID = 'https://rbm-edge.invalid/openapi.json';

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
/** The methods the Worker routes at all (src/http/mod.rs KNOWN_METHODS); any other is 405 on every path. */
export const KNOWN_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

const addFormats = addFormatsModule.default ?? addFormatsModule;
const Ajv = Ajv2020.default ?? Ajv2020;

export function loadDocument(file = DOC_PATH) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** An ajv for OpenAPI 3.1 schemas. strict: unknown keywords are errors (OpenAPI's own are declared). */
export function createAjv({ strict = false, ...options } = {}) {
  const ajv = new Ajv({ strict, allErrors: true, validateFormats: true, ...options });
  addFormats(ajv);
  // OpenAPI 3.1's base vocabulary: annotations only.
  for (const keyword of ['discriminator', 'xml', 'externalDocs', 'example']) ajv.addKeyword({ keyword });
  return ajv;
}

/** JSON pointer escaping of one reference token. */
export const escapeToken = (s) => String(s).replace(/~/g, '~0').replace(/\//g, '~1');
export const unescapeToken = (s) => s.replace(/~1/g, '/').replace(/~0/g, '~');

/** The value at a local `#/…` pointer of `doc`, or undefined. */
export function resolvePointer(doc, ref) {
  if (typeof ref !== 'string' || !ref.startsWith('#')) return undefined;
  let node = doc;
  for (const raw of ref.slice(1).split('/').slice(1)) {
    const token = decodeURIComponent(unescapeToken(raw));
    if (node === null || typeof node !== 'object' || !(token in node)) return undefined;
    node = node[token];
  }
  return node;
}

/** Follows an OpenAPI (non-schema) `$ref` chain: returns { node, pointer } of the object it ends at. */
function follow(doc, node, pointer) {
  for (let i = 0; node && typeof node.$ref === 'string' && i < 10; i++) {
    pointer = node.$ref;
    node = resolvePointer(doc, pointer);
  }
  return { node, pointer };
}

/** The media type of a Content-Type value, lower-cased, without parameters. */
export const mediaType = (ct) => (ct ?? '').split(';')[0].trim().toLowerCase();
const isJson = (mt) => mt === 'application/json' || mt.endsWith('+json');

/** The path as the Worker routes it: leading slashes collapsed (it trims them all). */
export const routedPath = (pathname) => '/' + pathname.replace(/^\/+/, '');

/** Path templates of the document as matchers; more literal segments first. */
function compileTemplates(doc) {
  const out = [];
  for (const template of Object.keys(doc.paths ?? {})) {
    const parts = template.split('/');
    const literals = parts.filter((p) => p && !/^\{.*\}$/.test(p)).length;
    // A parameter is one path segment, possibly empty (the Worker splits on '/').
    const re = new RegExp('^' + parts.map((p) => (/^\{.*\}$/.test(p) ? '[^/]*' : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/') + '$');
    out.push({ template, re, literals, segments: parts.length });
  }
  return out.sort((a, b) => b.literals - a.literals || a.segments - b.segments);
}

/** Is `pathname` a file of public/ (as wrangler's [assets] would serve it)? */
export function isAsset(pathname, publicDir = PUBLIC_DIR) {
  let rel;
  try { rel = decodeURIComponent(pathname); } catch { return false; }
  const candidates = rel.endsWith('/') ? [`${rel}index.html`] : [rel, `${rel}.html`, `${rel}/index.html`];
  for (const c of candidates) {
    const file = path.join(publicDir, c);
    if (!file.startsWith(publicDir + path.sep)) continue;
    try { if (fs.statSync(file).isFile()) return true; } catch { /* not there */ }
  }
  return false;
}

const excerpt = (text, n = 600) => (text.length > n ? `${JSON.stringify(text.slice(0, n))}… (${text.length} chars)` : JSON.stringify(text));

/** ajv errors as short lines: `/events/0/type: must be equal to one of the allowed values [..]`. */
export function formatErrors(errors, max = 12) {
  const lines = [];
  for (const e of errors ?? []) {
    const where = e.instancePath || '(body)';
    let detail = '';
    if (e.params?.allowedValues) detail = ` ${JSON.stringify(e.params.allowedValues)}`;
    else if (e.params?.additionalProperty) detail = ` (${JSON.stringify(e.params.additionalProperty)})`;
    else if (e.params?.allowedValue !== undefined) detail = ` ${JSON.stringify(e.params.allowedValue)}`;
    const line = `${where}: ${e.message}${detail}  [schema ${e.schemaPath.replace(DOC_ID, '')}]`;
    if (!lines.includes(line)) lines.push(line);
  }
  return lines.length > max ? [...lines.slice(0, max), `… ${lines.length - max} more`] : lines;
}

/**
 * A checker over one document. `check()` is synchronous and pure (no I/O but the public/ stat for
 * assets); schemas are compiled once per JSON pointer.
 */
export function createChecker({ doc = loadDocument(), publicDir = PUBLIC_DIR } = {}) {
  const ajv = createAjv();
  ajv.addSchema(doc, DOC_ID);
  const validators = new Map();
  const validatorAt = (pointer) => {
    let v = validators.get(pointer);
    if (!v) {
      v = ajv.compile({ $ref: `${DOC_ID}${pointer}` });
      validators.set(pointer, v);
    }
    return v;
  };
  const templates = compileTemplates(doc);

  /** The operation for method + routed path: { template, method, op, pointer } or null; `pathMatched` either way. */
  function findOperation(method, pathname) {
    const p = routedPath(pathname);
    for (const t of templates) {
      if (!t.re.test(p)) continue;
      const lower = method.toLowerCase();
      const item = doc.paths[t.template];
      const op = HTTP_METHODS.includes(lower) && method === method.toUpperCase() ? item[lower] : undefined;
      if (op) return { template: t.template, method: lower, op, pointer: `#/paths/${escapeToken(t.template)}/${lower}` };
      return { template: t.template, method: lower, op: null };
    }
    return null;
  }

  /** Checks one answer against the response object at `pointer` (which may be a $ref). */
  function checkResponse(responsePointer, { method, status, headers, body }, problems) {
    const { node: response, pointer } = follow(doc, resolvePointer(doc, responsePointer), responsePointer);
    if (!response) {
      problems.push(`the document's response ${responsePointer} does not resolve`);
      return;
    }
    for (const [name, raw] of Object.entries(response.headers ?? {})) {
      const { node: header, pointer: hp } = follow(doc, raw, `${pointer}/headers/${escapeToken(name)}`);
      const value = headers.get(name);
      if (value === null) {
        if (header?.required) problems.push(`header ${name} is required but missing`);
        continue;
      }
      if (header?.schema) {
        const v = validatorAt(`${hp}/schema`);
        if (!v(value)) problems.push(`header ${name}: ${JSON.stringify(value)} does not match: ${formatErrors(v.errors).join('; ')}`);
      }
    }
    if (method === 'HEAD') return; // no body, and the content type is the GET's
    const content = response.content ?? {};
    const types = Object.keys(content);
    if (types.length === 0) {
      if (body.length > 0) problems.push(`no body is documented, got ${body.length} bytes`);
      return;
    }
    const got = mediaType(headers.get('content-type'));
    const key = types.find((t) => t.toLowerCase() === got)
      ?? types.find((t) => t.endsWith('/*') && got.startsWith(t.slice(0, -1)))
      ?? types.find((t) => t === '*/*');
    if (!key) {
      problems.push(`Content-Type ${JSON.stringify(headers.get('content-type'))} is not documented (documented: ${types.join(', ')})`);
      return;
    }
    if (!content[key].schema) return;
    let value = body;
    if (isJson(got)) {
      try {
        value = JSON.parse(body);
      } catch (e) {
        problems.push(`the body is not JSON (${e.message})`);
        return;
      }
    }
    const v = validatorAt(`${pointer}/content/${escapeToken(key)}/schema`);
    if (!v(value)) {
      problems.push(`the body does not match the schema of ${pointer}/content/${escapeToken(key)}:`, ...formatErrors(v.errors).map((l) => `  ${l}`));
    }
    // The Error schema's promise: RATE_LIMITED always comes with Retry-After.
    if (value?.error?.code === 'RATE_LIMITED' && !/^\d+$/.test(headers.get('retry-after') ?? '')) {
      problems.push(`a RATE_LIMITED error must carry Retry-After (got ${JSON.stringify(headers.get('retry-after'))})`);
    }
  }

  /**
   * Checks one answer. `url` is the request URL, `headers` a Headers, `body` the body text.
   * `assets`: the Worker serves public/ (then files there answer as files).
   * Returns { label, operationId, statusKey, problems }.
   */
  function check({ method, url, status, headers, body = '', assets = false }) {
    const { pathname } = new URL(url);
    const problems = [];
    let found = findOperation(method, pathname);
    // A static file's entry: without [assets] the path reaches the Worker, which has no route for it.
    if (!assets && found && doc.paths[found.template]?.get?.['x-rbm-edge-asset']) found = null;
    if (found?.op) {
      const responses = found.op.responses ?? {};
      const statusKey = [String(status), `${String(status)[0]}XX`, 'default'].find((k) => k in responses);
      const label = `${method} ${found.template} (${found.op.operationId})`;
      if (!statusKey) {
        problems.push(`status ${status} is not documented (documented: ${Object.keys(responses).join(', ')})`);
      } else {
        checkResponse(`${found.pointer}/responses/${escapeToken(statusKey)}`, { method, status, headers, body }, problems);
      }
      return { label, operationId: found.op.operationId, statusKey: statusKey ?? String(status), problems };
    }
    // Not a documented operation: what the Worker promises for everything else.
    const p = routedPath(pathname);
    if (assets && (method === 'GET' || method === 'HEAD') && status < 400 && isAsset(pathname, publicDir)) {
      return { label: `${method} ${pathname} (static file)`, operationId: 'static', statusKey: String(status), problems };
    }
    let expected;
    let why;
    if (!KNOWN_METHODS.includes(method)) {
      expected = [405, 'MethodNotAllowed'];
      why = 'a method the Worker does not route';
    } else if (method === 'OPTIONS' && p.startsWith('/v1/')) {
      expected = [204, 'CorsPreflight'];
      why = 'a CORS preflight';
    } else if (found) {
      expected = [405, 'MethodNotAllowed'];
      why = `${method} is not documented on ${found.template}`;
    } else {
      expected = [404, 'NoRoute'];
      why = 'a path outside the document';
    }
    const label = `${method} ${found ? found.template : pathname} (${why})`;
    if (status !== expected[0]) {
      problems.push(`${why} must answer ${expected[0]} (components.responses.${expected[1]}), got ${status}`);
    } else {
      checkResponse(`#/components/responses/${expected[1]}`, { method, status, headers, body }, problems);
    }
    return { label, operationId: expected[1], statusKey: String(status), problems };
  }

  /** A message for a failed check: operation, status, problems, request, body excerpt. */
  function describe(result, { method, url, status, headers, body = '' }) {
    return [
      `OpenAPI: ${result.label} answered ${status} ${headers.get('content-type') ?? '(no Content-Type)'}, which public/openapi.json does not describe:`,
      ...result.problems.map((p) => (p.startsWith('  ') ? `    ${p.trim()}` : `  - ${p}`)),
      `  request: ${method} ${url}`,
      `  body: ${excerpt(body)}`,
      '  (fix the document, or the Worker if it is the one that is wrong; checked by tests/support/openapi-hook.mjs)',
    ].join('\n');
  }

  return { doc, check, describe, findOperation, validatorAt };
}
