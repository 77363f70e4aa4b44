'use strict';
//! Go `encoding/json` emulation (Go 1.21 rules, reference pocket-relay-protocol §2.2): the string
//! writer used in every preimage, and the "sort a JSON object through map[string]interface{}"
//! re-encoding a Pocket servicer applies to chain responses and to its own HTTP replies (§1.3).
//! Written independently of meshd so the tests can compute expected bytes on their own.

/** Go's json string encoding with escapeHTML=true. */
function goString(s) {
  let out = '"';
  for (const ch of s) { // iterates code points; lone surrogates come out as themselves
    const cp = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || ch === '<' || ch === '>' || ch === '&' || cp === 0x2028 || cp === 0x2029) {
      out += '\\u' + cp.toString(16).padStart(4, '0');
    } else if (cp >= 0xd800 && cp <= 0xdfff) {
      out += '\\ufffd'; // Go replaces invalid UTF-8 (what a lone surrogate becomes) with U+FFFD
    } else out += ch;
  }
  return out + '"';
}

/** Go float64 formatting as encoding/json does it (shortest round-trip digits). */
function goNumber(n) {
  if (!Number.isFinite(n)) throw new Error(`goNumber: ${n} is not representable in JSON`);
  if (Object.is(n, -0)) return '-0';
  const abs = Math.abs(n);
  if (abs !== 0 && (abs < 1e-6 || abs >= 1e21)) {
    // Go: 'e' format, then "e-07" → "e-7"; JS already prints "1e-7" / "1e+21".
    return n.toExponential().replace(/e([+-])0*(\d)/, 'e$1$2');
  }
  return String(n);
}

/** Byte-wise (UTF-8) key order, like Go's sort of map keys. */
function goKeyCompare(a, b) {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Encode a parsed JSON value the way Go marshals the result of unmarshalling it into
 * interface{}: objects become maps (keys sorted bytewise), numbers float64, HTML escaped.
 */
function goMarshalSorted(v) {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return goNumber(v);
  if (typeof v === 'string') return goString(v);
  if (Array.isArray(v)) return '[' + v.map(goMarshalSorted).join(',') + ']';
  if (typeof v === 'object') {
    const keys = Object.keys(v).sort(goKeyCompare);
    return '{' + keys.map((k) => goString(k) + ':' + goMarshalSorted(v[k])).join(',') + '}';
  }
  throw new Error(`goMarshalSorted: unsupported type ${typeof v}`);
}

/**
 * What a Go servicer with json_sort_relay_responses=true returns for an upstream body:
 * JSON objects are re-encoded sorted; anything else (arrays, non-JSON) is returned verbatim.
 */
function goSortRelayResponse(body) {
  let parsed;
  try { parsed = JSON.parse(body); } catch { return body; }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return body;
  return goMarshalSorted(parsed);
}

/** Keys of a JSON object text in the order they appear (top level only). */
function topLevelKeyOrder(text) {
  // JSON.parse keeps insertion order for non-integer-like keys, which is all we need here.
  return Object.keys(JSON.parse(text));
}

module.exports = { goString, goNumber, goMarshalSorted, goSortRelayResponse, goKeyCompare, topLevelKeyOrder };
