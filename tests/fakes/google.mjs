// Fake of Google's OAuth token endpoint + the RBM REST API, for rbm-edge tests.
//
// One HTTP server on 127.0.0.1 (random port) serves both:
//   POST /token                                         service-account JWT-bearer grant
//   POST   /v1/phones/{E164}/agentMessages              phones.agentMessages.create
//   DELETE /v1/phones/{E164}/agentMessages/{messageId}  phones.agentMessages.delete (revoke)
//   POST   /v1/phones/{E164}/agentEvents                phones.agentEvents.create
//   GET    /v1/phones/{E164}/capabilities               phones.getCapabilities
//   POST   /v1/users:batchGet                           users.batchGet
//   POST   /v1/files                                    files.create with {"fileUrl",…,"agentId"}
//   POST   /upload/v1/files?uploadType=media&agentId=   files.create with the file's bytes
//
// It is the local RBM simulator's server (sim/server.mjs: Google's shapes are written there
// once, with the exact rules of every route in its header comment) without webhooks: nothing is
// ever delivered, and a reused messageId is answered with the original message. Scripted
// numbers (sim/rbm.mjs NUMBERS) that change answers:
//   +15550000404/400/403/429/500/503 -> that Google error on every /v1/phones/{E164}/... route
//   +15550000999 answers normally after opts.slowMs (default 3000 ms)
//   +15550000666 resets the connection without an answer
// In users:batchGet the error and reset numbers are never "reachable".
//
// Regions: startGoogleFake({ regions: true }) also listens on three more loopback ports, the
// regional hosts us / europe / asia (`regionUrls`), sharing tokens, messages and records with
// the global host (`url`). Every record carries `host` ('global' | 'us' | 'europe' | 'asia').
// users.batchGet then behaves like Google since May 2026: 400 INVALID_ARGUMENT on the global
// host; 400 naming the first number of another region on a regional host (regionOf); a number
// is reachable when its last digit is even and it is not a scripted error/reset number
// (isBatchReachable); the us host adds reachableUsersMap. Helpers to compute expectations:
// regionOf, isBatchReachable, batchGetAnswer, usCarrierOf (re-exported below).

import { startRbmServer } from '../../sim/server.mjs';

export {
  regionOf, isBatchReachable, isReachable, batchGetAnswer, usCarrierOf, US_CARRIERS,
  REGIONS, RBM_MEDIA_TYPES, MAX_UPLOAD_BYTES, googleError,
} from '../../sim/rbm.mjs';

/**
 * Start the fake. opts:
 *   slowMs        delay of the scripted slow number +15550000999 (default 3000)
 *   tokenLifetime initial expires_in in seconds (default 3599)
 *   projectId     project id used in the key file (default "rbm-edge-test")
 *   regions       true: also serve the us, europe and asia hosts (see above)
 *   batchGetQpm   users.batchGet calls answered per 60 s before 429 (default 600)
 *
 * Returns { url, regionUrls ({us,europe,asia} with regions, else undefined), hosts ({global,…}),
 * tokenUri, serviceAccountKey (JSON text), clientEmail, privateKeyId, scope,
 * stats ({tokenRequests, tokenRejected, rbmRequests}), maxBatchGetsInFlight (most batchGet calls
 *   in progress at once, all hosts, since start or reset()),
 * requests (every RBM call: {method, path, query, headers, body, raw, host, at, bytes?}),
 * batchGets (every users.batchGet: {host, region, agentId, users, count, unique, at, endAt,
 *   inFlight (batchGet calls in progress when it was answered, itself included), status,
 *   answer (the 200 body) | error (Google's error body otherwise)}),
 * files (every files.create: {host, source:'url'|'upload', status, name?, agentId, at,
 *   url: fileUrl, thumbnailUrl, contentDescription, body;
 *   upload: query, contentType, contentLength (header or null), chunked, bytes, sha256, endAt}),
 * tokens, messages (entries carry host), failTokens(mode), setTokenLifetime(s),
 * rejectNextRbmCalls(n), revokeAllTokens(), setDelay(ms), failNextBatchGets(n, code),
 * setBatchGetQpm(n), waitFor(pred, ms, min), reset(), close() }.
 */
export function startGoogleFake(opts = {}) {
  return startRbmServer({
    slowMs: opts.slowMs,
    tokenLifetime: opts.tokenLifetime,
    projectId: opts.projectId ?? 'rbm-edge-test',
    tokenPrefix: 'ya29.fake-',
    duplicates: 'original',
    regions: opts.regions,
    batchGetQpm: opts.batchGetQpm,
  });
}
