'use strict';
//! Assertions shared by the test files: "this pocket-js result is RpcError code N" and "this raw
//! HTTP reply is a servicer-style error", with messages that show what actually came back.

const assert = require('node:assert/strict');
const { isRpcError } = require('./pocket');
const { goMarshalSorted } = require('./gojson');

/** Exact pocket-core messages (reference pocket-relay-protocol §4). */
const MESSAGES = {
  25: 'the payload data of the relay request is empty',
  26: 'the blockchain in the relay request is not supported on this node',
  29: 'the entropy included in the relay request is invalid',
  37: 'the Proof with specific merkleHash already found, check entropy',
  41: 'the signature could not be verified with the message and pub key',
  45: 'the app could not be found in the world state',
  60: 'the block height passed is invalid',
  71: 'the max number of relays serviced for this node is exceeded',
  74: 'the request hash does not match the payload hash',
  75: 'the request block height is out of sync with the current block height',
};

function describe(r) {
  if (isRpcError(r)) return `RpcError code=${r.code} message=${JSON.stringify(r.message)} session=${r.session ? 'set' : 'none'}`;
  return `success ${JSON.stringify(r)}`;
}

/** pocket-js result must be an RpcError with `code`; message exact if known (or matching `message` regex). */
function rpcError(r, code, { message, dispatch } = {}) {
  assert.ok(isRpcError(r), `expected RpcError ${code}, got ${describe(r)}`);
  assert.equal(r.code, String(code), `expected code ${code}, got ${describe(r)}`);
  const want = message || MESSAGES[code];
  if (want instanceof RegExp) assert.match(r.message, want);
  else if (want) assert.equal(r.message, want);
  if (dispatch === true) assert.ok(r.session, `code ${code} must carry a dispatch (pocket-js session); got ${describe(r)}`);
  if (dispatch === false) assert.equal(r.session, undefined, `code ${code} must not carry a dispatch; got ${describe(r)}`);
  return r;
}

/**
 * Raw reply must be HTTP `status` with a JSON body {"dispatch":…,"error":{code,codespace,message}}
 * re-encoded Go-style (sorted keys, trailing newline). Returns the parsed body.
 */
function rawError(res, code, { status = 400, codespace = 'pocketcore', message, dispatch = 'null' } = {}) {
  const show = `HTTP ${res.status} ${JSON.stringify(res.text)}`;
  assert.equal(res.status, status, show);
  assert.match(String(res.headers['content-type']), /^application\/json/, show);
  assert.ok(res.json && typeof res.json === 'object', `body is not JSON: ${show}`);
  assert.ok(res.text.endsWith('\n'), `no trailing newline: ${show}`);
  assert.equal(res.text, goMarshalSorted(res.json) + '\n', `not Go-encoded (sorted keys, HTML-escaped): ${show}`);
  const e = res.json.error;
  assert.ok(e && typeof e === 'object', `no error object: ${show}`);
  assert.equal(e.code, code, show);
  assert.equal(e.codespace, codespace, show);
  const want = message || (codespace === 'pocketcore' ? MESSAGES[code] : undefined);
  if (want instanceof RegExp) assert.match(e.message, want, show);
  else if (want) assert.equal(e.message, want, show);
  if (dispatch === 'null') assert.equal(res.json.dispatch, null, show);
  if (dispatch === 'set') assert.ok(res.json.dispatch && res.json.dispatch.session, `dispatch must be set: ${show}`);
  return res.json;
}

module.exports = { MESSAGES, rpcError, rawError, describe };
