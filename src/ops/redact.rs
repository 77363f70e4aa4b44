//! Scrubbing of secrets from text that came from upstream (servicer and chain answers,
//! transport errors) before it is logged, stored as an identity state, or shown on the status
//! page and the states API (README "What never leaves meshd").
//!
//! The secrets are the ones meshd is configured with: the servicer token, the mesh token,
//! each chain's basic-auth user and password, and the userinfo (`user:password@`) of servicer
//! and chain URLs. A servicer that refuses a token echoes it (pocket-core answers 401 with
//! `"wrong authtoken: " + token`), so any upstream body can carry one.
//!
//! One process-wide set, installed at startup and extended whenever a reload or `updatechains`
//! brings new URLs or chains (a secret that left the config stays in the set: older error
//! texts may still quote it). The logger scrubs every line with it (`main.rs`), so a log call
//! that forgets to scrub still cannot print a configured secret.

use std::sync::{Arc, RwLock};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Upstream text kept in a log field, a state message or an error detail: longer text is cut.
pub const MAX_DETAIL_CHARS: usize = 200;

/// Secrets shorter than this are not searched for: a one- or two-letter basic-auth user would
/// otherwise mask every occurrence of those letters. `check-config` warns about short tokens.
pub const MIN_SECRET_CHARS: usize = 3;

/// A set of secret strings and the forms they take when quoted in JSON or Rust debug output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    needles: Vec<String>,
}

impl Redactor {
    /// A redactor for `secrets` (empty and too-short ones are skipped).
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut r = Redactor::default();
        r.extend(secrets);
        r
    }

    /// Add `secrets` (and their escaped forms) to the set.
    pub fn extend<I, S>(&mut self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            // As written, as a JSON string body (an echo inside a JSON answer) and as a Rust
            // debug string body (`{:?}` in a log line).
            let json = serde_json::to_string(secret).unwrap_or_default();
            let debug = format!("{secret:?}");
            for form in [secret, strip_quotes(&json), strip_quotes(&debug)] {
                if !form.is_empty() && !self.needles.iter().any(|n| n == form) {
                    self.needles.push(form.to_string());
                }
            }
        }
        self.needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every secret replaced by [`MASK`]; the length is kept.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), MASK);
            }
        }
        out
    }

    /// `text` masked, on one line, and cut to [`MAX_DETAIL_CHARS`] characters: the form for
    /// upstream text in logs, identity states and the status page.
    pub fn scrub(&self, text: &str) -> String {
        // Mask before cutting: a cut through a secret would leave a prefix that no longer matches.
        truncate(&self.mask(text).replace(['\n', '\r'], " "), MAX_DETAIL_CHARS)
    }
}

fn strip_quotes(s: &str) -> &str {
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s)
}

/// The first `max` characters of `text`, with `…` when something was cut.
pub fn truncate(text: &str, max: usize) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

/// The secrets of one configuration: tokens, chain basic auth, and URL userinfo.
pub fn secrets_of<'a>(
    tokens: impl IntoIterator<Item = &'a str>,
    urls: impl IntoIterator<Item = &'a str>,
    basic_auth: impl IntoIterator<Item = &'a (String, String)>,
) -> Vec<String> {
    let mut out: Vec<String> = tokens.into_iter().map(str::to_string).collect();
    for url in urls {
        out.extend(userinfo(url));
    }
    for (user, password) in basic_auth {
        out.push(user.clone());
        out.push(password.clone());
    }
    out
}

/// `user:password`, `user` and `password` of a URL with userinfo (empty parts dropped).
fn userinfo(url: &str) -> Vec<String> {
    let Some(scheme_end) = url.find("://") else { return Vec::new() };
    let rest = &url[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else { return Vec::new() };
    let info = &authority[..at];
    let mut out = vec![info.to_string()];
    if let Some((user, password)) = info.split_once(':') {
        out.push(user.to_string());
        out.push(password.to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Add every secret of a loaded configuration (tokens, servicer and chain URL userinfo, chain
/// basic auth) to the process-wide set: before any upstream call of `start` or `check-config
/// --probe`.
pub fn install_config(loaded: &crate::config::Loaded) {
    let tokens = [loaded.servicer_token.as_str(), loaded.mesh_token.as_deref().unwrap_or("")];
    let urls = loaded.nodes.iter().flat_map(|n| n.urls.iter().map(String::as_str)).chain(loaded.chains.iter().flat_map(|c| c.urls.iter().map(String::as_str)));
    install(secrets_of(tokens, urls, loaded.chains.iter().filter_map(|c| c.basic_auth.as_ref())));
}

static GLOBAL: RwLock<Option<Arc<Redactor>>> = RwLock::new(None);

/// Add `secrets` to the process-wide set used by [`scrub`], [`mask`] and the logger.
pub fn install<I, S>(secrets: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut guard = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    let mut next = guard.as_deref().cloned().unwrap_or_default();
    next.extend(secrets);
    *guard = Some(Arc::new(next));
}

fn current() -> Option<Arc<Redactor>> {
    GLOBAL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Upstream text, masked with the process-wide set and cut to [`MAX_DETAIL_CHARS`].
pub fn scrub(text: &str) -> String {
    match current() {
        Some(r) => r.scrub(text),
        None => Redactor::default().scrub(text),
    }
}

/// Any text (a whole log line), masked with the process-wide set; not cut.
pub fn mask(text: &str) -> std::borrow::Cow<'_, str> {
    match current() {
        Some(r) if !r.is_empty() => std::borrow::Cow::Owned(r.mask(text)),
        _ => std::borrow::Cow::Borrowed(text),
    }
}

/// A logger that masks every record with the process-wide set before `inner` writes it.
pub struct MaskingLogger<L: log::Log> {
    pub inner: L,
}

impl<L: log::Log> log::Log for MaskingLogger<L> {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        let masked = mask(&text);
        self.inner.log(
            &log::Record::builder()
                .args(format_args!("{masked}"))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_masked_in_plain_json_and_debug_forms() {
        let r = Redactor::new(["stale-token", "pa\"ss"]);
        let body = r#"{"code":401,"message":"wrong authtoken: stale-token"}"#;
        assert_eq!(r.scrub(body), r#"{"code":401,"message":"wrong authtoken: ***"}"#);
        // Quoted in a log line with {:?}: the token is inside escaped quotes.
        assert!(!r.scrub(&format!("{body:?}")).contains("stale-token"));
        // A secret with a quote, echoed inside JSON (escaped) and as written.
        assert_eq!(r.scrub(r#"{"m":"pa\"ss"}"#), r#"{"m":"***"}"#);
        assert_eq!(r.mask("x pa\"ss y"), "x *** y");
    }

    #[test]
    fn longer_secrets_win_and_short_ones_are_skipped() {
        let r = Redactor::new(["abcd", "abcdefgh", "ab", ""]);
        assert_eq!(r.mask("abcdefgh abcd ab"), "*** *** ab");
        assert!(Redactor::new(["", "x"]).is_empty());
    }

    #[test]
    fn scrub_cuts_long_text_on_a_char_boundary_after_masking() {
        let r = Redactor::new(["secret-token"]);
        let long = format!("{}secret-token{}", "é".repeat(195), "z".repeat(500));
        let out = r.scrub(&long);
        assert!(!out.contains("secret"), "{out}");
        assert!(out.ends_with('…'));
        assert_eq!(out.chars().count(), MAX_DETAIL_CHARS + 1);
        assert_eq!(r.scrub("a\nb\r\nc"), "a b  c");
    }

    #[test]
    fn secrets_come_from_tokens_urls_and_basic_auth() {
        let auth = [("chainuser".to_string(), "chainpass".to_string())];
        let s = secrets_of(["tok-1"], ["http://u1:p1word@10.0.0.1:8081", "https://only-user@h/x@y", "http://h:1"], auth.iter());
        for want in ["tok-1", "u1:p1word", "u1", "p1word", "only-user", "chainuser", "chainpass"] {
            assert!(s.iter().any(|x| x == want), "{want} missing from {s:?}");
        }
        assert!(!s.iter().any(|x| x.contains("10.0.0.1") || x == "h"), "{s:?}");
    }
}
