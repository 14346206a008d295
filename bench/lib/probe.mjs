// A probe Worker that re-instantiates the built wasm inside workerd, to time the wasm
// instantiation in workerd's own V8 (Node 20's V8 cannot even compile this module: it uses
// wasm exception handling with exnref, `try_table`).
//
// The wasm-bindgen glue (build/index.js) instantiates the module at its top level and keeps a
// reinitialisation function (used after a fatal Wasm error) that resets the glue's state,
// instantiates again and calls __wbindgen_start. The probe copies the glue, exports that
// function plus a bare `new WebAssembly.Instance(module, imports())`, and runs them on request:
//   GET /instantiate?n=N   N × new WebAssembly.Instance(module, glue imports)
//   GET /reinit?n=N        N × the glue's reinit (reset + instantiate + __wbindgen_start)
//   GET /noop              nothing (request overhead baseline)
// workerd forbids compiling wasm from bytes at run time, so compilation itself cannot be timed
// in-request: it is estimated from startup (this Worker vs a trivial JS Worker).

import fs from 'node:fs';
import path from 'node:path';

const PROBE_SRC = `import { __benchReinit, __benchInstantiate } from './bench-glue.js';
export default {
  fetch(request) {
    const u = new URL(request.url);
    const n = Math.max(1, Math.min(100, Number(u.searchParams.get('n')) || 1));
    let keep = null;
    if (u.pathname === '/reinit') for (let i = 0; i < n; i++) __benchReinit();
    else if (u.pathname === '/instantiate') for (let i = 0; i < n; i++) keep = __benchInstantiate();
    return new Response(keep ? 'ok:' + typeof keep : 'ok');
  },
};
`;

/**
 * Writes bench-glue.js + bench-probe.mjs next to index.js/index_bg.wasm in `dir`.
 * Returns {ok: true, scriptPath} or {ok: false, why}.
 */
export function writeProbe(dir) {
  const glue = fs.readFileSync(path.join(dir, 'index.js'), 'utf8');
  // e.g. function z(){s++,…,B=new WebAssembly.Instance(Q,ee()),i=B.exports,i.__wbindgen_start()}
  const m = glue.match(/function ([\w$]+)\(\)\{[^{}]*?[\w$]+=new WebAssembly\.Instance\(([\w$]+),([\w$]+)\(\)\)[^{}]*\}/);
  if (!m) return { ok: false, why: 'the glue has no recognisable reinit function (new WebAssembly.Instance(module, imports()))' };
  const [, reinit, module, imports] = m;
  fs.writeFileSync(path.join(dir, 'bench-glue.js'), `${glue}
export function __benchReinit(){${reinit}()}
export function __benchInstantiate(){return new WebAssembly.Instance(${module},${imports}())}
`);
  fs.writeFileSync(path.join(dir, 'bench-probe.mjs'), PROBE_SRC);
  return { ok: true, scriptPath: path.join(dir, 'bench-probe.mjs'), glueNames: { reinit, module, imports } };
}
