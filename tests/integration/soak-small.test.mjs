// The soak's check at a size for `make test`: 500 signed receipts for 100 messages, 20 %
// duplicated, shuffled, 32 keep-alive connections, inline and through the queue (real local KV
// and Queues); afterwards every message's status must be the fold of the event types sent to it. Same code as
// `make soak` (tests/soak/soak.mjs); no timing assertions. SOAK_SEED reproduces a run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { runSoak } from '../soak/soak.mjs';

for (const queue of [false, true]) {
  const mode = queue ? 'queue (the default path)' : 'inline';
  test(`soak, small, ${mode}: 500 receipts / 100 messages, duplicated and shuffled -> nothing lost, regressed or wrong`, { timeout: 180_000 }, async () => {
    const seed = process.env.SOAK_SEED ? Number(process.env.SOAK_SEED) : crypto.randomInt(1, 2 ** 31);
    const lines = [];
    const r = await runSoak({ receipts: 500, messages: 100, concurrency: 32, dupRate: 0.2, seed, queue, drainTimeoutMs: 120_000, log: (s) => { lines.push(s); console.log(s); } });
    const ctx = `seed ${seed} (SOAK_SEED=${seed} reproduces it)\n${lines.join('\n')}`;
    assert.equal(r.lost, 0, `lost; ${ctx}`);
    assert.equal(r.regressed, 0, `regressed; ${ctx}`);
    assert.equal(r.wrong, 0, `wrong; ${ctx}`);
    assert.equal(r.typeMismatch, 0, `event types; ${ctx}`);
    assert.equal(r.readErrors, 0, `read errors; ${ctx}`);
    assert.equal(r.gaveUp, 0, `deliveries given up; ${ctx}`);
    assert.equal(r.panics, 0, `panics in the Worker's log; ${ctx}`);
    assert.equal(r.duplicates, 100, ctx);
    assert.ok(r.ok, ctx);
  });
}
