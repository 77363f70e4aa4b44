'use strict';
//! Harness self-checks that need no meshd: the test's own crypto and Go-JSON emulation against
//! the reference vectors (pocket-relay-protocol §6.1/§6.2), pocket-js producing the exact §6.1 wire
//! bytes, and ganache answering JSON-RPC. If these fail, the meshd tests cannot be trusted.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const c = require('../lib/crypto');
const { goSortRelayResponse, goString } = require('../lib/gojson');
const { PocketSigner, pjs } = require('../lib/pocket');
const { KEYS, startGanache, ganacheCall } = require('../lib/stack');

const WIRE_6_1 = '{"payload":{"data":"{\\"jsonrpc\\":\\"2.0\\",\\"method\\":\\"eth_blockNumber\\",\\"params\\":[],\\"id\\":1}","method":"POST","path":"","headers":null},"meta":{"block_height":101},"proof":{"entropy":7226337963384726,"session_block_height":101,"servicer_pub_key":"ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1","blockchain":"0021","aat":{"version":"0.0.1","app_pub_key":"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c","client_pub_key":"8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394","signature":"29c69ff702fd362f82b38220960fbb110aacffc5299f47533a18fc6ea94789f83fbbf386504a65971b722ff5216909da0bb6cef5953c08ad98240f03bea22505"},"signature":"b1555fc78838b57fa7d56318242ac6b23b8df14d70455ae874a1026805bd4362755f50dbec28ce356ab33a9f1cc62795211a64ee9f8b666679809dc5cbeb7109","request_hash":"f682374dfaa4bd423c51f49067a36ca999af35debfef8b04a8e1cac84a64311f"}}';

test('keys from repeated-byte seeds match the reference pub keys and addresses', () => {
  assert.equal(KEYS.app.pub, '8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c');
  assert.equal(KEYS.app.address, '34750f98bd59fcfc946da45aaabe933be154a4b5');
  assert.equal(KEYS.client.pub, '8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394');
  assert.equal(KEYS.client.address, '6a3803d5f059902a1c6dafbc9ba4729212f7caac');
  assert.equal(KEYS.servicer.pub, 'ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1');
  assert.equal(KEYS.servicer.address, 'b62e867fa2f33afe62d5d6b1642e1621d5433078');
  assert.equal(KEYS.servicer.priv, '03'.repeat(32) + KEYS.servicer.pub);
});

test('pocket-js builds the exact reference §6.1 wire bytes, and our independent hashes agree with it', async () => {
  const signer = new PocketSigner();
  const b = await signer.build({ app: KEYS.app, client: KEYS.client, servicerPub: KEYS.servicer.pub, entropy: 7226337963384726n });
  assert.equal(JSON.stringify(b.wire), WIRE_6_1);

  const w = JSON.parse(WIRE_6_1);
  assert.equal(c.requestHash(w.payload, w.meta), 'f682374dfaa4bd423c51f49067a36ca999af35debfef8b04a8e1cac84a64311f');
  assert.equal(c.aatHash(w.proof.aat), '29df6f52f5551efd6e8158f58e9981b76f990383b66f2cc3d211c284ae241564');
  const ph = c.proofHash(w.proof);
  assert.equal(ph, '4aac2ffeeaf73510d1e42cde4ce02ce3214ab7a389e0993f5c1bfb136bcf44f8');
  assert.equal(b.digest.toString('hex'), ph, 'pocket-js RelayProof.bytes == our §2.5 proof hash');
  // Signatures verify with Node's Ed25519, and Node signs identically (Ed25519 is deterministic).
  assert.ok(c.verify(KEYS.app.pub, c.sha3(c.aatPreimage(w.proof.aat)), w.proof.aat.signature));
  assert.ok(c.verify(KEYS.client.pub, Buffer.from(ph, 'hex'), w.proof.signature));
  assert.equal(c.sign(KEYS.client, Buffer.from(ph, 'hex')), w.proof.signature);
  // A one-bit change must fail verification (the checker is not vacuous).
  const bad = Buffer.from(ph, 'hex'); bad[0] ^= 1;
  assert.equal(c.verify(KEYS.client.pub, bad, w.proof.signature), false);
  // RelayRequest round-trips through pocket-js's own parser.
  assert.equal(JSON.stringify(pjs.RelayRequest.fromJSON(WIRE_6_1).toJSON()), WIRE_6_1);
});

test('servicer response digest and signature reproduce reference §6.1', () => {
  const body = '{"jsonrpc":"2.0","id":1,"result":"0x10d4f"}';
  const proof = '4aac2ffeeaf73510d1e42cde4ce02ce3214ab7a389e0993f5c1bfb136bcf44f8';
  const d = c.responseDigest(body, proof);
  assert.equal(d.toString('hex'), 'bfdbe33cb54d6e7d736698777a6abfc9ab59acd7041c528441fc7b05d0d0d3a7');
  const sig = c.sign(KEYS.servicer, d);
  assert.equal(sig, '2ed506867d947913e9406f07af36425d3819912d860fa55febcb2c08ad8f99d404489d88fb520d5661e2093dc28b564a0d9662a920501483d42f70f1451e8f05');
  assert.ok(c.verify(KEYS.servicer.pub, d, sig));
});

test('Go JSON emulation matches reference §6.2 vectors and Go sorting rules', () => {
  const p = { data: '{"params":["<&>","é"]}\n', method: '', path: '', headers: null };
  assert.equal(c.requestHash(p, { block_height: 5 }), 'b029a1ee53a201247fa794b01fa2daf9491f19e5b046f6afc9823b7aa70cfa1b');
  assert.equal(c.requestHash({ data: 'x', method: 'POST', path: '', headers: { b: '2', A: '1' } }, { block_height: 5 }),
    '67fd520c586815dc1826b870befe199bc743675510d15edc674555629be0a488');
  assert.equal(c.requestHash({ data: 'x', method: 'POST', path: '', headers: {} }, { block_height: 5 }),
    'f917f277af8908ac01c150ae829b9772f77c1d01639c0284aeb8ae4e10bc059a');
  assert.equal(goSortRelayResponse('{"jsonrpc":"2.0","id":1,"result":"0x10d4f"}\n'), '{"id":1,"jsonrpc":"2.0","result":"0x10d4f"}');
  assert.equal(goSortRelayResponse('{"b":{"z":1,"a":[{"y":2,"x":"<"}]},"a":1e21,"c":0.0000001}'),
    '{"a":1e+21,"b":{"a":[{"x":"\\u003c","y":2}],"z":1},"c":1e-7}');
  assert.equal(goSortRelayResponse('[{"b":1,"a":2}]'), '[{"b":1,"a":2}]', 'arrays are returned verbatim');
  assert.equal(goSortRelayResponse('not json'), 'not json');
  assert.equal(goString('\u2028\b\f\u0001'), '"\\u2028\\u0008\\u000c\\u0001"');
});

test('ganache (in-process EVM node) answers eth_blockNumber on 127.0.0.1', async () => {
  const g = await startGanache();
  try {
    const body = await ganacheCall(g.url, '{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}');
    const j = JSON.parse(body);
    assert.equal(j.id, 1);
    assert.match(j.result, /^0x[0-9a-f]+$/);
  } finally {
    await g.server.close();
  }
});
