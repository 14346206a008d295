// Fake of Twilio's Messages API for rbm-edge's SMS fallback tests, on 127.0.0.1 (random port):
//   POST /2010-04-01/Accounts/{AccountSid}/Messages.json
//   form To, From or MessagingServiceSid, Body; HTTP basic auth AccountSid:AuthToken;
//   I-Twilio-Idempotency-Token: a retried request with the same token sends nothing new and
//   gets the first answer back, as Twilio documents.
// Answers 201 with a Message resource ({"sid":"SM…","status":"queued",…}); Twilio's error shape
// {"code","message","more_info","status"} for bad auth (401 / 20003), a missing field
// (400 / 21604, 21602) or a scripted failure (failNext). Node 20 standard library only.

import http from 'node:http';
import crypto from 'node:crypto';

export async function startTwilioFake({ accountSid = 'AC00000000000000000000000000000001', authToken = 'twilio-test-token' } = {}) {
  const requests = [];   // every request, as received
  const messages = [];   // every SMS actually sent (one per idempotency token)
  const byToken = new Map();
  const state = { failNext: 0, failStatus: 500 };

  const error = (res, status, code, message) => {
    const body = JSON.stringify({ code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status });
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const form = Object.fromEntries(new URLSearchParams(raw));
      const token = req.headers['i-twilio-idempotency-token'];
      const record = { method: req.method, path: req.url, headers: { ...req.headers }, form, raw, at: Date.now() };
      requests.push(record);
      const m = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/.exec(req.url);
      if (req.method !== 'POST' || !m) return error(res, 404, 20404, 'The requested resource was not found');
      const expected = `Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`;
      if (req.headers.authorization !== expected || decodeURIComponent(m[1]) !== accountSid) {
        return error(res, 401, 20003, 'Authentication Error - invalid username');
      }
      if (!/^application\/x-www-form-urlencoded/.test(req.headers['content-type'] ?? '')) {
        return error(res, 400, 20001, 'Content-Type must be application/x-www-form-urlencoded');
      }
      if (!form.To) return error(res, 400, 21604, "A 'To' phone number is required.");
      if (!form.From && !form.MessagingServiceSid) return error(res, 400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message.");
      if (!form.Body) return error(res, 400, 21602, 'Message body is required.');
      if (state.failNext > 0) {
        state.failNext--;
        return error(res, state.failStatus, 20500, 'An internal server error has occurred');
      }
      if (token && byToken.has(token)) {
        return res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(byToken.get(token)));
      }
      const msg = {
        sid: `SM${crypto.randomBytes(16).toString('hex')}`,
        account_sid: accountSid,
        to: form.To,
        from: form.From ?? null,
        messaging_service_sid: form.MessagingServiceSid ?? null,
        body: form.Body,
        status: 'queued',
        date_created: new Date().toUTCString(),
        uri: `/2010-04-01/Accounts/${accountSid}/Messages/x.json`,
      };
      msg.uri = `/2010-04-01/Accounts/${accountSid}/Messages/${msg.sid}.json`;
      messages.push({ ...msg, idempotencyToken: token ?? null });
      if (token) byToken.set(token, msg);
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(msg));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    accountSid,
    authToken,
    requests,
    messages,
    /** The next n valid requests answer `status` (Twilio's error shape). */
    failNext(n, status = 500) { state.failNext = n; state.failStatus = status; },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}
