//! Pocket error codes and exact messages (pocket-core `x/pocketcore/types/errors.go`),
//! rendered in the real servicer's `{"code","codespace","message"}` shape.

/// An error as a real servicer reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PocketError {
    pub codespace: &'static str,
    pub code: u32,
    pub message: String,
}

pub const CODESPACE_POCKET: &str = "pocketcore";
pub const CODESPACE_SDK: &str = "sdk";

impl PocketError {
    pub fn pocket(code: u32, message: impl Into<String>) -> Self {
        PocketError { codespace: CODESPACE_POCKET, code, message: message.into() }
    }
    pub fn sdk(code: u32, message: impl Into<String>) -> Self {
        PocketError { codespace: CODESPACE_SDK, code, message: message.into() }
    }
    /// Codes for which a servicer attaches a dispatch so clients refresh their session.
    pub fn warrants_dispatch(&self) -> bool {
        self.codespace == CODESPACE_POCKET && matches!(self.code, 14 | 60 | 71 | 75)
    }
}

impl std::fmt::Display for PocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.codespace, self.code, self.message)
    }
}
impl std::error::Error for PocketError {}

impl PocketError {
    /// Go's `sdkError.Error()` text (`ERROR:\nCodespace: …\nCode: …\nMessage: "<quoted>"\n`).
    /// The Geo-Mesh wraps every failure as `sdk.ErrInternal(err.Error())`, so this string is what
    /// appears nested inside the outer code-1 message (see [`wrap_internal`]).
    pub fn go_error_string(&self) -> String {
        format!("ERROR:\nCodespace: {}\nCode: {}\nMessage: {}\n", self.codespace, self.code, go_quote(&self.message))
    }

    /// The `{"code","codespace","message"}` object as a real servicer's re-encoding prints it
    /// (keys sorted, Go string escaping), without a trailing newline.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"code\":");
        out.extend_from_slice(self.code.to_string().as_bytes());
        out.extend_from_slice(b",\"codespace\":");
        super::gojson::write_string(out, self.codespace);
        out.extend_from_slice(b",\"message\":");
        super::gojson::write_string(out, &self.message);
        out.push(b'}');
    }
}

// ----- pocketcore constructors (x/pocketcore/types/errors.go). Messages are the wire text. -----

/// Code 4. `inner` is the AAT failure (one of the `AAT_*` constants or a nested sdk error string).
pub fn invalid_token(inner: &str) -> PocketError {
    PocketError::pocket(4, format!("the application authentication token is invalid : {inner}"))
}
/// Code 6 — `PubKeyVerification` hex failure (no detail appended, as in Go).
pub fn pub_key_decode() -> PocketError {
    PocketError::pocket(6, "error decoding the string into hex bytes")
}
/// Code 8 — `NewEmptyChainError` (Geo-Mesh check 8, chain id not 1..4 hex bytes).
pub fn empty_chain() -> PocketError {
    PocketError::pocket(8, "the non-native chain is of Length 0")
}
pub fn unsupported_blockchain_app() -> PocketError {
    PocketError::pocket(13, "the blockchain in the relay request is not supported for this app")
}
pub fn invalid_session() -> PocketError {
    PocketError::pocket(14, "this node (self) is not responsible for this session provided by the client")
}
pub fn insufficient_nodes() -> PocketError {
    PocketError::pocket(17, "there are less than the minimum session nodes found")
}
/// Code 23 (`NewEmptyHashError`; note Go's trailing space).
pub fn empty_hash() -> PocketError {
    PocketError::pocket(23, "the hash is invalid: ")
}
pub fn empty_payload_data() -> PocketError {
    PocketError::pocket(25, "the payload data of the relay request is empty")
}
pub fn unsupported_blockchain_node() -> PocketError {
    PocketError::pocket(26, "the blockchain in the relay request is not supported on this node")
}
/// Code 28. pocket-core appends the Go transport error, which names the chain URL (and its
/// userinfo); meshd's text is fixed and the cause goes to the log only (README "What never
/// leaves meshd").
pub fn http_execution() -> PocketError {
    PocketError::pocket(28, "error executing the http request")
}

/// pocket-core's code-1 text while the node starts (a fixed text, safe for relay clients).
pub const NODE_STARTING: &str = "pocket node is unable to retrieve synced status from tendermint node, cannot service in this state";
/// pocket-core's code-1 text while the node catches up (a fixed text, safe for relay clients).
pub const NODE_SYNCING: &str = "pocket node is currently syncing to the blockchain, cannot service in this state";
/// What a relay client reads when the servicer node cannot be asked (down, refusing meshd's
/// token, stale check, session lookup failed): the reason is in meshd's log and status page.
pub const NODE_UNAVAILABLE: &str = "pocket node is currently unavailable";

/// Code 1 for a relay client: the fixed texts above only.
pub fn node_unavailable() -> PocketError {
    PocketError::sdk(1, NODE_UNAVAILABLE)
}
pub fn invalid_entropy() -> PocketError {
    PocketError::pocket(29, "the entropy included in the relay request is invalid")
}
pub fn invalid_node_pub_key() -> PocketError {
    PocketError::pocket(34, "the node public key in the service Proof does not match this nodes public key")
}
pub fn duplicate_proof() -> PocketError {
    PocketError::pocket(37, "the Proof with specific merkleHash already found, check entropy")
}
pub fn invalid_signature_size() -> PocketError {
    PocketError::pocket(38, "the signature Length is invalid")
}
pub fn sig_decode() -> PocketError {
    PocketError::pocket(39, "the signature could not be message decoded")
}
/// Code 40 — unreachable for relays (the message is always our own hex digest), kept for completeness.
pub fn msg_decode() -> PocketError {
    PocketError::pocket(40, "the message could not be hex decoded")
}
pub fn invalid_signature() -> PocketError {
    PocketError::pocket(41, "the signature could not be verified with the message and pub key")
}
pub fn pub_key_size() -> PocketError {
    PocketError::pocket(42, "the public key is not the correct cap")
}
/// Code 43 (signing failure) with the cause appended.
pub fn keybase(err: &str) -> PocketError {
    PocketError::pocket(43, format!("the keybase is invalid: {err}"))
}
pub fn app_not_found() -> PocketError {
    PocketError::pocket(45, "the app could not be found in the world state")
}
pub fn chain_not_hosted() -> PocketError {
    PocketError::pocket(46, "the blockchain requested is not hosted")
}
/// Code 52. `go_hex_err` is Go's `encoding/hex` error text (see `relay::go_hex_decode`).
/// Go builds this message as a printf *format* with no arguments and formats it twice on the
/// way to the wire (`FmtError.Error` then `ErrorMsg`), so a `%` in the text is mangled the same way.
pub fn hex_decode(go_hex_err: &str) -> PocketError {
    let raw = format!("the hex string could not be decoded: {go_hex_err}");
    PocketError::pocket(52, go_sprintf_noargs(&go_sprintf_noargs(&raw)))
}
pub fn invalid_block_height() -> PocketError {
    PocketError::pocket(60, "the block height passed is invalid")
}
pub fn invalid_hash_length() -> PocketError {
    PocketError::pocket(62, "the merkleHash Length is not valid")
}
pub fn over_service() -> PocketError {
    PocketError::pocket(71, "the max number of relays serviced for this node is exceeded")
}
pub fn request_hash_mismatch() -> PocketError {
    PocketError::pocket(74, "the request hash does not match the payload hash")
}
pub fn out_of_sync_request() -> PocketError {
    PocketError::pocket(75, "the request block height is out of sync with the current block height")
}
pub fn sealed_evidence() -> PocketError {
    PocketError::pocket(90, "the evidence is sealed, either max relays reached or claim already submitted")
}

// Inner messages of code 4 (aat.go / errors.go).
pub const AAT_VERSION_MISSING: &str = "the application authentication token version is missing";
pub const AAT_VERSION_UNSUPPORTED: &str = "the application authentication token version is not supported";
pub const AAT_APP_PUB_KEY_INVALID: &str = "the application public key included in the AAT is not valid";
pub const AAT_CLIENT_PUB_KEY_INVALID: &str = "the client public key included in the AAT is not valid";
pub const AAT_SIGNATURE_INVALID: &str = "the application signature on the AAT is not valid";

// ----- sdk codespace (code 1, `sdk.ErrInternal`) -----

/// Lean-mode / mesh message when `servicer_pub_key` is not a valid public key.
pub const MSG_SERVICER_HEX: &str = "Could not convert servicer hex to public key";
/// Lean-mode / mesh message when the servicer key is not one we hold.
pub const MSG_SERVICER_NOT_FOUND: &str = "Failed to find correct servicer PK";

/// `sdk.ErrInternal(msg)` → `{"codespace":"sdk","code":1,"message":msg}`.
pub fn internal(msg: &str) -> PocketError {
    PocketError::sdk(1, msg)
}
/// `sdk.ErrInternal(err.Error())` — how the Geo-Mesh reports every relay failure: the real code
/// only appears nested in the message.
pub fn wrap_internal(err: &PocketError) -> PocketError {
    internal(&err.go_error_string())
}

/// The error object a Geo-Mesh puts on the wire for a relay failure (pocket-geo-mesh.md §1.1):
/// `{"code":1,"codespace":"sdk","message":"ERROR:\nCodespace: sdk\nCode: 1\nMessage: \"ERROR:\\nCodespace: pocketcore…"}`,
/// i.e. the `Error()` text of `sdk.ErrInternal(err.Error())` as the message.
pub fn mesh_error(err: &PocketError) -> PocketError {
    internal(&wrap_internal(err).go_error_string())
}

/// Go `fmt.Sprintf(format)` with no arguments, for the texts Go (mis)uses as format strings.
/// Covers `%%`, flags/width/precision digits and a missing verb, which is all a Go-produced
/// text can contain here; `*` and `[n]` argument forms are not emulated.
pub fn go_sprintf_noargs(format: &str) -> String {
    let mut out = String::with_capacity(format.len());
    let mut it = format.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        while matches!(it.peek(), Some('#' | '0' | '+' | '-' | ' ')) {
            it.next();
        }
        while matches!(it.peek(), Some(d) if d.is_ascii_digit()) {
            it.next();
        }
        if it.peek() == Some(&'.') {
            it.next();
            while matches!(it.peek(), Some(d) if d.is_ascii_digit()) {
                it.next();
            }
        }
        match it.next() {
            None => out.push_str("%!(NOVERB)"),
            Some('%') => out.push('%'),
            Some(verb) => {
                out.push_str("%!");
                out.push(verb);
                out.push_str("(MISSING)");
            }
        }
    }
    out
}

/// Go `strconv.Quote` (what `%#v` prints for a string). Printability follows `strconv.IsPrint`
/// exactly for ASCII and Latin-1; beyond that, Unicode control/format/separator characters are
/// escaped, which matches Go for the characters error texts realistically contain.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximation of Go `strconv.IsPrint` (exact for U+0000..U+00FF).
pub(crate) fn go_is_print(c: char) -> bool {
    let u = c as u32;
    match u {
        0x20..=0x7e => true,
        0x00..=0x1f | 0x7f..=0xa0 | 0xad => false,
        0xa1..=0xff => true,
        _ => {
            !(c.is_control()
                || c.is_whitespace()
                || matches!(u, 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb | 0xe0000..=0xe007f)
                || (0xe000..=0xf8ff).contains(&u)
                || (0xf0000..).contains(&u)
                || u & 0xfffe == 0xfffe)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes and messages as listed in the reference §4 table / pocket-core errors.go.
    #[test]
    fn constructors_carry_reference_codes_and_messages() {
        let table: Vec<(PocketError, u32, &str)> = vec![
            (invalid_token("x"), 4, "the application authentication token is invalid : x"),
            (pub_key_decode(), 6, "error decoding the string into hex bytes"),
            (empty_chain(), 8, "the non-native chain is of Length 0"),
            (unsupported_blockchain_app(), 13, "the blockchain in the relay request is not supported for this app"),
            (invalid_session(), 14, "this node (self) is not responsible for this session provided by the client"),
            (insufficient_nodes(), 17, "there are less than the minimum session nodes found"),
            (empty_hash(), 23, "the hash is invalid: "),
            (empty_payload_data(), 25, "the payload data of the relay request is empty"),
            (unsupported_blockchain_node(), 26, "the blockchain in the relay request is not supported on this node"),
            (http_execution(), 28, "error executing the http request"),
            (invalid_entropy(), 29, "the entropy included in the relay request is invalid"),
            (invalid_node_pub_key(), 34, "the node public key in the service Proof does not match this nodes public key"),
            (duplicate_proof(), 37, "the Proof with specific merkleHash already found, check entropy"),
            (invalid_signature_size(), 38, "the signature Length is invalid"),
            (sig_decode(), 39, "the signature could not be message decoded"),
            (msg_decode(), 40, "the message could not be hex decoded"),
            (invalid_signature(), 41, "the signature could not be verified with the message and pub key"),
            (pub_key_size(), 42, "the public key is not the correct cap"),
            (keybase("locked"), 43, "the keybase is invalid: locked"),
            (app_not_found(), 45, "the app could not be found in the world state"),
            (chain_not_hosted(), 46, "the blockchain requested is not hosted"),
            (hex_decode("encoding/hex: odd length hex string"), 52, "the hex string could not be decoded: encoding/hex: odd length hex string"),
            (invalid_block_height(), 60, "the block height passed is invalid"),
            (invalid_hash_length(), 62, "the merkleHash Length is not valid"),
            (over_service(), 71, "the max number of relays serviced for this node is exceeded"),
            (request_hash_mismatch(), 74, "the request hash does not match the payload hash"),
            (out_of_sync_request(), 75, "the request block height is out of sync with the current block height"),
            (sealed_evidence(), 90, "the evidence is sealed, either max relays reached or claim already submitted"),
        ];
        for (err, code, message) in table {
            assert_eq!((err.codespace, err.code, err.message.as_str()), (CODESPACE_POCKET, code, message));
        }
        let sdk = internal(MSG_SERVICER_NOT_FOUND);
        assert_eq!((sdk.codespace, sdk.code, sdk.message.as_str()), ("sdk", 1, "Failed to find correct servicer PK"));
    }

    #[test]
    fn dispatch_codes() {
        for (err, want) in [
            (over_service(), true),
            (invalid_block_height(), true),
            (invalid_session(), true),
            (out_of_sync_request(), true),
            (request_hash_mismatch(), false),
            (PocketError::sdk(60, "x"), false),
        ] {
            assert_eq!(err.warrants_dispatch(), want, "{err}");
        }
    }

    #[test]
    fn go_error_string_and_mesh_wrapping() {
        assert_eq!(invalid_block_height().go_error_string(), "ERROR:\nCodespace: pocketcore\nCode: 60\nMessage: \"the block height passed is invalid\"\n");
        let wrapped = wrap_internal(&invalid_block_height());
        assert_eq!((wrapped.codespace, wrapped.code), ("sdk", 1));
        assert_eq!(wrapped.message, "ERROR:\nCodespace: pocketcore\nCode: 60\nMessage: \"the block height passed is invalid\"\n");
        // The Geo-Mesh wire error (pocket-geo-mesh.md §1.1) quotes the inner error once more.
        let mesh = mesh_error(&invalid_block_height());
        assert_eq!((mesh.codespace, mesh.code), ("sdk", 1));
        assert!(mesh.message.starts_with("ERROR:\nCodespace: sdk\nCode: 1\nMessage: \"ERROR:\\nCodespace: pocketcore\\nCode: 60\\n"), "{}", mesh.message);
        assert_eq!(
            mesh.message,
            "ERROR:\nCodespace: sdk\nCode: 1\nMessage: \"ERROR:\\nCodespace: pocketcore\\nCode: 60\\nMessage: \\\"the block height passed is invalid\\\"\\n\"\n"
        );
    }

    #[test]
    fn error_json_is_sorted_and_go_escaped() {
        let mut out = Vec::new();
        PocketError::pocket(28, "Post \"http://127.0.0.1:1/?a=1&b=<2>\": refused").write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"code":28,"codespace":"pocketcore","message":"Post \"http://127.0.0.1:1/?a=1\u0026b=\u003c2\u003e\": refused"}"#
        );
    }

    #[test]
    fn go_sprintf_without_args() {
        assert_eq!(go_sprintf_noargs("plain"), "plain");
        assert_eq!(go_sprintf_noargs("a%%b"), "a%b");
        assert_eq!(go_sprintf_noargs("%d"), "%!d(MISSING)");
        assert_eq!(go_sprintf_noargs("x %-5.2f y"), "x %!f(MISSING) y");
        assert_eq!(go_sprintf_noargs("100%"), "100%!(NOVERB)");
        assert_eq!(go_sprintf_noargs("U+0025 '%'"), "U+0025 '%!'(MISSING)");
        assert_eq!(go_sprintf_noargs("%é"), "%!é(MISSING)");
    }

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote("plain"), r#""plain""#);
        assert_eq!(go_quote("a\"b\\c\n\t\r\u{7}\u{8}\u{b}\u{c}"), r#""a\"b\\c\n\t\r\a\b\v\f""#);
        assert_eq!(go_quote("\u{0}\u{1f}\u{7f}"), r#""\x00\x1f\x7f""#);
        assert_eq!(go_quote("é€😀"), "\"é€😀\"");
        assert_eq!(go_quote("\u{a0}\u{ad}\u{2028}\u{feff}"), r#""\u00a0\u00ad\u2028\ufeff""#);
        assert_eq!(go_quote("\u{e0001}"), r#""\U000e0001""#);
    }
}
