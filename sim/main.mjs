#!/usr/bin/env node
// The local RBM simulator on its own (`make sim`; `make dev` runs it next to the Worker).
//
//   node sim/main.mjs [--port 8788] [--webhook http://127.0.0.1:8787/webhook] [--dev-vars .dev.vars]
//                     [--deliver-ms 1000] [--read-ms 3000] [--typing-ms 500] [--reply-ms 1500]
//                     [--slow-ms 3000] [--retries 4]
//
// The client token (first of RBM_CLIENT_TOKEN) and the service-account key
// (RBM_SERVICE_ACCOUNT_KEY) come from the .dev.vars file, as the Worker's do. Ctrl-C stops it.

import path from 'node:path';
import { parseArgs } from 'node:util';
import { startSimulator } from './simulator.mjs';
import { readDotenv } from './devvars.mjs';

const { values: a } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.RBM_SIM_PORT ?? '8788' },
    host: { type: 'string', default: '127.0.0.1' },
    webhook: { type: 'string', default: 'http://127.0.0.1:8787/webhook' },
    'dev-vars': { type: 'string', default: '.dev.vars' },
    'deliver-ms': { type: 'string' },
    'read-ms': { type: 'string' },
    'typing-ms': { type: 'string' },
    'reply-ms': { type: 'string' },
    'slow-ms': { type: 'string' },
    retries: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (a.help) {
  console.log('usage: node sim/main.mjs [--port 8788] [--webhook URL] [--dev-vars .dev.vars] [--deliver-ms N] [--read-ms N] [--typing-ms N] [--reply-ms N] [--slow-ms N] [--retries N]');
  process.exit(0);
}

const vars = readDotenv(path.resolve(a['dev-vars'])) ?? {};
const clientToken = (process.env.RBM_CLIENT_TOKEN ?? vars.RBM_CLIENT_TOKEN ?? '').split(',')[0].trim();
if (!clientToken) {
  console.error(`sim: no RBM_CLIENT_TOKEN in ${a['dev-vars']} (run make setup)`);
  process.exit(2);
}
const key = vars.RBM_SERVICE_ACCOUNT_KEY;
if (!key) console.error(`sim: no RBM_SERVICE_ACCOUNT_KEY in ${a['dev-vars']}: using a fresh key the Worker does not have (run make setup)`);

let sim;
try {
  sim = await startSimulator({
    port: Number(a.port), host: a.host, webhookUrl: a.webhook || null, clientToken,
    serviceAccountKey: key || undefined, agentId: vars.RBM_AGENT_ID,
    deliverMs: a['deliver-ms'], readMs: a['read-ms'], typingMs: a['typing-ms'], replyMs: a['reply-ms'],
    slowMs: a['slow-ms'], retries: a.retries,
  });
} catch (err) {
  console.error(err.code === 'EADDRINUSE' ? `sim: port ${a.port} is in use (set --port or RBM_SIM_PORT)` : `sim: ${err.message}`);
  process.exit(1);
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, async () => { await sim.stop(); process.exit(0); });
}
