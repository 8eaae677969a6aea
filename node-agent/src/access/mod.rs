//! Who may use the kubelet port, decided as the kubelet's webhook mode decides it: the caller
//! is authenticated by its client certificate (verified against `--client-ca` in the TLS
//! handshake) or its bearer token (`TokenReview`), then each request is authorised by a
//! `SubjectAccessReview` of its verb on `nodes/<subresource>` of this node ([`attributes`]).
//! The API server reaches `kubectl logs`/`exec` here as `kube-apiserver-kubelet-client`, which
//! the cluster binds to `system:kubelet-api-admin`.

pub mod attributes;
pub mod identity;
pub mod review;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::info;

use attributes::{Attributes, attributes};
pub use identity::User;
use review::{ALLOWED_TTL, Cache, DENIED_TTL, Reviewer, TOKEN_TTL, token_key};

/// How authenticated requests are authorised (the kubelet's `--authorization-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "PascalCase")]
pub enum AuthorizationMode {
    /// A `SubjectAccessReview` per request (cached).
    Webhook,
    /// Every authenticated user may do anything.
    AlwaysAllow,
}

/// The user of a connection's client certificate, put on each of its requests by the server.
#[derive(Debug, Clone, Default)]
pub struct Peer(pub Option<User>);

/// The access decisions of the kubelet port.
#[derive(Clone)]
pub struct Access {
    node: Arc<str>,
    mode: Option<AuthorizationMode>,
    reviewer: Arc<dyn Reviewer>,
    tokens: Arc<Cache<[u8; 32], Option<User>>>,
    decisions: Arc<Cache<(User, Attributes), bool>>,
}

/// Why a request is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No certificate of the client CA and no token the API server knows (401).
    Unauthenticated,
    /// The API server said no (403).
    Forbidden(String),
    /// The API server could not be asked (500).
    Unavailable(String),
}

impl IntoResponse for Denial {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "Unauthorized".to_string()),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            Self::Unavailable(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        }
        .into_response()
    }
}

fn describe(user: &User, a: &Attributes) -> String {
    format!(
        "(user={}, verb={}, resource=nodes, subresource={})",
        user.name, a.verb, a.subresource
    )
}

impl Access {
    /// Authenticates and authorises every request for node `node`, asking `reviewer`;
    /// `mode` says how authenticated users are authorised.
    pub fn checked(node: &str, mode: AuthorizationMode, reviewer: Arc<dyn Reviewer>) -> Self {
        Self {
            node: node.into(),
            mode: Some(mode),
            reviewer,
            tokens: Arc::default(),
            decisions: Arc::default(),
        }
    }

    /// Serves everyone, unauthenticated: development only (`--insecure-skip-client-auth`).
    pub fn open(node: &str, reviewer: Arc<dyn Reviewer>) -> Self {
        Self {
            mode: None,
            ..Self::checked(node, AuthorizationMode::AlwaysAllow, reviewer)
        }
    }

    /// Decides whether the caller (`peer`'s certificate, else the bearer token in `headers`)
    /// may do `method` on `path`.
    pub async fn check(
        &self,
        peer: Option<&User>,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
    ) -> Result<(), Denial> {
        let Some(mode) = self.mode else {
            return Ok(());
        };
        let user = match peer {
            Some(u) => u.clone(),
            None => self.token_user(headers).await?.ok_or(Denial::Unauthenticated)?,
        };
        if mode == AuthorizationMode::AlwaysAllow {
            return Ok(());
        }
        let attrs = attributes(method, path);
        let key = (user, attrs);
        let now = Instant::now();
        let allowed = match self.decisions.get(&key, now) {
            Some(a) => a,
            None => {
                let (user, attrs) = &key;
                let allowed = self
                    .reviewer
                    .authorize(user, &self.node, attrs)
                    .await
                    .map_err(|e| {
                        Denial::Unavailable(format!("Authorization error {}: {e}", describe(user, attrs)))
                    })?;
                let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
                self.decisions.put(key.clone(), allowed, now, ttl);
                allowed
            }
        };
        let (user, attrs) = &key;
        if allowed {
            return Ok(());
        }
        info!(user = %user.name, verb = attrs.verb, subresource = attrs.subresource, path, "forbidden");
        Err(Denial::Forbidden(format!("Forbidden {}", describe(user, attrs))))
    }

    async fn token_user(&self, headers: &HeaderMap) -> Result<Option<User>, Denial> {
        let Some(token) = identity::bearer_token(headers) else {
            return Ok(None);
        };
        let key = token_key(token);
        let now = Instant::now();
        if let Some(user) = self.tokens.get(&key, now) {
            return Ok(user);
        }
        let user = self
            .reviewer
            .authenticate(token)
            .await
            .map_err(|e| Denial::Unavailable(format!("Authentication error: {e}")))?;
        self.tokens.put(key, user.clone(), now, TOKEN_TTL);
        Ok(user)
    }
}

/// The middleware in front of every handler of the kubelet port.
pub async fn guard(State(access): State<Access>, req: Request<Body>, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().and_then(|p| p.0.clone());
    match access
        .check(peer.as_ref(), req.headers(), req.method(), req.uri().path())
        .await
    {
        Ok(()) => next.run(req).await,
        Err(denial) => denial.into_response(),
    }
}

#[cfg(test)]
mod tests;
