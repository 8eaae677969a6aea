//! Cross-namespace image references need a grant from the namespace they read, as in OpenShift.
//!
//! An alias (`from.kind: ImageStreamTag` with another `namespace`), an `ImageStreamImage`, a Workload's
//! `imageFrom` and a trigger annotation may name a tag of another namespace. Such a reference resolves only
//! when the source namespace lets the consumer's service accounts pull its images: the API server is asked with
//! a SubjectAccessReview whether the group `system:serviceaccounts:<consumer>` may `get`
//! `imagestreams/layers` in group `image.berth.dev` in the source namespace (OpenShift's
//! `system:image-puller` grants the same verb on its own group). The ClusterRole `berth-image-puller`
//! (`manifests/rbac/roles.yaml`) holds exactly that rule; the source namespace binds it:
//!
//! ```sh
//! kubectl -n team-b create rolebinding team-a-pulls --clusterrole=berth-image-puller \
//!     --group=system:serviceaccounts:team-a
//! ```
//!
//! Each hop of an alias chain is checked from the namespace of the tag that names it. A denial says which
//! grant to create and never whether the other namespace has such a tag. Answers are kept for [`TTL`], so a
//! revoked grant stops the next resolution after at most that long.
//!
//! The decision half ([`require`]) is pure and reads answers through [`GrantLookup`]; the unknown ones come back
//! as a [`GrantRequest`] that [`Grants::decide`] asks the API server and then decides again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::error::{Error, Result};

/// How long an answer of the API server is used before it is asked again.
pub const TTL: Duration = Duration::from_secs(10);
/// How often a resolved reference into another namespace is checked again (a revoked grant changes nothing
/// the reference's own namespace could watch).
pub const RECHECK: Duration = Duration::from_secs(60);
/// The group whose verb a grant allows, as OpenShift's `image.openshift.io`.
pub const GROUP: &str = "image.berth.dev";
/// The resource and subresource a grant allows `get` on, as OpenShift's `system:image-puller`.
pub const RESOURCE: &str = "imagestreams";
/// See [`RESOURCE`].
pub const SUBRESOURCE: &str = "layers";
/// The ClusterRole shipped in `manifests/rbac/roles.yaml` with exactly that rule.
pub const PULLER_ROLE: &str = "berth-image-puller";
/// The condition reason and Event reason of a reference the source namespace does not grant.
pub const REASON_FORBIDDEN: &str = "Forbidden";
/// The most grants one decision may need (an alias chain is at most 16 hops).
const MAX_ROUNDS: usize = 32;

/// What is known of one grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The source namespace grants it.
    Granted,
    /// It does not.
    Denied,
    /// Not known yet (never asked, or the answer is older than [`TTL`]).
    Unknown,
}

/// Answers of grants known so far.
pub trait GrantLookup {
    /// Whether `source` lets `consumer`'s service accounts pull its images.
    fn access(&self, consumer: &str, source: &str) -> Access;
}

/// A grant a decision needs and nobody knows yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GrantRequest {
    /// The namespace that reads.
    pub consumer: String,
    /// The namespace read.
    pub source: String,
}

/// Why a reference may not be followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Denied: what to grant, for a person.
    Forbidden(String),
    /// Ask the API server first.
    Ask(GrantRequest),
}

/// Whether `consumer` may read images of `source`: always within one namespace, else as granted.
pub fn require(grants: &impl GrantLookup, consumer: &str, source: &str) -> Result<(), Refusal> {
    if consumer == source {
        return Ok(());
    }
    match grants.access(consumer, source) {
        Access::Granted => Ok(()),
        Access::Denied => Err(Refusal::Forbidden(forbidden_message(consumer, source))),
        Access::Unknown => Err(Refusal::Ask(GrantRequest {
            consumer: consumer.to_owned(),
            source: source.to_owned(),
        })),
    }
}

/// The message of a denial: the grant to create, and nothing about what the source namespace holds.
pub fn forbidden_message(consumer: &str, source: &str) -> String {
    format!(
        "namespace {source} does not grant namespace {consumer} its images: in {source}, bind the ClusterRole \
         {PULLER_ROLE} (get {RESOURCE}/{SUBRESOURCE} in {GROUP}) to the group system:serviceaccounts:{consumer}, \
         e.g. kubectl -n {source} create rolebinding {consumer}-image-puller --clusterrole={PULLER_ROLE} \
         --group=system:serviceaccounts:{consumer}"
    )
}

/// The SubjectAccessReview that asks the API server about `request`.
pub fn review_of(request: &GrantRequest) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            groups: Some(vec![format!("system:serviceaccounts:{}", request.consumer)]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(request.source.clone()),
                verb: Some("get".to_owned()),
                group: Some(GROUP.to_owned()),
                resource: Some(RESOURCE.to_owned()),
                subresource: Some(SUBRESOURCE.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Grants as the API server answers them, each kept for [`TTL`].
pub struct Grants {
    client: Option<Client>,
    answers: Mutex<HashMap<GrantRequest, (bool, Instant)>>,
}

impl GrantLookup for Grants {
    fn access(&self, consumer: &str, source: &str) -> Access {
        let key = GrantRequest {
            consumer: consumer.to_owned(),
            source: source.to_owned(),
        };
        match self.answers.lock().expect("not poisoned").get(&key) {
            Some((granted, at)) if at.elapsed() < TTL => {
                if *granted {
                    Access::Granted
                } else {
                    Access::Denied
                }
            }
            _ => Access::Unknown,
        }
    }
}

impl Grants {
    /// Grants asked of the API server through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client: Some(client),
            answers: Mutex::default(),
        }
    }

    /// Grants of a test without an API server: every question is denied.
    #[cfg(test)]
    pub fn deny_all_for_tests() -> Self {
        Self {
            client: None,
            answers: Mutex::default(),
        }
    }

    /// Runs `decision` until it needs no unknown grant, asking the API server for each one it needs.
    pub async fn decide<T>(&self, mut decision: impl FnMut(&Self) -> Result<T, GrantRequest>) -> Result<T> {
        for _ in 0..MAX_ROUNDS {
            match decision(self) {
                Ok(decided) => return Ok(decided),
                Err(request) => {
                    let granted = self.ask(&request).await?;
                    let mut answers = self.answers.lock().expect("not poisoned");
                    // One entry per namespace pair asked about: the stale ones go as new ones come.
                    answers.retain(|_, (_, at)| at.elapsed() < TTL);
                    answers.insert(request, (granted, Instant::now()));
                }
            }
        }
        Err(Error::GrantsUnsettled(MAX_ROUNDS))
    }

    async fn ask(&self, request: &GrantRequest) -> Result<bool> {
        let Some(client) = &self.client else {
            return Ok(false);
        };
        let api: Api<SubjectAccessReview> = Api::all(client.clone());
        let answer = api
            .create(&PostParams::default(), &review_of(request))
            .await
            .map_err(Error::kube("create SubjectAccessReview"))?;
        Ok(answer.status.is_some_and(|s| s.allowed && s.denied != Some(true)))
    }
}

/// Grants a unit test gives by hand.
#[cfg(test)]
#[derive(Default)]
pub struct FakeGrants(pub HashMap<(String, String), bool>);

#[cfg(test)]
impl FakeGrants {
    /// `source` grants `consumer`.
    pub fn granting(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(c, s)| ((c.to_string(), s.to_string()), true))
                .collect(),
        )
    }
}

#[cfg(test)]
impl GrantLookup for FakeGrants {
    fn access(&self, consumer: &str, source: &str) -> Access {
        match self.0.get(&(consumer.to_owned(), source.to_owned())) {
            Some(true) => Access::Granted,
            Some(false) => Access::Denied,
            None => Access::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_namespace_needs_no_grant_and_others_are_asked_then_decided() {
        let mut grants = FakeGrants::default();
        assert_eq!(require(&grants, "a", "a"), Ok(()));
        assert_eq!(
            require(&grants, "a", "b"),
            Err(Refusal::Ask(GrantRequest {
                consumer: "a".into(),
                source: "b".into()
            }))
        );
        grants.0.insert(("a".into(), "b".into()), true);
        assert_eq!(require(&grants, "a", "b"), Ok(()));
        grants.0.insert(("a".into(), "b".into()), false);
        let Err(Refusal::Forbidden(message)) = require(&grants, "a", "b") else {
            panic!("denied")
        };
        assert!(message.contains("kubectl -n b create rolebinding"), "{message}");
        assert!(message.contains("--group=system:serviceaccounts:a"), "{message}");
        // A grant goes one way.
        assert!(matches!(require(&grants, "b", "a"), Err(Refusal::Ask(_))));
    }

    #[test]
    fn the_review_asks_about_the_consumers_service_accounts_in_the_source() {
        let review = review_of(&GrantRequest {
            consumer: "team-a".into(),
            source: "team-b".into(),
        });
        let spec = review.spec;
        assert_eq!(
            spec.groups,
            Some(vec!["system:serviceaccounts:team-a".to_owned()])
        );
        let attrs = spec.resource_attributes.expect("resource attributes");
        assert_eq!(attrs.namespace.as_deref(), Some("team-b"));
        assert_eq!(attrs.verb.as_deref(), Some("get"));
        assert_eq!(attrs.group.as_deref(), Some(GROUP));
        assert_eq!(attrs.resource.as_deref(), Some("imagestreams"));
        assert_eq!(attrs.subresource.as_deref(), Some("layers"));
    }

    #[tokio::test]
    async fn decide_asks_each_unknown_grant_once_and_decides_again() {
        let grants = Grants::deny_all_for_tests();
        let mut rounds = 0;
        let decided = grants
            .decide(|g| {
                rounds += 1;
                match require(g, "a", "b") {
                    Ok(()) => Ok("granted"),
                    Err(Refusal::Forbidden(_)) => Ok("forbidden"),
                    Err(Refusal::Ask(r)) => Err(r),
                }
            })
            .await
            .expect("decided");
        assert_eq!((decided, rounds), ("forbidden", 2));
        assert_eq!(grants.access("a", "b"), Access::Denied);
    }
}
