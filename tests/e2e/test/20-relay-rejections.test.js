'use strict';
//! Relays a real servicer must refuse, sent to meshd with pocket-js (and raw HTTP where the
//! tampering happens after signing): each must come back as the servicer's error code, codespace,
//! message and dispatch, and none of them may reach the servicer simulator as an accepted relay.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Stack, KEYS, SESSION, LIMITED_MAX_RELAYS, maxRelaysPerServicer } = require('../lib/stack');
const { isRpcError, pjs } = require('../lib/pocket');
const { rpcError, rawError, describe } = require('../lib/expect');

let s;
before(async () => { s = await Stack.start(); });
after(async () => { if (s) await s.stop(); });
const ex = (fn) => (t) => { assert.ok(s, 'the stack did not start: see the before hook error'); return s.explain(fn)(t); };

async function ok(b) {
  const r = await s.relay(b.relay);
  assert.ok(!isRpcError(r), `expected success, got ${describe(r)}`);
  s.noteServed(b.wire);
  return r;
}

/** Session as pocket-js parsed it from the error's dispatch: must be the relay's app/chain, current session. */
function assertSession(r, app = KEYS.app) {
  const sess = r.session;
  assert.equal(sess.sessionHeader.applicationPubKey, app.pub);
  assert.equal(sess.sessionHeader.chain, '0021');
  assert.equal(sess.sessionHeader.sessionBlockHeight, BigInt(SESSION), 'dispatch names the current session');
  assert.ok(sess.sessionNodes.some((n) => n.publicKey === KEYS.servicer.pub),
    `servicer not among dispatch nodes: ${JSON.stringify(sess.sessionNodes.map((n) => n.publicKey))}`);
}

test('baseline: a valid relay succeeds (so the rejections below are about the tampering)', ex(async () => {
  await ok(await s.build());
}));

test('74: payload data changed after signing (pocket-js)', ex(async () => {
  const b = await s.build();
  const tampered = new pjs.RelayRequest(new pjs.RelayPayload('{"jsonrpc":"2.0","method":"eth_chainId","params":[],"id":1}', 'POST', '', null), b.meta, b.proof);
  rpcError(await s.relay(tampered), 74, { dispatch: false });
}));

test('74: request_hash replaced after signing (raw HTTP, exact Go bytes)', ex(async () => {
  const b = await s.build();
  const w = JSON.parse(JSON.stringify(b.wire));
  w.proof.request_hash = 'ab'.repeat(32);
  const res = await s.raw(w);
  rawError(res, 74);
  assert.equal(res.text, '{"dispatch":null,"error":{"code":74,"codespace":"pocketcore","message":"the request hash does not match the payload hash"}}\n');
}));

test('4: AAT signed by a key other than the app', ex(async () => {
  const aat = await s.signer.aat(KEYS.app, KEYS.client, KEYS.stranger);
  const r = rpcError(await s.relay((await s.build({ aat })).relay), 4, { message: /^the application authentication token is invalid/ });
  assert.equal(r.session, undefined);
}));

test('41: proof signed by a key other than the AAT client', ex(async () => {
  rpcError(await s.relay((await s.build({ signer: KEYS.stranger })).relay), 41, { dispatch: false });
}));

test('26: chain not in chains.json ("0040")', ex(async () => {
  rpcError(await s.relay((await s.build({ chain: '0040' })).relay), 26, { dispatch: false });
}));

test('60: session height two sessions old (93 while current is 101), dispatch attached', ex(async () => {
  const r = rpcError(await s.relay((await s.build({ sessionHeight: 93, blockHeight: 101 })).relay), 60, { dispatch: true });
  assertSession(r);
}));

test('75: meta.block_height far from the current height, dispatch attached', ex(async () => {
  const r = rpcError(await s.relay((await s.build({ sessionHeight: 101, blockHeight: 150 })).relay), 75, { dispatch: true });
  assertSession(r);
}));

test('25: empty data and empty path', ex(async () => {
  rpcError(await s.relay((await s.build({ data: '', path: '' })).relay), 25, { dispatch: false });
}));

test('29: negative entropy', ex(async () => {
  const b = await s.build({ entropy: -5n });
  assert.equal(b.wire.proof.entropy, -5);
  rpcError(await s.relay(b.relay), 29, { dispatch: false });
}));

test('unknown servicer key: relay for a servicer meshd does not hold', ex(async (t) => {
  const b = await s.build({ servicerPub: KEYS.otherServicer.pub });
  const res = await s.raw(b.wire);
  t.diagnostic(`meshd answered ${res.status} ${res.text.trim()}`);
  assert.equal(res.status, 400, res.text);
  const e = res.json && res.json.error;
  assert.ok(e, res.text);
  // A lean Go servicer says sdk 1 "Failed to find correct servicer PK"; a single-key one says 34.
  const sdk1 = e.code === 1 && e.codespace === 'sdk' && /servicer/i.test(e.message);
  const pc34 = e.code === 34 && e.codespace === 'pocketcore';
  assert.ok(sdk1 || pc34, `expected sdk 1 (servicer not found) or pocketcore 34, got ${res.text}`);
  const r = await s.relay((await s.build({ servicerPub: KEYS.otherServicer.pub })).relay);
  rpcError(r, e.code, { message: e.message });
}));

test('37: the exact same relay sent twice — first served, second is a duplicate', ex(async () => {
  const b = await s.build();
  await ok(b);
  rpcError(await s.relay(b.relay), 37, { dispatch: false });
  // The raw bytes again, too: still a duplicate.
  rawError(await s.raw(b.wire), 37);
}));

test('45: app not staked (unknown to the servicer) — refused from the first relay, like a servicer', ex(async () => {
  rpcError(await s.relay((await s.build({ app: KEYS.unknownApp })).relay), 45, { dispatch: false });
  // Again with fresh entropy: the refusal is remembered, not turned into service.
  rpcError(await s.relay((await s.build({ app: KEYS.unknownApp })).relay), 45, { dispatch: false });
}));

test(`71: over-service — app with max_relays ${LIMITED_MAX_RELAYS} gets ${maxRelaysPerServicer(LIMITED_MAX_RELAYS)} relays, then 71 with a dispatch`, ex(async (t) => {
  const budget = maxRelaysPerServicer(LIMITED_MAX_RELAYS);
  let served = 0;
  let first71;
  for (let i = 0; i < budget + 5 && !first71; i++) {
    const b = await s.build({ app: KEYS.limitedApp });
    const r = await s.relay(b.relay);
    if (isRpcError(r)) {
      rpcError(r, 71, { dispatch: true });
      first71 = r;
    } else {
      served += 1;
      s.noteServed(b.wire);
    }
  }
  t.diagnostic(`served ${served} before 71`);
  assert.ok(first71, `no 71 after ${served} relays`);
  assert.equal(served, budget, `served ${served} relays, budget is ${budget}`);
  assertSession(first71, KEYS.limitedApp);
  // Still refused afterwards, raw too, with the dispatch in the body.
  const b = await s.build({ app: KEYS.limitedApp });
  const body = rawError(await s.raw(b.wire), 71, { dispatch: 'set' });
  assert.equal(body.dispatch.session.header.app_public_key, KEYS.limitedApp.pub);
}));

test('sim accepted exactly the relays meshd served here (same proof hashes), none of the refused ones', ex(async () => {
  assert.equal(s.servedProofs.length, 7, 'baseline 1 + duplicate test 1 + over-service 5');
  await s.expectSimAcceptedExactlyServed();
}));
