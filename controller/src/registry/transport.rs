//! HTTP clients for registries: TLS verified by default, with optional extra CA certificates; a registry
//! marked `insecure` is tried over HTTPS without verification, then over plain HTTP, and the scheme that
//! answered is remembered for that host.
//!
//! Manifest requests are sent with `reqwest` directly rather than through `oci_client::Client`, because
//! the latter reads whole bodies (no size limit), returns no `Content-Type` from a HEAD (needed to know
//! whether a tag is an index before any GET), and drops the headers of error answers (`Retry-After`).
//! Token requests go to a registry's token service with clients of their own that follow no redirects:
//! the registry policy decided about the token service's host, not about where it might redirect
//! (`session/token.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How a registry is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// TLS, verified against the platform's roots and the configured extra CAs.
    Https,
    /// TLS without verification (an `insecure` registry).
    HttpsUnverified,
    /// Plain HTTP (an `insecure` registry).
    Http,
}

impl Scheme {
    /// The URL scheme.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https | Scheme::HttpsUnverified => "https",
            Scheme::Http => "http",
        }
    }
}

/// A configuration that cannot be turned into HTTP clients (e.g. a CA bundle that is not PEM).
#[derive(Debug, thiserror::Error)]
#[error("registry client configuration: {0}")]
pub struct TransportError(String);

/// The HTTP clients of a resolver.
pub struct Transport {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    /// Token requests: verified TLS, no redirects.
    token_verified: reqwest::Client,
    /// Token requests to an insecure registry's own host: unverified TLS, no redirects.
    token_unverified: reqwest::Client,
    /// The scheme an insecure registry last answered on.
    insecure_schemes: Mutex<HashMap<String, Scheme>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

/// Installs `ring` as the process's rustls crypto provider, unless one is installed already.
///
/// rustls is built with `ring` only (the provider kube uses), and `reqwest` without its bundled provider
/// needs a process default: [`Resolver::new`](super::Resolver::new) calls this, and so must anything that
/// builds a `reqwest::Client` before it (tests, `main`). Idempotent.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

impl Transport {
    /// Builds the clients. `extra_ca_pem` is a PEM bundle trusted in addition to the platform's roots;
    /// `timeout` bounds connecting and each read.
    pub fn new(
        extra_ca_pem: Option<&[u8]>,
        timeout: Duration,
        user_agent: &'static str,
    ) -> Result<Self, TransportError> {
        install_crypto_provider();
        let cas = match extra_ca_pem {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| TransportError(format!("extra CA bundle is not valid PEM: {e}")))
                .and_then(|cas| match cas.is_empty() {
                    true => Err(TransportError("extra CA bundle holds no PEM certificate".into())),
                    false => Ok(cas),
                })?,
            None => Vec::new(),
        };
        let base = || {
            reqwest::Client::builder()
                .user_agent(user_agent)
                .connect_timeout(timeout)
                .read_timeout(timeout)
                // Registries redirect blob downloads, never manifests; keep a small bound anyway.
                .redirect(reqwest::redirect::Policy::limited(5))
        };
        let build = |b: reqwest::ClientBuilder| b.build().map_err(|e| TransportError(error_chain(&e)));

        let no_redirects = |b: reqwest::ClientBuilder| b.redirect(reqwest::redirect::Policy::none());
        Ok(Self {
            token_verified: build(no_redirects(base().tls_certs_merge(cas.clone())))?,
            token_unverified: build(no_redirects(base().tls_danger_accept_invalid_certs(true)))?,
            verified: build(base().tls_certs_merge(cas))?,
            unverified: build(base().tls_danger_accept_invalid_certs(true))?,
            insecure_schemes: Mutex::default(),
        })
    }

    /// The schemes to try for `host`, in order.
    pub fn schemes(&self, host: &str, insecure: bool) -> Vec<Scheme> {
        if !insecure {
            return vec![Scheme::Https];
        }
        match self
            .insecure_schemes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
        {
            Some(&scheme) => vec![scheme],
            None => vec![Scheme::HttpsUnverified, Scheme::Http],
        }
    }

    /// Remembers which scheme an insecure registry answered on (`None`: forget, it stopped answering).
    pub fn remember(&self, host: &str, scheme: Option<Scheme>) {
        let mut schemes = self.insecure_schemes.lock().unwrap_or_else(|p| p.into_inner());
        match scheme {
            Some(s) => schemes.insert(host.to_string(), s),
            None => schemes.remove(host),
        };
    }

    /// The HTTP client for a scheme.
    pub fn http(&self, scheme: Scheme) -> &reqwest::Client {
        match scheme {
            Scheme::Https => &self.verified,
            Scheme::HttpsUnverified | Scheme::Http => &self.unverified,
        }
    }

    /// The HTTP client for token requests: TLS verified or not.
    pub fn token_http(&self, verified: bool) -> &reqwest::Client {
        if verified {
            &self.token_verified
        } else {
            &self.token_unverified
        }
    }
}

/// The body was larger than the limit; `announced` is the `Content-Length` when there was one.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit.
    TooLarge {
        /// The `Content-Length`, when given.
        announced: Option<u64>,
    },
    /// The connection failed while reading.
    Read(reqwest::Error),
}

/// Reads a body of at most `limit` bytes. A larger `Content-Length` is refused before reading anything;
/// without one, reading stops as soon as the limit is passed.
pub async fn read_limited(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    let announced = content_length(response.headers());
    if announced.is_some_and(|len| len > limit) {
        return Err(BodyError::TooLarge { announced });
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(BodyError::TooLarge { announced });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `Content-Length` header (read from the headers: on a HEAD the body is empty whatever it says).
pub fn content_length(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An error and its sources on one line: reqwest's own message only says "error sending request".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}
