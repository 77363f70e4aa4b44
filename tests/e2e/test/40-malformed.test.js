'use strict';
//! Malformed input must be refused with a 4xx JSON error and must not hurt meshd: after each bad
//! request a valid pocket-js relay still succeeds.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Stack, CLIENT_RPC_MAX_BYTES } = require('../lib/stack');
const { isRpcError } = require('../lib/pocket');
const { describe } = require('../lib/expect');

let s;
before(async () => { s = await Stack.start(); });
after(async () => { if (s) await s.stop(); });
const ex = (fn) => (t) => { assert.ok(s, 'the stack did not start: see the before hook error'); return s.explain(fn)(t); };

/** Send `body` raw; demand 4xx + JSON object with an error; then demand meshd still serves. */
async function refusedThenAlive(t, body, { status, check } = {}) {
  const res = await s.raw(body);
  t.diagnostic(`${res.status} ${res.text.trim().slice(0, 300)}`);
  if (status) assert.equal(res.status, status, res.text);
  assert.ok(res.status >= 400 && res.status < 500, `expected 4xx, got ${res.status} ${res.text}`);
  assert.match(String(res.headers['content-type']), /json/, `content-type ${res.headers['content-type']}`);
  assert.ok(res.json && typeof res.json === 'object' && !Array.isArray(res.json), `body is not a JSON object: ${JSON.stringify(res.text)}`);
  if (check) check(res);
  const r = await s.relay((await s.build()).relay);
  assert.ok(!isRpcError(r), `meshd stopped serving after the bad request: ${describe(r)}`);
  return res;
}

const hasError = (res) => assert.ok(res.json.error !== undefined, `no "error" key: ${res.text}`);

test('invalid JSON', ex(async (t) => {
  await refusedThenAlive(t, '{"payload": {"data": ', { status: 400, check: hasError });
}));

test('empty body', ex(async (t) => {
  await refusedThenAlive(t, '', { status: 400, check: hasError });
}));

test('JSON that is not an object (array)', ex(async (t) => {
  await refusedThenAlive(t, '[1,2,3]', { status: 400, check: hasError });
}));

test('entropy as a string', ex(async (t) => {
  const w = (await s.build()).wire;
  w.proof.entropy = String(w.proof.entropy);
  await refusedThenAlive(t, w, { status: 400, check: hasError });
}));

test('entropy written as 1e3 (Go int64 rejects exponents)', ex(async (t) => {
  const w = (await s.build({ entropy: 1000n })).wire;
  const text = JSON.stringify(w).replace('"entropy":1000,', '"entropy":1e3,');
  assert.ok(text.includes('"entropy":1e3,'));
  await refusedThenAlive(t, text, { status: 400, check: hasError });
}));

test('block_height as a fraction', ex(async (t) => {
  const w = (await s.build()).wire;
  const text = JSON.stringify(w).replace('"meta":{"block_height":101}', '"meta":{"block_height":101.5}');
  assert.ok(text.includes('101.5'));
  await refusedThenAlive(t, text, { status: 400, check: hasError });
}));

test(`oversized body (> client_rpc_max_bytes_size ${CLIENT_RPC_MAX_BYTES}) → 413`, ex(async (t) => {
  const data = JSON.stringify({ jsonrpc: '2.0', method: 'eth_blockNumber', params: ['x'.repeat(CLIENT_RPC_MAX_BYTES)], id: 1 });
  const w = (await s.build({ data })).wire;
  const body = JSON.stringify(w);
  assert.ok(Buffer.byteLength(body) > CLIENT_RPC_MAX_BYTES);
  await refusedThenAlive(t, body, { status: 413 });
}));

test('body just under the limit is still served', ex(async () => {
  const base = JSON.stringify((await s.build({ data: '' , path: '' , entropy: 1n })).wire).length;
  const pad = CLIENT_RPC_MAX_BYTES - base - 200;
  assert.ok(pad > 100, `relay skeleton too big (${base} bytes) for this check`);
  const data = JSON.stringify({ jsonrpc: '2.0', method: 'eth_blockNumber', params: [], id: 'y'.repeat(pad) });
  const b = await s.build({ data });
  assert.ok(JSON.stringify(b.wire).length < CLIENT_RPC_MAX_BYTES);
  const r = await s.relay(b.relay);
  assert.ok(!isRpcError(r), describe(r));
}));

test('servicer_pub_key with non-hex characters', ex(async (t) => {
  const w = (await s.build()).wire;
  w.proof.servicer_pub_key = 'zz' + w.proof.servicer_pub_key.slice(2);
  await refusedThenAlive(t, w, { status: 400, check: hasError });
}));

test('servicer_pub_key of the wrong length', ex(async (t) => {
  const w = (await s.build()).wire;
  w.proof.servicer_pub_key = w.proof.servicer_pub_key.slice(0, 62);
  await refusedThenAlive(t, w, { status: 400, check: hasError });
}));

test('proof missing entirely', ex(async (t) => {
  const w = (await s.build()).wire;
  delete w.proof;
  await refusedThenAlive(t, w, { status: 400, check: hasError });
}));

test('GET on the relay route is not served as a relay', ex(async () => {
  const res = await s.raw('', { method: 'GET' });
  assert.ok(res.status >= 400 && res.status < 500, `GET /v1/client/relay → ${res.status} ${res.text}`);
  const r = await s.relay((await s.build()).relay);
  assert.ok(!isRpcError(r), describe(r));
}));
