'use strict';
//! The whole system under test, started for real on 127.0.0.1: an in-process ganache EVM node
//! (chain "0021"), the servicer simulator (`meshd sim servicer`) and meshd itself with a data dir
//! in a temp folder. One `Stack` per test file; `stop()` tears everything down and is safe to call
//! after a partial start. Failures carry the tails of meshd's and the sim's output.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const ganache = require('ganache');

const { freePorts, Proc, pollUntil, sleep } = require('./procs');
const { keyFromSeedByte, proofHash } = require('./crypto');
const simstats = require('./simstats');
const { PocketSigner, pocketRelay } = require('./pocket');
const http = require('./http');

/** The fixed cast (reference §6.1 seeds, plus extra keys for negative cases). */
const KEYS = {
  app: keyFromSeedByte(0x01),
  client: keyFromSeedByte(0x02),
  servicer: keyFromSeedByte(0x03),
  unknownApp: keyFromSeedByte(0x04), // valid keys, but the sim has no such app staked
  limitedApp: keyFromSeedByte(0x05), // staked with max_relays 25 → 5 relays per servicer per session
  otherServicer: keyFromSeedByte(0x06), // not loaded in meshd
  stranger: keyFromSeedByte(0x07), // signs things it should not
};

const CHAIN = '0021';
const HEIGHT = 101; // sim height; session starts 1, 5, …, 101 with blocks_per_session 4
const SESSION = 101;
const LIMITED_MAX_RELAYS = 25;
const SESSION_NODE_COUNT = 5;
const CLIENT_RPC_MAX_BYTES = 4096;

function meshdBin() {
  const bin = process.env.MESHD_BIN;
  if (!bin) throw new Error('MESHD_BIN is not set: run as `MESHD_BIN=/abs/path/to/meshd node --test`');
  if (!path.isAbsolute(bin)) throw new Error(`MESHD_BIN must be an absolute path, got ${bin}`);
  try { fs.accessSync(bin, fs.constants.X_OK); } catch (e) { throw new Error(`MESHD_BIN=${bin} is not executable: ${e.message}`); }
  return bin;
}

/** Per-servicer relay budget as the servicer computes it (round(max / chains / nodes)). */
function maxRelaysPerServicer(maxRelays, chains = 1, nodes = SESSION_NODE_COUNT) {
  return Math.round(maxRelays / chains / nodes);
}

async function startGanache() {
  const server = ganache.server({
    logging: { quiet: true },
    chain: { chainId: 1337 },
    wallet: { deterministic: true, totalAccounts: 3 },
    miner: { instamine: 'eager' },
  });
  await server.listen(0, '127.0.0.1');
  const { port } = server.address();
  return { server, url: `http://127.0.0.1:${port}` };
}

/** JSON-RPC straight to ganache (the reference answer). */
async function ganacheCall(url, body) {
  const r = await http.postJson(url, body);
  if (r.status !== 200) throw new Error(`ganache ${body}: HTTP ${r.status} ${r.text}`);
  return r.text;
}

class Stack {
  /**
   * opts.sim: fields merged into the sim config; opts.config: keys merged into meshd's config.json;
   * opts.meshd: false to start only ganache + sim.
   */
  static async start(opts = {}) {
    const s = new Stack();
    try {
      await s._start(opts);
    } catch (e) {
      const tails = s.tails();
      await s.stop();
      // A Proc error already ends with that process's output tail; do not repeat it.
      if (tails && !e.message.includes('\n--- ')) e.message += `\n${tails}`;
      throw e;
    }
    return s;
  }

  async _start(opts) {
    this.keys = KEYS;
    this.servedProofs = []; // proof hashes (§2.5) of every relay meshd answered 200
    this.signer = new PocketSigner();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-e2e-'));
    this.token = crypto.randomBytes(16).toString('hex');
    this.meshToken = crypto.randomBytes(16).toString('hex');

    const ganacheNode = await startGanache();
    this.ganache = ganacheNode.server;
    this.ganacheUrl = ganacheNode.url;

    const [rpcPort, promPort] = await freePorts(2);
    this.meshUrl = `http://127.0.0.1:${rpcPort}`;
    this.relayUrl = `${this.meshUrl}/v1/client/relay`;

    const bin = meshdBin();
    const simConfig = {
      listen: '127.0.0.1:0',
      auth_token: this.token,
      height: HEIGHT,
      blocks_per_session: 4,
      client_session_sync_allowance: 1,
      session_node_count: SESSION_NODE_COUNT,
      service_url: this.meshUrl,
      servicers: [KEYS.servicer.pub],
      chains: [CHAIN],
      apps: [
        { public_key: KEYS.app.pub, chains: [CHAIN], max_relays: 5000 },
        { public_key: KEYS.limitedApp.pub, chains: [CHAIN], max_relays: LIMITED_MAX_RELAYS },
      ],
      version: 'RC-0.11.1',
      ...(opts.sim || {}),
    };
    this.simConfigPath = path.join(this.dir, 'sim.json');
    fs.writeFileSync(this.simConfigPath, JSON.stringify(simConfig, null, 2));
    this.sim = new Proc('sim', bin, ['sim', 'servicer', '--config', this.simConfigPath]);
    const m = await this.sim.waitForLine('stdout', /listening on (127\.0\.0\.1:\d+)/, 15000);
    this.simUrl = `http://127.0.0.1:${m[1].split(':')[1]}`;

    if (opts.meshd === false) return;

    const datadir = path.join(this.dir, 'meshd');
    this.datadir = datadir;
    fs.mkdirSync(path.join(datadir, 'key'), { recursive: true });
    fs.mkdirSync(path.join(datadir, 'auth'), { recursive: true });
    const config = {
      rpc_port: String(rpcPort),
      listen_address: '127.0.0.1',
      chains_name: 'chains.json',
      servicer_private_key_file: 'key/key.json',
      servicer_auth_token_file: 'auth/servicer.json',
      auth_token_file: 'auth/mesh.json',
      node_check_interval: 1,
      log_level: '*:info',
      pocket_prometheus_port: String(promPort),
      client_rpc_max_bytes_size: CLIENT_RPC_MAX_BYTES,
      ...(opts.config || {}),
    };
    fs.writeFileSync(path.join(datadir, 'config.json'), JSON.stringify(config, null, 2));
    fs.writeFileSync(path.join(datadir, 'key', 'key.json'), JSON.stringify([{ name: 'sim', url: this.simUrl, keys: [KEYS.servicer.priv] }]));
    fs.writeFileSync(path.join(datadir, 'chains.json'), JSON.stringify([{ id: CHAIN, url: this.ganacheUrl }]));
    const token = (v) => JSON.stringify({ Value: v, Issued: '2024-01-01T00:00:00Z' });
    fs.writeFileSync(path.join(datadir, 'auth', 'servicer.json'), token(this.token));
    fs.writeFileSync(path.join(datadir, 'auth', 'mesh.json'), token(this.meshToken));

    this.meshd = new Proc('meshd', bin, ['start', '--datadir', datadir]);
    await this.meshd.waitForLine('stderr', /event=ready /, 20000);
  }

  /** Output tails of the children, for failure messages. */
  tails() {
    return [this.meshd, this.sim].filter(Boolean).map((p) => p.tail()).join('\n');
  }

  /** Wrap a test body so its failure message ends with meshd's and the sim's output. */
  explain(fn) {
    return async (t) => {
      try {
        await fn(t);
      } catch (e) {
        if (e && typeof e === 'object') {
          try { e.message = `${e.message}\n${this.tails()}`; } catch { /* read-only message */ }
        }
        throw e;
      }
    };
  }

  /** Build a relay with pocket-js; defaults: app, client, servicer, chain 0021, session 101. */
  build(o = {}) {
    return this.signer.build({ app: KEYS.app, client: KEYS.client, servicerPub: KEYS.servicer.pub, ...o });
  }

  /** Send a pocket-js RelayRequest through pocket-js's RPC client. */
  relay(relay, timeoutMs = 5000) {
    return pocketRelay(this.meshUrl, relay, timeoutMs);
  }

  /** POST a body (object → JSON.stringify, string/Buffer as is) to /v1/client/relay. */
  raw(body, opts = {}) {
    return http.request(this.relayUrl, { body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body), ...opts });
  }

  ganacheCall(body) { return ganacheCall(this.ganacheUrl, body); }

  simStats(withProofs = false) { return http.getJson(`${this.simUrl}/sim/stats${withProofs ? '?proofs=1' : ''}`); }

  /** Record a relay meshd served (200), by its proof hash computed here, independently. */
  noteServed(wire) { this.servedProofs.push(proofHash(wire.proof)); }

  /**
   * Wait until the sim has accepted as many relays as meshd served, then demand that the sim's
   * accepted proof hashes are exactly those of the served relays (no more, none lost, no
   * duplicates) and that any rejection was one of `transientCodes` (answers meshd must retry).
   */
  async expectSimAcceptedExactlyServed({ transientCodes = [], timeoutMs = 15000 } = {}) {
    const want = this.servedProofs.length;
    await pollUntil(`the sim to accept ${want} notified relays`, async () => {
      const v = await this.simStats();
      return { ok: simstats.acceptedTotal(v) >= want, value: v };
    }, { timeoutMs, intervalMs: 200 });
    await sleep(300); // anything extra (a relay notified twice, a refused relay notified) shows up now
    const st = await this.simStats(true);
    const got = simstats.acceptedProofs(st);
    const sorted = (a) => [...a].sort();
    if (JSON.stringify(sorted(got)) !== JSON.stringify(sorted(this.servedProofs))) {
      throw new Error(`sim accepted proofs differ from the relays meshd served:\n served ${JSON.stringify(sorted(this.servedProofs))}\n accepted ${JSON.stringify(sorted(got))}\n stats ${JSON.stringify({ ...st, accepted_proofs: undefined })}`);
    }
    const bad = Object.entries(simstats.rejections(st)).filter(([code, n]) => Number(n) > 0 && !transientCodes.includes(Number(code)));
    if (bad.length) throw new Error(`the sim rejected notified relays with ${JSON.stringify(Object.fromEntries(bad))}: ${JSON.stringify({ ...st, accepted_proofs: undefined })}`);
    if (simstats.duplicates(st) !== 0) throw new Error(`meshd notified a relay twice: ${JSON.stringify(st)}`);
    return st;
  }

  /** Wait until every relay served so far has been accepted by the sim (no notification in flight). */
  async quiesce(timeoutMs = 15000) {
    const want = this.servedProofs.length;
    return pollUntil(`all ${want} served relays to be accepted`, async () => {
      const v = await this.simStats();
      return { ok: simstats.acceptedTotal(v) === want, value: v };
    }, { timeoutMs, intervalMs: 100 });
  }

  async simControl(ctl) {
    const r = await http.postJson(`${this.simUrl}/sim/control`, ctl);
    if (r.status !== 200) throw new Error(`POST /sim/control ${JSON.stringify(ctl)}: ${r.status} ${r.text}`);
    return r.json;
  }

  async stop() {
    const procs = [this.meshd, this.sim].filter(Boolean);
    await Promise.all(procs.map((p) => p.stop()));
    if (this.ganache) { try { await this.ganache.close(); } catch { /* already closed */ } }
    if (this.dir && !process.env.E2E_KEEP_TMP) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { Stack, KEYS, CHAIN, HEIGHT, SESSION, LIMITED_MAX_RELAYS, SESSION_NODE_COUNT, CLIENT_RPC_MAX_BYTES, maxRelaysPerServicer, startGanache, ganacheCall, sleep, pollUntil };
