//! The mined-relay record handed from a relayer to the miner: pocket-relay-miner's
//! `MinedRelayMessage` (reference §5), with the field numbers of its generated `.pb.go`.
//!
//! Encoding follows the same proto3 rules as the relay messages (§1.2): fields in ascending
//! number, empty strings and bytes and zero integers omitted, int64 as a plain varint (a negative
//! value takes ten bytes, no zigzag). Decoding skips unknown fields, and a known field with an
//! unexpected wire type is skipped as unknown (protobuf-go's behaviour).

use super::mining;
use super::proto::{as_string, decoded, fields, put_bytes, put_u64, DecodeError, Relay, Value};

/// prm `MinedRelayMessage` (§5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinedRelayMessage {
    /// 1: SHA-256 of `relay_bytes`; the SMST key and the dedup key.
    pub relay_hash: Vec<u8>,
    /// 2: the dehydrated, marshalled `Relay`; the SMST value.
    pub relay_bytes: Vec<u8>,
    /// 3: the SMST weight (compute units per relay at the session start).
    pub compute_units_per_relay: u64,
    /// 4
    pub session_id: String,
    /// 5
    pub session_end_height: i64,
    /// 6
    pub supplier_operator_address: String,
    /// 7
    pub service_id: String,
    /// 8
    pub application_address: String,
    /// 9: "Pinned at receipt time to avoid grace period race conditions".
    pub arrival_block_height: i64,
    /// 10
    pub published_at_unix_nano: i64,
    /// 11
    pub session_start_height: i64,
}

impl MinedRelayMessage {
    /// The record for a served relay: its dehydrated bytes and relay hash (§4), the session
    /// fields from the request's session header and the supplier from the request metadata.
    /// `None` when the relay has no request or no session header. Pure: the heights, weight and
    /// time are the caller's.
    pub fn from_relay(relay: &Relay, compute_units_per_relay: u64, arrival_block_height: i64, published_at_unix_nano: i64) -> Option<Self> {
        let req = relay.req.as_ref()?;
        let h = req.meta.session_header.as_ref()?;
        let relay_bytes = relay.dehydrated_bytes();
        Some(MinedRelayMessage {
            relay_hash: mining::relay_hash(&relay_bytes).to_vec(),
            relay_bytes,
            compute_units_per_relay,
            session_id: h.session_id.clone(),
            session_end_height: h.session_end_block_height,
            supplier_operator_address: req.meta.supplier_operator_address.clone(),
            service_id: h.service_id.clone(),
            application_address: h.application_address.clone(),
            arrival_block_height,
            published_at_unix_nano,
            session_start_height: h.session_start_block_height,
        })
    }

    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, 1, &self.relay_hash);
        put_bytes(&mut out, 2, &self.relay_bytes);
        put_u64(&mut out, 3, self.compute_units_per_relay);
        put_bytes(&mut out, 4, self.session_id.as_bytes());
        put_u64(&mut out, 5, self.session_end_height as u64);
        put_bytes(&mut out, 6, self.supplier_operator_address.as_bytes());
        put_bytes(&mut out, 7, self.service_id.as_bytes());
        put_bytes(&mut out, 8, self.application_address.as_bytes());
        put_u64(&mut out, 9, self.arrival_block_height as u64);
        put_u64(&mut out, 10, self.published_at_unix_nano as u64);
        put_u64(&mut out, 11, self.session_start_height as u64);
        out
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match (field, v) {
                (1, Value::Len(b)) => self.relay_hash = b.to_vec(),
                (2, Value::Len(b)) => self.relay_bytes = b.to_vec(),
                (3, Value::Varint(x)) => self.compute_units_per_relay = x,
                (4, v @ Value::Len(_)) => self.session_id = as_string(v)?,
                (5, Value::Varint(x)) => self.session_end_height = x as i64,
                (6, v @ Value::Len(_)) => self.supplier_operator_address = as_string(v)?,
                (7, v @ Value::Len(_)) => self.service_id = as_string(v)?,
                (8, v @ Value::Len(_)) => self.application_address = as_string(v)?,
                (9, Value::Varint(x)) => self.arrival_block_height = x as i64,
                (10, Value::Varint(x)) => self.published_at_unix_nano = x as i64,
                (11, Value::Varint(x)) => self.session_start_height = x as i64,
                _ => {}
            }
            Ok(())
        })
    }

    /// Decodes a record.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        decoded(buf, Self::merge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shannon::proto::{RelayRequest, RelayRequestMetadata, RelayResponse, SessionHeader};

    fn sample() -> MinedRelayMessage {
        MinedRelayMessage {
            relay_hash: vec![1, 2],
            relay_bytes: vec![3],
            compute_units_per_relay: 300,
            session_id: "s".into(),
            session_end_height: 20,
            supplier_operator_address: "p".into(),
            service_id: "e".into(),
            application_address: "a".into(),
            arrival_block_height: -1,
            published_at_unix_nano: 1_700_000_000_000_000_000,
            session_start_height: 1,
        }
    }

    /// Assembled by hand from the §5 table: key = field << 3 | wire type.
    #[test]
    fn shannon_mined_bytes() {
        // 1.7e18 = 0x1797_9cfe_362a_0000 → 7-bit groups, least significant first, with the
        // continuation bit on all but the last: 80 80 a8 b1 e3 9f e7 cb 17
        let expected: Vec<u8> = [
            &[0x0a, 0x02, 0x01, 0x02][..],                                       // 1 relay_hash
            &[0x12, 0x01, 0x03],                                                 // 2 relay_bytes
            &[0x18, 0xac, 0x02],                                                 // 3 cupr 300
            &[0x22, 0x01, b's'],                                                 // 4 session_id
            &[0x28, 0x14],                                                       // 5 end 20
            &[0x32, 0x01, b'p'],                                                 // 6 supplier
            &[0x3a, 0x01, b'e'],                                                 // 7 service
            &[0x42, 0x01, b'a'],                                                 // 8 app
            &[0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // 9 arrival -1
            &[0x50, 0x80, 0x80, 0xa8, 0xb1, 0xe3, 0x9f, 0xe7, 0xcb, 0x17],       // 10 published_at
            &[0x58, 0x01],                                                       // 11 start 1
        ]
        .concat();
        assert_eq!(sample().encode(), expected);
        assert_eq!(MinedRelayMessage::decode(&expected).unwrap(), sample());
        assert_eq!(MinedRelayMessage::default().encode(), Vec::<u8>::new(), "empty fields are omitted");
    }

    #[test]
    fn shannon_mined_round_trip_and_tolerance() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(MinedRelayMessage::decode(&bytes).unwrap().encode(), bytes);
        // unknown field 12 and field 4 sent as a varint are skipped
        let extended = [&bytes[..], &[0x60, 0x07, 0x20, 0x01]].concat();
        assert_eq!(MinedRelayMessage::decode(&extended).unwrap(), m);
        assert_eq!(MinedRelayMessage::decode(&bytes[..bytes.len() - 1]).err(), Some(DecodeError::Truncated));
        assert_eq!(MinedRelayMessage::decode(&[0x22, 0x01, 0xff]).err(), Some(DecodeError::Utf8));
    }

    #[test]
    fn shannon_mined_from_relay() {
        let header = SessionHeader {
            application_address: "pokt1app".into(),
            service_id: "eth".into(),
            session_id: "ab".repeat(32),
            session_start_block_height: 101,
            session_end_block_height: 120,
        };
        let relay = Relay {
            req: Some(RelayRequest {
                meta: RelayRequestMetadata { session_header: Some(header.clone()), signature: vec![9; 4], supplier_operator_address: "pokt1sup".into() },
                payload: b"req".to_vec(),
            }),
            res: Some(RelayResponse { payload: b"served to the client".to_vec(), payload_hash: Some(vec![7; 32]), ..Default::default() }),
        };
        let m = MinedRelayMessage::from_relay(&relay, 5, 118, 42).unwrap();
        assert_eq!(m.relay_bytes, relay.dehydrated_bytes());
        assert!(Relay::decode(&m.relay_bytes).unwrap().res.unwrap().payload.is_empty(), "dehydrated");
        assert_eq!(m.relay_hash, relay.hash().to_vec());
        assert_eq!(
            (m.session_id.as_str(), m.session_start_height, m.session_end_height, m.service_id.as_str(), m.application_address.as_str()),
            (header.session_id.as_str(), 101, 120, "eth", "pokt1app")
        );
        assert_eq!(
            (m.supplier_operator_address.as_str(), m.compute_units_per_relay, m.arrival_block_height, m.published_at_unix_nano),
            ("pokt1sup", 5, 118, 42)
        );
        assert!(MinedRelayMessage::from_relay(&Relay::default(), 5, 1, 1).is_none());
        let no_header = Relay { req: Some(RelayRequest::default()), res: None };
        assert!(MinedRelayMessage::from_relay(&no_header, 5, 1, 1).is_none());
    }
}
