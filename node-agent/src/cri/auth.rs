//! Registry credentials for `PullImage`, kept out of logs.
//!
//! The generated [`AuthConfig`] is built without a derived `Debug` (see `tests/cri_codegen.rs`);
//! the implementation here prints which secrets are set, never their values, so a
//! `PullImageRequest` can be logged or shown in an error without leaking a password.

use std::fmt;

use super::api::AuthConfig;

/// Shows `<redacted>` for a set secret and `""` for an empty one.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &Redacted(&self.password))
            .field("auth", &Redacted(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &Redacted(&self.identity_token))
            .field("registry_token", &Redacted(&self.registry_token))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::api::{ImageSpec, PullImageRequest};

    #[test]
    fn debug_never_shows_secrets() {
        let auth = AuthConfig {
            username: "robot".into(),
            password: "hunter2-password".into(),
            auth: "cm9ib3Q6aHVudGVyMg==".into(),
            server_address: "10.213.0.1:5000".into(),
            identity_token: "id-token-secret".into(),
            registry_token: "bearer-secret".into(),
        };
        let req = PullImageRequest {
            image: Some(ImageSpec {
                image: "10.213.0.1:5000/berth/demo:v1".into(),
                ..Default::default()
            }),
            auth: Some(auth),
            sandbox_config: None,
        };
        let shown = format!("{req:?} {req:#?}");
        for secret in [
            "hunter2-password",
            "cm9ib3Q6aHVudGVyMg==",
            "id-token-secret",
            "bearer-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("robot"), "username is not secret: {shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn empty_secrets_show_as_empty() {
        let shown = format!("{:?}", AuthConfig::default());
        assert!(!shown.contains("<redacted>"), "{shown}");
    }
}
