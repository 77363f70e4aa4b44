//! `chains.json`: `[{"id":"0021","url":"http://…","basic_auth":{"username","password"}}]`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Hex network id, 1–4 bytes.
    pub id: String,
    pub url: String,
    /// (username, password) when a username is set.
    pub basic_auth: Option<(String, String)>,
}
