'use strict';
//! Independent cryptography for the tests: ed25519 keys from repeated-byte seeds, addresses,
//! and every Pocket hash/signature of reference pocket-relay-protocol §2, using only Node's
//! `crypto` (SHA3-256, SHA-256, Ed25519) — never pocket-js or meshd code — so that a test can
//! cross-check both of them.

const crypto = require('node:crypto');
const { goString } = require('./gojson');

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Key pair from a 32-byte seed of one repeated byte (the reference vectors use 1, 2, 3). */
function keyFromSeedByte(b) {
  const seed = Buffer.alloc(32, b);
  const privateKey = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spki = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const pub = spki.subarray(SPKI_ED25519_PREFIX.length);
  return {
    seedByte: b,
    pub: pub.toString('hex'),
    // tendermint/libsodium private key layout: seed ‖ pub (64 bytes, 128 hex).
    priv: Buffer.concat([seed, pub]).toString('hex'),
    address: address(pub.toString('hex')),
    keyObject: privateKey,
  };
}

function publicKeyObject(pubHex) {
  const raw = Buffer.from(pubHex, 'hex');
  if (raw.length !== 32) throw new Error(`public key ${pubHex} is not 32 bytes`);
  return crypto.createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** Tendermint address: SHA-256(pub)[0:20], lowercase hex. */
function address(pubHex) {
  return crypto.createHash('sha256').update(Buffer.from(pubHex, 'hex')).digest().subarray(0, 20).toString('hex');
}

function sha3(bytesOrString) {
  return crypto.createHash('sha3-256').update(bytesOrString).digest();
}

function sign(key, digest) {
  return crypto.sign(null, digest, key.keyObject).toString('hex');
}

function verify(pubHex, digest, sigHex) {
  const sig = Buffer.from(sigHex, 'hex');
  if (sig.length !== 64) return false;
  return crypto.verify(null, digest, publicKeyObject(pubHex), sig);
}

/** §2.3 preimage: {"payload":{data,method,path,headers},"meta":{block_height}} in Go layout. */
function requestPreimage(payload, meta) {
  let headers = 'null';
  if (payload.headers !== null && payload.headers !== undefined) {
    const keys = Object.keys(payload.headers).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    headers = '{' + keys.map((k) => goString(k) + ':' + goString(payload.headers[k])).join(',') + '}';
  }
  return '{"payload":{"data":' + goString(payload.data) + ',"method":' + goString(payload.method) +
    ',"path":' + goString(payload.path) + ',"headers":' + headers + '},"meta":{"block_height":' +
    String(meta.block_height) + '}}';
}

function requestHash(payload, meta) {
  return sha3(requestPreimage(payload, meta)).toString('hex');
}

/** §2.4 */
function aatPreimage(aat) {
  return '{"version":' + goString(aat.version) + ',"app_pub_key":' + goString(aat.app_pub_key) +
    ',"client_pub_key":' + goString(aat.client_pub_key) + ',"signature":""}';
}

function aatHash(aat) {
  return sha3(aatPreimage(aat)).toString('hex');
}

/** §2.5 signature-less proof preimage (entropy/heights printed as the exact decimal given). */
function proofPreimage(proof) {
  return '{"entropy":' + String(proof.entropy) + ',"session_block_height":' + String(proof.session_block_height) +
    ',"servicer_pub_key":' + goString(proof.servicer_pub_key) + ',"blockchain":' + goString(proof.blockchain) +
    ',"signature":"","token":' + goString(aatHash(proof.aat)) + ',"request_hash":' + goString(proof.request_hash) + '}';
}

function proofHash(proof) {
  return sha3(proofPreimage(proof)).toString('hex');
}

/** §2.6 digest the servicer signs for a relay response. */
function responseDigest(responseString, proofHashHex) {
  return sha3('{"signature":"","payload":' + goString(responseString) + ',"Proof":' + goString(proofHashHex) + '}');
}

module.exports = {
  keyFromSeedByte, publicKeyObject, address, sha3, sign, verify,
  requestPreimage, requestHash, aatPreimage, aatHash, proofPreimage, proofHash, responseDigest,
};
