//! bLSAG ring *signing* that the Shannon chain's verifier accepts (reference §2.1): the relay
//! request signature an application or gateway produces. Used by our own test client, demo and
//! bench ([`super::client`]); the relayer itself only verifies ([`super::ring`]).
//!
//! The construction mirrors the verifier in [`super::ring`] (ring-go `Sign`/`Verify` semantics):
//! - key image I = x·H_p(P_signer);
//! - with a fresh nonce u: c_{π+1} = H(m ‖ u·G ‖ u·H_p(P_π));
//! - for every other member j (in ring order after the signer), a random s_j and
//!   c_{j+1} = H(m ‖ c_j·P_j + s_j·G ‖ c_j·I + s_j·H_p(P_j));
//! - the ring closes with s_π = u − c_π·x; the wire carries c₀ (the ring's *first* challenge).
//!
//! H is the chain's left-aligned `hash_to_scalar`. When a challenge would overflow there (Go
//! panics: "hash should not be reduced twice") the signer starts over with fresh randomness.
//!
//! Randomness comes from the caller (`fill`), so the module stays pure and tests are repeatable.
//! The nonce and the s_j are *hedged*: derived by SHA-512 from the secret, the message, the ring,
//! the caller's random bytes and an attempt counter. A weak or repeated random source therefore
//! cannot leak the key through a reused nonce over different messages.

use super::keys::OperatorKey;
use super::ring::{decode_point, encode_point, hash_to_curve, hash_to_scalar, Reduction, MAX_RING_SIZE, POINT_LEN, SCALAR_LEN};
use k256::elliptic_curve::bigint::U512;
use k256::elliptic_curve::ops::{LinearCombination, Reduce};
use k256::{ProjectivePoint, Scalar};
use sha2::{Digest, Sha512};

/// Fresh starts allowed when a challenge overflows (each happens with probability far below 2⁻¹⁰⁰).
const MAX_ATTEMPTS: u32 = 16;

/// Why a ring signature could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingSignError {
    /// The ring must have 2..=[`MAX_RING_SIZE`] members (the verifier refuses anything else).
    RingSize,
    /// `signer_index` is not a position in the ring.
    SignerIndex,
    /// The key at `signer_index` is not the signer's public key.
    NotSignersKey,
    /// A ring member is not a valid compressed secp256k1 point, or has no hash-to-curve point.
    BadMember(usize),
    /// Every attempt hit the challenge overflow (not expected to happen).
    Exhausted,
}

impl std::fmt::Display for RingSignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingSignError::RingSize => write!(f, "a ring must have 2 to {MAX_RING_SIZE} members"),
            RingSignError::SignerIndex => f.write_str("signer index outside the ring"),
            RingSignError::NotSignersKey => f.write_str("the ring member at the signer index is not the signer's key"),
            RingSignError::BadMember(i) => write!(f, "ring member {i} is not a usable secp256k1 public key"),
            RingSignError::Exhausted => f.write_str("could not find a challenge chain without overflow"),
        }
    }
}

impl std::error::Error for RingSignError {}

/// Per-attempt scalar source: SHA-512(domain ‖ secret ‖ msg ‖ ring ‖ signer ‖ random ‖ attempt ‖ i) mod N.
struct Hedge {
    prefix: Sha512,
}

impl Hedge {
    fn new(secret: &Scalar, msg: &[u8; 32], ring: &[[u8; POINT_LEN]], signer_index: usize, random: &[u8], attempt: u32) -> Self {
        let mut prefix = Sha512::new();
        prefix.update(b"meshd shannon ring nonce v1");
        prefix.update(secret.to_bytes());
        prefix.update(msg);
        for key in ring {
            prefix.update(key);
        }
        prefix.update((signer_index as u64).to_be_bytes());
        prefix.update(random);
        prefix.update(attempt.to_be_bytes());
        Hedge { prefix }
    }

    fn scalar(&self, i: usize) -> Scalar {
        let mut h = self.prefix.clone();
        h.update((i as u64).to_be_bytes());
        let wide: [u8; 64] = h.finalize().into();
        <Scalar as Reduce<U512>>::reduce(U512::from_be_slice(&wide))
    }
}

/// Signs `msg` (the request's signable hash) with `key`, which must be `ring[signer_index]`.
/// `fill` supplies random bytes. Returns ring-go's serialisation
/// `[4B BE n][32B c₀][33B I][n × (32B sᵢ ‖ 33B Pᵢ)]` (§2.1), with the ring in the given order.
pub fn sign(
    msg: &[u8; 32],
    ring: &[[u8; POINT_LEN]],
    signer_index: usize,
    key: &OperatorKey,
    fill: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<u8>, RingSignError> {
    let n = ring.len();
    if !(2..=MAX_RING_SIZE).contains(&n) {
        return Err(RingSignError::RingSize);
    }
    if signer_index >= n {
        return Err(RingSignError::SignerIndex);
    }
    if &ring[signer_index] != key.pubkey() {
        return Err(RingSignError::NotSignersKey);
    }
    let x: Scalar = *key.signing_key().as_nonzero_scalar().as_ref();
    let mut points = Vec::with_capacity(n);
    let mut hps = Vec::with_capacity(n);
    for (i, member) in ring.iter().enumerate() {
        points.push(decode_point(member).map_err(|_| RingSignError::BadMember(i))?);
        hps.push(hash_to_curve(member).map_err(|_| RingSignError::BadMember(i))?);
    }
    let image = hps[signer_index] * x;
    let image_bytes = encode_point(&image);
    let challenge = |l: &ProjectivePoint, r: &ProjectivePoint| hash_to_scalar(&[msg, &encode_point(l), &encode_point(r)], Reduction::LeftAligned);

    for attempt in 0..MAX_ATTEMPTS {
        let mut random = [0u8; 32];
        fill(&mut random);
        let hedge = Hedge::new(&x, msg, ring, signer_index, &random, attempt);
        let u = hedge.scalar(0);
        let mut c = vec![Scalar::ZERO; n];
        let mut s = vec![Scalar::ZERO; n];
        let first = challenge(&(ProjectivePoint::GENERATOR * u), &(hps[signer_index] * u));
        let Ok(first) = first else { continue };
        c[(signer_index + 1) % n] = first;
        let mut overflow = false;
        for step in 1..n {
            let j = (signer_index + step) % n;
            s[j] = hedge.scalar(step);
            let l = ProjectivePoint::lincomb(&points[j], &c[j], &ProjectivePoint::GENERATOR, &s[j]);
            let r = ProjectivePoint::lincomb(&image, &c[j], &hps[j], &s[j]);
            match challenge(&l, &r) {
                Ok(next) => c[(j + 1) % n] = next,
                // the only error: the left-aligned value ≥ N (Go would panic)
                Err(_) => {
                    overflow = true;
                    break;
                }
            }
        }
        if overflow {
            continue;
        }
        s[signer_index] = u - c[signer_index] * x;

        let mut out = Vec::with_capacity(4 + SCALAR_LEN + POINT_LEN + n * (SCALAR_LEN + POINT_LEN));
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out.extend_from_slice(&c[0].to_bytes());
        out.extend_from_slice(&image_bytes);
        for (si, member) in s.iter().zip(ring) {
            out.extend_from_slice(&si.to_bytes());
            out.extend_from_slice(member);
        }
        return Ok(out);
    }
    Err(RingSignError::Exhausted)
}

/// A deterministic byte source for tests, the demo and the bench: SHA-256(seed ‖ counter) blocks.
/// Signatures made with it can be reproduced by anyone who knows the seed; a real gateway would
/// pass OS randomness (the hedge in [`sign`] keeps the key safe either way).
pub fn seeded_fill(seed: &[u8]) -> impl FnMut(&mut [u8]) {
    use sha2::Sha256;
    let seed = seed.to_vec();
    let mut counter = 0u64;
    move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(32) {
            let block: [u8; 32] = Sha256::new().chain_update(&seed).chain_update(counter.to_be_bytes()).finalize().into();
            counter += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shannon::ring::{verify, RingError, RingSignature};
    use sha2::Sha256;

    fn keys(n: usize) -> Vec<OperatorKey> {
        (0..n).map(|i| OperatorKey::from_secret(format!("ring-sign-test-{i}").as_bytes())).collect()
    }

    fn msg(i: usize) -> [u8; 32] {
        Sha256::digest(format!("ring-sign-msg-{i}")).into()
    }

    /// Every signature verifies with the verifier, for rings of 2..=5 and every signer position.
    #[test]
    fn shannon_ring_sign_verifies_everywhere() {
        let mut fill = seeded_fill(b"verifies-everywhere");
        let all = keys(5);
        let mut count = 0;
        for n in 2..=5 {
            let ring: Vec<[u8; POINT_LEN]> = all[..n].iter().map(|k| *k.pubkey()).collect();
            for (idx, key) in all[..n].iter().enumerate() {
                for round in 0..3 {
                    let m = msg(count);
                    let sig = sign(&m, &ring, idx, key, &mut fill).unwrap();
                    assert_eq!(sig.len(), 69 + 65 * n);
                    let parsed = verify(&sig, &m).unwrap_or_else(|e| panic!("n {n} idx {idx} round {round}: {e}"));
                    assert_eq!(parsed.ring().copied().collect::<Vec<_>>(), ring);
                    count += 1;
                }
            }
        }
        assert_eq!(count, 3 * (2 + 3 + 4 + 5));
    }

    /// Tampering with the message, an s value, c₀ or a ring member makes verification fail.
    #[test]
    fn shannon_ring_sign_tamper_fails() {
        let all = keys(4);
        let ring: Vec<[u8; POINT_LEN]> = all[..3].iter().map(|k| *k.pubkey()).collect();
        let mut fill = seeded_fill(b"tamper");
        let m = msg(1);
        let sig = sign(&m, &ring, 1, &all[1], &mut fill).unwrap();
        assert!(verify(&sig, &m).is_ok());
        let mut other = m;
        other[31] ^= 1;
        assert_eq!(verify(&sig, &other).err(), Some(RingError::Mismatch));
        for member in 0..3 {
            let mut s = sig.clone();
            s[69 + 65 * member + 7] ^= 0x40; // inside sᵢ
            assert_eq!(verify(&s, &m).err(), Some(RingError::Mismatch), "s of member {member}");
        }
        let mut c0 = sig.clone();
        c0[10] ^= 1;
        assert_eq!(verify(&c0, &m).err(), Some(RingError::Mismatch));
        // replace the last member's key with another valid key
        let mut swapped = sig.clone();
        let at = 69 + 65 * 2 + 32;
        swapped[at..at + 33].copy_from_slice(all[3].pubkey());
        assert_eq!(verify(&swapped, &m).err(), Some(RingError::Mismatch));
    }

    /// I = x·H_p(P): the same for every signature by one signer, different for another signer.
    #[test]
    fn shannon_ring_sign_key_image() {
        let all = keys(2);
        let ring: Vec<[u8; POINT_LEN]> = all.iter().map(|k| *k.pubkey()).collect();
        let mut fill = seeded_fill(b"image");
        for (idx, key) in all.iter().enumerate() {
            let x = *key.signing_key().as_nonzero_scalar().as_ref();
            let expected = encode_point(&(hash_to_curve(key.pubkey()).unwrap() * x));
            let a = RingSignature::parse(&sign(&msg(0), &ring, idx, key, &mut fill).unwrap()).unwrap();
            let b = RingSignature::parse(&sign(&msg(1), &ring, idx, key, &mut fill).unwrap()).unwrap();
            assert_eq!(a.key_image, expected);
            assert_eq!(b.key_image, expected);
        }
        let a = RingSignature::parse(&sign(&msg(0), &ring, 0, &all[0], &mut fill).unwrap()).unwrap();
        let b = RingSignature::parse(&sign(&msg(0), &ring, 1, &all[1], &mut fill).unwrap()).unwrap();
        assert_ne!(a.key_image, b.key_image);
    }

    /// The signer uses the chain's left-aligned reduction: some signature whose challenges hit the
    /// short case verifies only with it (§6.3). With ~1/256 per challenge this needs a few hundred
    /// signatures; the seed is fixed, so the test is repeatable.
    #[test]
    fn shannon_ring_sign_uses_left_aligned_reduction() {
        let all = keys(2);
        let ring: Vec<[u8; POINT_LEN]> = all.iter().map(|k| *k.pubkey()).collect();
        let mut fill = seeded_fill(b"short-challenge");
        let mut found = None;
        for i in 0..2000 {
            let m = msg(10_000 + i);
            let sig = RingSignature::parse(&sign(&m, &ring, 1, &all[1], &mut fill).unwrap()).unwrap();
            // every other signature verifies canonically too; the ones that hit the short case do not
            if sig.verify_with(&m, Reduction::Canonical).is_err() {
                assert_eq!(sig.verify(&m), Ok(()), "signature {i}");
                found = Some(i);
                break;
            }
        }
        assert!(found.is_some(), "no signature hit the short reduction in 2000 tries");
    }

    /// Signatures are randomised by `fill`, and repeatable for a repeated source.
    #[test]
    fn shannon_ring_sign_randomness() {
        let all = keys(2);
        let ring: Vec<[u8; POINT_LEN]> = all.iter().map(|k| *k.pubkey()).collect();
        let m = msg(7);
        let a = sign(&m, &ring, 0, &all[0], &mut seeded_fill(b"s1")).unwrap();
        let b = sign(&m, &ring, 0, &all[0], &mut seeded_fill(b"s1")).unwrap();
        let c = sign(&m, &ring, 0, &all[0], &mut seeded_fill(b"s2")).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // a constant source still gives different nonces for different messages (hedged)
        let mut zeros = |buf: &mut [u8]| buf.fill(0);
        let d = sign(&msg(8), &ring, 0, &all[0], &mut zeros).unwrap();
        let e = sign(&msg(9), &ring, 0, &all[0], &mut zeros).unwrap();
        assert_ne!(d[4..36], e[4..36]);
        assert!(verify(&d, &msg(8)).is_ok() && verify(&e, &msg(9)).is_ok());
    }

    #[test]
    fn shannon_ring_sign_rejects_bad_input() {
        let all = keys(3);
        let ring: Vec<[u8; POINT_LEN]> = all[..2].iter().map(|k| *k.pubkey()).collect();
        let mut fill = seeded_fill(b"bad");
        let m = msg(0);
        assert_eq!(sign(&m, &ring[..1], 0, &all[0], &mut fill), Err(RingSignError::RingSize));
        let big = vec![*all[0].pubkey(); MAX_RING_SIZE + 1];
        assert_eq!(sign(&m, &big, 0, &all[0], &mut fill), Err(RingSignError::RingSize));
        assert_eq!(sign(&m, &ring, 2, &all[0], &mut fill), Err(RingSignError::SignerIndex));
        assert_eq!(sign(&m, &ring, 1, &all[0], &mut fill), Err(RingSignError::NotSignersKey));
        assert_eq!(sign(&m, &ring, 0, &all[2], &mut fill), Err(RingSignError::NotSignersKey));
        let mut bad = ring.clone();
        bad[1] = [0x02; POINT_LEN];
        bad[1][1..].fill(0xff); // x ≥ p: not a point
        assert_eq!(sign(&m, &bad, 0, &all[0], &mut fill), Err(RingSignError::BadMember(1)));
    }

    #[test]
    fn shannon_ring_sign_seeded_fill_is_deterministic() {
        let (mut a, mut b) = (seeded_fill(b"x"), seeded_fill(b"x"));
        let (mut x, mut y) = ([0u8; 70], [0u8; 70]);
        a(&mut x);
        b(&mut y);
        assert_eq!(x, y);
        assert_eq!(&x[..32], &<[u8; 32]>::from(Sha256::new().chain_update(b"x").chain_update(0u64.to_be_bytes()).finalize())[..]);
        a(&mut x);
        assert_ne!(x, y, "the counter advances");
    }
}
