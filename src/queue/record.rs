//! Records kept in the LMDB queue, encoded with postcard inside a version enum: postcard is
//! not self-describing, so a new layout becomes a new variant and old records still decode
//! after an upgrade.

use serde::{Deserialize, Serialize};

/// A served relay waiting for its servicer to accept the notify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRelay {
    pub servicer_address: [u8; 20],
    pub servicer_public_key: [u8; 32],
    pub chain: String,
    pub app_public_key: String,
    pub session_height: i64,
    /// Signature-less proof hash: what the servicer dedupes on.
    pub proof_hash: [u8; 32],
    pub served_at_ms: u64,
    /// Notify attempts that failed for this relay (not counting node outages).
    pub attempts: u32,
    /// Do not try before this time (unix ms).
    pub not_before_ms: u64,
    pub last_error: String,
    /// The relay exactly as the client sent it.
    #[serde(with = "crate::queue::bytes_field")]
    pub relay_json: Vec<u8>,
}

/// A record that will not be delivered, kept with the reason; `record` holds the pending
/// record's raw bytes (so even an undecodable record is preserved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    pub dead_at_ms: u64,
    #[serde(with = "crate::queue::bytes_field")]
    pub pending_key: Vec<u8>,
    #[serde(with = "crate::queue::bytes_field")]
    pub record: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
enum StoredRelay {
    V1(QueuedRelay),
}

#[derive(Serialize, Deserialize)]
enum StoredDead {
    V1(DeadLetter),
}

/// Encode a record wrapped in its version enum (every LMDB record of meshd goes through here).
pub(crate) fn encode_versioned<S: Serialize>(stored: &S) -> Vec<u8> {
    postcard::to_allocvec(stored).expect("postcard encoding into a Vec cannot fail")
}

/// Decode a version enum; `what` names the record kind in the error.
pub(crate) fn decode_versioned<S: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<S, String> {
    postcard::from_bytes::<S>(bytes).map_err(|e| format!("undecodable {what} record ({} bytes): {e}", bytes.len()))
}

impl QueuedRelay {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(&StoredRelay::V1(self.clone()))
    }
    pub fn decode(bytes: &[u8]) -> Result<QueuedRelay, String> {
        decode_versioned(bytes, "queue").map(|StoredRelay::V1(r)| r)
    }
}

impl DeadLetter {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(&StoredDead::V1(self.clone()))
    }
    pub fn decode(bytes: &[u8]) -> Result<DeadLetter, String> {
        decode_versioned(bytes, "dead-letter").map(|StoredDead::V1(d)| d)
    }
}

pub fn now_ms() -> u64 {
    crate::timefmt::unix_millis(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> QueuedRelay {
        QueuedRelay {
            servicer_address: [7; 20],
            servicer_public_key: [8; 32],
            chain: "0021".into(),
            app_public_key: "ab".repeat(32),
            session_height: 101,
            proof_hash: [9; 32],
            served_at_ms: 1_700_000_000_000,
            attempts: 2,
            not_before_ms: 5,
            last_error: "x".into(),
            relay_json: b"{\"payload\":{}}".to_vec(),
        }
    }

    #[test]
    fn records_round_trip_and_carry_their_version() {
        let r = sample();
        let bytes = r.encode();
        assert_eq!(bytes[0], 0, "variant index of V1 leads the record");
        assert_eq!(QueuedRelay::decode(&bytes).unwrap(), r);
        let d = DeadLetter { reason: "why".into(), dead_at_ms: 1, pending_key: vec![1, 2], record: bytes };
        assert_eq!(DeadLetter::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn an_unknown_version_or_garbage_is_an_error_not_a_panic() {
        let mut bytes = sample().encode();
        bytes[0] = 9;
        assert!(QueuedRelay::decode(&bytes).unwrap_err().contains("undecodable"));
        assert!(QueuedRelay::decode(&[0, 200]).is_err());
        assert!(QueuedRelay::decode(&[]).is_err());
    }
}
