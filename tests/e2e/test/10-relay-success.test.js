'use strict';
//! Successful relays through meshd with real pocket-js and a real EVM node: the response equals
//! ganache's own answer after Go-style key sorting, the servicer signature verifies with Node
//! crypto alone, the raw HTTP reply has a Go servicer's shape, and the servicer simulator (which
//! re-validates every relay like a real servicer) accepts each notified relay.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const c = require('../lib/crypto');
const { goSortRelayResponse, goMarshalSorted, topLevelKeyOrder } = require('../lib/gojson');
const { isRpcError } = require('../lib/pocket');
const { Stack, KEYS } = require('../lib/stack');
const stats = require('../lib/simstats');

let s;
before(async () => {
  s = await Stack.start();
  // Make the chain non-trivial: one mined transfer, so block number and balances are not genesis values.
  await s.ganacheCall(JSON.stringify({
    jsonrpc: '2.0', id: 7, method: 'eth_sendTransaction',
    params: [{ from: '0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1', to: '0xffcf8fdee72ac11b5c542428b35eef5769c409f0', value: '0x1234' }],
  }));
});
after(async () => { if (s) await s.stop(); });

const ex = (fn) => (t) => { assert.ok(s, 'the stack did not start: see the before hook error'); return s.explain(fn)(t); };

/** Relay `data` via pocket-js, assert success and verify everything independently. */
async function relayAndVerify(data) {
  const b = await s.build({ data });
  const r = await s.relay(b.relay);
  assert.ok(!isRpcError(r), `relay failed: ${isRpcError(r) ? `code ${r.code}: ${r.message}` : ''}`);
  s.noteServed(b.wire);

  const direct = await s.ganacheCall(data);
  assert.equal(r.payload, goSortRelayResponse(direct), 'response == ganache answer after Go key sorting');

  // Proof hash computed by us (§2.5) and by pocket-js must agree; the servicer signed over it.
  const ph = c.proofHash(b.wire.proof);
  assert.equal(ph, b.digest.toString('hex'));
  assert.match(r.signature, /^[0-9a-f]{128}$/);
  assert.ok(c.verify(KEYS.servicer.pub, c.responseDigest(r.payload, ph), r.signature),
    `servicer signature ${r.signature} does not verify over response ${JSON.stringify(r.payload)} with Proof ${ph}`);
  // …and not over a different proof (the check can fail).
  assert.equal(c.verify(KEYS.servicer.pub, c.responseDigest(r.payload, c.sha3('x').toString('hex')), r.signature), false);
  return { b, r, direct };
}

test('eth_blockNumber through meshd equals ganache, signature verifies', ex(async () => {
  const { r } = await relayAndVerify('{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}');
  assert.equal(JSON.parse(r.payload).result, '0x1', 'one block mined in before()');
}));

test('eth_getBalance through meshd equals ganache, signature verifies', ex(async () => {
  const { r } = await relayAndVerify('{"jsonrpc":"2.0","method":"eth_getBalance","params":["0xffcf8fdee72ac11b5c542428b35eef5769c409f0","latest"],"id":42}');
  const j = JSON.parse(r.payload);
  assert.equal(j.id, 42);
  assert.equal(BigInt(j.result), 1000n * 10n ** 18n + 0x1234n);
}));

test('nested chain response (eth_getBlockByNumber) is key-sorted at every level like Go', ex(async () => {
  const { r, direct } = await relayAndVerify('{"jsonrpc":"2.0","method":"eth_getBlockByNumber","params":["0x1",false],"id":3}');
  assert.notEqual(r.payload, direct.trim(), 'ganache emits unsorted keys here, so sorting is observable');
  assert.deepEqual(JSON.parse(r.payload), JSON.parse(direct));
}));

test('chain error object (unsorted from ganache) is relayed sorted and signed', ex(async () => {
  // ganache puts "error" after "jsonrpc"/"id" in its own order; Go sorting must still apply.
  await relayAndVerify('{"jsonrpc":"2.0","method":"eth_noSuchMethod","params":[],"id":9}');
}));

test('raw HTTP success reply: JSON content type, sorted keys, trailing newline, exact Go bytes', ex(async () => {
  const b = await s.build({ data: '{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":5}' });
  const res = await s.raw(JSON.stringify(b.wire));
  assert.equal(res.status, 200, res.text);
  s.noteServed(b.wire);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  assert.ok(res.text.endsWith('}\n'), `body must end with "}\\n": ${JSON.stringify(res.text)}`);
  assert.deepEqual(topLevelKeyOrder(res.text), ['response', 'signature']);
  const body = res.json;
  assert.equal(res.text, goMarshalSorted(body) + '\n', 'bytes == Go json.Encoder output of the same map');
  assert.equal(body.response, goSortRelayResponse(await s.ganacheCall(b.wire.payload.data)));
  assert.ok(c.verify(KEYS.servicer.pub, c.responseDigest(body.response, c.proofHash(b.wire.proof)), body.signature));
}));

test('every served relay is notified and accepted by the servicer simulator (same proof hashes), none rejected', ex(async () => {
  assert.equal(s.servedProofs.length, 5, 'the tests above served 5 relays');
  const st = await s.expectSimAcceptedExactlyServed();
  assert.equal(stats.acceptedFor(st, KEYS.servicer.address), 5, `sim stats: ${JSON.stringify(st)}`);
  assert.ok(stats.checkCalls(st) >= 1, `meshd never called /v1/private/mesh/check: ${JSON.stringify(st)}`);
  assert.ok(stats.sessionCalls(st) >= 1, `meshd never asked the servicer about the session: ${JSON.stringify(st)}`);
}));
