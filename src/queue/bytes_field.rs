//! `#[serde(with = "crate::queue::bytes_field")]` for the byte-string fields of queue records.
//!
//! serde writes a `Vec<u8>` as a sequence, one `u8` at a time, and reads it back one element at a
//! time; in postcard a byte string is the same bytes (a varint length, then the bytes), written
//! and read as one slice. So this changes no stored record, and a dehydrated Shannon relay
//! (1–2 KiB), a Morse relay's JSON or a Spacemesh blob becomes one copy instead of a call per
//! byte: for the Shannon relay that encoding and decoding was ~30 % of the `lmdb-writer`
//! thread's and ~58 % of the `shannon-handoff` thread's CPU at max rate (bench/RESULTS.md,
//! "executor pacing, backend pool, read buffers"). Formats that describe themselves (JSON) still
//! see and give an array of numbers.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_bytes(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Before {
        name: String,
        bytes: Vec<u8>,
        n: u64,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct After {
        name: String,
        #[serde(with = "super")]
        bytes: Vec<u8>,
        n: u64,
    }

    /// Records written before this helper decode with it, and it writes the very same bytes, for
    /// empty, short and long byte strings (varint lengths of 1 and 2 bytes); JSON is unchanged.
    #[test]
    fn postcard_bytes_and_json_are_unchanged() {
        for len in [0usize, 1, 127, 128, 1500, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let before = Before { name: "r".into(), bytes: bytes.clone(), n: 9 };
            let after = After { name: "r".into(), bytes, n: 9 };
            let old = postcard::to_allocvec(&before).unwrap();
            assert_eq!(postcard::to_allocvec(&after).unwrap(), old, "len {len}");
            assert_eq!(postcard::from_bytes::<After>(&old).unwrap(), after, "len {len}");
            let json = serde_json::to_string(&before).unwrap();
            assert_eq!(serde_json::to_string(&after).unwrap(), json);
            assert_eq!(serde_json::from_str::<After>(&json).unwrap(), after);
        }
    }
}
