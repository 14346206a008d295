// public/openapi.json checked offline: a valid OpenAPI 3.1 document as far as can be told
// without a network (structure, every $ref resolves, every schema compiles in strict ajv, every
// example matches its schema, operations have an operationId and responses), in step with the
// code (the routing table of src/http/mod.rs, the error codes and statuses of src/error.rs, the
// version in Cargo.toml), and the response checker used by tests/support/openapi-hook.mjs
// rejects what it should. No Worker needed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
  REPO, HTTP_METHODS, createAjv, createChecker, escapeToken, loadDocument, resolvePointer,
} from '../support/openapi.mjs';

const doc = loadDocument();
const read = (rel) => fs.readFileSync(path.join(REPO, rel), 'utf8');

/** Every operation: { template, method, op, pointer }. */
const operations = () => Object.entries(doc.paths).flatMap(([template, item]) => HTTP_METHODS
  .filter((m) => item[m])
  .map((method) => ({ template, method, op: item[method], pointer: `#/paths/${escapeToken(template)}/${method}` })));

/** Every node of the document with its JSON pointer. */
function* walk(node, pointer = '#') {
  yield [node, pointer];
  if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) yield* walk(v, `${pointer}/${escapeToken(k)}`);
  }
}

/** Follows $ref chains of non-schema objects. */
function deref(node) {
  for (let i = 0; node?.$ref && i < 10; i++) node = resolvePointer(doc, node.$ref);
  return node;
}

const AUTHENTICATES = /\bauthori[sz]e\w*\(|\bauth::(caller|authenticate)\(/;

/** The body of `fn name` in src/http/<module>.rs, or ''. */
function handlerBody(module, name) {
  let src;
  try { src = read(`src/http/${module}.rs`); } catch { return ''; }
  const start = src.search(new RegExp(`\\bfn ${name}\\b`));
  return start < 0 ? '' : src.slice(start, src.indexOf('\n}\n', start));
}

/**
 * The `{ template: { methods, authenticated } }` routing table of src/http/mod.rs. An arm
 * authenticates when it calls authorize…() itself or its handler (`module::fn(`) does.
 */
function routingTable() {
  const src = read('src/http/mod.rs');
  const start = src.indexOf('async fn route(');
  assert.ok(start >= 0, 'src/http/mod.rs: async fn route( not found');
  const body = src.slice(start, src.indexOf('\n}\n', start));
  const arms = [...body.matchAll(/^\s*\[([^\]\n]*)\]\s*=>\s*\{/gm)];
  assert.ok(arms.length >= 5, `src/http/mod.rs: found only ${arms.length} route arms; has the routing table changed shape?`);
  const routes = new Map();
  arms.forEach((arm, i) => {
    const armBody = body.slice(arm.index + arm[0].length, i + 1 < arms.length ? arms[i + 1].index : body.length);
    const template = '/' + arm[1].split(',').map((s) => s.trim()).map((s) => (/^"[^"]*"$/.test(s) ? s.slice(1, -1) : '{}')).join('/');
    const allow = armBody.match(/allow\(&method,\s*&\[([^\]]*)\]\)/);
    assert.ok(allow, `src/http/mod.rs: the arm for ${template} has no allow(&method, &[…]) (this test reads each route's methods from it)`);
    const methods = new Set([...allow[1].matchAll(/Method::(\w+)/g)].map((m) => m[1].toLowerCase()));
    const handlers = [...armBody.matchAll(/\b([a-z_]+)::([a-z_]+)\(/g)].map((m) => handlerBody(m[1], m[2]));
    routes.set(template, { methods, authenticated: [armBody, ...handlers].some((b) => AUTHENTICATES.test(b)) });
  });
  return routes;
}

const normalise = (template) => template.replace(/\{[^}]*\}/g, '{}');

describe('public/openapi.json: structure', () => {
  test('OpenAPI 3.1 with info, paths and components', () => {
    assert.match(doc.openapi, /^3\.1\.\d+$/);
    assert.equal(typeof doc.info?.title, 'string');
    assert.equal(typeof doc.info?.version, 'string');
    assert.equal(doc.jsonSchemaDialect ?? 'https://spec.openapis.org/oas/3.1/dialect/base', 'https://spec.openapis.org/oas/3.1/dialect/base');
    assert.ok(doc.paths && typeof doc.paths === 'object');
    const allowedTop = ['openapi', 'info', 'jsonSchemaDialect', 'servers', 'paths', 'webhooks', 'components', 'security', 'tags', 'externalDocs'];
    for (const k of Object.keys(doc)) assert.ok(allowedTop.includes(k) || k.startsWith('x-'), `unknown top-level field ${k}`);
  });

  test('info.version is the Worker\'s version (Cargo.toml)', () => {
    const version = read('Cargo.toml').match(/^version\s*=\s*"([^"]+)"/m)?.[1];
    assert.equal(doc.info.version, version);
  });

  test('every $ref resolves', () => {
    const broken = [];
    for (const [node, pointer] of walk(doc)) {
      if (node && typeof node === 'object' && typeof node.$ref === 'string') {
        if (!node.$ref.startsWith('#/')) broken.push(`${pointer}: ${node.$ref} is not a local reference`);
        else if (resolvePointer(doc, node.$ref) === undefined) broken.push(`${pointer}: ${node.$ref}`);
      }
    }
    assert.deepEqual(broken, []);
  });

  test('every operation has a unique operationId, a summary, responses with descriptions', () => {
    const ids = new Map();
    const all = [...operations(), ...Object.entries(doc.webhooks ?? {}).flatMap(([name, item]) => HTTP_METHODS.filter((m) => item[m]).map((method) => ({ template: `webhook ${name}`, method, op: item[method] })))];
    assert.ok(all.length >= 10, `${all.length} operations`);
    for (const { template, method, op } of all) {
      const where = `${method.toUpperCase()} ${template}`;
      assert.match(op.operationId ?? '', /^[A-Za-z][A-Za-z0-9]*$/, `${where}: operationId`);
      assert.ok(!ids.has(op.operationId), `${where}: operationId ${op.operationId} also on ${ids.get(op.operationId)}`);
      ids.set(op.operationId, where);
      assert.ok(op.summary, `${where}: summary`);
      const codes = Object.keys(op.responses ?? {});
      assert.ok(codes.length > 0, `${where}: responses`);
      for (const code of codes) {
        assert.match(code, /^([1-5][0-9]{2}|[1-5]XX|default)$/, `${where}: response key ${code}`);
        assert.equal(typeof deref(op.responses[code])?.description, 'string', `${where} ${code}: description`);
      }
    }
  });

  test('path parameters: every {name} declared once, in: path, required; no undeclared ones', () => {
    for (const { template, method, op } of operations()) {
      const where = `${method.toUpperCase()} ${template}`;
      const params = [...(doc.paths[template].parameters ?? []), ...(op.parameters ?? [])].map(deref);
      for (const p of params) {
        assert.ok(p && typeof p.name === 'string' && ['path', 'query', 'header', 'cookie'].includes(p.in), `${where}: parameter ${JSON.stringify(p)}`);
        assert.ok(p.schema || p.content, `${where}: parameter ${p.name} has a schema`);
      }
      const names = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      const declared = params.filter((p) => p.in === 'path');
      assert.deepEqual(declared.map((p) => p.name).sort(), names, `${where}: path parameters`);
      for (const p of declared) assert.equal(p.required, true, `${where}: ${p.name} must be required`);
    }
  });

  test('security: only defined schemes; browserToken roles are token scopes', () => {
    const schemes = doc.components.securitySchemes;
    const scopes = doc.components.schemas.TokenScope.enum;
    const requirements = [
      ['(top level)', doc.security ?? []],
      ...operations().map(({ template, method, op }) => [`${method.toUpperCase()} ${template}`, op.security ?? doc.security ?? []]),
    ];
    for (const [where, reqs] of requirements) {
      for (const req of reqs) {
        for (const [name, roles] of Object.entries(req)) {
          assert.ok(schemes[name], `${where}: security scheme ${name} is not defined`);
          for (const r of roles) assert.ok(name === 'browserToken' && scopes.includes(r), `${where}: role ${r} of ${name}`);
        }
      }
    }
  });

  test('every schema compiles in strict JSON Schema 2020-12 (typos in keywords fail)', () => {
    // Each component schema under its own id, references rewritten to match.
    const ajv = createAjv({ strict: true, strictRequired: false }); // oneOf of `required` lists is the idiom for "exactly one of"
    const BASE = 'https://rbm-edge.invalid/schemas/';
    const rewrite = (schema) => JSON.parse(JSON.stringify(schema).replaceAll('"#/components/schemas/', `"${BASE}`));
    for (const [name, schema] of Object.entries(doc.components.schemas)) ajv.addSchema(rewrite(schema), `${BASE}${name}`);
    const failures = [];
    for (const [node, pointer] of walk(doc)) {
      if (!node || typeof node !== 'object' || Array.isArray(node)) continue;
      const isSchema = /\/(schema|schemas\/[^/]+)$/.test(pointer) && !pointer.includes('/examples/');
      if (!isSchema) continue;
      try {
        const component = pointer.match(/^#\/components\/schemas\/([^/]+)$/)?.[1];
        if (component) ajv.getSchema(`${BASE}${component}`);
        else ajv.compile(rewrite(node));
      } catch (e) {
        failures.push(`${pointer}: ${e.message}`);
      }
    }
    assert.deepEqual(failures, []);
  });

  test('every example matches its schema', () => {
    const { validatorAt } = createChecker({ doc });
    const failures = [];
    let checked = 0;
    for (const [node, pointer] of walk(doc)) {
      if (!node || typeof node !== 'object' || Array.isArray(node)) continue;
      // Media type objects: example next to schema.
      if (node.schema && 'example' in node && /\/content\/[^/]+$/.test(pointer) && !/text~1plain$/.test(pointer)) {
        const v = validatorAt(`${pointer}/schema`);
        checked++;
        if (!v(node.example)) failures.push(`${pointer}/example: ${v.errors.map((e) => `${e.instancePath} ${e.message}`).join('; ')}`);
      }
      // Schemas: examples[].
      if (Array.isArray(node.examples) && /\/(schema|schemas\/[^/]+|properties\/[^/]+)$/.test(pointer)) {
        const v = validatorAt(pointer);
        node.examples.forEach((ex, i) => {
          checked++;
          if (!v(ex)) failures.push(`${pointer}/examples/${i}: ${v.errors.map((e) => `${e.instancePath} ${e.message}`).join('; ')}`);
        });
      }
    }
    assert.ok(checked >= 10, `${checked} examples checked`);
    assert.deepEqual(failures, []);
  });
});

describe('public/openapi.json: in step with the code', () => {
  test('the routes of src/http/mod.rs and the document\'s paths are the same, method for method', (t) => {
    const code = routingTable();
    const documented = new Map();
    for (const { template, method, op } of operations()) {
      if (op['x-rbm-edge-asset']) {
        assert.ok(fs.existsSync(path.join(REPO, op['x-rbm-edge-asset'])), `${template}: ${op['x-rbm-edge-asset']} is missing`);
        continue;
      }
      const key = normalise(template);
      const entry = documented.get(key) ?? { template, methods: new Map() };
      entry.methods.set(method, op);
      documented.set(key, entry);
    }
    const missing = [];
    for (const [key, { methods, authenticated }] of code) {
      const d = documented.get(key);
      for (const m of methods) {
        const op = d?.methods.get(m);
        if (!op) {
          missing.push(`${m.toUpperCase()} ${key} is routed by src/http/mod.rs but not in public/openapi.json`);
          continue;
        }
        const secured = (op.security ?? doc.security ?? []).length > 0;
        assert.equal(secured, authenticated, `${m.toUpperCase()} ${d.template}: the code ${authenticated ? 'authenticates' : 'does not authenticate'} it, the document says security ${JSON.stringify(op.security)}`);
      }
    }
    const extra = [];
    for (const [key, { template, methods }] of documented) {
      for (const [m, op] of methods) {
        if (code.get(key)?.methods.has(m)) {
          if (op['x-rbm-edge-pending']) t.diagnostic(`${m.toUpperCase()} ${template} is routed now: drop its x-rbm-edge-pending`);
          continue;
        }
        if (op['x-rbm-edge-pending']) {
          t.diagnostic(`${m.toUpperCase()} ${template}: documented, not routed yet (x-rbm-edge-pending)`);
          continue;
        }
        extra.push(`${m.toUpperCase()} ${template} is in public/openapi.json but not routed by src/http/mod.rs`);
      }
    }
    assert.deepEqual([...missing, ...extra], []);
  });

  test('error codes: every code of src/error.rs is documented with its status', (t) => {
    const src = read('src/error.rs');
    const block = (name) => src.slice(src.indexOf(`pub fn ${name}(`), src.indexOf('\n    }\n', src.indexOf(`pub fn ${name}(`)));
    const variantsOf = (lhs) => (lhs.match(/\b[A-Z][A-Za-z0-9]*\b/g) ?? []).filter((v) => v !== 'ApiError');
    const statusOf = new Map();
    for (const m of block('status').matchAll(/([A-Za-z0-9(){}_.,|\s]+?)=>\s*(\d{3})/g)) {
      for (const v of variantsOf(m[1])) statusOf.set(v, Number(m[2]));
    }
    const codes = new Map(); // code -> status
    for (const m of block('code').matchAll(/([A-Za-z0-9(){}_.,|\s]+?)=>\s*"([A-Z0-9_]+)"/g)) {
      for (const v of variantsOf(m[1])) {
        assert.ok(statusOf.has(v), `src/error.rs: no status parsed for ${v}`);
        codes.set(m[2], statusOf.get(v));
      }
    }
    assert.ok(codes.size >= 15, `parsed ${codes.size} codes from src/error.rs`);
    const { ErrorCode } = doc.components.schemas;
    const table = new Map([...ErrorCode.description.matchAll(/^\| `([A-Z0-9_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]));
    assert.deepEqual([...table.keys()].sort(), [...ErrorCode.enum].sort(), 'ErrorCode: the table in its description lists exactly its enum');
    for (const [code, status] of codes) {
      assert.ok(ErrorCode.enum.includes(code), `${code} (src/error.rs) is missing from ErrorCode`);
      assert.equal(table.get(code), status, `${code}: src/error.rs answers ${status}, the document says ${table.get(code)}`);
    }
    for (const code of ErrorCode.enum) if (!codes.has(code)) t.diagnostic(`${code}: documented, not in src/error.rs yet`);
  });

  test('each response lists only error codes of its own status', () => {
    const table = new Map([...doc.components.schemas.ErrorCode.description.matchAll(/^\| `([A-Z0-9_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]));
    const check = (where, key, response) => {
      for (const [node] of walk(response)) {
        const codes = node?.properties?.error?.properties?.code?.enum;
        if (!codes) continue;
        for (const c of codes) {
          assert.ok(table.has(c), `${where}: unknown code ${c}`);
          assert.ok(String(table.get(c)) === key || (key.endsWith('XX') && String(table.get(c))[0] === key[0]), `${where}: ${c} is a ${table.get(c)}, listed under ${key}`);
        }
      }
    };
    let n = 0;
    for (const { template, method, op } of operations()) {
      for (const [key, r] of Object.entries(op.responses)) { check(`${method.toUpperCase()} ${template} ${key}`, key, deref(r)); n++; }
    }
    check('components.responses.NoRoute', '404', doc.components.responses.NoRoute);
    check('components.responses.MethodNotAllowed', '405', doc.components.responses.MethodNotAllowed);
    assert.ok(n > 50, `${n} responses`);
  });

  test('every /v1 operation documents 401; every token route 429 with Retry-After', () => {
    for (const { template, method, op } of operations()) {
      if (!template.startsWith('/v1/')) continue;
      const where = `${method.toUpperCase()} ${template}`;
      assert.ok(op.responses['401'], `${where}: 401`);
      const tokenRoute = (op.security ?? []).some((r) => 'browserToken' in r);
      if (tokenRoute) {
        const r = deref(op.responses['429']);
        assert.ok(r, `${where}: 429`);
        assert.ok(deref(r.headers?.['Retry-After']), `${where}: 429 documents Retry-After`);
      }
    }
  });

  test('the send request documents every field validate_send takes off (src/core/validate.rs)', () => {
    const src = read('src/core/validate.rs');
    const fields = [...src.matchAll(/take_str\(&mut message, "([A-Za-z]+)"\)/g)].map((m) => m[1]);
    assert.ok(fields.length >= 4, `parsed ${fields.length} fields`);
    for (const f of fields) assert.ok(doc.components.schemas.SendRequest.properties[f], `SendRequest.${f}`);
  });
});

describe('the response checker (tests/support/openapi.mjs)', () => {
  const checker = createChecker({ doc });
  const json = { 'content-type': 'application/json' };
  const answer = (method, p, status, body, headers = json, assets = false) => checker.check({
    method, url: `http://127.0.0.1:1${p}`, status, headers: new Headers(headers), body: typeof body === 'string' ? body : JSON.stringify(body), assets,
  });
  const error = (code) => ({ error: { code, message: 'A sentence.' } });

  test('accepts what the Worker answers', () => {
    for (const [m, p, s, b, h, assets] of [
      ['GET', '/healthz', 200, { ok: true, version: '0.1.0' }],
      ['HEAD', '/healthz', 200, ''],
      ['POST', '/webhook', 200, '1234567890', { 'content-type': 'text/plain; charset=utf-8' }],
      ['POST', '/webhook', 200, { ok: true, kind: 'DELIVERED' }],
      ['POST', '/webhook', 401, error('BAD_SIGNATURE')],
      ['GET', '/v1/messages/abc', 404, error('NOT_FOUND')],
      ['POST', '/v1/messages', 404, { messageId: 'm', phoneNumber: '+12223334444', agentId: 'a', status: 'FAILED', rcsReachable: false, rbm: { error: { code: 404 } } }],
      ['POST', '/v1/messages', 429, error('RATE_LIMITED'), { ...json, 'retry-after': '60' }],
      ['GET', '/nowhere', 404, error('NOT_FOUND')],
      ['PATCH', '/v1/tokens', 405, error('METHOD_NOT_ALLOWED')],
      ['PROPFIND', '/nowhere', 405, error('METHOD_NOT_ALLOWED')],
      ['OPTIONS', '/v1/anything', 204, '', { vary: 'Origin' }],
      ['GET', '/openapi.json', 200, doc, json, true],
      ['GET', '/openapi.json', 404, error('NOT_FOUND'), json, false],
      ['GET', '//healthz', 200, { ok: true, version: '0.1.0' }],
    ]) {
      const r = answer(m, p, s, b, h, assets);
      assert.deepEqual(r.problems, [], `${m} ${p} ${s}`);
    }
  });

  test('rejects what the document does not describe', () => {
    for (const [what, m, p, s, b, h] of [
      ['undocumented status', 'GET', '/healthz', 500, error('INTERNAL')],
      ['a field missing', 'GET', '/healthz', 200, { ok: true }],
      ['an extra field on our own object', 'GET', '/healthz', 200, { ok: true, version: '1', extra: 1 }],
      ['a code of another status', 'GET', '/v1/messages/abc', 400, error('NOT_FOUND')],
      ['not the error shape', 'GET', '/nowhere', 404, { message: 'nope' }],
      ['a path outside the document answering 200', 'GET', '/nowhere', 200, { ok: true }],
      ['an undocumented method answering 200', 'PUT', '/healthz', 200, { ok: true, version: '1' }],
      ['RATE_LIMITED without Retry-After', 'GET', '/v1/messages/abc', 429, error('RATE_LIMITED')],
      ['wrong content type', 'POST', '/webhook', 200, '{"ok":true,"kind":"READ"}', { 'content-type': 'text/html' }],
      ['not JSON', 'GET', '/healthz', 200, '{"ok":'],
      ['a body where none is documented', 'OPTIONS', '/v1/messages', 204, 'x', { vary: 'Origin' }],
    ]) {
      const r = answer(m, p, s, b, h);
      assert.ok(r.problems.length > 0, `${what}: ${m} ${p} ${s} must be refused`);
      const msg = checker.describe(r, { method: m, url: `http://127.0.0.1:1${p}`, status: s, headers: new Headers(h ?? json), body: JSON.stringify(b) });
      assert.match(msg, /^OpenAPI: /, what);
      assert.ok(msg.includes('body: '), `${what}: the message has a body excerpt`);
    }
  });
});
