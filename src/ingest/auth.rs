//! Access tokens: where a report's token is found, and which token its spans travel with.
//!
//! cubesat accepts any token on ingest (like a satellite with token checking off). Upstream, a
//! report's own real token wins, so one cubesat can serve several projects; placeholders are
//! replaced by the configured token; the operator may force the configured one. Tokens never
//! reach logs or metric labels: [`AccessToken`] prints as `***`.

use bytes::Bytes;

pub use crate::pipeline::TOKEN_HEADER;

/// Values tracers send when they have no real token.
const PLACEHOLDERS: [&[u8]; 3] = [b"", b"developer", b"empty"];

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

/// Decides the token each report is forwarded with.
#[derive(Debug, Clone, Default)]
pub struct TokenPolicy {
    /// The project token from configuration (may be empty).
    pub configured: AccessToken,
    /// Use the configured token even when a report brings a real one.
    pub force: bool,
}

impl TokenPolicy {
    /// The token for a report whose body carried `body` and whose headers carried `header`.
    pub fn resolve(&self, body: Option<&Bytes>, header: Option<&[u8]>) -> Bytes {
        if self.force {
            return self.configured.0.clone();
        }
        if let Some(token) = body.filter(|t| !is_placeholder(t)) {
            return token.clone();
        }
        if let Some(token) = header.filter(|t| !is_placeholder(t)) {
            return Bytes::copy_from_slice(token);
        }
        self.configured.0.clone()
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
        TokenPolicy {
            configured: AccessToken::new("cfg"),
            force,
        }
    }

    #[test]
    fn real_body_token_wins_then_header_then_configured() {
        let p = policy(false);
        let body = Bytes::from_static(b"body");
        assert_eq!(p.resolve(Some(&body), Some(b"hdr")), "body");
        assert_eq!(p.resolve(None, Some(b"hdr")), "hdr");
        assert_eq!(p.resolve(None, None), "cfg");
    }

    #[test]
    fn placeholders_are_replaced() {
        let p = policy(false);
        for placeholder in ["", "developer", "empty", " developer "] {
            let body = Bytes::from(placeholder);
            assert_eq!(p.resolve(Some(&body), Some(placeholder.as_bytes())), "cfg");
        }
    }

    #[test]
    fn force_uses_configured() {
        let body = Bytes::from_static(b"body");
        assert_eq!(policy(true).resolve(Some(&body), Some(b"hdr")), "cfg");
    }

    #[test]
    fn debug_hides_the_token() {
        assert_eq!(
            format!("{:?}", policy(false)),
            "TokenPolicy { configured: ***, force: false }"
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
