//! Our own Shannon *client* side, for tests, the demo and the bench: build ring-signed relay
//! requests the way a gateway does, and check a supplier's answers the way a gateway does
//! (reference §1.3–§1.5, §2.1, §2.2). Pure: randomness is passed in, no I/O.
//!
//! - [`build_relay_request`]: payload = the deterministic `POKTHTTPRequest`; the signature is a
//!   ring signature over `RelayRequest::signable_hash` (§2.1) by the signer's position in the ring.
//! - [`check_relay_response`]: as the SDK's `ValidateRelayResponse` (§1.5), decode, require the
//!   echoed session header to be valid and a signature present, verify the supplier's signature
//!   (§2.2), and additionally require `payload_hash` = SHA-256(payload) (our signer always sets it,
//!   as prm does); then decode the payload as a `POKTHTTPResponse`.

use super::keys::{parse_pubkey, OperatorKey};
use super::payload::{POKTHTTPRequest, POKTHTTPResponse};
use super::proto::{DecodeError, RelayMinerError, RelayRequest, RelayRequestMetadata, RelayResponse, SessionHeader};
use super::ring::POINT_LEN;
use super::ring_sign::{self, RingSignError};
use super::session::{validate_header, CheckError};
use super::sign::{self, SignatureError};
use sha2::{Digest, Sha256};

/// Why a relay could not be built or a response was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The signer's public key is not in the ring.
    SignerNotInRing,
    /// Ring signing failed.
    Ring(RingSignError),
    /// The response (or its payload) is not valid protobuf.
    Decode(DecodeError),
    /// The supplier's public key is not a compressed secp256k1 key.
    BadSupplierKey,
    /// The relayer answered with an (unsigned) error reply (§1.5).
    RelayMiner(RelayMinerError),
    /// The echoed session header is missing or invalid.
    Header(CheckError),
    /// No supplier signature.
    MissingSignature,
    /// No payload hash, or it is not SHA-256 of the payload.
    PayloadHash,
    /// The supplier signature does not verify.
    Signature(SignatureError),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::SignerNotInRing => f.write_str("the signer's key is not in the ring"),
            ClientError::Ring(e) => write!(f, "ring signing: {e}"),
            ClientError::Decode(e) => write!(f, "relay response: {e}"),
            ClientError::BadSupplierKey => f.write_str("bad supplier public key"),
            ClientError::RelayMiner(e) => write!(f, "relay miner error {}/{}: {} {}", e.codespace, e.code, e.description, e.message),
            ClientError::Header(e) => write!(f, "relay response session header: {e}"),
            ClientError::MissingSignature => f.write_str("relay response has no supplier signature"),
            ClientError::PayloadHash => f.write_str("relay response payload hash missing or wrong"),
            ClientError::Signature(e) => write!(f, "relay response: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Builds and ring-signs a relay request; returns its encoding (the HTTP body, §1.3).
/// `ring` is the ring's compressed public keys in the order they should travel (the chain builds
/// them sorted by address, [`super::ring_members::ring_addresses`]) and must contain the signer's
/// key. `fill` supplies random bytes for the signature.
pub fn build_relay_request(
    header: &SessionHeader,
    supplier_operator_address: &str,
    signer: &OperatorKey,
    ring: &[[u8; POINT_LEN]],
    payload: &POKTHTTPRequest,
    fill: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<u8>, ClientError> {
    let signer_index = ring.iter().position(|k| k == signer.pubkey()).ok_or(ClientError::SignerNotInRing)?;
    let mut req = RelayRequest {
        meta: RelayRequestMetadata {
            session_header: Some(header.clone()),
            signature: Vec::new(),
            supplier_operator_address: supplier_operator_address.to_owned(),
        },
        payload: payload.encode(),
    };
    let msg = req.signable_hash();
    req.meta.signature = ring_sign::sign(&msg, ring, signer_index, signer, fill).map_err(ClientError::Ring)?;
    Ok(req.encode())
}

/// Checks a supplier's `RelayResponse` bytes against its public key and returns the backend
/// answer it carries (module doc).
pub fn check_relay_response(bytes: &[u8], supplier_pubkey: &[u8; POINT_LEN]) -> Result<POKTHTTPResponse, ClientError> {
    let vk = parse_pubkey(supplier_pubkey).map_err(|_| ClientError::BadSupplierKey)?;
    let res = RelayResponse::decode(bytes).map_err(ClientError::Decode)?;
    if let Some(e) = res.relay_miner_error {
        return Err(ClientError::RelayMiner(e));
    }
    let header = res.meta.session_header.as_ref().ok_or(ClientError::Header(CheckError::MissingSessionHeader))?;
    validate_header(header).map_err(ClientError::Header)?;
    let sig = &res.meta.supplier_operator_signature;
    if sig.is_empty() {
        return Err(ClientError::MissingSignature);
    }
    match &res.payload_hash {
        Some(h) if h.as_slice() == Sha256::digest(&res.payload).as_slice() => {}
        _ => return Err(ClientError::PayloadHash),
    }
    sign::verify_hash(&vk, &res.signable_hash(), sig).map_err(ClientError::Signature)?;
    POKTHTTPResponse::decode(&res.payload).map_err(ClientError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shannon::proto::RelayResponseMetadata;
    use crate::shannon::ring;
    use crate::shannon::ring_members::{ring_addresses, ring_pubkeys};
    use crate::shannon::ring_sign::seeded_fill;
    use crate::shannon::session::{ring_members_expected, validate_request};

    const APP: &str = "2d00ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ec0a";
    const GATEWAY: &str = "1a11ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ab11";
    const SUPPLIER: &str = "cd41a98ac7ac3b190c345b88e2885422d7bb553c59bca03c6e2618d49f8b1c06";

    fn header(app: &OperatorKey) -> SessionHeader {
        SessionHeader {
            application_address: app.address().to_owned(),
            service_id: "eth".into(),
            session_id: "ab".repeat(32),
            session_start_block_height: 101,
            session_end_block_height: 120,
        }
    }

    fn payload() -> POKTHTTPRequest {
        POKTHTTPRequest::new("POST", "http://gw/", [("Content-Type", "application/json")], br#"{"id":1}"#.to_vec())
    }

    /// The supplier side, as the relayer will do it: echo the header, wrap, sign (§1.5, §2.2).
    fn answer(header: &SessionHeader, supplier: &OperatorKey, body: &[u8]) -> Vec<u8> {
        let mut res = RelayResponse {
            meta: RelayResponseMetadata { session_header: Some(header.clone()), ..Default::default() },
            payload: POKTHTTPResponse::from_parts(200, [("content-type", "application/json")], body.to_vec()).encode(),
            ..Default::default()
        };
        res.sign(supplier).unwrap();
        res.encode()
    }

    /// A gateway-signed request decodes, passes ValidateBasic, carries the expected ring and a
    /// ring signature over its signable hash, and its payload decodes back.
    #[test]
    fn shannon_client_builds_verifiable_request() {
        let app = OperatorKey::from_hex(APP).unwrap();
        let gw = OperatorKey::from_hex(GATEWAY).unwrap();
        let supplier = OperatorKey::from_hex(SUPPLIER).unwrap();
        let addrs = ring_addresses(app.address(), &[gw.address().to_owned()], &[], 120);
        let ring = ring_pubkeys(&addrs, |a| [&app, &gw].into_iter().find(|k| k.address() == a).map(|k| *k.pubkey())).unwrap();
        let mut fill = seeded_fill(b"client");
        for signer in [&gw, &app] {
            let bytes = build_relay_request(&header(&app), supplier.address(), signer, &ring, &payload(), &mut fill).unwrap();
            let req = RelayRequest::decode(&bytes).unwrap();
            assert_eq!(req.encode(), bytes, "canonical encoding");
            assert_eq!(validate_request(&req), Ok(&header(&app)));
            assert_eq!(req.meta.supplier_operator_address, supplier.address());
            let sig = ring::verify(&req.meta.signature, &req.signable_hash()).unwrap();
            assert_eq!(ring_members_expected(&sig, &ring), Ok(()));
            assert_eq!(POKTHTTPRequest::decode(&req.payload).unwrap(), payload());
            // a changed payload breaks the signature
            let mut forged = req.clone();
            forged.payload = POKTHTTPRequest::new("POST", "http://gw/", [("A", "b")], vec![]).encode();
            assert_eq!(ring::verify(&forged.meta.signature, &forged.signable_hash()).err(), Some(ring::RingError::Mismatch));
        }
        assert_eq!(build_relay_request(&header(&app), supplier.address(), &supplier, &ring, &payload(), &mut fill).err(), Some(ClientError::SignerNotInRing));
    }

    #[test]
    fn shannon_client_checks_response() {
        let app = OperatorKey::from_hex(APP).unwrap();
        let supplier = OperatorKey::from_hex(SUPPLIER).unwrap();
        let h = header(&app);
        let wire = answer(&h, &supplier, b"{\"result\":\"0x1\"}");
        let got = check_relay_response(&wire, supplier.pubkey()).unwrap();
        assert_eq!(got.status_code, 200);
        assert_eq!(got.body, b"{\"result\":\"0x1\"}");
        assert_eq!(got.header("Content-Type").unwrap(), ["application/json"]);
        // another supplier's key
        assert_eq!(check_relay_response(&wire, app.pubkey()).err(), Some(ClientError::Signature(SignatureError::Mismatch)));
        assert_eq!(check_relay_response(&wire, &[5; 33]).err(), Some(ClientError::BadSupplierKey));
        let res = RelayResponse::decode(&wire).unwrap();
        // payload swapped (the signature covers only its hash): the hash check catches it
        let mut swapped = res.clone();
        swapped.payload = POKTHTTPResponse::from_parts(200, [] as [(&str, &str); 0], b"evil".to_vec()).encode();
        assert_eq!(check_relay_response(&swapped.encode(), supplier.pubkey()).err(), Some(ClientError::PayloadHash));
        // no payload hash
        let mut no_hash = res.clone();
        no_hash.payload_hash = None;
        assert_eq!(check_relay_response(&no_hash.encode(), supplier.pubkey()).err(), Some(ClientError::PayloadHash));
        // header changed after signing
        let mut moved = res.clone();
        moved.meta.session_header.as_mut().unwrap().session_end_block_height = 121;
        assert_eq!(check_relay_response(&moved.encode(), supplier.pubkey()).err(), Some(ClientError::Signature(SignatureError::Mismatch)));
        // unsigned, headerless, error replies, garbage
        let mut unsigned = res.clone();
        unsigned.meta.supplier_operator_signature.clear();
        assert_eq!(check_relay_response(&unsigned.encode(), supplier.pubkey()).err(), Some(ClientError::MissingSignature));
        let mut headerless = res.clone();
        headerless.meta.session_header = None;
        assert_eq!(check_relay_response(&headerless.encode(), supplier.pubkey()).err(), Some(ClientError::Header(CheckError::MissingSessionHeader)));
        let err = RelayMinerError { codespace: "relayer_proxy".into(), code: 3, ..Default::default() };
        let error_reply = RelayResponse { relay_miner_error: Some(err.clone()), payload: b"boom".to_vec(), ..Default::default() };
        assert_eq!(check_relay_response(&error_reply.encode(), supplier.pubkey()).err(), Some(ClientError::RelayMiner(err)));
        assert!(matches!(check_relay_response(&[0x0a], supplier.pubkey()), Err(ClientError::Decode(_))));
    }
}
