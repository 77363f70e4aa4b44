'use strict';
//! Raw HTTP on loopback (node:http, no client library in between) so tests can see the exact
//! status, headers and body bytes meshd writes, and can send bodies no real client would.

const http = require('node:http');

/**
 * POST (or other method) `body` (string|Buffer) to `url`; resolves to
 * { status, headers, raw: Buffer, text, json (parsed or undefined) }. Never rejects on HTTP status.
 */
function request(url, { method = 'POST', body = '', headers = {}, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    if (u.hostname !== '127.0.0.1') return reject(new Error(`refusing non-loopback url ${url}`));
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname + u.search, method,
      headers: { 'Content-Type': 'application/json', 'Content-Length': buf.length, ...headers },
      timeout: timeoutMs,
      agent: false, // a fresh connection per request: no keep-alive state carried between tests
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, raw, text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`)));
    req.on('error', (e) => {
      // A server that answers early (e.g. 413) and closes may reset our upload; report what we can.
      reject(new Error(`${method} ${url}: ${e.message}`));
    });
    req.end(buf);
  });
}

function postJson(url, value, opts = {}) {
  return request(url, { ...opts, body: typeof value === 'string' ? value : JSON.stringify(value) });
}

async function getJson(url, timeoutMs = 5000) {
  const r = await request(url, { method: 'GET', body: '', timeoutMs, headers: { 'Content-Length': 0 } });
  if (r.status !== 200 || r.json === undefined) throw new Error(`GET ${url}: ${r.status} ${r.text}`);
  return r.json;
}

module.exports = { request, postJson, getJson };
