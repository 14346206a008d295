// .dev.vars files (wrangler reads them with dotenv 16): parse and write them the same way.
// Node 20 standard library only.

import fs from 'node:fs';

// dotenv 16's line grammar: KEY=value, KEY='…', KEY="…" (\n and \r expanded), KEY=`…`, comments.
const LINE = /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/mg;

/** The variables of a dotenv text, as dotenv 16 (wrangler) reads them. */
export function parseDotenv(text) {
  const out = {};
  const lines = String(text).replace(/\r\n?/mg, '\n');
  let m;
  LINE.lastIndex = 0;
  while ((m = LINE.exec(lines)) !== null) {
    const key = m[1];
    let value = (m[2] || '').trim();
    const q = value[0];
    value = value.replace(/^(['"`])([\s\S]*)\1$/mg, '$2');
    if (q === '"') value = value.replace(/\\n/g, '\n').replace(/\\r/g, '\r');
    out[key] = value;
  }
  return out;
}

export function readDotenv(file) {
  try { return parseDotenv(fs.readFileSync(file, 'utf8')); } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * One KEY=<quoted value> line per variable. dotenv has no escapes inside quotes (double quotes
 * only expand \n), so each value is wrapped in a quote character it does not contain.
 */
export function renderDotenv(vars) {
  return Object.entries(vars).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`bad variable name ${JSON.stringify(k)}`);
    const value = String(v);
    const q = ["'", '`', '"'].find((c) => !value.includes(c) && !(c === '"' && /\\[nr]/.test(value)));
    if (!q || value.includes('\r')) throw new Error(`${k} cannot be written to a .dev.vars file faithfully`);
    return `${k}=${q}${value}${q}`;
  }).join('\n') + '\n';
}

/** The service-account key JSON with its token_uri replaced (kept on one line, as in .dev.vars). */
export function withTokenUri(keyJson, tokenUri) {
  const key = JSON.parse(keyJson);
  key.token_uri = tokenUri;
  return JSON.stringify(key);
}
