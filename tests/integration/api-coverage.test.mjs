// RBM API coverage: batch reachability over Google's regional hosts, files.create (URL and media
// upload), per-agent regions (RBM_AGENT_REGIONS), and the webhook additions (X-Goog-Webhook-Type,
// agent launch events). Runs the built Worker in workerd (wrangler dev --local) against the
// regional RBM fake (tests/fakes/google.mjs with regions: one state, four loopback hosts).
// Contract: /work/shared/rbm-protocol.md §6, §8.
//
//   POST /v1/reachability  {"phoneNumbers":[E.164 ≤ 10000],"agentId"?}
//        -> {"agentId","reachable","notReachable","byRegion":{"<region>":<RBM's answers merged>}}
//        numbers grouped by region (sim/rbm.mjs regionOf), each region's numbers sent to its own
//        host in chunks of ≤ 1000, ≤ 4 calls in flight; scope capabilities:read; RBM's error on
//        a chunk -> RBM's status with {"agentId","region","rbm":<RBM's body verbatim>}
//   POST /v1/files         JSON {"fileUrl","thumbnailUrl"?,"contentDescription"?,"agentId"?} -> RBM /v1/files
//                          raw media (RBM media type + Content-Length ≤ 100 MiB) -> RBM /upload/v1/files
//        -> {"name","rbm"}; 411 / 413 / 415; scope files:upload
//   RBM_AGENT_REGIONS      brand_eu=europe: brand_eu's calls go to RBM_API_BASE_EUROPE
//   POST /webhook          X-Goog-Webhook-Type -> webhookType of the forwarded document;
//                          AgentLaunchEvent -> kind agentLaunch
//
// Fake rules these expectations are computed from (sim/server.mjs header, sim/rbm.mjs):
// users.batchGet answers 400 on the global host and for a number of another region; a number is
// reachable when its last digit is even and it is not a scripted error number (isBatchReachable).
//
// Workers started here (both stopped in after()):
//   main   PROCESSING=inline, the four RBM hosts, RBM_AGENT_REGIONS=brand_eu=europe,
//          TOKEN_SIGNING_KEY, FORWARD_URL (default FORWARD_KINDS) to the sink
//   kinds  the same with FORWARD_KINDS=agentLaunch only (FORWARD_KINDS cannot differ in one Worker)
//          and an RBM_QUERY_LIMITER of 5 calls a minute (Google's 600, scaled down)
//
// The 413 test sends the headers first; wrangler dev's local stack (its proxy Worker and
// workerd) runs the Worker only once the declared body has arrived, whatever Content-Length
// says, so after 1.5 s without an answer the declared 101 MiB follow over loopback (~1-2 s,
// one reused 1 MiB buffer). A runtime that answers from the headers gets no body at all.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';

import { startWorker } from '../support/worker.mjs';
import { TOKENS, API_KEYS } from '../support/config.mjs';
import { assertError, assertCleanLogs, assertNoSecrets } from '../support/assert.mjs';
import { startGoogleFake, regionOf, isBatchReachable, REGIONS } from '../fakes/google.mjs';
import { startSink } from '../fakes/sink.mjs';
import * as rbm from '../support/rbm.mjs';

const { request, PHONE, AGENT_ID } = rbm;
const [, TOK_NEW] = TOKENS;
const [KEY_ONE] = API_KEYS;
const AUTH = { authorization: `Bearer ${KEY_ONE}` };
const ORIGIN = 'https://app.example.com';
const EU_AGENT = 'brand_eu';
const SIGNING_KEY = crypto.randomBytes(36).toString('base64url');
const FORWARD_SECRET = `whsec_${crypto.randomBytes(32).toString('base64')}`;
const MiB = 1024 * 1024;
const MAX_UPLOAD = 100 * MiB;

let fake;
let sink;
const w = {};

function workerConfig(extraVars = {}) {
  return {
    kv: true,
    secrets: {
      RBM_CLIENT_TOKEN: TOKENS.join(','),
      API_KEYS: API_KEYS.join(','),
      RBM_SERVICE_ACCOUNT_KEY: fake.serviceAccountKey,
      TOKEN_SIGNING_KEY: SIGNING_KEY,
      FORWARD_SECRET,
    },
    vars: {
      RBM_AGENT_ID: AGENT_ID,
      STATUS_TTL_DAYS: '30',
      PROCESSING: 'inline',
      RBM_API_BASE: fake.url,
      RBM_API_BASE_US: fake.regionUrls.us,
      RBM_API_BASE_EUROPE: fake.regionUrls.europe,
      RBM_API_BASE_ASIA: fake.regionUrls.asia,
      RBM_AGENT_REGIONS: `${EU_AGENT}=europe`,
      RBM_TIMEOUT_MS: '10000',
      ALLOWED_ORIGINS: ORIGIN,
      FORWARD_URL: `${sink.url}/rbm`,
      ALLOW_INSECURE_CALLBACKS: 'true',
      ...extraVars,
    },
  };
}

/** RBM_QUERY_LIMITER of the kinds Worker, calls per minute. */
const QUERY_LIMIT = 5;

before(async () => {
  fake = await startGoogleFake({ regions: true });
  sink = await startSink({ secret: FORWARD_SECRET });
  const started = await Promise.allSettled([
    startWorker({ ...workerConfig(), name: 'rbm-edge-api-coverage' }),
    startWorker({
      ...workerConfig({ FORWARD_URL: `${sink.url}/kinds`, FORWARD_KINDS: 'agentLaunch' }),
      name: 'rbm-edge-api-coverage-kinds',
      extraToml: `[[ratelimits]]\nname = "RBM_QUERY_LIMITER"\nnamespace_id = "1003"\nsimple = { limit = ${QUERY_LIMIT}, period = 60 }`,
    }),
  ]);
  [w.main, w.kinds] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
});

after(async () => {
  await Promise.allSettled(Object.values(w).map((x) => x?.stop()));
  await Promise.allSettled([fake?.close(), sink?.close()]);
});

beforeEach(() => { fake?.reset(); sink?.reset(); });

// ------------------------------------------------------------------------------- helpers

/** One request; a non-string, non-Buffer body is JSON-encoded (content-type added). */
async function call(method, path, { body, headers = AUTH, worker = w.main } = {}) {
  const h = { ...headers };
  let b = body;
  if (b !== undefined && typeof b !== 'string' && !Buffer.isBuffer(b) && typeof b.getReader !== 'function') b = JSON.stringify(b);
  if (b !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
  const res = await request(worker.url, path, { method, body: b, headers: h });
  assertNoSecrets(res.text, `${method} ${path}`);
  assert.ok(!res.text.includes(SIGNING_KEY), `${method} ${path}: the answer contains TOKEN_SIGNING_KEY`);
  return res;
}

const reachability = (body, headers) => call('POST', '/v1/reachability', { body, headers });

/** A browser token minted with the API key. */
async function mint(req) {
  const res = await call('POST', '/v1/tokens', { body: req });
  assert.equal(res.status, 200, `mint ${JSON.stringify(req)}: ${res.status} ${res.text}`);
  return res.json.token;
}
const browser = (token) => ({ authorization: `Bearer ${token}`, origin: ORIGIN });

/** Unique numbers of one region: us +1212…, europe +4477…, asia +9198… (index-based, valid E.164). */
const numberOf = (region, i) => ({ us: `+1212${String(i).padStart(7, '0')}`, europe: `+4477${String(i).padStart(8, '0')}`, asia: `+9198${String(i).padStart(8, '0')}` })[region];

/** The request's numbers once each, request order. */
const uniq = (xs) => [...new Set(xs)];

/** The expected top-level partition: request order, duplicates once, by the fake's rule. */
function expectedPartition(numbers) {
  const u = uniq(numbers);
  return { reachable: u.filter(isBatchReachable), notReachable: u.filter((n) => !isBatchReachable(n)) };
}

/** The fake's users.batchGet records of this test, per host. */
function batchGetsByHost() {
  const out = {};
  for (const b of fake.batchGets) (out[b.host] ??= []).push(b);
  return out;
}

/** Largest number of calls in any 60 s window. */
function maxPerMinute(times) {
  const t = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < t.length; i++) {
    while (t[i] - t[j] >= 60_000) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

/** RBM's answers of one host's calls merged the way the contract says (concatenate, sum, merge maps). */
function mergedAnswers(calls) {
  const out = { reachableUsers: [], totalRandomSampleUserCount: 0, reachableRandomSampleUserCount: 0 };
  for (const c of calls) {
    out.reachableUsers.push(...c.answer.reachableUsers);
    out.totalRandomSampleUserCount += c.answer.totalRandomSampleUserCount;
    out.reachableRandomSampleUserCount += c.answer.reachableRandomSampleUserCount;
    if (c.answer.reachableUsersMap) {
      out.reachableUsersMap ??= {};
      for (const [carrier, v] of Object.entries(c.answer.reachableUsersMap)) {
        (out.reachableUsersMap[carrier] ??= { reachableUsers: [] }).reachableUsers.push(...v.reachableUsers);
      }
    }
  }
  return out;
}

const sorted = (xs) => [...xs].sort();

/** A merged region answer compared order-insensitively (chunks may complete in any order). */
function assertSameMerged(got, want, what) {
  assert.ok(got && typeof got === 'object', `${what}: byRegion entry is an object`);
  assert.deepEqual(sorted(got.reachableUsers), sorted(want.reachableUsers), `${what}: reachableUsers`);
  assert.equal(got.totalRandomSampleUserCount, want.totalRandomSampleUserCount, `${what}: totalRandomSampleUserCount`);
  assert.equal(got.reachableRandomSampleUserCount, want.reachableRandomSampleUserCount, `${what}: reachableRandomSampleUserCount`);
  if (want.reachableUsersMap) {
    assert.deepEqual(sorted(Object.keys(got.reachableUsersMap ?? {})), sorted(Object.keys(want.reachableUsersMap)), `${what}: reachableUsersMap carriers`);
    for (const [carrier, v] of Object.entries(want.reachableUsersMap)) {
      assert.deepEqual(sorted(got.reachableUsersMap[carrier].reachableUsers), sorted(v.reachableUsers), `${what}: reachableUsersMap.${carrier}`);
    }
  } else {
    assert.equal(got.reachableUsersMap, undefined, `${what}: no reachableUsersMap outside the us region`);
  }
}

/** Every batchGet went to the host of its numbers' region, answered 200, ≤ 1000 numbers, no duplicates. */
function assertRegionalCalls(agentId) {
  for (const b of fake.batchGets) {
    const what = `batchGet on ${b.host} (${b.count} numbers)`;
    assert.notEqual(b.host, 'global', `${what}: users.batchGet must use a regional host`);
    assert.equal(b.status, 200, `${what}: the fake answered ${b.status}`);
    assert.ok(b.count >= 1 && b.count <= 1000, `${what}: 1 to 1000 numbers per call`);
    assert.equal(b.unique, b.count, `${what}: no number twice in one call`);
    assert.ok(b.users.every((n) => regionOf(n) === b.host), `${what}: every number of the call is of its host's region`);
    assert.equal(b.agentId, agentId, `${what}: agentId`);
  }
}

/** The document forwarded for an event (found by the event's own eventId / messageId). */
async function forwardOf(path, pick, what, timeoutMs = 10_000) {
  try {
    const [d] = await sink.waitFor((d) => d.path === path && d.body && pick(d.body), timeoutMs);
    return d;
  } catch (e) {
    const seen = sink.deliveries.map((d) => `${d.path} ${d.id} -> ${d.status} ${d.raw.slice(0, 120)}`).slice(-10).join('\n  ');
    throw new Error(`${what}: ${e.message}\nlast deliveries:\n  ${seen}`);
  }
}

/** POST a signed envelope to /webhook with extra headers (X-Goog-Webhook-Type). */
function postWebhook(worker, envelopeBody, data, extraHeaders = {}, { sign = true } = {}) {
  const headers = { 'content-type': 'application/json', ...extraHeaders };
  if (sign) headers['x-goog-signature'] = rbm.sign(data, TOK_NEW);
  return request(worker.url, '/webhook', { method: 'POST', body: envelopeBody, headers });
}

/**
 * Google's AgentLaunchEvent as a Pub/Sub push message. `both: true` is the exact shape of
 * Google's documented example (and of Pub/Sub push): messageId AND message_id, publishTime AND
 * publish_time; otherwise only the camelCase spellings.
 */
function agentLaunchEnvelope(over = {}, { both = false } = {}) {
  const event = {
    eventId: `evt_${crypto.randomBytes(8).toString('hex')}`,
    agentId: AGENT_ID,
    botDisplayName: 'Test Agent',
    brandId: 'brand-1234',
    brandDisplayName: 'Test Brand',
    regionId: '/v1/regions/fi-rcs',
    oldLaunchState: 'LAUNCH_STATE_PENDING',
    newLaunchState: 'LAUNCH_STATE_LAUNCHED',
    actingParty: 'CARRIER',
    comment: 'Approved by the carrier',
    sendTime: rbm.rbmTime(),
    ...over,
  };
  const data = Buffer.from(JSON.stringify(event), 'utf8');
  const messageId = String(crypto.randomInt(1e12, 9e12));
  const publishTime = new Date().toISOString();
  const envelope = {
    message: {
      attributes: { business_id: 'rbm-chatbot-id@rbm.goog', event_type: 'LAUNCHED', product: 'RBM', project_number: '3338881441851', type: 'agent_launch_event' },
      data: data.toString('base64'),
      messageId, publishTime,
      ...(both ? { message_id: messageId, publish_time: publishTime } : {}),
    },
    subscription: 'projects/rbm-partner/subscriptions/rbm-agent-webhook',
  };
  return { event, data, body: JSON.stringify(envelope) };
}

/** A user text message as RBM sends it. */
function textEnvelope(over = {}) {
  const event = rbm.userText(over);
  const env = rbm.signedEnvelope(event, TOK_NEW, { pubsub: true });
  return { event, data: env.data, body: env.body };
}

/** The Worker's "event received" log line (parsed) for the event with `messageId`. */
function receivedLine(worker, messageId) {
  const lines = worker.logs().split('\n').flatMap((l) => {
    const i = l.indexOf('{"level"');
    if (i < 0) return [];
    try { return [JSON.parse(l.slice(i))]; } catch { return []; }
  });
  const line = lines.find((j) => j.msg === 'event received' && j.messageId === messageId);
  assert.ok(line, `no "event received" line for ${messageId}`);
  return line;
}

/** Checks a forwarded document: signed, type event, kind, RBM's event verbatim, webhookType. */
function assertForward(d, { kind, event, webhookType }, what) {
  const ctx = `${what}: ${d.raw.slice(0, 600)}`;
  assert.equal(d.signatureValid, true, `the sink verified the Standard Webhooks signature; ${ctx}`);
  const doc = d.body;
  assert.equal(doc.type, 'event', ctx);
  assert.equal(doc.kind, kind, ctx);
  assert.equal(doc.agentId, event.agentId, ctx);
  assert.deepEqual(doc.event, event, `event is RBM's JSON verbatim; ${ctx}`);
  if (webhookType === undefined) {
    assert.ok(!('webhookType' in doc), `no X-Goog-Webhook-Type, no webhookType; ${ctx}`);
  } else {
    assert.equal(doc.webhookType, webhookType, `webhookType is the header's value; ${ctx}`);
  }
}

// ------------------------------------------------------------------------------- reachability

describe('POST /v1/reachability', () => {
  // 25 entries over the three regions, unsorted, with one duplicate and one scripted error
  // number (+15550000404: even-ended, still never reachable).
  const MIXED = [
    '+447700900120', '+12025550100', '+919812345670', '+12025550101', '+4915112345678',
    '+819012345674', '+5511999990002', '+2348012345670', '+6591234567', '+15550000404',
    '+79161234568', '+8613812345678', '+525512345675', '+905321234560', '+9607712344',
    '+14155550122', '+971501234563', '+998901234560', '+2975551236', '+33612345671',
    '+61412345678', '+12025550100', '+27821234564', '+628123456789', '+994501234566',
  ];

  test('a mixed-region list of 25 numbers: one call per region to its own host, merged, request order kept', async () => {
    assert.equal(MIXED.length, 25);
    const res = await reachability({ phoneNumbers: MIXED });
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/i);
    assert.deepEqual(Object.keys(res.json).sort(), ['agentId', 'byRegion', 'notReachable', 'reachable'], res.text);
    assert.equal(res.json.agentId, AGENT_ID, 'the default agent');

    const want = expectedPartition(MIXED);
    assert.ok(want.reachable.length > 5 && want.notReachable.length > 5, 'the list has both kinds');
    assert.deepEqual(res.json.reachable, want.reachable, 'reachable: request order, duplicates once');
    assert.deepEqual(res.json.notReachable, want.notReachable, 'notReachable: request order, duplicates once');

    const byHost = batchGetsByHost();
    assert.deepEqual(sorted(Object.keys(byHost)), ['asia', 'europe', 'us'], `hosts called: ${Object.keys(byHost)}`);
    assertRegionalCalls(AGENT_ID);
    for (const r of REGIONS) {
      assert.equal(byHost[r].length, 1, `${r}: one call for its few numbers`);
      assert.deepEqual(sorted(byHost[r][0].users), sorted(uniq(MIXED).filter((n) => regionOf(n) === r)), `${r}: exactly its numbers`);
    }
    assert.deepEqual(sorted(Object.keys(res.json.byRegion)), ['asia', 'europe', 'us']);
    for (const r of REGIONS) {
      // One chunk per region: the merged answer is RBM's answer itself.
      assert.deepEqual(res.json.byRegion[r], byHost[r][0].answer, `byRegion.${r} is RBM's answer`);
    }
    assert.ok(res.json.byRegion.us.reachableUsersMap, 'the us answer keeps reachableUsersMap');
  });

  test('only regions that had numbers appear; a mapped agent\'s numbers still go by their own region', async () => {
    const numbers = ['+447700900124', '+12025550106', '+12025550107'];
    const res = await reachability({ phoneNumbers: numbers, agentId: EU_AGENT });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.agentId, EU_AGENT);
    assert.deepEqual(sorted(Object.keys(res.json.byRegion)), ['europe', 'us']);
    assert.deepEqual(sorted(Object.keys(batchGetsByHost())), ['europe', 'us'], 'no asia call, no global call');
    assertRegionalCalls(EU_AGENT);
    assert.deepEqual(res.json.reachable, ['+447700900124', '+12025550106']);
    assert.deepEqual(res.json.notReachable, ['+12025550107']);
  });

  test('12 000 numbers -> 400 VALIDATION_FAILED, nothing sent to RBM; 10 001 too', async () => {
    for (const n of [12_000, 10_001]) {
      const phoneNumbers = Array.from({ length: n }, (_, i) => numberOf(['us', 'europe', 'asia'][i % 3], i));
      const res = await reachability({ phoneNumbers });
      assertError(res, 400, 'VALIDATION_FAILED', `${n} numbers`);
      assert.ok(res.json.error.message.includes('phoneNumbers'), `names phoneNumbers: ${res.json.error.message}`);
    }
    assert.equal(fake.batchGets.length, 0, 'no users.batchGet');
    assert.equal(fake.stats.tokenRequests, 0, 'not even a token');
  });

  test('an invalid number -> 400 VALIDATION_FAILED naming phoneNumbers[index]; empty, missing, malformed -> 400', async () => {
    for (const [list, index] of [[['+12025550100', '+447700900120', '+919812345670', '0044 7700 900121'], 3], [['+1 202 555 0100'], 0], [['+12025550100', 12025550102], 1], [['+12025550100', '+0123456'], 1]]) {
      const res = await reachability({ phoneNumbers: list });
      assertError(res, 400, 'VALIDATION_FAILED', JSON.stringify(list));
      assert.ok(res.json.error.message.includes(`phoneNumbers[${index}]`), `message names phoneNumbers[${index}]: ${res.json.error.message}`);
    }
    for (const body of [{ phoneNumbers: [] }, {}, { phoneNumbers: '+12025550100' }, 'not json', '[]']) {
      assertError(await reachability(body), 400, undefined, `body ${JSON.stringify(body)}`);
    }
    assert.equal(fake.batchGets.length, 0);
  });

  test('a chunked 10 000-number list: ≤ 1000 per call, ≤ 4 in flight, ≤ 600 calls a minute, each region on its own host, counts merged', { timeout: 120_000 }, async () => {
    // 4 000 us, 3 500 europe, 2 500 asia, interleaved so the Worker has to group them.
    const counts = { us: 4000, europe: 3500, asia: 2500 };
    const lists = Object.fromEntries(Object.entries(counts).map(([r, n]) => [r, Array.from({ length: n }, (_, i) => numberOf(r, i))]));
    const phoneNumbers = [];
    for (let i = 0; phoneNumbers.length < 10_000; i++) for (const r of REGIONS) if (i < counts[r]) phoneNumbers.push(lists[r][i]);
    assert.equal(phoneNumbers.length, 10_000);
    fake.setDelay(100); // answers overlap, so a Worker sending more than 4 at once is seen

    const t0 = Date.now();
    const res = await reachability({ phoneNumbers });
    fake.setDelay(0);
    assert.equal(res.status, 200, res.text.slice(0, 500));

    // The calls.
    assertRegionalCalls(AGENT_ID);
    const byHost = batchGetsByHost();
    assert.deepEqual(sorted(Object.keys(byHost)), ['asia', 'europe', 'us']);
    for (const r of REGIONS) {
      const sent = byHost[r].flatMap((b) => b.users);
      assert.equal(sent.length, counts[r], `${r}: every number sent once`);
      assert.deepEqual(sorted(sent), sorted(lists[r]), `${r}: exactly its numbers`);
      assert.ok(byHost[r].length >= Math.ceil(counts[r] / 1000), `${r}: ${byHost[r].length} calls for ${counts[r]} numbers`);
    }
    assert.ok(fake.maxBatchGetsInFlight <= 4, `at most 4 users.batchGet in flight, saw ${fake.maxBatchGetsInFlight}`);
    assert.ok(maxPerMinute(fake.batchGets.map((b) => b.at)) <= 600, 'within Google\'s 600 per minute');
    assert.ok(fake.batchGets.length <= 600);
    assert.ok(fake.batchGets.every((b) => b.at >= t0));

    // The answer.
    const want = expectedPartition(phoneNumbers);
    assert.equal(res.json.reachable.length + res.json.notReachable.length, 10_000);
    assert.deepEqual(res.json.reachable, want.reachable, 'reachable, request order');
    assert.deepEqual(res.json.notReachable, want.notReachable, 'notReachable, request order');
    assert.deepEqual(sorted(Object.keys(res.json.byRegion)), ['asia', 'europe', 'us']);
    for (const r of REGIONS) {
      const merged = mergedAnswers(byHost[r]);
      assertSameMerged(res.json.byRegion[r], merged, `byRegion.${r}`);
      // And independently of how the Worker chunked: every reachable number of the region once.
      assert.deepEqual(sorted(res.json.byRegion[r].reachableUsers), sorted(lists[r].filter(isBatchReachable)), `byRegion.${r}: its reachable numbers`);
    }
    const map = res.json.byRegion.us.reachableUsersMap;
    assert.equal(Object.values(map).reduce((n, v) => n + v.reachableUsers.length, 0), lists.us.filter(isBatchReachable).length, 'every reachable +1 number in one carrier list');
  });

  test('RBM answering an error on one chunk -> that status, with RBM\'s body verbatim as "rbm" and the region', async () => {
    // As the send relay does: RBM's status, {"agentId","region","rbm":<RBM's body>}.
    fake.failNextBatchGets(1, 503);
    const res = await reachability({ phoneNumbers: ['+12025550100', '+447700900120', '+919812345670'] });
    assert.equal(res.status, 503, res.text);
    const failed = fake.batchGets.filter((b) => b.status === 503);
    assert.equal(failed.length, 1);
    assert.deepEqual(res.json, { agentId: AGENT_ID, region: failed[0].host, rbm: failed[0].error });
    assert.deepEqual(failed[0].error, { error: { code: 503, message: 'The service is currently unavailable.', status: 'UNAVAILABLE' } });
    // A 4xx from RBM (its quota) the same way.
    fake.reset();
    fake.setBatchGetQpm(0);
    const limited = await reachability({ phoneNumbers: ['+447700900120'] });
    assert.equal(limited.status, 429, limited.text);
    assert.equal(limited.json.region, 'europe');
    assert.equal(limited.json.rbm.error.status, 'RESOURCE_EXHAUSTED');
    assert.equal(fake.batchGets.length, 1);
    assert.deepEqual(limited.json.rbm, fake.batchGets[0].error, 'RBM\'s 429 body verbatim');
  });

  test('RBM_QUERY_LIMITER: a request needing more calls than the minute has left -> 429 whole, nothing sent', async () => {
    // The kinds Worker allows 5 calls a minute. Three regions: 3 calls, answered.
    const three = ['+12025550100', '+447700900120', '+919812345670'];
    const ok = await call('POST', '/v1/reachability', { body: { phoneNumbers: three }, worker: w.kinds });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(fake.batchGets.length, 3);
    // 3 000 numbers of one region: 3 more calls, 1 over: refused before any call.
    fake.reset();
    const many = Array.from({ length: 3000 }, (_, i) => numberOf('europe', i));
    const refused = await call('POST', '/v1/reachability', { body: { phoneNumbers: many }, worker: w.kinds });
    assertError(refused, 429, 'RATE_LIMITED', 'over the per-minute quota');
    assert.equal(refused.headers.get('retry-after'), '60');
    assert.equal(fake.batchGets.length, 0, 'nothing sent to RBM');
  });

  describe('browser tokens', () => {
    test('without capabilities:read -> 403 naming the scope; nothing sent', async () => {
      const token = await mint({ scopes: ['messages:send'] });
      const res = await reachability({ phoneNumbers: ['+12025550100'] }, browser(token));
      assertError(res, 403, 'FORBIDDEN', 'reachability without capabilities:read');
      assert.ok(res.json.error.message.includes('capabilities:read'), res.json.error.message);
      assert.equal(fake.batchGets.length, 0);
    });

    test('limited to some numbers: others -> 403 naming them; its own -> 200', async () => {
      const mine = ['+12025550100', '+447700900120'];
      const token = await mint({ scopes: ['capabilities:read'], phoneNumbers: mine });
      const res = await reachability({ phoneNumbers: [...mine, '+919812345670'] }, browser(token));
      assertError(res, 403, 'FORBIDDEN', 'reachability of a number outside the token');
      assert.ok(res.json.error.message.includes('+919812345670'), res.json.error.message);
      assert.equal(fake.batchGets.length, 0);
      const ok = await reachability({ phoneNumbers: mine }, browser(token));
      assert.equal(ok.status, 200, ok.text);
      assert.deepEqual(ok.json.reachable, mine);
      assert.equal(ok.headers.get('access-control-allow-origin'), ORIGIN);
    });

    test('bound to its agent: its agent by default, another agent -> 403', async () => {
      const token = await mint({ scopes: ['capabilities:read'], agentId: EU_AGENT });
      const res = await reachability({ phoneNumbers: ['+447700900120'] }, browser(token));
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.agentId, EU_AGENT);
      assertRegionalCalls(EU_AGENT);
      assertError(await reachability({ phoneNumbers: ['+447700900120'], agentId: AGENT_ID }, browser(token)), 403, 'FORBIDDEN', 'another agent');
    });
  });
});

// ------------------------------------------------------------------------------- files

describe('POST /v1/files', () => {
  const uploads = () => fake.files.filter((f) => f.source === 'upload');

  /** A raw media upload through fetch (Buffer body: Content-Length set). */
  const upload = (bytes, { type = 'image/png', query = '', headers = AUTH } = {}) =>
    call('POST', `/v1/files${query}`, { body: bytes, headers: { ...headers, 'content-type': type } });

  test('fileUrl -> RBM files.create on the metadata URI with our fields + agentId -> {"name","rbm"}', async () => {
    const body = { fileUrl: 'https://cdn.example.com/cat.png', thumbnailUrl: 'https://cdn.example.com/cat-thumb.png', contentDescription: 'A cat on a sofa' };
    const res = await call('POST', '/v1/files', { body });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(Object.keys(res.json).sort(), ['name', 'rbm'], res.text);
    const [f] = fake.files;
    assert.equal(fake.files.length, 1);
    assert.equal(f.source, 'url');
    assert.equal(f.host, 'global', 'the default agent is not mapped: RBM_API_BASE');
    assert.deepEqual(f.body, { ...body, agentId: AGENT_ID }, 'exactly the given fields plus agentId');
    assert.match(res.json.name, /^files\/[0-9a-f]+$/);
    assert.equal(res.json.name, f.name);
    assert.deepEqual(res.json.rbm, { name: f.name }, 'RBM\'s answer verbatim');
    const rec = fake.requests.at(-1);
    assert.equal(rec.path, '/v1/files');
    assert.match(rec.headers.authorization ?? '', /^Bearer ya29\.fake-/);

    const minimal = await call('POST', '/v1/files', { body: { fileUrl: 'https://cdn.example.com/doc.pdf' } });
    assert.equal(minimal.status, 200, minimal.text);
    assert.deepEqual(fake.files.at(-1).body, { fileUrl: 'https://cdn.example.com/doc.pdf', agentId: AGENT_ID });
  });

  test('fileUrl missing or invalid -> 400, nothing sent', async () => {
    for (const body of [{}, { thumbnailUrl: 'https://cdn.example.com/t.png' }, { fileUrl: 'not a url' }, { fileUrl: 42 }, { fileUrl: '' }]) {
      assertError(await call('POST', '/v1/files', { body }), 400, undefined, JSON.stringify(body));
    }
    assert.equal(fake.files.length, 0);
  });

  test('a 5 MiB binary upload is relayed to the media upload URI byte for byte (sha256)', { timeout: 60_000 }, async () => {
    const bytes = crypto.randomBytes(5 * MiB);
    const sha = crypto.createHash('sha256').update(bytes).digest('hex');
    const res = await upload(bytes, { type: 'video/mp4' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(Object.keys(res.json).sort(), ['name', 'rbm'], res.text);
    assert.equal(uploads().length, 1);
    const [f] = uploads();
    assert.equal(f.status, 200);
    assert.equal(f.bytes, bytes.length, 'every byte arrived');
    assert.equal(f.sha256, sha, 'the same bytes');
    assert.equal(f.contentType?.split(';')[0], 'video/mp4', 'the file\'s media type');
    assert.equal(f.agentId, AGENT_ID);
    assert.equal(f.query.uploadType, 'media');
    assert.equal(f.host, 'global');
    assert.equal(res.json.name, f.name);
    assert.deepEqual(res.json.rbm, { name: f.name });
    assert.equal(fake.files.filter((x) => x.source === 'url').length, 0);
  });

  test('every RBM media type is accepted; the agent comes from ?agentId=', async () => {
    const types = ['image/jpeg', 'image/jpg', 'image/gif', 'image/png', 'video/h263', 'video/m4v', 'video/mp4', 'video/mpeg', 'video/mpeg4', 'video/webm',
      'audio/aac', 'audio/mp3', 'audio/mpeg', 'audio/mpg', 'audio/mp4', 'audio/mp4-latm', 'audio/3gpp', 'audio/ogg', 'application/ogg', 'application/pdf'];
    for (const type of types) {
      const res = await upload(Buffer.from(`bytes of ${type}`), { type });
      assert.equal(res.status, 200, `${type}: ${res.text}`);
    }
    assert.deepEqual(uploads().map((f) => f.contentType?.split(';')[0]), types);
    const eu = await upload(Buffer.from('eu'), { type: 'image/gif', query: `?agentId=${EU_AGENT}` });
    assert.equal(eu.status, 200, eu.text);
    assert.equal(uploads().at(-1).agentId, EU_AGENT);
  });

  test('Content-Length above 100 MiB -> 413 PAYLOAD_TOO_LARGE, nothing sent to RBM', { timeout: 90_000 }, async (t) => {
    // Headers first. A runtime that answers from the headers answers now and not a byte of
    // the body is sent; wrangler dev's local stack hands the request to the Worker only once
    // the declared body is complete, so after a short wait the declared bytes follow (a 1 MiB
    // buffer reused; loopback, ~1 s) until the answer comes.
    const declared = 101 * MiB;
    const { res, sent } = await new Promise((resolve, reject) => {
      const chunk = Buffer.alloc(MiB);
      let sentBytes = 0;
      let answered = false;
      const req = http.request(`${w.main.url}/v1/files`, {
        method: 'POST', headers: { ...AUTH, 'content-type': 'image/png', 'content-length': String(declared) },
      });
      const timer = setTimeout(() => { req.destroy(); reject(new Error(`no answer within 60 s (${sentBytes} bytes sent)`)); }, 60_000);
      req.on('response', (r) => {
        answered = true;
        let text = '';
        r.setEncoding('utf8');
        r.on('data', (c) => { text += c; });
        r.on('end', () => {
          clearTimeout(timer);
          req.destroy();
          const headers = new Headers();
          for (const [k, v] of Object.entries(r.headers)) headers.set(k, [].concat(v).join(', '));
          let json;
          try { json = JSON.parse(text); } catch { json = undefined; }
          resolve({ res: { status: r.statusCode, headers, text, json }, sent: sentBytes });
        });
        r.on('error', (e) => { clearTimeout(timer); reject(e); });
      });
      req.on('error', (e) => { if (!answered) { clearTimeout(timer); reject(e); } });
      const pump = () => {
        while (!answered && !req.destroyed && sentBytes < declared) {
          const n = Math.min(chunk.length, declared - sentBytes);
          sentBytes += n;
          if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { req.once('drain', pump); return; }
        }
        if (!answered && sentBytes >= declared) req.end();
      };
      req.flushHeaders();
      setTimeout(pump, 1500);
    });
    t.diagnostic(`${sent} of ${declared} declared body bytes sent before the answer`);
    assertError(res, 413, 'PAYLOAD_TOO_LARGE', `Content-Length ${declared} (${sent} body bytes sent)`);
    assert.equal(uploads().length, 0, 'nothing reached RBM');
    assert.equal(fake.requests.length, 0);
  });

  test('a type RBM does not take -> 415 UNSUPPORTED_MEDIA_TYPE; no Content-Length -> 411 LENGTH_REQUIRED', async () => {
    for (const type of ['text/plain', 'application/octet-stream', 'image/svg+xml', 'application/zip']) {
      assertError(await upload(Buffer.from('hello'), { type }), 415, 'UNSUPPORTED_MEDIA_TYPE', type);
    }
    // A streamed body goes out chunked: no Content-Length.
    const stream = new ReadableStream({ start(c) { c.enqueue(new Uint8Array(crypto.randomBytes(1000))); c.close(); } });
    assertError(await call('POST', '/v1/files', { body: stream, headers: { ...AUTH, 'content-type': 'image/png' } }), 411, 'LENGTH_REQUIRED', 'chunked upload');
    assert.equal(fake.files.length, 0);
  });

  test('a token without files:upload -> 403 (URL and upload); with it -> 200', async () => {
    const without = await mint({ scopes: ['messages:send', 'capabilities:read'] });
    const a = await call('POST', '/v1/files', { body: { fileUrl: 'https://cdn.example.com/a.png' }, headers: browser(without) });
    assertError(a, 403, 'FORBIDDEN', 'fileUrl without files:upload');
    assert.ok(a.json.error.message.includes('files:upload'), a.json.error.message);
    assertError(await upload(Buffer.from('x'), { headers: browser(without) }), 403, 'FORBIDDEN', 'upload without files:upload');
    assert.equal(fake.files.length, 0);
    const withScope = await mint({ scopes: ['files:upload'] });
    const ok = await upload(Buffer.from('png bytes'), { headers: browser(withScope) });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers.get('access-control-allow-origin'), ORIGIN);
    const okUrl = await call('POST', '/v1/files', { body: { fileUrl: 'https://cdn.example.com/b.png' }, headers: browser(withScope) });
    assert.equal(okUrl.status, 200, okUrl.text);
  });
});

// ------------------------------------------------------------------------------- agent regions

describe('RBM_AGENT_REGIONS', () => {
  const creates = () => fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/agentMessages'));

  test('an agent mapped to europe sends through the europe host; the unmapped default through RBM_API_BASE', async () => {
    const eu = await call('POST', '/v1/messages', { body: { phoneNumber: PHONE, agentId: EU_AGENT, contentMessage: { text: 'Hei' } } });
    assert.equal(eu.status, 200, eu.text);
    assert.equal(eu.json.status, 'SENT', eu.text);
    assert.equal(eu.json.agentId, EU_AGENT);
    const def = await call('POST', '/v1/messages', { body: { phoneNumber: PHONE, contentMessage: { text: 'Hi' } } });
    assert.equal(def.status, 200, def.text);
    const [first, second] = creates();
    assert.equal(creates().length, 2);
    assert.equal(first.host, 'europe', `brand_eu's send went to ${first.host}`);
    assert.equal(first.query.agentId, EU_AGENT);
    assert.equal(first.query.messageId, eu.json.messageId);
    assert.equal(fake.messages.get(eu.json.messageId).host, 'europe');
    assert.equal(second.host, 'global', `the default agent's send went to ${second.host}`);
    assert.equal(second.query.agentId, AGENT_ID);
  });

  test('files of an agent mapped to europe go to the europe host too', async () => {
    const res = await call('POST', '/v1/files', { body: { fileUrl: 'https://cdn.example.com/eu.png', agentId: EU_AGENT } });
    assert.equal(res.status, 200, res.text);
    assert.equal(fake.files.at(-1).host, 'europe');
    assert.equal(fake.files.at(-1).body.agentId, EU_AGENT);
    const up = await call('POST', `/v1/files?agentId=${EU_AGENT}`, { body: Buffer.from('gif'), headers: { ...AUTH, 'content-type': 'image/gif' } });
    assert.equal(up.status, 200, up.text);
    assert.equal(fake.files.at(-1).host, 'europe');
    assert.equal(fake.files.at(-1).agentId, EU_AGENT);
  });
});

// ------------------------------------------------------------------------------- webhooks

describe('webhooks: X-Goog-Webhook-Type and agent launch events', () => {
  test('a user message with X-Goog-Webhook-Type is forwarded with webhookType; without it, none', async () => {
    const withType = textEnvelope({ text: 'with a type' });
    const res = await postWebhook(w.main, withType.body, withType.data, { 'x-goog-webhook-type': 'user_message' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { ok: true, kind: 'text' });
    const d = await forwardOf('/rbm', (b) => b.event?.messageId === withType.event.messageId, 'text with a type');
    assertForward(d, { kind: 'text', event: withType.event, webhookType: 'user_message' }, 'text with X-Goog-Webhook-Type');

    const plain = textEnvelope({ text: 'without a type' });
    const res2 = await postWebhook(w.main, plain.body, plain.data);
    assert.equal(res2.status, 200, res2.text);
    const d2 = await forwardOf('/rbm', (b) => b.event?.messageId === plain.event.messageId, 'text without a type');
    assertForward(d2, { kind: 'text', event: plain.event, webhookType: undefined }, 'text without X-Goog-Webhook-Type');

    // The "event received" line says the same: the header's value, or no webhookType at all.
    const typed = receivedLine(w.main, withType.event.messageId);
    assert.equal(typed.webhookType, 'user_message', JSON.stringify(typed));
    assert.equal(typed.kind, 'text');
    assert.match(typed.phone, /^\*+\d{4}$/, 'the phone is masked to its last 4 digits');
    const untyped = receivedLine(w.main, plain.event.messageId);
    assert.ok(!('webhookType' in untyped), JSON.stringify(untyped));
  });

  test('an agent launch event -> 200 kind agentLaunch, forwarded by default with its event verbatim', async () => {
    const launch = agentLaunchEnvelope();
    const res = await postWebhook(w.main, launch.body, launch.data, { 'x-goog-webhook-type': 'agent_launch_event' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { ok: true, kind: 'agentLaunch' });
    const d = await forwardOf('/rbm', (b) => b.event?.eventId === launch.event.eventId, 'agent launch');
    assertForward(d, { kind: 'agentLaunch', event: launch.event, webhookType: 'agent_launch_event' }, 'agent launch');
    assert.equal(fake.requests.length, 0, 'nothing sent to RBM for it');
  });

  test('Google\'s documented Pub/Sub envelope (messageId and message_id, publishTime and publish_time) is accepted', async () => {
    const launch = agentLaunchEnvelope({}, { both: true });
    const env = JSON.parse(launch.body).message;
    assert.equal(env.messageId, env.message_id);
    const res = await postWebhook(w.main, launch.body, launch.data, { 'x-goog-webhook-type': 'agent_launch_event' });
    assert.equal(res.status, 200, `both spellings of the Pub/Sub fields, as Google sends them: ${res.text}`);
    assert.deepEqual(res.json, { ok: true, kind: 'agentLaunch' });
    const text = rbm.userText({ text: 'both spellings' });
    const data = Buffer.from(JSON.stringify(text));
    const body = JSON.stringify({
      message: { data: data.toString('base64'), messageId: '136969346945', message_id: '136969346945', publishTime: '2026-07-01T10:00:00.123Z', publish_time: '2026-07-01T10:00:00.123Z', attributes: {} },
      subscription: 'projects/p/subscriptions/s',
    });
    const r2 = await postWebhook(w.main, body, data, { 'x-goog-webhook-type': 'user_message' });
    assert.equal(r2.status, 200, `a user message in the same envelope: ${r2.text}`);
    assert.deepEqual(r2.json, { ok: true, kind: 'text' });
  });

  test('an agent launch event still needs a valid signature', async () => {
    const launch = agentLaunchEnvelope();
    assertError(await postWebhook(w.main, launch.body, launch.data, { 'x-goog-webhook-type': 'agent_launch_event' }, { sign: false }), 401, 'MISSING_SIGNATURE', 'unsigned launch event');
    const forged = { 'x-goog-webhook-type': 'agent_launch_event', 'x-goog-signature': rbm.sign(launch.data, 'not-the-client-token') };
    assertError(await request(w.main.url, '/webhook', { method: 'POST', body: launch.body, headers: { 'content-type': 'application/json', ...forged } }), 401, 'BAD_SIGNATURE', 'mis-signed launch event');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sink.deliveries.filter((d) => d.body?.event?.eventId === launch.event.eventId).length, 0, 'nothing forwarded');
  });

  test('FORWARD_KINDS=agentLaunch alone: launch events forwarded, user messages not', async () => {
    const text = textEnvelope({ text: 'not forwarded here' });
    const t = await postWebhook(w.kinds, text.body, text.data, { 'x-goog-webhook-type': 'user_message' });
    assert.equal(t.status, 200, t.text);
    const launch = agentLaunchEnvelope({ oldLaunchState: 'LAUNCH_STATE_LAUNCHED', newLaunchState: 'LAUNCH_STATE_SUSPENDED', actingParty: 'GOOGLE', comment: 'Suspended' });
    const res = await postWebhook(w.kinds, launch.body, launch.data, { 'x-goog-webhook-type': 'agent_launch_event' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { ok: true, kind: 'agentLaunch' });
    const d = await forwardOf('/kinds', (b) => b.event?.eventId === launch.event.eventId, 'agent launch with FORWARD_KINDS=agentLaunch');
    assertForward(d, { kind: 'agentLaunch', event: launch.event, webhookType: 'agent_launch_event' }, 'agent launch (kinds worker)');
    // Inline processing: the text's forward, had there been one, happened before its 200.
    assert.equal(sink.deliveries.filter((x) => x.body?.event?.messageId === text.event.messageId).length, 0, 'the text message is not a forwarded kind');
  });
});

test('Worker logs: no panic, no secret', () => {
  for (const x of Object.values(w)) {
    const logs = x.logs();
    assertCleanLogs(logs);
    assert.ok(!logs.includes(SIGNING_KEY), 'TOKEN_SIGNING_KEY in the logs');
    assert.ok(!logs.includes(FORWARD_SECRET.slice(6)), 'FORWARD_SECRET in the logs');
  }
});
