'use strict';
//! Relay construction and sending with the real client, pocket-js 0.9.2-rc (reference
//! pocket-relay-protocol §7): AAT via PocketAAT.from, request hash / proof digest via
//! RelayPayload/RelayMeta/RequestHash/RelayProof.bytes, client signature via the pocket-js
//! Keybase, and sending via RPC(HttpRpcProvider).client.relay exactly as a dApp would.

const pjs = require('@pokt-network/pocket-js');
const { PocketAAT } = pjs;
const crypto = require('node:crypto');

const PASSPHRASE = 'e2e-passphrase';

/** pocket-js draws up to ~1e17; we stay below 2^53 so the number is exact in JS and Go alike. */
function randomEntropy() {
  return BigInt(crypto.randomInt(1, 2 ** 47)) * 64n + BigInt(crypto.randomInt(0, 64));
}

class PocketSigner {
  constructor() {
    this.keybase = new pjs.Keybase(new pjs.InMemoryKVStore());
    this.unlocked = new Map(); // priv hex → address hex
    this.aats = new Map();
  }

  /** Import and unlock a private key (seed‖pub hex) in the pocket-js keybase; returns its address. */
  async unlock(key) {
    if (this.unlocked.has(key.priv)) return this.unlocked.get(key.priv);
    const acct = await this.keybase.importAccount(Buffer.from(key.priv, 'hex'), PASSPHRASE);
    if (acct instanceof Error) throw new Error(`pocket-js importAccount(${key.pub}): ${acct.message}`);
    const err = await this.keybase.unlockAccount(acct.addressHex, PASSPHRASE, 0);
    if (err instanceof Error) throw new Error(`pocket-js unlockAccount(${acct.addressHex}): ${err.message}`);
    this.unlocked.set(key.priv, acct.addressHex);
    return acct.addressHex;
  }

  /** AAT for (app, client), signed by `signerApp` (defaults to app; a different key gives a bad AAT). */
  async aat(app, client, signerApp = app) {
    const k = `${app.pub}/${client.pub}/${signerApp.pub}`;
    if (!this.aats.has(k)) this.aats.set(k, await PocketAAT.from('0.0.1', client.pub, app.pub, signerApp.priv));
    return this.aats.get(k);
  }

  /**
   * Build a RelayRequest the way pocket-js's sendRelay does, with every field overridable.
   * `signer` is the key that signs the proof digest (defaults to the AAT's client).
   * Returns { relay, wire, digest } where wire = relay.toJSON() and digest = RelayProof.bytes(...).
   */
  async build(o) {
    const data = o.data === undefined ? '{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}' : o.data;
    const method = o.method === undefined ? 'POST' : o.method;
    const path = o.path === undefined ? '' : o.path;
    const headers = o.headers === undefined ? null : o.headers;
    const chain = o.chain || '0021';
    const sessionHeight = BigInt(o.sessionHeight === undefined ? 101 : o.sessionHeight);
    const blockHeight = BigInt(o.blockHeight === undefined ? sessionHeight : o.blockHeight);
    const entropy = o.entropy === undefined ? randomEntropy() : BigInt(o.entropy);
    const aat = o.aat || await this.aat(o.app, o.client);
    const signer = o.signer || o.client;

    const payload = new pjs.RelayPayload(data, method, path, headers);
    const meta = new pjs.RelayMeta(blockHeight);
    const reqHash = new pjs.RequestHash(payload, meta);
    const digest = pjs.RelayProof.bytes(entropy, sessionHeight, o.servicerPub, chain, aat, reqHash);
    const addr = await this.unlock(signer);
    const sig = await this.keybase.signWithUnlockedAccount(addr, digest);
    if (sig instanceof Error) throw new Error(`pocket-js signWithUnlockedAccount: ${sig.message}`);
    const proof = new pjs.RelayProof(entropy, sessionHeight, o.servicerPub, chain, aat, sig.toString('hex'), reqHash);
    const relay = new pjs.RelayRequest(payload, meta, proof);
    return { relay, wire: relay.toJSON(), digest, payload, meta, proof };
  }
}

/**
 * Send through pocket-js's RPC client (validateResponse=true, 5 s timeout, self-signed OK).
 * Returns pocket-js's own result: a RelayResponse or an RpcError {code, message, session}.
 */
async function pocketRelay(meshdUrl, relay, timeoutMs = 5000) {
  const rpc = new pjs.RPC(new pjs.HttpRpcProvider(new URL(meshdUrl)));
  return rpc.client.relay(relay, true, timeoutMs, false);
}

function isRpcError(x) {
  return x instanceof pjs.RpcError;
}

module.exports = { pjs, PocketSigner, pocketRelay, isRpcError, randomEntropy };
