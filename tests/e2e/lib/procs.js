'use strict';
//! Child processes and ports for the harness: free loopback ports, spawning meshd / the sim with
//! their output captured (kept as a bounded tail for failure reports), waiting for a ready line
//! with a timeout, and killing every child we started — in `after` hooks and, as a last resort,
//! when the test process exits.

const net = require('node:net');
const { spawn } = require('node:child_process');

const TAIL_LINES = 200;
const live = new Set();

process.on('exit', () => {
  for (const p of live) { try { p.child.kill('SIGKILL'); } catch { /* already gone */ } }
});

/** A port that was free on 127.0.0.1 a moment ago (the OS picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Distinct free ports (held open together so the OS cannot hand out the same one twice). */
async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      servers.push(await new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => resolve(s));
      }));
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

class Proc {
  constructor(name, cmd, args, opts = {}) {
    this.name = name;
    this.cmd = cmd;
    this.args = args;
    this.lines = { stdout: [], stderr: [] };
    this.exited = null;
    this.waiters = [];
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env || {}) }, cwd: opts.cwd });
    live.add(this);
    for (const stream of ['stdout', 'stderr']) {
      let partial = '';
      this.child[stream].setEncoding('utf8');
      this.child[stream].on('data', (chunk) => {
        partial += chunk;
        const parts = partial.split('\n');
        partial = parts.pop();
        for (const line of parts) this.onLine(stream, line);
      });
      this.child[stream].on('end', () => { if (partial) this.onLine(stream, partial); partial = ''; });
    }
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exited = { code, signal };
        live.delete(this);
        for (const w of this.waiters) w.reject(new Error(`${this.name} exited (code ${code}, signal ${signal}) before printing ${w.re}\n${this.tail()}`));
        this.waiters = [];
        resolve(this.exited);
      });
    });
    this.child.on('error', (e) => {
      for (const w of this.waiters) w.reject(new Error(`${this.name}: cannot run ${cmd}: ${e.message}`));
      this.waiters = [];
    });
  }

  onLine(stream, line) {
    const buf = this.lines[stream];
    buf.push(line);
    if (buf.length > TAIL_LINES) buf.shift();
    for (const w of [...this.waiters]) {
      if (w.stream === stream && w.re.test(line)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(line.match(w.re));
      }
    }
  }

  /** Resolve with the regex match of the first (future or already seen) line on `stream` matching `re`. */
  waitForLine(stream, re, timeoutMs) {
    const seen = this.lines[stream].find((l) => re.test(l));
    if (seen) return Promise.resolve(seen.match(re));
    if (this.exited) return Promise.reject(new Error(`${this.name} already exited ${JSON.stringify(this.exited)}\n${this.tail()}`));
    return new Promise((resolve, reject) => {
      const w = { stream, re, resolve, reject };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${this.name}: no line matching ${re} on ${stream} within ${timeoutMs} ms\n${this.tail()}`));
      }, timeoutMs);
      w.resolve = (m) => { clearTimeout(timer); resolve(m); };
      w.reject = (e) => { clearTimeout(timer); reject(e); };
      this.waiters.push(w);
    });
  }

  tail(n = 60) {
    const fmt = (s) => this.lines[s].slice(-n).map((l) => `  ${this.name} ${s}| ${l}`).join('\n');
    return `--- ${this.name} (${this.cmd} ${this.args.join(' ')}) ${this.exited ? `exited ${JSON.stringify(this.exited)}` : 'running'}\n${fmt('stdout')}\n${fmt('stderr')}`;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  async stop(graceMs = 3000) {
    if (this.exited) return this.exited;
    try { this.child.kill('SIGTERM'); } catch { /* gone */ }
    const timer = setTimeout(() => { try { this.child.kill('SIGKILL'); } catch { /* gone */ } }, graceMs);
    const r = await this.exitPromise;
    clearTimeout(timer);
    return r;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Call `fn` until it returns { ok: true, value }; resolves to value. Bounded by `timeoutMs`;
 * on timeout throws naming `what` and the last value seen.
 */
async function pollUntil(what, fn, { timeoutMs = 10000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await fn();
    if (r.ok) return r.value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(r.value)}`);
    await sleep(intervalMs);
  }
}

module.exports = { freePort, freePorts, Proc, sleep, pollUntil };
