// The console page (public/) in a real browser: headless Chromium from Debian (/usr/bin/chromium,
// scripts/setup-browser.sh) driven by playwright-core, against the same stack as `make dev`: the
// built Worker under wrangler dev with [assets] = public/, Queues, PROCESSING=queue, and the
// local RBM simulator (sim/) whose simulated users post signed DELIVERED/READ/typing/replies.
// A Standard Webhooks sink stands for the business backend (forwards; made to fail for the
// dead-letter case).
//
//   make test-browser   (or: RBM_EDGE_BUILD_DIR=/tmp/rbm-build node --test tests/browser/)
//
// Two browser contexts: `main` walks the happy paths and must log no console error at all;
// `errors` walks the error paths (wrong API key, unreachable number, a Worker validation error),
// whose 4xx answers Chromium reports as console errors by design.
//
// Parts that depend on routes or scopes still being built fail with a message saying so:
//   - GET /v1/phones/{p}/messages and the /live WebSocket (conversation: replies, typing, history)
//   - the dead-letters:manage token scope (dead letters with the browser token)
// Screenshots: tests/browser/out/ (gitignored).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';
import { startWorker, freePort, REPO } from '../support/worker.mjs';
import { startSimulator } from '../../sim/simulator.mjs';
import { startSink } from '../fakes/sink.mjs';

const CHROMIUM = '/usr/bin/chromium';
const LAUNCH_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const OUT = path.join(REPO, 'tests', 'browser', 'out');

const AGENT_ID = 'my_agent';
const API_KEY = `console-key-${crypto.randomBytes(12).toString('hex')}`;
const CLIENT_TOKEN = `client-${crypto.randomBytes(12).toString('hex')}`;
const SIGNING_KEY = crypto.randomBytes(36).toString('base64url');
const FORWARD_SECRET = `whsec_${crypto.randomBytes(32).toString('base64')}`;

// The simulator's scripted numbers (sim/rbm.mjs NUMBERS); any other number behaves like NORMAL.
const NORMAL = '+12223334444';
const REPLIES_TEXT = '+15550000101';
const TAPS_SUGGESTION = '+15550000102';
const OFFLINE = '+15550000100';
const NOT_RCS = '+15550000404';
const SIM_REPLY_TEXT = 'Yes please, sounds good!';

const SCOPES = ['messages:send', 'messages:read', 'events:send', 'capabilities:read', 'dead-letters:manage'];
const STATUS_RANK = { SENDING: -1, FAILED: 0, SENT: 1, EXPIRED: 2, REVOKED: 3, FALLBACK: 4, DELIVERED: 5, READ: 6 };

const WAIT = { ui: 5_000, status: 20_000, live: 15_000, deadLetter: 45_000 };

let sim;
let sink;
let worker;
let browser;
const simLog = [];

/** One browser context with everything it logged. */
async function openContext(name, viewport = { width: 1440, height: 900 }) {
  const context = await browser.newContext({ viewport, reducedMotion: 'reduce', locale: 'en-US', timezoneId: 'UTC' });
  context.setDefaultTimeout(WAIT.ui);
  const rec = {
    name, context, console: [], errors: [], badResponses: [], requests: [], tokens: [], sockets: [],
  };
  context.on('console', (m) => {
    const entry = `${m.type()}: ${m.text()}`;
    rec.console.push(entry);
    if (m.type() === 'error') rec.errors.push(entry);
  });
  context.on('weberror', (e) => rec.errors.push(`pageerror: ${e.error().message}`));
  context.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/v1/')) {
      rec.requests.push({ method: r.method(), path: u.pathname, search: u.search, auth: r.headers().authorization ?? null, body: r.postData() });
    }
  });
  context.on('response', async (r) => {
    const u = new URL(r.url());
    if (r.status() >= 400) rec.badResponses.push(`${r.request().method()} ${u.pathname} → ${r.status()}`);
    if (u.pathname === '/v1/tokens' && r.ok()) {
      try { rec.tokens.push((await r.json()).token); } catch { /* body gone with the page */ }
    }
  });
  return rec;
}

/** A page with a CDP view of WebSocket handshakes (the subprotocol offer carries the token). */
async function openPage(rec) {
  const page = await rec.context.newPage();
  const cdp = await rec.context.newCDPSession(page);
  await cdp.send('Network.enable');
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
    rec.sockets.push({ id: e.requestId, url: null, protocols: e.request.headers['Sec-WebSocket-Protocol'] ?? e.request.headers['sec-websocket-protocol'] ?? null });
  });
  cdp.on('Network.webSocketCreated', (e) => rec.sockets.push({ id: e.requestId, url: e.url, protocols: undefined }));
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    rec.sockets.push({ id: e.requestId, status: e.response.status, accepted: e.response.headers['Sec-WebSocket-Protocol'] ?? e.response.headers['sec-websocket-protocol'] ?? null });
  });
  return page;
}

async function signInWithMouse(page) {
  await page.goto(`${worker.url}/`);
  await page.fill('#api-key', API_KEY);
  await page.click('#signin-submit');
  await page.waitForSelector('#console-view:not([hidden])', { timeout: WAIT.ui * 2 });
}

/** Opens a number through the phone form. */
async function openNumber(page, phone) {
  await page.fill('#phone', phone);
  await page.press('#phone', 'Enter');
  await page.waitForFunction((p) => document.getElementById('conv-title').textContent === p, phone);
}

/** Types a text with reply chips and sends it; returns the messageId the page generated. */
async function sendText(page, text, chips = []) {
  await page.fill('#msg-text', text);
  for (const c of chips) {
    await page.fill('#sugg-input', c);
    await page.press('#sugg-input', 'Enter');
  }
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/v1/messages'),
    page.click('#send'),
  ]);
  const body = JSON.parse(req.postData());
  return body.messageId;
}

/** Records every data-status a message's <li> takes (MutationObserver in the page). */
async function trackStatuses(page, messageId) {
  await page.evaluate((id) => {
    window.__statusLog ??= {};
    const log = (window.__statusLog[id] = []);
    const seen = (li) => { const s = li?.dataset.status; if (s && log[log.length - 1] !== s) log.push(s); };
    const find = () => document.querySelector(`li.msg[data-message-id="${id}"]`);
    seen(find());
    new MutationObserver(() => seen(find())).observe(document.getElementById('messages'), { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
  }, messageId);
}

const statusLog = (page, id) => page.evaluate((mid) => window.__statusLog?.[mid] ?? [], id);

async function waitStatus(page, messageId, status, timeout = WAIT.status) {
  const sel = `li.msg[data-message-id="${messageId}"][data-status="${status}"]`;
  try {
    await page.waitForSelector(sel, { timeout });
  } catch {
    const now = await page.locator(`li.msg[data-message-id="${messageId}"]`).getAttribute('data-status').catch(() => '(no such message)');
    const banner = (await page.locator('#conv-banner').innerText().catch(() => '')).replace(/\s+/g, ' ');
    assert.fail(`message ${messageId} did not reach ${status} within ${timeout} ms (status now ${now}; statuses seen ${JSON.stringify(await statusLog(page, messageId))}; banner: ${banner.trim() || 'none'})`);
  }
}

/** Fails loudly when the conversation routes are missing (the page shows a banner then). */
async function requireConversationRoutes(page, what) {
  const state = await page.waitForFunction(() => {
    const s = document.getElementById('live-state').dataset.state;
    return ['open', 'unavailable', 'waiting'].includes(s) ? s : null;
  }, null, { timeout: WAIT.live }).then((h) => h.jsonValue()).catch(() => 'timeout');
  if (state === 'open') return;
  const banner = (await page.locator('#conv-banner').innerText().catch(() => '')).replace(/\s+/g, ' ').trim();
  const live = (await page.locator('#live-state').textContent()).trim();
  assert.fail(`${what} NEEDS THE CONVERSATION ROUTES (GET /v1/phones/{p}/messages and the /live WebSocket), ` +
    `not available on this Worker build: live state "${live}" (${state}); banner: ${banner || 'none'}`);
}

async function shot(page, name) {
  fs.mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, name);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

async function apiAsServer(method, p) {
  const res = await fetch(`${worker.url}${p}`, { method, headers: { authorization: `Bearer ${API_KEY}` }, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

async function pollUntil(fn, done, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (done(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last)?.slice(0, 400)})`);
}

function failureContext(rec) {
  return `\nconsole errors: ${JSON.stringify(rec.errors, null, 1)}\nnon-2xx answers: ${JSON.stringify(rec.badResponses)}\nsimulator: ${simLog.slice(-15).join('\n')}\nworker: ${worker.logs().split('\n').slice(-25).join('\n')}`;
}

// ----------------------------------------------------------------------------------------------

describe('console page in Chromium (Worker + assets + queue + RBM simulator)', { timeout: 300_000 }, () => {
  let main; // the happy-path context
  let page;

  before(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/setup-browser.sh (apt-get install chromium)`);
    sink = await startSink({ secret: FORWARD_SECRET });
    sim = await startSimulator({ clientToken: CLIENT_TOKEN, agentId: AGENT_ID, log: (l) => simLog.push(l) });
    worker = await startWorker({
      name: 'rbm-edge-console-test',
      assets: true,
      queues: true,
      vars: {
        RBM_AGENT_ID: AGENT_ID,
        PROCESSING: 'queue',
        RBM_API_BASE: sim.url,
        FORWARD_URL: `${sink.url}/rbm`,
        RETRY_DELAY_SECONDS: '1',
      },
      secrets: {
        RBM_CLIENT_TOKEN: CLIENT_TOKEN,
        API_KEYS: API_KEY,
        RBM_SERVICE_ACCOUNT_KEY: sim.serviceAccountKey,
        TOKEN_SIGNING_KEY: SIGNING_KEY,
        FORWARD_SECRET,
      },
    });
    sim.setWebhook(`${worker.url}/webhook`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS, timeout: 30_000 });
    main = await openContext('main');
    page = await openPage(main);
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await worker?.stop();
    await sim?.stop();
    await sink?.close();
  });

  test('served as static assets: strict CSP and security headers, no inline script or style', async () => {
    const res = await fetch(`${worker.url}/`, { signal: AbortSignal.timeout(10_000) });
    const html = await res.text();
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/, `CSP: ${csp}`);
    assert.match(csp, /script-src 'self'(;|$)/, `scripts from this origin only: ${csp}`);
    assert.match(csp, /connect-src 'self'(;|$)/, csp);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, csp);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline <script>');
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'no inline event handlers');
    assert.doesNotMatch(html, /\sstyle\s*=/i, 'no style attributes');
    assert.doesNotMatch(html, /<style/i, 'no <style> blocks');
    const files = ['/console.css', '/js/app.js', '/js/api.js', '/js/session.js', '/js/live.js', '/js/conversation.js',
      '/js/composer.js', '/js/dead-letters.js', '/js/dom.js', '/js/config.js', '/favicon.svg'];
    for (const f of files) {
      const r = await fetch(`${worker.url}${f}`, { signal: AbortSignal.timeout(10_000) });
      await r.arrayBuffer();
      assert.equal(r.status, 200, f);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff', f);
    }
    const hidden = await fetch(`${worker.url}/_headers`, { signal: AbortSignal.timeout(10_000) });
    await hidden.arrayBuffer();
    assert.notEqual(hidden.status, 200, '_headers itself is not served');
    // The API is still the Worker's: JSON answers, no asset headers.
    const health = await fetch(`${worker.url}/healthz`, { signal: AbortSignal.timeout(10_000) });
    assert.deepEqual((await health.json()).ok, true);
  });

  test('sign-in with the keyboard only; a wrong key shows the API error and is not kept', { timeout: 60_000 }, async () => {
    const errs = await openContext('errors');
    const p = await openPage(errs);
    try {
      await p.goto(`${worker.url}/`);
      await p.waitForFunction(() => document.activeElement?.id === 'api-key');
      assert.equal(await p.evaluate(() => document.querySelector(`label[for="${document.activeElement.id}"]`)?.textContent.trim()), 'API key', 'the focused key field is labelled');
      // Round trip with Shift+Tab: the form is a plain tab sequence.
      await p.keyboard.press('Tab');
      await p.keyboard.press('Shift+Tab');
      assert.equal(await p.evaluate(() => document.activeElement?.id), 'api-key', 'Shift+Tab back to the key field');
      await p.keyboard.type('not-the-key');
      await p.keyboard.press('Tab');
      assert.equal(await p.evaluate(() => document.activeElement?.id), 'agent-id');
      await p.keyboard.press('Tab');
      assert.equal(await p.evaluate(() => document.activeElement?.id), 'signin-submit');
      await p.keyboard.press('Enter');
      await p.waitForSelector('#signin-error.visible');
      const shown = await p.locator('#signin-error').textContent();
      assert.match(shown, /UNAUTHORIZED/, `code shown: ${shown}`);
      assert.ok(shown.replace('UNAUTHORIZED', '').trim().length > 10, `message shown: ${shown}`);
      assert.equal(await p.locator('#signin-error').getAttribute('role'), 'alert');
      assert.deepEqual(await p.evaluate(() => [sessionStorage.length, localStorage.length]), [0, 0], 'a refused key is not stored');
      assert.equal(await p.evaluate(() => document.activeElement?.id), 'api-key', 'focus back on the key field');
    } finally {
      await errs.context.close();
    }

    // The real sign-in, keyboard only, in the main context.
    await page.goto(`${worker.url}/`);
    await page.waitForFunction(() => document.activeElement?.id === 'api-key');
    await page.keyboard.type(API_KEY);
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#console-view:not([hidden])', { timeout: 10_000 });
    assert.equal(await page.locator('#signin-view').isHidden(), true);
    const storage = await page.evaluate(() => ({
      session: Object.fromEntries(Object.entries(sessionStorage)), local: localStorage.length, url: location.href,
      dom: document.documentElement.outerHTML,
    }));
    assert.equal(storage.local, 0, 'nothing in localStorage');
    assert.ok(Object.values(storage.session).includes(API_KEY), 'the key is in sessionStorage');
    assert.ok(!storage.url.includes(API_KEY), 'not in the URL');
    assert.ok(!storage.dom.includes(API_KEY), 'not in the DOM (the field was emptied)');

    // The mint: with the API key, the console's five scopes, 15 minutes, any number. (A Worker
    // that does not know dead-letters:manage refuses it; the page then asks without it: the
    // dead-letter test below fails on such a Worker.)
    const mints = main.requests.filter((r) => r.path === '/v1/tokens');
    assert.ok(mints.length >= 1, 'a token was minted');
    for (const m of mints) assert.equal(m.auth, `Bearer ${API_KEY}`, 'minted with the API key');
    const mintBody = JSON.parse(mints[0].body);
    assert.equal(mintBody.ttlSeconds, 900);
    assert.equal(mintBody.phoneNumbers, undefined, 'no phone restriction');
    assert.equal(mintBody.agentId, undefined, 'no agentId when none was typed');
    assert.deepEqual([...mintBody.scopes].sort(), [...SCOPES].sort(), 'the five scopes');
  });

  test('send a text with reply chips: ticks go SENT → DELIVERED → READ, coloured when read', { timeout: 60_000 }, async () => {
    await page.waitForFunction((p) => document.getElementById('conv-title').textContent === p, NORMAL);
    const text = `Your order #${crypto.randomInt(1000, 9999)} has shipped. Track it, or reply with a question.`;
    const id = await sendText(page, text, ['Track order', 'Talk to an agent']);
    await trackStatuses(page, id);
    await waitStatus(page, id, 'READ');
    const seen = await statusLog(page, id);
    const ranks = seen.map((s) => STATUS_RANK[s]);
    assert.ok(ranks.every((r, i) => i === 0 || r >= ranks[i - 1]), `statuses never go back: ${seen.join(' → ')}`);
    const li = page.locator(`li.msg[data-message-id="${id}"]`);
    assert.equal(await li.locator('.bubble-out').textContent(), text);
    assert.deepEqual(await li.locator('.sent-chip').allTextContents(), ['Track order', 'Talk to an agent']);
    assert.match(await li.locator('.ticks').getAttribute('class'), /st-read/);
    assert.equal(await li.locator('.ticks path').count(), 2, 'double tick');
    const tickColour = await li.locator('.ticks').evaluate((el) => getComputedStyle(el).color);
    const timeColour = await li.locator('.msg-time').evaluate((el) => getComputedStyle(el).color);
    assert.notEqual(tickColour, timeColour, 'READ ticks are coloured');
    assert.equal(await page.locator('#msg-text').inputValue(), '', 'the composer is emptied after the send');

    // Details: the receipts the Worker recorded.
    await li.locator('.meta-btn').click();
    await page.waitForFunction(() => /Read by the user/.test(document.getElementById('detail').textContent));
    const detail = await page.locator('#detail').textContent();
    assert.match(detail, /Delivered to the phone/);
    assert.match(detail, new RegExp(id));

    // What RBM (the simulator) received.
    const m = sim.messages().find((x) => x.messageId === id);
    assert.ok(m, 'the simulator got the message');
    assert.equal(m.phoneNumber, NORMAL);
    assert.equal(m.message.contentMessage.text, text);
    assert.deepEqual(m.message.contentMessage.suggestions.map((s) => s.reply.text), ['Track order', 'Talk to an agent']);
  });

  test('send a rich card with card suggestions and a traffic type', { timeout: 60_000 }, async () => {
    await page.check('input[name="mode"][value="card"]');
    assert.equal(await page.locator('#sugg-count').textContent(), '0 / 4', 'a card takes 4 suggestions');
    await page.fill('#card-title', 'Autumn sale: 20 % off');
    await page.fill('#card-description', 'This weekend only, on every coat and jacket.');
    for (const c of ['Shop now', 'Remind me']) {
      await page.fill('#sugg-input', c);
      await page.click('#sugg-add');
    }
    // Keyboard: remove the second chip with its labelled button.
    await page.getByRole('button', { name: 'Remove suggestion “Remind me”' }).press('Enter');
    assert.deepEqual(await page.locator('#chip-list .chip-text').allTextContents(), ['Shop now']);
    await page.locator('details.options summary').click();
    await page.selectOption('#traffic-type', 'PROMOTION');
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/v1/messages'),
      page.click('#send'),
    ]);
    const body = JSON.parse(req.postData());
    assert.equal(body.phoneNumber, NORMAL);
    assert.equal(body.messageTrafficType, 'PROMOTION');
    assert.deepEqual(body.contentMessage.richCard.standaloneCard.cardContent, {
      title: 'Autumn sale: 20 % off', description: 'This weekend only, on every coat and jacket.',
      suggestions: [{ reply: { text: 'Shop now', postbackData: 'shop_now' } }],
    });
    await waitStatus(page, body.messageId, 'READ');
    const card = page.locator(`li.msg[data-message-id="${body.messageId}"] .rich-card`);
    assert.equal(await card.locator('.card-title').textContent(), 'Autumn sale: 20 % off');
    assert.deepEqual(await card.locator('.sent-chip').allTextContents(), ['Shop now']);
    assert.equal(sim.messages().find((x) => x.messageId === body.messageId)?.message.messageTrafficType, 'PROMOTION');
    await page.selectOption('#traffic-type', '');
    await page.locator('details.options summary').click();
    await page.check('input[name="mode"][value="text"]');
  });

  test('every call but the mint uses the browser token, never the API key; neither is logged or shown', async () => {
    const calls = main.requests.filter((r) => r.path !== '/v1/tokens');
    assert.ok(calls.length >= 3, `the page made API calls: ${calls.map((c) => c.path).join(', ')}`);
    const tokens = new Set(main.tokens);
    assert.ok(tokens.size >= 1, 'minted tokens were seen');
    for (const c of calls) {
      assert.ok(c.auth?.startsWith('Bearer '), `${c.method} ${c.path} has a bearer`);
      const cred = c.auth.slice('Bearer '.length);
      assert.notEqual(cred, API_KEY, `${c.method} ${c.path} must not use the API key`);
      assert.ok(tokens.has(cred), `${c.method} ${c.path} uses a minted token`);
      assert.ok(!c.search.includes(API_KEY) && ![...tokens].some((t) => c.search.includes(t)), 'no credential in a URL');
    }
    const dom = await page.evaluate(() => document.documentElement.outerHTML);
    for (const secret of [API_KEY, ...tokens]) {
      assert.ok(!dom.includes(secret), 'no credential in the DOM');
      assert.ok(!main.console.some((l) => l.includes(secret)), 'no credential in the console');
    }
    assert.ok(!worker.logs().includes(API_KEY), 'no API key in the Worker logs');
  });

  test('revoke a message the offline number never received: status REVOKED', { timeout: 60_000 }, async () => {
    await page.click(`.sim-btn[data-number="${OFFLINE}"]`);
    await page.waitForFunction((p) => document.getElementById('conv-title').textContent === p, OFFLINE);
    const id = await sendText(page, 'Your appointment is tomorrow at 10:00.');
    await waitStatus(page, id, 'SENT');
    await page.locator(`li.msg[data-message-id="${id}"] .meta-btn`).click();
    await page.waitForSelector('#revoke:not([disabled])');
    await page.click('#revoke');
    await waitStatus(page, id, 'REVOKED', 10_000);
    await page.waitForFunction(() => /Revoke requested/.test(document.getElementById('detail').textContent), null, { timeout: 10_000 });
    assert.match(await page.locator(`li.msg[data-message-id="${id}"] .ticks`).textContent(), /Revoked/);
    await pollUntil(async () => sim.messages().find((x) => x.messageId === id)?.state, (s) => s === 'revoked', 5_000, 'simulator saw the revoke');
  });

  test('capability check of an RCS number lists its features', { timeout: 30_000 }, async () => {
    await page.click(`.sim-btn[data-number="${NORMAL}"]`);
    await page.waitForFunction((p) => document.getElementById('conv-title').textContent === p, NORMAL);
    await page.click('#cap-check');
    await page.waitForSelector('#cap-result .cap-yes', { timeout: 10_000 });
    const features = await page.locator('#cap-result .feature').allTextContents();
    assert.ok(features.length >= 3, `features: ${features}`);
    assert.ok(features.some((f) => /richcard standalone/i.test(f)), `features: ${features}`);
  });

  test('error paths show the API\'s code and message next to the control (unreachable number, validation)', { timeout: 60_000 }, async () => {
    const errs = await openContext('errors-2');
    const p = await openPage(errs);
    try {
      await signInWithMouse(p);
      // Not an RCS user: the capability check says so; a send is refused by RBM (relayed 404).
      await openNumber(p, NOT_RCS);
      await p.click('#cap-check');
      await p.waitForSelector('#cap-result .cap-no', { timeout: 10_000 });
      const id = await sendText(p, 'Hello?');
      await waitStatus(p, id, 'FAILED', 10_000);
      await p.waitForSelector('#send-error.visible');
      const sendErr = await p.locator('#send-error').textContent();
      assert.match(sendErr, /RBM_404/, sendErr);
      assert.match(sendErr, /RCS/, sendErr);
      // The Worker's own validation error (a media URL over 2048 characters), shown as is.
      await openNumber(p, NORMAL);
      await p.check('input[name="mode"][value="card"]');
      await p.fill('#card-title', 'Summer sale');
      // (A free loopback port refuses at once: the preview of the unsent card fetches nothing off this machine.)
      await p.fill('#card-media', `https://127.0.0.1:${await freePort()}/${'a'.repeat(2100)}.jpg`);
      await p.click('#send');
      await p.waitForSelector('#send-error.visible', { timeout: 10_000 });
      const v = await p.locator('#send-error').textContent();
      assert.match(v, /VALIDATION_FAILED/, v);
      assert.match(v, /fileUrl/, `names the field: ${v}`);
      assert.equal(await p.locator('#send-error').getAttribute('aria-live'), 'assertive');
      assert.equal(await p.inputValue('#card-title'), 'Summer sale', 'the card stays in the composer to be fixed');
      // A client-side check: a number that is not E.164.
      await p.fill('#phone', '0044 20 7946');
      await p.press('#phone', 'Enter');
      await p.waitForSelector('#phone-error.visible');
      assert.equal(await p.getAttribute('#phone', 'aria-invalid'), 'true');
      for (const e of errs.errors) {
        assert.match(e, /Failed to load resource: (the server responded with a status of 4\d\d|net::ERR_CONNECTION_REFUSED)/, `only the expected 4xx answers (and the refused preview) are logged: ${e}`);
      }
      await shot(p, 'console-errors.png');
    } finally {
      await errs.context.close();
    }
  });

  // ------------------------------------------------------------------ needs the conversation routes

  test('live conversation: subprotocol auth, typing indicator, the user\'s reply and suggestion tap appear', { timeout: 90_000 }, async () => {
    await page.click(`.sim-btn[data-number="${REPLIES_TEXT}"]`);
    await page.waitForFunction((p) => document.getElementById('conv-title').textContent === p, REPLIES_TEXT);
    await requireConversationRoutes(page, 'the live conversation');

    // The socket was opened with ["rbm-edge.v1", "bearer.<token>"], the token not in the URL.
    const opened = main.sockets.filter((s) => s.url?.includes(`/v1/phones/${encodeURIComponent(REPLIES_TEXT)}/live`));
    assert.ok(opened.length >= 1, `a WebSocket to the live route: ${JSON.stringify(main.sockets)}`);
    for (const s of opened) assert.ok(!/eyJ/.test(s.url), 'no token in the socket URL');
    const offers = main.sockets.filter((s) => s.protocols).map((s) => s.protocols);
    assert.ok(offers.some((o) => /^rbm-edge\.v1,\s*bearer\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(o)), `subprotocol offer: ${offers.map((o) => o.replace(/bearer\.\S+/, 'bearer.<token>'))}`);
    assert.ok(main.sockets.some((s) => s.accepted === 'rbm-edge.v1'), 'the Worker answered rbm-edge.v1');

    await page.evaluate(() => {
      window.__typingSeen = false;
      const t = document.getElementById('typing');
      new MutationObserver(() => { if (!t.hidden) window.__typingSeen = true; }).observe(t, { attributes: true });
    });
    const id = await sendText(page, 'Would you like a table for two tonight at 8?', ['Yes please', 'Another time']);
    await trackStatuses(page, id);
    await waitStatus(page, id, 'READ');
    const reply = page.locator('li.msg-in[data-kind="text"]', { hasText: SIM_REPLY_TEXT });
    await reply.waitFor({ timeout: WAIT.live }).catch(() => assert.fail(`the user's reply did not appear live within ${WAIT.live} ms${failureContext(main)}`));
    assert.equal(await page.evaluate(() => window.__typingSeen), true, 'the typing indicator was shown before the reply');
    await page.waitForSelector('#typing', { state: 'hidden', timeout: 2_000 })
      .catch(() => assert.fail('the typing indicator is still up 2 s after the reply (a typing frame after the message?)'));
    const seen = await statusLog(page, id);
    assert.ok(seen.includes('DELIVERED'), `live frames showed DELIVERED before READ: ${seen.join(' → ')}`);

    // A suggestion tap on another number.
    await page.click(`.sim-btn[data-number="${TAPS_SUGGESTION}"]`);
    await page.waitForFunction((p) => document.getElementById('live-state').dataset.state === 'open'
      && document.getElementById('conv-title').textContent === p, TAPS_SUGGESTION, { timeout: WAIT.live });
    await sendText(page, 'Pick a delivery slot:', ['Morning', 'Afternoon']);
    const tap = page.locator('li.msg-in[data-kind="suggestionResponse"]', { hasText: 'Morning' });
    await tap.waitFor({ timeout: WAIT.live }).catch(() => assert.fail(`the suggestion tap did not appear within ${WAIT.live} ms`));
    assert.match(await tap.textContent(), /Tapped suggestion/);
    assert.match(await tap.textContent(), /morning/, 'postbackData shown');

    // User-initiated location and file, pushed while the page watches.
    sim.inbound({ phoneNumber: TAPS_SUGGESTION, location: { latitude: 48.8584, longitude: 2.2945 } });
    await page.locator('li.msg-in[data-kind="location"]', { hasText: '48.85840, 2.29450' }).waitFor({ timeout: WAIT.live });
    sim.inbound({
      phoneNumber: TAPS_SUGGESTION,
      userFile: { payload: { mimeType: 'application/pdf', fileSizeBytes: 48213, fileUri: 'https://example.com/receipt.pdf', fileName: 'receipt.pdf' } },
    });
    await page.locator('li.msg-in[data-kind="userFile"]', { hasText: 'receipt.pdf' }).waitFor({ timeout: WAIT.live });
  });

  test('desktop screenshot (conversation, details, dead letters)', { timeout: 30_000 }, async () => {
    // The replying number's conversation; without the conversation routes it is empty, so the
    // first number's (a text and a rich card, both read) is shown instead.
    for (const n of [REPLIES_TEXT, NORMAL]) {
      await page.click(`.sim-btn[data-number="${n}"]`);
      await page.waitForFunction((p) => document.getElementById('conv-title').textContent === p, n);
      await page.waitForFunction(() => ['open', 'unavailable', 'waiting'].includes(document.getElementById('live-state').dataset.state), null, { timeout: WAIT.live }).catch(() => {});
      if (await page.locator('li.msg').count() > 1) break;
    }
    const last = page.locator('li.msg-out .meta-btn').last();
    if (await last.count()) await last.click();
    await page.fill('#msg-text', 'See you at 8!');
    await page.waitForTimeout(300);
    const file = await shot(page, 'console-desktop.png');
    assert.ok(fs.statSync(file).size > 10_000, file);
  });

  test('history: after a reload the conversation comes back from GET /v1/phones/{p}/messages', { timeout: 60_000 }, async () => {
    await page.click(`.sim-btn[data-number="${REPLIES_TEXT}"]`);
    await page.reload();
    await page.waitForSelector('#console-view:not([hidden])', { timeout: 10_000 });
    await page.waitForFunction((p) => document.getElementById('conv-title').textContent === p, REPLIES_TEXT);
    await requireConversationRoutes(page, 'the conversation history');
    const history = main.requests.filter((r) => r.path === `/v1/phones/${encodeURIComponent(REPLIES_TEXT)}/messages`);
    assert.ok(history.length >= 1 && /limit=50/.test(history.at(-1).search), `history asked with limit=50: ${JSON.stringify(history.map((h) => h.search))}`);
    await page.locator('li.msg-in', { hasText: SIM_REPLY_TEXT }).first().waitFor({ timeout: WAIT.ui });
    const out = page.locator('li.msg-out', { hasText: 'table for two' }).first();
    await out.waitFor({ timeout: WAIT.ui });
    assert.equal(await out.getAttribute('data-status'), 'READ');
    // Oldest first on screen, whatever order the API returns.
    const times = await page.locator('li.msg time').evaluateAll((els) => els.map((e) => Date.parse(e.getAttribute('datetime'))));
    assert.deepEqual(times, [...times].sort((a, b) => a - b), 'messages in time order');
  });

  // ------------------------------------------------------------------ needs dead-letters:manage

  test('dead letters: listed, replayed and deleted with the browser token', { timeout: 120_000 }, async () => {
    await page.click('#dl-refresh');
    await page.waitForFunction(() => document.getElementById('dl-list').getAttribute('aria-busy') !== 'true'
      && (document.getElementById('dl-list').children.length > 0 || document.getElementById('dl-error').classList.contains('visible')), null, { timeout: 10_000 });
    const dlErr = (await page.locator('#dl-error').textContent()).trim();
    const granted = main.requests.filter((r) => r.path === '/v1/tokens').length;
    if (dlErr) {
      assert.fail(`dead letters NEED THE dead-letters:manage TOKEN SCOPE (mint + GET/POST/DELETE /v1/dead-letters with a token), not on this Worker build (${granted} mint request(s)): the page shows "${dlErr}"`);
    }
    // Two events whose forwards fail until they are dead-lettered.
    sink.setMode('fail500');
    let dead;
    try {
      const a = sim.inbound({ phoneNumber: NORMAL, text: 'dead letter to replay' });
      const b = sim.inbound({ phoneNumber: NORMAL, text: 'dead letter to delete' });
      const list = await pollUntil(() => apiAsServer('GET', '/v1/dead-letters'),
        (r) => r.status === 200 && [a, b].every((x) => r.json.deadLetters.some((d) => d.messageId === x.messageId)),
        WAIT.deadLetter, 'both forwards dead-lettered');
      dead = [a, b].map((x) => list.json.deadLetters.find((d) => d.messageId === x.messageId));
    } finally {
      sink.setMode('ok');
    }
    await page.click('#dl-refresh');
    const [toReplay, toDelete] = dead;
    const row = (d) => page.locator(`#dl-list li.dl-item[data-id="${d.id}"]`);
    await row(toReplay).waitFor({ timeout: 10_000 });
    await row(toDelete).waitFor();
    assert.match(await row(toReplay).textContent(), /text/);
    await row(toReplay).getByRole('button', { name: /Replay/ }).click();
    await page.waitForFunction((id) => /Replayed/.test(document.querySelector(`li.dl-item[data-id="${id}"]`)?.textContent ?? 'Replayed'), toReplay.id, { timeout: 10_000 });
    await row(toDelete).getByRole('button', { name: /Delete/ }).click();
    await page.waitForFunction((id) => /Deleted/.test(document.querySelector(`li.dl-item[data-id="${id}"]`)?.textContent ?? 'Deleted'), toDelete.id, { timeout: 10_000 });
    const after = await apiAsServer('GET', '/v1/dead-letters');
    assert.ok(!after.json.deadLetters.some((d) => d.id === toReplay.id || d.id === toDelete.id), `both gone: ${after.text.slice(0, 300)}`);
    const dlCalls = main.requests.filter((r) => r.path.startsWith('/v1/dead-letters'));
    assert.ok(dlCalls.length >= 3 && dlCalls.every((c) => c.auth !== `Bearer ${API_KEY}`), 'dead letters with the token, not the key');
  });

  test('the token is minted again before it expires, and the next calls use the new one', { timeout: 60_000 }, async () => {
    const ctx = await openContext('clock');
    try {
      await ctx.context.clock.install(); // the page's timers and Date, fast-forwardable
      const p = await openPage(ctx);
      await signInWithMouse(p);
      await p.waitForFunction((n) => document.getElementById('conv-title').textContent === n, NORMAL);
      const mintsBefore = ctx.requests.filter((r) => r.path === '/v1/tokens').length;
      assert.match(await p.locator('#token-badge').textContent(), /Token 1[45]:\d\d/);
      // 13 min 40 s later (the token lives 15 min; the page renews 90 s before the end).
      await p.clock.fastForward('13:40');
      await pollUntil(async () => ctx.requests.filter((r) => r.path === '/v1/tokens').length, (n) => n > mintsBefore, 10_000, 'a new mint before expiry');
      await pollUntil(async () => ctx.tokens.length, (n) => n >= 2, 5_000, 'the new token received');
      const fresh = ctx.tokens.at(-1);
      await p.waitForFunction(() => /Token 1[45]:\d\d/.test(document.getElementById('token-badge').textContent), null, { timeout: 5_000 });
      await p.click('#cap-check');
      await p.waitForSelector('#cap-result .cap-yes', { timeout: 10_000 });
      const cap = ctx.requests.filter((r) => r.path.endsWith('/capabilities')).at(-1);
      assert.equal(cap.auth, `Bearer ${fresh}`, 'the call after the renewal uses the new token');
    } finally {
      await ctx.context.close();
    }
  });

  // ------------------------------------------------------------------ phone-sized screen

  test('phone-sized viewport: one column, no sideways scrolling, labelled controls', { timeout: 60_000 }, async () => {
    const phone = await openContext('phone', { width: 390, height: 844 });
    try {
      const p = await openPage(phone);
      await signInWithMouse(p);
      await p.waitForFunction((n) => document.getElementById('conv-title').textContent === n, NORMAL);
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `no horizontal scroll (${overflow} px too wide)`);
      const unlabelled = await p.evaluate(() => [...document.querySelectorAll('#console-view input, #console-view select, #console-view textarea, #console-view button')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => {
          const name = el.getAttribute('aria-label') || (el.id && document.querySelector(`label[for="${el.id}"]`)?.textContent.trim())
            || el.closest('label')?.textContent.trim() || (el.tagName === 'BUTTON' && el.textContent.trim());
          return !name;
        }).map((el) => el.outerHTML.slice(0, 80)));
      assert.deepEqual(unlabelled, [], 'every visible control has a name');
      const boxes = await p.evaluate(() => ['.panel-recipient', '.panel-conversation', '.panel-side']
        .map((s) => document.querySelector(s).getBoundingClientRect()).map((r) => ({ x: Math.round(r.x), w: Math.round(r.width), y: Math.round(r.y) })));
      assert.ok(boxes.every((b) => b.x === boxes[0].x && b.w === boxes[0].w), `one column: ${JSON.stringify(boxes)}`);
      assert.ok(boxes[0].y < boxes[1].y && boxes[1].y < boxes[2].y, 'recipient, conversation, details in that order');
      await p.locator('.panel-conversation').scrollIntoViewIfNeeded();
      await shot(p, 'console-phone.png');
      assert.deepEqual(phone.errors.filter((e) => !/Failed to load resource/.test(e)), [], 'no script errors on a phone');
    } finally {
      await phone.context.close();
    }
  });

  test('no console errors in the main session', () => {
    assert.deepEqual(main.errors, [], `console errors (non-2xx answers the page got: ${JSON.stringify(main.badResponses)})` +
      '. On a Worker without the conversation routes, GET …/messages → 404; without the dead-letters:manage scope, the first POST /v1/tokens → 400.');
  });
});
