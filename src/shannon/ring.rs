//! bLSAG ring-signature verification, compatible with what the Shannon chain and relayers run
//! (pokt-network/ring-go over go-dleq's pure-Go decred secp256k1 backend), reference §2.1.
//!
//! A relay request carries `meta.signature`: a linkable ring signature by the application or one
//! of its delegated gateways over `m = SHA-256(marshal(RelayRequest with meta.signature cleared))`.
//! This module parses that signature and checks it against `m`. Which public keys are *allowed*
//! in the ring (the app and its gateways at the session end height) is chain data and is checked
//! by the caller against [`RingSignature::ring`]; nothing here does I/O.
//!
//! Two compatibility details matter (§2.1, §6.3):
//! - `hash_to_scalar` is SHA3-512 reduced mod N, then *left-aligned* into 32 bytes when the
//!   reduced value is shorter than 32 bytes (about 1 input in 256). A verifier with the canonical
//!   right-aligned reduction rejects the signatures whose computation hit that case.
//! - hash-to-curve is SHA3-256 of the compressed key, read as an x coordinate with the even y,
//!   re-hashing the digest until a point exists (at most 128 tries).
//!
//! Cost (bench/RESULTS.md "Shannon supplier edge"): a ring member's decoded point and H_p, and a
//! signer's decoded key image, depend only on their 33 bytes (§2.1: "it can be cached per ring
//! member"), and an application's ring is the same few keys for every relay; they are kept in a
//! small per-thread cache once a signature using them has verified. Lᵢ and Rᵢ are brought to
//! affine form together (one field inversion for both). A base used by [`TABLE_AFTER`] verified
//! signatures gets a fixed-base table ([`BaseTable`]): cᵢ·Pᵢ, cᵢ·I and sᵢ·H_p(Pᵢ) then cost 65
//! additions each instead of a shared-doubling ladder, and sᵢ·G uses k256's generator table.
//! Everything multiplied here is public (signature, keys, message), so variable time is fine.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use k256::elliptic_curve::bigint::{Encoding, U512};
use k256::elliptic_curve::ops::{LinearCombination, MulByGenerator, Reduce};
use k256::elliptic_curve::point::DecompressPoint;
use k256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use k256::elliptic_curve::subtle::Choice;
use k256::elliptic_curve::{BatchNormalize, PrimeField};
use k256::{AffinePoint, EncodedPoint, FieldBytes, ProjectivePoint, Scalar, U256};
use sha3::{Digest, Sha3_256, Sha3_512};

/// Length of a compressed secp256k1 point, the only point encoding on the wire (§2.1).
pub const POINT_LEN: usize = 33;
/// Length of an encoded scalar.
pub const SCALAR_LEN: usize = 32;
/// Hash-to-curve gives up after this many SHA3-256 rounds, as ring-go does (§2.1).
const HASH_TO_CURVE_TRIES: usize = 128;
/// Rings larger than this are refused before any curve work (a DoS bound of ours; PATH sends 2–3).
pub const MAX_RING_SIZE: usize = 64;

/// Why a ring signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The serialized signature does not have the ring-go layout (§2.1 "Serialisation").
    Malformed(&'static str),
    /// A key image or public key is not a valid compressed secp256k1 point.
    BadPoint,
    /// Hash-to-curve found no point within 128 tries (negligible for honest keys).
    HashToCurve,
    /// The left-aligned `hash_to_scalar` produced a value ≥ N; Go panics there ("hash should not be
    /// reduced twice"), we refuse the signature.
    ScalarOverflow,
    /// The ring equations do not close: the signature is not valid for this message.
    Mismatch,
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Malformed(why) => write!(f, "malformed ring signature: {why}"),
            RingError::BadPoint => f.write_str("ring signature holds an invalid secp256k1 point"),
            RingError::HashToCurve => f.write_str("hash-to-curve found no point"),
            RingError::ScalarOverflow => f.write_str("challenge scalar overflow"),
            RingError::Mismatch => f.write_str("ring signature does not verify"),
        }
    }
}

impl std::error::Error for RingError {}

/// Which `hash_to_scalar` reduction to use. Only [`Reduction::LeftAligned`] is compatible with the
/// chain; [`Reduction::Canonical`] exists so tests can show the quirk matters (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// go-dleq decred backend: `copy(reduced[:], n.Bytes())`, a short value is left-aligned.
    LeftAligned,
    /// Plain `SHA3-512 mod N` (the cgo backend; not what the chain runs).
    Canonical,
}

/// `HashToScalar` of go-dleq's decred backend (§2.1): SHA3-512(data) as a big-endian integer mod N,
/// whose minimal big-endian bytes are copied to the *front* of a 32-byte buffer.
pub fn hash_to_scalar(data: &[&[u8]], reduction: Reduction) -> Result<Scalar, RingError> {
    let mut h = Sha3_512::new();
    for part in data {
        h.update(part);
    }
    let wide: [u8; 64] = h.finalize().into();
    let n = <Scalar as Reduce<U512>>::reduce(U512::from_be_slice(&wide));
    if reduction == Reduction::Canonical {
        return Ok(n);
    }
    let be = n.to_bytes();
    // Go's big.Int.Bytes() drops leading zero bytes; copy() then puts the rest at offset 0.
    let lead = be.iter().take_while(|b| **b == 0).count();
    if lead == 0 {
        return Ok(n);
    }
    let mut shifted = FieldBytes::default();
    shifted[..SCALAR_LEN - lead].copy_from_slice(&be[lead..]);
    Option::<Scalar>::from(Scalar::from_repr(shifted)).ok_or(RingError::ScalarOverflow)
}

/// go-dleq `DecodeToScalar`: 32 big-endian bytes, reduced mod N silently (§2.1).
fn decode_scalar(bytes: &[u8]) -> Scalar {
    <Scalar as Reduce<U256>>::reduce(U256::from_be_slice(bytes))
}

/// Parses a 33-byte compressed point (decred `ParsePubKey` semantics: must be on the curve).
pub fn decode_point(bytes: &[u8]) -> Result<ProjectivePoint, RingError> {
    if bytes.len() != POINT_LEN {
        return Err(RingError::BadPoint);
    }
    let ep = EncodedPoint::from_bytes(bytes).map_err(|_| RingError::BadPoint)?;
    if !ep.is_compressed() {
        return Err(RingError::BadPoint);
    }
    let affine = Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&ep)).ok_or(RingError::BadPoint)?;
    Ok(ProjectivePoint::from(affine))
}

/// go-dleq `Encode`: 33-byte compressed; the point at infinity comes out as `02‖00…00` (§2.1).
pub fn encode_point(p: &ProjectivePoint) -> [u8; POINT_LEN] {
    encode_affine(&p.to_affine())
}

/// [`encode_point`] of a point already in affine form.
fn encode_affine(p: &AffinePoint) -> [u8; POINT_LEN] {
    let mut out = [0u8; POINT_LEN];
    let ep = p.to_encoded_point(true);
    let bytes = ep.as_bytes();
    if bytes.len() == POINT_LEN {
        out.copy_from_slice(bytes);
    } else {
        out[0] = 0x02; // identity: Go serialises (X=0, Y=0) with an even-y prefix
    }
    out
}

/// ring-go `hashToCurveSecp256k1` (§2.1): h = SHA3-256(compressed P); while h is not the x of a
/// curve point, h = SHA3-256(h); the point with the even y is returned.
pub fn hash_to_curve(compressed: &[u8]) -> Result<ProjectivePoint, RingError> {
    let mut h: [u8; 32] = Sha3_256::digest(compressed).into();
    for _ in 0..HASH_TO_CURVE_TRIES {
        // decred `FieldVal.SetBytes` reduces mod p silently; k256 refuses x ≥ p, so reduce first.
        let x = FieldBytes::from(reduce_mod_p(h));
        if let Some(p) = Option::<AffinePoint>::from(AffinePoint::decompress(&x, Choice::from(0))) {
            return Ok(ProjectivePoint::from(p));
        }
        h = Sha3_256::digest(h).into();
    }
    Err(RingError::HashToCurve)
}

/// The secp256k1 field prime p, big-endian.
const FIELD_PRIME: U256 = U256::from_be_hex("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F");

/// `h mod p` for a 256-bit `h` (a single subtraction suffices since 2^256 < 2p).
fn reduce_mod_p(h: [u8; 32]) -> [u8; 32] {
    let x = U256::from_be_slice(&h);
    if x >= FIELD_PRIME {
        let mut out = [0u8; 32];
        out.copy_from_slice(&x.wrapping_sub(&FIELD_PRIME).to_be_bytes());
        out
    } else {
        h
    }
}

/// Entries kept per thread in each cache (module doc); a full cache is emptied and refilled.
const CACHE_MAX: usize = 1024;
/// Verified signatures using a base before it gets a [`BaseTable`] (module doc).
pub const TABLE_AFTER: u32 = 16;
/// Fixed-base tables kept per thread (~46 KB each); a full set is emptied and rebuilt on use.
const TABLES_MAX: usize = 48;

/// A cached ring member: decoded point, H_p, verified signatures that used it.
#[derive(Clone, Copy)]
struct Member {
    point: ProjectivePoint,
    hp: ProjectivePoint,
    uses: u32,
}

/// Which base of a key a table is for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Base {
    Key,
    HashToCurve,
    KeyImage,
}

/// Fixed-base tables by (which base, key bytes).
type Tables = HashMap<(Base, [u8; POINT_LEN]), Rc<BaseTable>>;

thread_local! {
    static MEMBERS: RefCell<HashMap<[u8; POINT_LEN], Member>> = RefCell::new(HashMap::new());
    /// Key image → (decoded point, verified signatures that used it).
    static IMAGES: RefCell<HashMap<[u8; POINT_LEN], (ProjectivePoint, u32)>> = RefCell::new(HashMap::new());
    static TABLES: RefCell<Tables> = RefCell::new(HashMap::new());
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(c: &mut HashMap<K, V>, max: usize, key: K, value: V) {
    if c.len() >= max && !c.contains_key(&key) {
        c.clear();
    }
    c.insert(key, value);
}

fn table(base: Base, key: &[u8; POINT_LEN]) -> Option<Rc<BaseTable>> {
    TABLES.with(|t| t.borrow().get(&(base, *key)).cloned())
}

fn add_table(base: Base, key: [u8; POINT_LEN], point: &ProjectivePoint) {
    if table(base, &key).is_none() {
        let t = Rc::new(BaseTable::new(point));
        TABLES.with(|c| bounded_insert(&mut c.borrow_mut(), TABLES_MAX, (base, key), t));
    }
}

/// Multiples of one base B for variable-time fixed-base multiplication: row j holds d·16ʲ·B for
/// d = 1..=8 in affine form; a scalar is read as 65 signed radix-16 digits in −7..=8.
struct BaseTable(Vec<[AffinePoint; 8]>);

impl BaseTable {
    const ROWS: usize = 65;

    fn new(base: &ProjectivePoint) -> BaseTable {
        let mut all = Vec::with_capacity(Self::ROWS * 8);
        let mut row = *base;
        for _ in 0..Self::ROWS {
            let mut acc = row;
            for _ in 0..8 {
                all.push(acc);
                acc += row;
            }
            row = row.double().double().double().double();
        }
        let affine = <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize(all.as_slice());
        BaseTable(affine.chunks_exact(8).map(|c| std::array::from_fn(|i| c[i])).collect())
    }

    fn mul(&self, k: &Scalar) -> ProjectivePoint {
        let bytes = k.to_bytes();
        let mut acc = ProjectivePoint::IDENTITY;
        let mut carry = 0i8;
        for j in 0..64 {
            let byte = bytes[SCALAR_LEN - 1 - j / 2];
            let nibble = if j % 2 == 0 { byte & 0x0f } else { byte >> 4 } as i8;
            let mut d = nibble + carry;
            carry = 0;
            if d > 8 {
                d -= 16;
                carry = 1;
            }
            match d {
                1..=8 => acc += &self.0[j][(d - 1) as usize],
                -7..=-1 => acc += &(-self.0[j][(-d - 1) as usize]),
                _ => {}
            }
        }
        if carry == 1 {
            acc += &self.0[Self::ROWS - 1][0];
        }
        acc
    }
}

/// One ring member as carried inside the signature.
#[derive(Debug, Clone)]
pub struct RingMember {
    /// The response scalar sᵢ.
    pub s: Scalar,
    /// The member's public key, as the 33 compressed bytes received.
    pub pubkey: [u8; POINT_LEN],
    point: ProjectivePoint,
    /// H_p(Pᵢ), when the cache had it.
    hp: Option<ProjectivePoint>,
}

/// A parsed ring-go signature: `[4B BE n][32B c₀][33B key image][n × (32B sᵢ ‖ 33B Pᵢ)]` (§2.1).
#[derive(Debug, Clone)]
pub struct RingSignature {
    /// The ring's first challenge c₀.
    pub c: Scalar,
    /// The key image I = x·H_p(P_signer), the same for every signature by one signer.
    pub key_image: [u8; POINT_LEN],
    image: ProjectivePoint,
    /// The members in ring order.
    pub members: Vec<RingMember>,
}

impl RingSignature {
    /// Parses the serialized signature. Stricter than ring-go: the length must be exactly
    /// 69 + 65·n and the ring must have 2..=[`MAX_RING_SIZE`] members (the chain always builds
    /// rings of at least two keys, §2.1 "placeholder").
    pub fn parse(bytes: &[u8]) -> Result<Self, RingError> {
        let header = 4 + SCALAR_LEN + POINT_LEN;
        if bytes.len() < header {
            return Err(RingError::Malformed("shorter than the header"));
        }
        let n = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if n < 2 {
            return Err(RingError::Malformed("ring smaller than 2"));
        }
        if n > MAX_RING_SIZE {
            return Err(RingError::Malformed("ring too large"));
        }
        if bytes.len() != header + n * (SCALAR_LEN + POINT_LEN) {
            return Err(RingError::Malformed("length does not match the ring size"));
        }
        let c = decode_scalar(&bytes[4..4 + SCALAR_LEN]);
        let mut key_image = [0u8; POINT_LEN];
        key_image.copy_from_slice(&bytes[4 + SCALAR_LEN..header]);
        let image = match IMAGES.with(|c| c.borrow().get(&key_image).copied()) {
            Some((p, _)) => p,
            None => decode_point(&key_image)?,
        };
        let mut members = Vec::with_capacity(n);
        for chunk in bytes[header..].chunks_exact(SCALAR_LEN + POINT_LEN) {
            let s = decode_scalar(&chunk[..SCALAR_LEN]);
            let mut pubkey = [0u8; POINT_LEN];
            pubkey.copy_from_slice(&chunk[SCALAR_LEN..]);
            let (point, hp) = match MEMBERS.with(|c| c.borrow().get(&pubkey).copied()) {
                Some(m) => (m.point, Some(m.hp)),
                None => (decode_point(&pubkey)?, None),
            };
            members.push(RingMember { s, pubkey, point, hp });
        }
        Ok(RingSignature { c, key_image, image, members })
    }

    /// The ring's public keys (compressed) in signature order; the caller checks each one is an
    /// expected ring member (poktroll `ringPointsContain`: membership only, §2.1).
    pub fn ring(&self) -> impl Iterator<Item = &[u8; POINT_LEN]> {
        self.members.iter().map(|m| &m.pubkey)
    }

    /// ring-go `RingSig.Verify` (§2.1) with the chain's left-aligned `hash_to_scalar`.
    pub fn verify(&self, msg: &[u8; 32]) -> Result<(), RingError> {
        self.verify_with(msg, Reduction::LeftAligned)
    }

    /// Verification with a chosen reduction; only for showing the quirk matters.
    pub fn verify_with(&self, msg: &[u8; 32], reduction: Reduction) -> Result<(), RingError> {
        let mut c = self.c;
        let mut hps = Vec::with_capacity(self.members.len());
        let image_table = table(Base::KeyImage, &self.key_image);
        for m in &self.members {
            // Lᵢ = cᵢ·Pᵢ + sᵢ·G ;  Rᵢ = cᵢ·I + sᵢ·H_p(Pᵢ) ;  cᵢ₊₁ = H(m ‖ Lᵢ ‖ Rᵢ)
            let hp = match m.hp {
                Some(hp) => hp,
                None => hash_to_curve(&m.pubkey)?,
            };
            hps.push(hp);
            let l = match table(Base::Key, &m.pubkey) {
                Some(t) => t.mul(&c) + ProjectivePoint::mul_by_generator(&m.s),
                None => ProjectivePoint::lincomb(&m.point, &c, &ProjectivePoint::GENERATOR, &m.s),
            };
            let r = match (&image_table, table(Base::HashToCurve, &m.pubkey)) {
                (Some(ti), Some(th)) => ti.mul(&c) + th.mul(&m.s),
                _ => ProjectivePoint::lincomb(&self.image, &c, &hp, &m.s),
            };
            let [l, r] = <ProjectivePoint as BatchNormalize<[ProjectivePoint; 2]>>::batch_normalize(&[l, r]);
            c = hash_to_scalar(&[msg, &encode_affine(&l), &encode_affine(&r)], reduction)?;
        }
        if c != self.c {
            return Err(RingError::Mismatch);
        }
        // Only keys of a signature that verified are remembered (module doc).
        for (m, hp) in self.members.iter().zip(hps) {
            let uses = MEMBERS.with(|c| {
                let mut c = c.borrow_mut();
                let uses = c.get(&m.pubkey).map_or(0, |e| e.uses).saturating_add(1);
                bounded_insert(&mut c, CACHE_MAX, m.pubkey, Member { point: m.point, hp, uses });
                uses
            });
            if uses >= TABLE_AFTER {
                add_table(Base::Key, m.pubkey, &m.point);
                add_table(Base::HashToCurve, m.pubkey, &hp);
            }
        }
        let uses = IMAGES.with(|c| {
            let mut c = c.borrow_mut();
            let uses = c.get(&self.key_image).map_or(0, |e| e.1).saturating_add(1);
            bounded_insert(&mut c, CACHE_MAX, self.key_image, (self.image, uses));
            uses
        });
        if uses >= TABLE_AFTER {
            add_table(Base::KeyImage, self.key_image, &self.image);
        }
        Ok(())
    }
}

/// Parses and verifies in one step.
pub fn verify(sig: &[u8], msg: &[u8; 32]) -> Result<RingSignature, RingError> {
    let parsed = RingSignature::parse(sig)?;
    parsed.verify(msg)?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../tests/vectors/shannon-ring-signatures.jsonl");
    const APP_PUB: &str = "0397896e9b106df70124a856861cc9be52fac9980e2c7a118a36c19d0198692cc5";
    const GW_PUB: &str = "02bbbf99abdcddac27350bca272d7146187c091aacfc1c6f90819c9b6daf4fe846";

    struct Vector {
        kind: String,
        msg: [u8; 32],
        ring: Vec<String>,
        sig: Vec<u8>,
        valid: bool,
        short: u64,
    }

    fn vectors() -> Vec<Vector> {
        VECTORS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                Vector {
                    kind: v["kind"].as_str().unwrap().to_owned(),
                    msg: hex::decode(v["msg"].as_str().unwrap()).unwrap().try_into().unwrap(),
                    ring: v["ring"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect(),
                    sig: hex::decode(v["sig"].as_str().unwrap()).unwrap(),
                    valid: v["valid"].as_bool().unwrap(),
                    short: v["short_challenges"].as_u64().unwrap_or(0), // absent on the flipped-msg controls
                }
            })
            .collect()
    }

    fn scalar_hex(s: &Scalar) -> String {
        hex::encode(s.to_bytes())
    }

    /// §6.2: the full-width case and the 31-byte left-aligned case.
    #[test]
    fn shannon_hash_to_scalar_vectors() {
        let full = hash_to_scalar(&[b"pocket"], Reduction::LeftAligned).unwrap();
        assert_eq!(scalar_hex(&full), "43913f269ab77ad581e23102878c906eacd55fd9e973714f0ebbe9b55ad56fef");
        assert_eq!(full, hash_to_scalar(&[b"pocket"], Reduction::Canonical).unwrap());
        let short = hash_to_scalar(&[b"relay-msg-349"], Reduction::LeftAligned).unwrap();
        assert_eq!(scalar_hex(&short), "bd133cd1452701ae1d3910e3ad3fb1a3dddd7fc62cce0521503d6f6e658dd600");
        let canonical = hash_to_scalar(&[b"relay-msg-349"], Reduction::Canonical).unwrap();
        assert_eq!(scalar_hex(&canonical), "00bd133cd1452701ae1d3910e3ad3fb1a3dddd7fc62cce0521503d6f6e658dd6");
        // The data parts are concatenated, as challenge(m, L, R) hashes m ‖ L ‖ R.
        assert_eq!(hash_to_scalar(&[b"poc", b"ket"], Reduction::LeftAligned).unwrap(), full);
    }

    /// §6.2: the first `relay-msg-N` that reduces short is N = 349.
    #[test]
    fn shannon_first_short_probe_is_349() {
        let first = (0..1000u32)
            .find(|n| {
                let m = format!("relay-msg-{n}");
                hash_to_scalar(&[m.as_bytes()], Reduction::LeftAligned).unwrap() != hash_to_scalar(&[m.as_bytes()], Reduction::Canonical).unwrap()
            })
            .unwrap();
        assert_eq!(first, 349);
    }

    /// §6.2: H_p of the app and gateway public keys.
    #[test]
    fn shannon_hash_to_curve_vectors() {
        let app = hash_to_curve(&hex::decode(APP_PUB).unwrap()).unwrap();
        assert_eq!(hex::encode(encode_point(&app)), "02f72a1f27fa696323f979f608a525372567ad7c532736465db78c7d7118ce46e0");
        let gw = hash_to_curve(&hex::decode(GW_PUB).unwrap()).unwrap();
        assert_eq!(hex::encode(encode_point(&gw)), "02703716bd1d384b39442d0fe0a121ef050bd663d6a2a297902db45fd5874e0ed2");
    }

    #[test]
    fn shannon_hash_to_curve_reduces_x_mod_p() {
        // p + 1
        let above: [u8; 32] = hex::decode("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc30").unwrap().try_into().unwrap();
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(reduce_mod_p(above), one);
        let below = hex::decode("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2e").unwrap();
        assert_eq!(reduce_mod_p(below.clone().try_into().unwrap()).to_vec(), below);
    }

    #[test]
    fn shannon_encode_identity_like_go() {
        let mut expected = [0u8; POINT_LEN];
        expected[0] = 2;
        assert_eq!(encode_point(&ProjectivePoint::IDENTITY), expected);
        let one = Scalar::ONE.to_bytes();
        assert_eq!(hex::encode(one), format!("{}01", "00".repeat(31)));
    }

    /// Every line of the vector file verifies to its `valid` field.
    #[test]
    fn shannon_ring_vectors_all_agree() {
        let vs = vectors();
        assert_eq!(vs.len(), 643);
        let mut agree = 0;
        let (mut short_ok, mut flipped_rejected) = (0, 0);
        for (i, v) in vs.iter().enumerate() {
            let res = verify(&v.sig, &v.msg);
            assert_eq!(res.is_ok(), v.valid, "line {}: kind {} got {:?}", i + 1, v.kind, res.err());
            agree += 1;
            if let Ok(sig) = &res {
                let ring: Vec<String> = sig.ring().map(hex::encode).collect();
                assert_eq!(ring, v.ring, "line {}", i + 1);
            }
            if v.kind == "gateway-signs-short-challenge" {
                assert!(v.valid && v.short > 0);
                short_ok += 1;
            }
            if v.kind.ends_with("-flipped-msg") {
                assert_eq!(res.as_ref().err(), Some(&RingError::Mismatch), "line {}", i + 1);
                flipped_rejected += 1;
            }
        }
        assert_eq!(agree, 643);
        assert_eq!(short_ok, 12);
        assert_eq!(flipped_rejected, 102 + 23 + 6);
    }

    /// With the canonical reduction exactly the signatures that hit the short case are rejected:
    /// the quirk matters for verification (§6.3).
    #[test]
    fn shannon_canonical_reduction_rejects_short_challenges() {
        let mut rejected_short = 0;
        for v in vectors().iter().filter(|v| v.valid) {
            let sig = RingSignature::parse(&v.sig).unwrap();
            let canonical = sig.verify_with(&v.msg, Reduction::Canonical);
            if v.short > 0 {
                assert!(canonical.is_err(), "kind {} short {} accepted canonically", v.kind, v.short);
                rejected_short += 1;
            } else {
                assert!(canonical.is_ok(), "kind {}", v.kind);
            }
        }
        // the 12 `gateway-signs-short-challenge` lines plus one `gateway-signs` line that hit it too
        assert_eq!(rejected_short, 13);
    }

    /// The per-thread caches (module doc) never change a verdict: every vector twice, the second
    /// pass with every key and key image cached, gives the same results.
    #[test]
    fn shannon_ring_cache_keeps_verdicts() {
        let vs = vectors();
        let first: Vec<_> = vs.iter().map(|v| verify(&v.sig, &v.msg).err()).collect();
        assert!(MEMBERS.with(|c| !c.borrow().is_empty()) && IMAGES.with(|c| !c.borrow().is_empty()));
        let second: Vec<_> = vs.iter().map(|v| verify(&v.sig, &v.msg).err()).collect();
        assert_eq!(first, second);
        let v = vs.iter().find(|v| v.valid).unwrap();
        let mut tampered = v.sig.clone();
        tampered[80] ^= 1;
        assert_eq!(verify(&tampered, &v.msg).err(), Some(RingError::Mismatch));
    }

    /// Fixed-base tables give the same products as k256's multiplication, for edge scalars too.
    #[test]
    fn shannon_ring_base_table_matches_mul() {
        let base = hash_to_curve(&hex::decode(APP_PUB).unwrap()).unwrap();
        let t = BaseTable::new(&base);
        let minus_one = -Scalar::ONE;
        let mut scalars = vec![Scalar::ZERO, Scalar::ONE, minus_one, Scalar::from(8u64), Scalar::from(9u64), Scalar::from(0x88u64)];
        for i in 0..40u8 {
            scalars.push(hash_to_scalar(&[&[i]], Reduction::Canonical).unwrap());
        }
        for k in scalars {
            assert_eq!(encode_point(&t.mul(&k)), encode_point(&(base * k)), "{}", hex::encode(k.to_bytes()));
        }
    }

    /// Past TABLE_AFTER uses the table path decides, and it agrees with the ladder on every vector.
    #[test]
    fn shannon_ring_tables_keep_verdicts() {
        let vs = vectors();
        let before: Vec<_> = vs.iter().map(|v| verify(&v.sig, &v.msg).err()).collect();
        for _ in 0..TABLE_AFTER {
            for v in vs.iter().filter(|v| v.valid).take(3) {
                verify(&v.sig, &v.msg).unwrap();
            }
        }
        assert!(TABLES.with(|t| !t.borrow().is_empty()));
        let after: Vec<_> = vs.iter().map(|v| verify(&v.sig, &v.msg).err()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn shannon_ring_parse_rejects_malformed() {
        let v = &vectors()[0];
        let sig = &v.sig;
        assert_eq!(sig.len(), 199);
        assert!(matches!(RingSignature::parse(&sig[..198]), Err(RingError::Malformed(_))));
        let mut longer = sig.clone();
        longer.push(0);
        assert!(matches!(RingSignature::parse(&longer), Err(RingError::Malformed(_))));
        assert!(matches!(RingSignature::parse(&sig[..10]), Err(RingError::Malformed(_))));
        let mut one = sig.clone();
        one[3] = 1;
        assert!(matches!(RingSignature::parse(&one[..134]), Err(RingError::Malformed(_))));
        let mut huge = sig.clone();
        huge[0] = 0xff;
        assert!(matches!(RingSignature::parse(&huge), Err(RingError::Malformed(_))));
        // key image with a bad prefix, then with an x that is not on the curve
        let mut bad = sig.clone();
        bad[36] = 0x04;
        assert_eq!(RingSignature::parse(&bad).err(), Some(RingError::BadPoint));
        let mut off = sig.clone();
        off[37..69].copy_from_slice(&[0xff; 32]);
        assert_eq!(RingSignature::parse(&off).err(), Some(RingError::BadPoint));
        // a tampered s fails verification
        let mut tampered = sig.clone();
        tampered[80] ^= 1;
        assert_eq!(verify(&tampered, &v.msg).err(), Some(RingError::Mismatch));
        // layout (§6.2): ring size, app pub at [101..134], gateway pub at [166..199]
        assert_eq!(&sig[..4], &[0, 0, 0, 2]);
        assert_eq!(hex::encode(&sig[101..134]), APP_PUB);
        assert_eq!(hex::encode(&sig[166..199]), GW_PUB);
    }
}
