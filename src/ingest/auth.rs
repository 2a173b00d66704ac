//! Access tokens: where a report's token is found, which token its spans travel with, and
//! which tokens are acceptable at all.
//!
//! cubesat does not check tokens against a project (like a satellite with token checking off),
//! but a token must be 1 to [`MAX_TOKEN_BYTES`] visible ASCII bytes (0x21-0x7E), wherever it
//! comes from (header, gRPC metadata, the body's `auth`, Thrift): anything else could not
//! travel as the upstream's `lightstep-access-token` header, and is refused with a
//! [`TokenError`]. Upstream, a report's own real token wins, so one cubesat can serve several
//! projects; placeholders are replaced by the configured token; the operator may force the
//! configured one. The configured token can be re-read from its file on SIGHUP
//! ([`TokenPolicy::reload`]). Tokens never reach logs or metric labels: [`AccessToken`] prints
//! as `***`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

pub use crate::pipeline::TOKEN_HEADER;

/// Values tracers send when they have no real token.
const PLACEHOLDERS: [&[u8]; 3] = [b"", b"developer", b"empty"];

/// The longest token accepted (Lightstep tokens are far shorter).
pub const MAX_TOKEN_BYTES: usize = 512;

/// Why a token is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A byte outside visible ASCII (0x21-0x7E).
    #[error(
        "access token has a byte outside visible ASCII (0x21-0x7E) at offset {offset}; send the project's access token as it is shown in Lightstep"
    )]
    Bytes {
        /// Where the first bad byte is.
        offset: usize,
    },
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("access token is {len} bytes long; at most {MAX_TOKEN_BYTES} are accepted")]
    Length {
        /// Its length.
        len: usize,
    },
}

impl TokenError {
    /// The `reason` label of a report refused for it.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Bytes { .. } => "token_bytes",
            TokenError::Length { .. } => "token_length",
        }
    }
}

/// Checks that `token` is at most [`MAX_TOKEN_BYTES`] of visible ASCII.
pub fn check_token(token: &[u8]) -> Result<(), TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Length { len: token.len() });
    }
    match token.iter().position(|b| !(0x21..=0x7e).contains(b)) {
        Some(offset) => Err(TokenError::Bytes { offset }),
        None => Ok(()),
    }
}

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("{path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file's token is not acceptable.
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: TokenError,
    },
}

/// Reads a token file: its content without surrounding whitespace (a trailing newline is
/// normal), which must be a valid token.
pub fn read_token_file(path: &Path) -> Result<AccessToken, TokenFileError> {
    let bytes = std::fs::read(path).map_err(|source| TokenFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(TokenFileError::Empty {
            path: path.to_owned(),
        });
    }
    check_token(token).map_err(|source| TokenFileError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    Ok(AccessToken::new(token.to_vec()))
}

/// A secret token; its `Debug` never shows the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AccessToken(Bytes);

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: impl Into<Bytes>) -> Self {
        AccessToken(token.into())
    }

    /// The raw bytes, for the wire only.
    pub fn expose(&self) -> &Bytes {
        &self.0
    }
}

impl std::str::FromStr for AccessToken {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(AccessToken::new(s.to_owned()))
    }
}

impl<'de> serde::Deserialize<'de> for AccessToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(AccessToken::new)
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The configured token, shared by every clone of a [`TokenPolicy`] so a reload reaches the
/// intake at once. Reads take an uncontended lock once per report, never per span.
#[derive(Clone, Default)]
pub struct ConfiguredToken(Arc<RwLock<AccessToken>>);

impl ConfiguredToken {
    /// Shares `token`.
    pub fn new(token: AccessToken) -> Self {
        ConfiguredToken(Arc::new(RwLock::new(token)))
    }

    /// The token now.
    pub fn get(&self) -> Bytes {
        match self.0.read() {
            Ok(token) => token.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    fn set(&self, token: AccessToken) {
        match self.0.write() {
            Ok(mut slot) => *slot = token,
            Err(poisoned) => *poisoned.into_inner() = token,
        }
    }
}

impl std::fmt::Debug for ConfiguredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Decides the token each report is forwarded with.
#[derive(Debug, Clone, Default)]
pub struct TokenPolicy {
    /// The project token from configuration (may be empty).
    pub configured: ConfiguredToken,
    /// Use the configured token even when a report brings a real one.
    pub force: bool,
    /// `--access-token-file`, re-read on SIGHUP (`None` when `--access-token` was given).
    pub file: Option<PathBuf>,
}

impl TokenPolicy {
    /// A policy with `configured` as the project token and no file.
    pub fn new(configured: AccessToken, force: bool) -> Self {
        Self {
            configured: ConfiguredToken::new(configured),
            force,
            file: None,
        }
    }

    /// The token for a report whose body carried `body` and whose headers carried `header`;
    /// a token that is not a placeholder must pass [`check_token`].
    pub fn resolve(
        &self,
        body: Option<&Bytes>,
        header: Option<&[u8]>,
    ) -> Result<Bytes, TokenError> {
        let body = body.filter(|t| !is_placeholder(t));
        let header = header.filter(|t| !is_placeholder(t));
        if let Some(token) = body {
            check_token(token)?;
        }
        if let Some(token) = header {
            check_token(token)?;
        }
        Ok(match (self.force, body, header) {
            (true, _, _) | (false, None, None) => self.configured.get(),
            (false, Some(token), _) => token.clone(),
            (false, None, Some(token)) => Bytes::copy_from_slice(token),
        })
    }

    /// Re-reads the token file, if there is one; on error the old token stays.
    pub fn reload(&self) -> Result<bool, TokenFileError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let token = read_token_file(path)?;
        self.configured.set(token);
        Ok(true)
    }
}

/// True for the values tracers send when unconfigured.
pub fn is_placeholder(token: &[u8]) -> bool {
    let trimmed = token.trim_ascii();
    PLACEHOLDERS.contains(&trimmed)
}

/// The token header's value, if present.
pub fn header_token(headers: &http::HeaderMap) -> Option<&[u8]> {
    headers.get(TOKEN_HEADER).map(http::HeaderValue::as_bytes)
}

/// The token from gRPC metadata (lowercase `lightstep-access-token`), if present.
pub fn header_token_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<&[u8]> {
    metadata.get(TOKEN_HEADER).map(|v| v.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(force: bool) -> TokenPolicy {
        TokenPolicy::new(AccessToken::new("cfg"), force)
    }

    #[test]
    fn real_body_token_wins_then_header_then_configured() {
        let p = policy(false);
        let body = Bytes::from_static(b"body");
        assert_eq!(p.resolve(Some(&body), Some(b"hdr")).unwrap(), "body");
        assert_eq!(p.resolve(None, Some(b"hdr")).unwrap(), "hdr");
        assert_eq!(p.resolve(None, None).unwrap(), "cfg");
    }

    #[test]
    fn placeholders_are_replaced() {
        let p = policy(false);
        for placeholder in ["", "developer", "empty", " developer "] {
            let body = Bytes::from(placeholder);
            assert_eq!(
                p.resolve(Some(&body), Some(placeholder.as_bytes()))
                    .unwrap(),
                "cfg"
            );
        }
    }

    #[test]
    fn force_uses_configured() {
        let body = Bytes::from_static(b"body");
        assert_eq!(
            policy(true).resolve(Some(&body), Some(b"hdr")).unwrap(),
            "cfg"
        );
    }

    #[test]
    fn tokens_outside_visible_ascii_or_too_long_are_refused_from_anywhere() {
        let p = policy(false);
        let bad = Bytes::from_static(b"ab\xcf\xfbcd");
        assert_eq!(
            p.resolve(Some(&bad), None),
            Err(TokenError::Bytes { offset: 2 })
        );
        assert_eq!(
            p.resolve(None, Some(b"a b")),
            Err(TokenError::Bytes { offset: 1 })
        );
        // Even when forced (the client's token would be ignored), a bad one is refused.
        assert!(policy(true).resolve(None, Some(b"tab\there")).is_err());
        let long = Bytes::from(vec![b'a'; MAX_TOKEN_BYTES + 1]);
        assert_eq!(
            p.resolve(Some(&long), None),
            Err(TokenError::Length { len: 513 })
        );
        let max = Bytes::from(vec![b'~'; MAX_TOKEN_BYTES]);
        assert!(p.resolve(Some(&max), None).is_ok());
        assert_eq!(TokenError::Length { len: 0 }.reason(), "token_length");
    }

    #[test]
    fn the_token_file_is_trimmed_checked_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let mut p = TokenPolicy::new(read_token_file(&path).unwrap(), false);
        p.file = Some(path.clone());
        assert_eq!(p.resolve(None, None).unwrap(), "first");
        let shared = p.clone();
        std::fs::write(&path, "second").unwrap();
        assert!(p.reload().unwrap());
        assert_eq!(shared.resolve(None, None).unwrap(), "second");
        std::fs::write(&path, "bad token\n").unwrap();
        assert!(matches!(p.reload(), Err(TokenFileError::Invalid { .. })));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(p.reload(), Err(TokenFileError::Empty { .. })));
        assert_eq!(
            shared.resolve(None, None).unwrap(),
            "second",
            "a bad reload keeps the old token"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        assert_eq!(
            format!("{:?}", policy(false)),
            "TokenPolicy { configured: ***, force: false, file: None }"
        );
    }

    #[test]
    fn header_lookup_ignores_case() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "Lightstep-Access-Token",
            http::HeaderValue::from_static("x"),
        );
        assert_eq!(header_token(&headers), Some(&b"x"[..]));
    }
}
