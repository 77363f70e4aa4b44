'use strict';
//! meshd following the servicer's state through its periodic checks: the servicer's relay budget
//! (max_relays_override) is enforced with 71 + dispatch; a catching-up or starting servicer makes
//! meshd refuse relays with a clear error and recover when it is healthy again; a briefly
//! unreachable servicer does not stop service and gets its notifications late; one unreachable
//! for longer than meshd trusts a status does stop it; a height change moves the session.
//! These run with `servicer_outage_grace: 0`: they are about the checks' verdicts themselves;
//! serving cached sessions through an outage (the grace) is tests/outage_grace.rs.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Stack, KEYS, maxRelaysPerServicer, pollUntil, sleep } = require('../lib/stack');
const { isRpcError } = require('../lib/pocket');
const { rpcError, describe } = require('../lib/expect');
const stats = require('../lib/simstats');

const CHECK_INTERVAL_MS = 1000; // node_check_interval in the stack's config.json
const STATUS_TRUST_MS = 30000; // meshd trusts a check answer for max(3 intervals, 30 s) (src/servicer/health.rs)
const OVERRIDE = 10; // → round(10 / 1 chain / 5 nodes) = 2 relays per servicer per session

let s;
before(async () => {
  // Notifications must survive the outages below: retry for ~40 s, quickly.
  s = await Stack.start({ config: { servicer_retry_max_times: 100, servicer_retry_wait_min: 50, servicer_retry_wait_max: 400, servicer_outage_grace: 0 } });
});
after(async () => { if (s) await s.stop(); });
const ex = (fn) => (t) => { assert.ok(s, 'the stack did not start: see the before hook error'); return s.explain(fn)(t); };

/**
 * Change the sim's state, then wait until meshd has completed at least two servicer checks after
 * the change (and at least two check intervals have passed), so the next relay must reflect it.
 */
async function simStateAndSettle(ctl) {
  await s.simControl(ctl);
  const base = stats.checkCalls(await s.simStats());
  await sleep(2 * CHECK_INTERVAL_MS + 200);
  await pollUntil(`meshd to run 2 servicer checks after ${JSON.stringify(ctl)}`, async () => {
    const v = await s.simStats();
    return { ok: stats.checkCalls(v) >= base + 2, value: v };
  }, { timeoutMs: 10 * CHECK_INTERVAL_MS });
}

/** Raw relay; a 200 is recorded as served (the sim must later accept exactly those). */
async function rawRelay(o) {
  const b = await s.build(o);
  const res = await s.raw(b.wire);
  if (res.status === 200) s.noteServed(b.wire);
  return res;
}

/** Run `fn`; whatever happens, leave the sim healthy so one failure does not cascade. */
async function thenHealthy(fn) {
  try { await fn(); } finally { await s.simControl({ mode: 'ok' }).catch(() => {}); }
}

test('over-service with max_relays_override: budget relays served, then 71 with a dispatch', ex(async (t) => {
  // Set before meshd ever asks about this session, so the servicer's answer carries the override.
  await s.simControl({ max_relays_override: OVERRIDE });
  const budget = maxRelaysPerServicer(OVERRIDE);
  let served = 0;
  let refused;
  for (let i = 0; i < budget + 5 && !refused; i++) {
    const b = await s.build();
    const r = await s.relay(b.relay);
    if (isRpcError(r)) refused = r;
    else { served += 1; s.noteServed(b.wire); }
  }
  t.diagnostic(`served ${served}, then ${refused ? describe(refused) : 'nothing refused'}`);
  assert.ok(refused, `no refusal after ${served} relays with budget ${budget}`);
  rpcError(refused, 71, { dispatch: true });
  assert.equal(served, budget);
  assert.equal(refused.session.sessionHeader.applicationPubKey, KEYS.app.pub);
  await s.quiesce();
}));

test('servicer catching up → relays refused with a syncing error; healthy again → served', ex(async (t) => {
  // Move to a new session (and drop the override) so the budget above does not interfere.
  await simStateAndSettle({ height: 105, mode: 'ok', max_relays_override: null });
  const first = await rawRelay({ sessionHeight: 105 });
  assert.equal(first.status, 200, first.text);
  await s.quiesce();

  await thenHealthy(async () => {
    await simStateAndSettle({ mode: 'catching_up' });
    const refused = await rawRelay({ sessionHeight: 105 });
    t.diagnostic(`catching up: ${refused.status} ${refused.text.trim()}`);
    assert.equal(refused.status, 400, refused.text);
    assert.ok(refused.json && refused.json.error, `not a JSON error: ${refused.text}`);
    assert.match(String(refused.json.error.message), /sync|catching/i, `error does not say the servicer is syncing: ${refused.text}`);
  });

  await simStateAndSettle({ mode: 'ok' });
  const back = await rawRelay({ sessionHeight: 105 });
  assert.equal(back.status, 200, back.text);
  await s.quiesce();
}));

test('servicer starting → relays refused; ok again → served', ex(async (t) => {
  await thenHealthy(async () => {
    await simStateAndSettle({ mode: 'starting' });
    const refused = await rawRelay({ sessionHeight: 105 });
    t.diagnostic(`starting: ${refused.status} ${refused.text.trim()}`);
    assert.equal(refused.status, 400, refused.text);
    assert.ok(refused.json && refused.json.error, `not a JSON error: ${refused.text}`);
    assert.match(String(refused.json.error.message), /status|starting/i, refused.text);
  });
  await simStateAndSettle({ mode: 'ok' });
  const back = await rawRelay({ sessionHeight: 105 });
  assert.equal(back.status, 200, back.text);
  await s.quiesce();
}));

test('servicer briefly unreachable: meshd keeps serving on its last good status and delivers the notification later', ex(async (t) => {
  await s.quiesce(); // nothing in flight: any acceptance below is the outage relay's
  const before0 = s.servedProofs.length;
  await thenHealthy(async () => {
    await s.simControl({ mode: 'unavailable' });
    await sleep(2 * CHECK_INTERVAL_MS + 500);
    // meshd documents that a good status is trusted for max(3 check intervals, 30 s): a few lost
    // checks must not stop service. The relay is served and its notification retried.
    const served = await rawRelay({ sessionHeight: 105 });
    assert.equal(served.status, 200, served.text);
    await sleep(1000);
    assert.equal(stats.acceptedTotal(await s.simStats()), before0, 'the sim accepted a relay while unavailable');
  });
  await pollUntil('the queued notification to be delivered after the servicer is back', async () => {
    const v = await s.simStats();
    return { ok: stats.acceptedTotal(v) === before0 + 1, value: v };
  }, { timeoutMs: 10000, intervalMs: 200 });
  t.diagnostic('notification delivered after the outage');
}));

test('servicer unreachable for longer than the status is trusted (30 s): relays refused as unavailable; back → served', ex(async (t) => {
  await thenHealthy(async () => {
    await s.simControl({ mode: 'unavailable' });
    await sleep(STATUS_TRUST_MS + 2 * CHECK_INTERVAL_MS);
    const refused = await rawRelay({ sessionHeight: 105 });
    t.diagnostic(`unavailable: ${refused.status} ${refused.text.trim()}`);
    assert.equal(refused.status, 400, refused.text);
    assert.ok(refused.json && refused.json.error, `not a JSON error: ${refused.text}`);
    assert.match(String(refused.json.error.message), /unavailable/i, refused.text);
  });
  await simStateAndSettle({ mode: 'ok' });
  const back = await rawRelay({ sessionHeight: 105 });
  assert.equal(back.status, 200, back.text);
  await s.quiesce();
}));

test('height moves to 113: session 105 relays get 60 with the new session in the dispatch; 113 is served', ex(async () => {
  await simStateAndSettle({ height: 113, mode: 'ok' });
  const old = await rawRelay({ sessionHeight: 105, blockHeight: 113 });
  assert.equal(old.status, 400, old.text);
  assert.equal(old.json.error.code, 60, old.text);
  assert.ok(old.json.dispatch && old.json.dispatch.session, `60 without dispatch: ${old.text}`);
  assert.equal(old.json.dispatch.session.header.session_height, 113, old.text);
  const b = await s.build({ sessionHeight: 113 });
  const r = await s.relay(b.relay);
  assert.ok(!isRpcError(r), describe(r));
  s.noteServed(b.wire);
}));

test('the sim accepted exactly the relays meshd served in this file, each once', ex(async () => {
  assert.equal(s.servedProofs.length, 8, 'override 2 + catching-up 2 + starting 1 + outage 1 + long outage 1 + new session 1');
  // Code 0 = the syncing servicer's code-less error, which meshd must (and did) retry.
  const st = await s.expectSimAcceptedExactlyServed({ transientCodes: [0] });
  assert.ok(stats.checkCalls(st) >= 10, `meshd checked the servicer only ${stats.checkCalls(st)} times: ${JSON.stringify(st)}`);
}));
