//! The API server's answers about users of the kubelet port: `TokenReview` (who holds this
//! bearer token) and `SubjectAccessReview` (may this user do this to this node), as the
//! kubelet's webhook authentication and authorization; answers are kept for a while (allowed
//! 5 minutes, denied 30 seconds, tokens 2 minutes, the kubelet's defaults).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::attributes::Attributes;
use super::identity::User;

/// How long an allowed decision is kept.
pub const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// How long a denied decision is kept.
pub const DENIED_TTL: Duration = Duration::from_secs(30);
/// How long a token's user is kept.
pub const TOKEN_TTL: Duration = Duration::from_secs(120);
/// The most answers of each kind kept; past it the cache starts over.
const MAX_ENTRIES: usize = 4096;

/// The API server's part, behind a trait so the decisions around it are tested without one.
pub trait Reviewer: Send + Sync {
    /// The user holding `token`, `None` when the API server does not know it.
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<User>, String>>;
    /// Whether `user` may do `attrs` on node `node`.
    fn authorize<'a>(
        &'a self,
        user: &'a User,
        node: &'a str,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<bool, String>>;
}

/// The reviews, asked of the API server with the agent's own identity (which may create
/// `tokenreviews` and `subjectaccessreviews`, as the kubelet's).
pub struct ApiReviewer {
    client: kube::Client,
}

impl ApiReviewer {
    /// Reviews through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl Reviewer for ApiReviewer {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<User>, String>> {
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: None,
                },
                ..Default::default()
            };
            let api: Api<TokenReview> = Api::all(self.client.clone());
            // The error never carries the token: it is in the request body only.
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("TokenReview: {e}"))?;
            let Some(status) = answer.status.filter(|s| s.authenticated == Some(true)) else {
                return Ok(None);
            };
            Ok(status.user.and_then(|u| {
                Some(User {
                    name: u.username.filter(|n| !n.is_empty())?,
                    groups: u.groups.unwrap_or_default(),
                })
            }))
        })
    }

    fn authorize<'a>(
        &'a self,
        user: &'a User,
        node: &'a str,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.name.clone()),
                    groups: Some(user.groups.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(attrs.verb.to_string()),
                        resource: Some("nodes".into()),
                        subresource: Some(attrs.subresource.to_string()),
                        name: Some(node.to_string()),
                        group: Some(String::new()),
                        version: Some("v1".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("SubjectAccessReview: {e}"))?;
            Ok(answer.status.is_some_and(|s| s.allowed))
        })
    }
}

/// Answers kept until they expire.
pub struct Cache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Default for Cache<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// The answer for `key` if it has not expired at `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone())
    }

    /// Keeps `value` for `key` until `now + ttl`.
    pub fn put(&self, key: K, value: V, now: Instant, ttl: Duration) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (_, until)| *until > now);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(key, (value, now + ttl));
        }
    }
}

/// The key a token is kept under: its SHA-256, so the cache never holds the token itself.
pub fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire() {
        let cache: Cache<&str, bool> = Cache::default();
        let t0 = Instant::now();
        cache.put("a", true, t0, Duration::from_secs(30));
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(29)), Some(true));
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(30)), None);
        assert_eq!(cache.get(&"b", t0), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache: Cache<usize, bool> = Cache::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ENTRIES * 2) {
            cache.put(i, true, t0, Duration::from_secs(60));
        }
        let len = cache.entries.lock().expect("lock").len();
        assert!(len <= MAX_ENTRIES, "{len}");
    }

    #[test]
    fn tokens_are_kept_as_hashes() {
        assert_ne!(token_key("a"), token_key("b"));
        assert_eq!(token_key("a"), token_key("a"));
    }
}
