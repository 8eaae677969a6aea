//! Who is asking: the user of a client certificate (subject CN, groups from O, as the API
//! server reads them), or of a bearer token (asked of the API server, see [`super::review`]).

use axum::http::{HeaderMap, header};
use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// The user name (`system:node:berth-1`, `kube-apiserver-kubelet-client`, ...).
    pub name: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

/// The user a client certificate (DER, already verified against the client CA in the TLS
/// handshake) names; `None` when it has no common name.
pub fn from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(User { name, groups })
}

/// The bearer token of `Authorization: Bearer TOKEN`, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc.def".parse().expect("value"));
        assert_eq!(bearer_token(&h), Some("abc.def"));
        h.insert(header::AUTHORIZATION, "bearer  xyz ".parse().expect("value"));
        assert_eq!(bearer_token(&h), Some("xyz"));
        h.insert(
            header::AUTHORIZATION,
            "Basic dXNlcjpwdw==".parse().expect("value"),
        );
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().expect("value"));
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn garbage_is_no_user() {
        assert_eq!(from_certificate(b"not a certificate"), None);
    }
}
