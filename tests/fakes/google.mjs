// Fake of Google's OAuth token endpoint + the RBM REST API, for rbm-edge tests.
//
// One HTTP server on 127.0.0.1 (random port) serves both:
//   POST /token                                         service-account JWT-bearer grant
//   POST   /v1/phones/{E164}/agentMessages              phones.agentMessages.create
//   DELETE /v1/phones/{E164}/agentMessages/{messageId}  phones.agentMessages.delete (revoke)
//   POST   /v1/phones/{E164}/agentEvents                phones.agentEvents.create
//   GET    /v1/phones/{E164}/capabilities               phones.getCapabilities
//   POST   /v1/users:batchGet                           users.batchGet
//
// It is the local RBM simulator's server (sim/server.mjs: Google's shapes are written there
// once) without webhooks: nothing is ever delivered, and a reused messageId is answered with
// the original message. Scripted numbers (sim/rbm.mjs NUMBERS) that change answers:
//   +15550000404/400/403/429/500/503 -> that Google error on every /v1/phones/{E164}/... route
//   +15550000999 answers normally after opts.slowMs (default 3000 ms)
//   +15550000666 resets the connection without an answer
// In users:batchGet the error and reset numbers are never "reachable".

import { startRbmServer } from '../../sim/server.mjs';

/**
 * Start the fake. opts:
 *   slowMs        delay of the scripted slow number +15550000999 (default 3000)
 *   tokenLifetime initial expires_in in seconds (default 3599)
 *   projectId     project id used in the key file (default "rbm-edge-test")
 *
 * Returns { url, tokenUri, serviceAccountKey (JSON text), clientEmail, privateKeyId, scope,
 * stats, requests, tokens, messages, failTokens(mode), setTokenLifetime(s),
 * rejectNextRbmCalls(n), revokeAllTokens(), setDelay(ms), waitFor(pred, ms, min), reset(), close() }.
 */
export function startGoogleFake(opts = {}) {
  return startRbmServer({
    slowMs: opts.slowMs,
    tokenLifetime: opts.tokenLifetime,
    projectId: opts.projectId ?? 'rbm-edge-test',
    tokenPrefix: 'ya29.fake-',
    duplicates: 'original',
  });
}
