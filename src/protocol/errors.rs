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
