'use strict';
//! Reading the servicer simulator's `GET /sim/stats` counters. The field names live here only,
//! so a rename in the sim is a one-line change; a missing field throws with the whole document
//! (never silently counts as zero).

function pick(st, names, what) {
  for (const n of names) {
    const v = n.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), st);
    if (v !== undefined) return v;
  }
  throw new Error(`sim stats has no ${what} (tried ${names.join(', ')}): ${JSON.stringify(st)}`);
}

const sumValues = (m) => Object.values(m).reduce((a, b) => a + Number(b), 0);

const acceptedTotal = (st) => Number(pick(st, ['accepted_total', 'accepted', 'accepted.total'], 'accepted total'));

/** Accepted relays for one servicer address (hex); 0 when the map has no entry for it. */
function acceptedFor(st, addressHex) {
  const m = pick(st, ['accepted_by_servicer', 'accepted_per_servicer', 'accepted.by_servicer', 'accepted.per_servicer'], 'accepted per servicer');
  const hit = Object.entries(m).find(([k]) => k.toLowerCase() === addressHex.toLowerCase());
  return hit ? Number(hit[1]) : 0;
}

/** Rejections by code: { "37": n, … } */
const rejections = (st) => pick(st, ['rejections', 'rejected', 'rejections_by_code', 'rejected_by_code'], 'rejections by code');
const rejectedTotal = (st) => sumValues(rejections(st));
const rejectedCode = (st, code) => Number(rejections(st)[String(code)] || 0);
const duplicates = (st) => Number(pick(st, ['duplicates', 'duplicate'], 'duplicates'));
const checkCalls = (st) => Number(pick(st, ['check_calls', 'calls.check'], 'check calls'));
const sessionCalls = (st) => Number(pick(st, ['session_calls', 'calls.session'], 'session calls'));
const notifyCalls = (st) => Number(pick(st, ['notify_calls', 'calls.notify', 'relay_calls'], 'notify calls'));

/** Hex proof hashes of accepted notifies (needs GET /sim/stats?proofs=1). */
const acceptedProofs = (st) => pick(st, ['accepted_proofs'], 'accepted proof hashes (ask with ?proofs=1)');

module.exports = { acceptedProofs, acceptedTotal, acceptedFor, rejections, rejectedTotal, rejectedCode, duplicates, checkCalls, sessionCalls, notifyCalls };
