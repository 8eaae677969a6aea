//! The webhook's secret: compared with what a sender presents (a header, a path segment) and used as the key
//! of the HMAC signatures. Never logged, never in a `Debug` output.

use std::fmt;

use axum::http::HeaderMap;
use ring::hmac;
use sha2::{Digest, Sha256};

/// An empty or whitespace-only webhook token: refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the webhook token is empty or only whitespace: use a long random secret (e.g. `openssl rand -hex 32`), \
     or set no token to take no registry notifications"
)]
pub struct BlankToken;

/// Fails for a token that is empty or only whitespace.
pub fn check_token(token: &str) -> Result<(), BlankToken> {
    match token.trim().is_empty() {
        true => Err(BlankToken),
        false => Ok(()),
    }
}

/// The shared secret, ready to compare and to verify signatures with. A blank token makes a secret that
/// authenticates nothing.
#[derive(Clone)]
pub(super) struct Secret {
    /// SHA-256 of the token, so comparisons take the same time whatever is presented.
    digest: Option<[u8; 32]>,
    key: Option<hmac::Key>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub(super) fn new(token: &str) -> Self {
        match check_token(token) {
            Err(BlankToken) => Self {
                digest: None,
                key: None,
            },
            Ok(()) => Self {
                digest: Some(Sha256::digest(token.as_bytes()).into()),
                key: Some(hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes())),
            },
        }
    }

    /// Whether the secret is usable (not blank).
    pub(super) fn is_set(&self) -> bool {
        self.digest.is_some()
    }

    /// Whether `presented` is the secret, in time independent of where they differ.
    pub(super) fn matches(&self, presented: &str) -> bool {
        let Some(digest) = &self.digest else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented
            .iter()
            .zip(digest)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }

    /// Whether `signature` is the HMAC-SHA256 of `body` under the secret (constant time).
    pub(super) fn signed(&self, body: &[u8], signature: &[u8]) -> bool {
        self.key
            .as_ref()
            .is_some_and(|key| hmac::verify(key, body, signature).is_ok())
    }
}

/// How a format authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Bearer <token>` or `Authorization: <token>` (Harbor sends its auth header verbatim).
    BearerOrBare,
    /// The token as the last path segment.
    PathToken,
    /// The token as the whole value of this header.
    Header(&'static str),
    /// `sha256=<hex HMAC-SHA256 of the body>` in this header.
    Signature(&'static str),
}

impl Auth {
    /// What a sender must present, for the 401 message (never the secret itself).
    pub(super) fn requirement(self) -> String {
        match self {
            Auth::Bearer => "the header Authorization: Bearer <webhook token> is required".into(),
            Auth::BearerOrBare => {
                "the header Authorization: Bearer <webhook token> (or the bare token) is required".into()
            }
            Auth::PathToken => "the webhook token is required as the last segment of the path".into(),
            Auth::Header(name) => format!("the header {name}: <webhook token> is required"),
            Auth::Signature(name) => format!(
                "the header {name}: sha256=<hex HMAC-SHA256 of the body, keyed with the webhook token> is \
                 required"
            ),
        }
    }

    /// Checks a secret presented in a header or the path (not for [`Auth::Signature`]).
    pub(super) fn presented(self, secret: &Secret, headers: &HeaderMap, path_token: Option<&str>) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let presented = match self {
            Auth::Bearer => header("authorization").and_then(|v| v.strip_prefix("Bearer ")),
            Auth::BearerOrBare => header("authorization").map(|v| v.strip_prefix("Bearer ").unwrap_or(v)),
            Auth::PathToken => path_token,
            Auth::Header(name) => header(name),
            Auth::Signature(_) => None,
        };
        presented.is_some_and(|p| secret.matches(p))
    }
}

/// The signature a header carries, `sha256=<64 hex digits>`, decoded; `None` when absent or malformed.
pub(super) fn signature(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let value = headers.get(name)?.to_str().ok()?;
    let hex_digits = value.trim().strip_prefix("sha256=")?;
    let bytes = hex::decode(hex_digits).ok()?;
    (bytes.len() == 32).then_some(bytes)
}

/// `sha256=<hex HMAC-SHA256 of body keyed with token>`: what a sender puts in a signature header.
pub fn sign(token: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_tokens_are_refused_and_authenticate_nothing() {
        for blank in ["", " ", "\t\n"] {
            assert_eq!(check_token(blank), Err(BlankToken));
            let secret = Secret::new(blank);
            assert!(!secret.is_set());
            assert!(!secret.matches(blank));
            assert!(!secret.matches(""));
            assert!(!secret.signed(b"{}", &[0; 32]));
        }
        assert_eq!(check_token("s3cret"), Ok(()));
    }

    #[test]
    fn secrets_match_only_themselves_and_never_print() {
        let secret = Secret::new("s3cret");
        assert!(secret.matches("s3cret"));
        for other in ["", "s3cre", "s3cret ", "S3cret", "s3cret\0"] {
            assert!(!secret.matches(other), "{other:?}");
        }
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn signatures_verify_only_for_the_body_and_key() {
        let secret = Secret::new("s3cret");
        let mut headers = HeaderMap::new();
        headers.insert("x-sig", sign("s3cret", b"body").parse().unwrap());
        let sig = signature(&headers, "x-sig").unwrap();
        assert!(secret.signed(b"body", &sig));
        assert!(!secret.signed(b"body ", &sig));
        assert!(!Secret::new("other").signed(b"body", &sig));
        for malformed in ["sha1=00", "sha256=zz", "sha256=0011", "00"] {
            headers.insert("x-sig", malformed.parse().unwrap());
            assert_eq!(signature(&headers, "x-sig"), None, "{malformed}");
        }
    }
}
