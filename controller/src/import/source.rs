//! Where a tag's image comes from, decided without a registry: aliases followed through the cache of tags,
//! digests looked up in a stream's history, pinned digests and references recorded as given. Only a
//! `DockerImage` by tag (or, with a version policy, a repository to list) is left for the registry.

use berth_api::image::{ImageStreamTag, ROLLED_BACK_FROM_ANNOTATION, SourceKind, TagSource};
use berth_api::names::StreamTagRef;
use berth_api::validation::is_sha256_digest;
use berth_api::version_policy::VersionPolicy;

use super::status::Outcome;
use super::version_policy;
use crate::grants::{self, GrantLookup, GrantRequest, Refusal};
use crate::registry::ImageReference;

/// The longest alias chain followed before giving up.
pub const MAX_ALIAS_DEPTH: usize = 16;

/// What importing a tag needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Known without asking anyone.
    Known(Outcome),
    /// Ask the registry for this reference.
    Registry(ImageReference),
    /// List the repository's tags, choose one by the version policy, and ask the registry for it.
    Versions {
        /// The repository (its tag, `latest` when none is written, is not used).
        repository: ImageReference,
        /// The tag's `importPolicy.versionPolicy`, checked.
        policy: VersionPolicy,
    },
}

/// Finds tags in the controller's cache: `(namespace, stream, tag)` to the object.
pub trait TagLookup {
    /// The ImageStreamTag for `tag` of `stream` in `namespace`, if there is one.
    fn tag(&self, namespace: &str, stream: &str, tag: &str) -> Option<&ImageStreamTag>;
    /// Every tag of `stream` in `namespace`.
    fn tags_of(&self, namespace: &str, stream: &str) -> Vec<&ImageStreamTag>;
}

/// Decides the source of `tag`, in `namespace`. Another namespace is read only as it grants (see
/// [`crate::grants`]); a grant nobody knows yet is asked for.
pub fn source_of(
    tag: &ImageStreamTag,
    namespace: &str,
    cache: &impl TagLookup,
    grants: &impl GrantLookup,
) -> Result<Source, GrantRequest> {
    if let Some(source) = version_policy::source(tag) {
        return Ok(source);
    }
    let from = &tag.spec.from;
    Ok(match from.kind {
        SourceKind::DockerImage => docker_image(&from.name, tag.spec.reference, rolled_back_from(tag)),
        SourceKind::ImageStreamTag => Source::Known(follow_alias(tag, namespace, cache, grants)?),
        SourceKind::ImageStreamImage => {
            let ns = from.namespace.as_deref().unwrap_or(namespace);
            Source::Known(match grants::require(grants, namespace, ns) {
                Ok(()) => stream_image(&from.name, ns, cache),
                Err(refusal) => forbidden(refusal, &from.name)?,
            })
        }
    })
}

/// A refused reference as an outcome (no digest, no word on what the other namespace holds), or the grant
/// to ask for.
fn forbidden(refusal: Refusal, what: &str) -> Result<Outcome, GrantRequest> {
    match refusal {
        Refusal::Ask(request) => Err(request),
        Refusal::Forbidden(message) => Ok(failed(grants::REASON_FORBIDDEN, format!("{what}: {message}"))),
    }
}

fn failed(reason: &str, message: String) -> Outcome {
    Outcome::Failed {
        reason: reason.to_owned(),
        message,
    }
}

/// What a tag pinned by `kubectl berth rollback` followed before, as its annotation says.
fn rolled_back_from(tag: &ImageStreamTag) -> Option<String> {
    let value = tag
        .metadata
        .annotations
        .as_ref()?
        .get(ROLLED_BACK_FROM_ANNOTATION)?;
    let from: TagSource = serde_json::from_str(value).ok()?;
    Some(match from.namespace {
        Some(ns) => format!("{ns}/{}", from.name),
        None => from.name,
    })
}

fn docker_image(name: &str, reference_only: bool, rolled_back_from: Option<String>) -> Source {
    let reference = match ImageReference::parse(name) {
        Ok(r) => r,
        Err(e) => return Source::Known(failed("InvalidReference", e.to_string())),
    };
    match (reference.digest(), reference_only) {
        // A pinned digest is the image: record it, no registry needed.
        // One rolled back says so, and from what, so status shows the pin.
        (Some(digest), _) => Source::Known(Outcome::Resolved {
            digest: digest.to_owned(),
            pull_spec: reference.pull_spec(digest),
            source: match rolled_back_from {
                Some(previous) => format!("{name} (pinned by a rollback from {previous})"),
                None => name.to_owned(),
            },
            chosen_tag: None,
            image: None,
        }),
        (None, true) => Source::Known(Outcome::Recorded {
            pull_spec: name.to_owned(),
        }),
        (None, false) => Source::Registry(reference),
    }
}

/// An alias takes the image of the end of its chain; loops, missing tags and long chains are reported.
///
/// Each hop into another namespace needs that namespace's grant to the namespace of the tag that names it.
fn follow_alias(
    tag: &ImageStreamTag,
    namespace: &str,
    cache: &impl TagLookup,
    grants: &impl GrantLookup,
) -> Result<Outcome, GrantRequest> {
    let mut chain = vec![format!("{}:{}", tag.spec.stream, tag.spec.tag)];
    let mut current = tag;
    let mut current_ns = namespace.to_owned();
    for _ in 0..MAX_ALIAS_DEPTH {
        let from = &current.spec.from;
        if from.kind != SourceKind::ImageStreamTag {
            let status = current.status.as_ref();
            return Ok(
                match (
                    status.and_then(|s| s.digest.clone()),
                    status.and_then(|s| s.pull_spec.clone()),
                ) {
                    (Some(digest), Some(pull_spec)) => Outcome::Resolved {
                        image: status.and_then(|s| s.image.clone()).map(Box::new),
                        digest,
                        pull_spec,
                        source: chain.join(" -> "),
                        chosen_tag: None,
                    },
                    _ => failed(
                        "AliasTargetNotImported",
                        format!(
                            "{} has no image yet; this tag follows it once it is imported",
                            chain.join(" -> ")
                        ),
                    ),
                },
            );
        }
        // `STREAM:TAG`, or just `TAG` for another tag of the same stream, as in OpenShift.
        let target = if from.name.contains(':') {
            from.name.parse::<StreamTagRef>()
        } else {
            format!("{}:{}", current.spec.stream, from.name).parse()
        };
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                return Ok(failed(
                    "InvalidReference",
                    format!("from.name of {}: {e}", chain.join(" -> ")),
                ));
            }
        };
        let ns = from.namespace.clone().unwrap_or_else(|| current_ns.clone());
        if let Err(refusal) = grants::require(grants, &current_ns, &ns) {
            return forbidden(refusal, &chain.join(" -> "));
        }
        let label = if ns == namespace {
            target.to_string()
        } else {
            format!("{ns}/{target}")
        };
        if chain.contains(&label) {
            chain.push(label);
            return Ok(failed(
                "AliasLoop",
                format!(
                    "the aliases form a loop: {}; point one of them at an image",
                    chain.join(" -> ")
                ),
            ));
        }
        chain.push(label);
        let Some(next) = cache.tag(&ns, &target.stream, &target.tag) else {
            return Ok(failed(
                "NotFound",
                format!(
                    "{} does not exist; create it or fix from.name",
                    chain.join(" -> ")
                ),
            ));
        };
        current = next;
        current_ns = ns;
    }
    Ok(failed(
        "AliasChainTooLong",
        format!(
            "more than {MAX_ALIAS_DEPTH} aliases in a row: {}",
            chain.join(" -> ")
        ),
    ))
}

/// `STREAM@sha256:...`: a digest some tag of the stream has pointed at.
fn stream_image(name: &str, namespace: &str, cache: &impl TagLookup) -> Outcome {
    let Some((stream, digest)) = name.split_once('@') else {
        return failed(
            "InvalidReference",
            format!("{name:?} is not of the form STREAM@sha256:<64 hex digits>"),
        );
    };
    if !is_sha256_digest(digest) {
        return failed(
            "InvalidReference",
            format!("{digest:?} is not a sha256 digest (sha256:<64 lowercase hex>)"),
        );
    }
    let statuses: Vec<_> = cache
        .tags_of(namespace, stream)
        .into_iter()
        .filter_map(|t| t.status.as_ref())
        .collect();
    let found = statuses
        .iter()
        .flat_map(|s| s.history.iter())
        .find(|h| h.digest == digest);
    match found {
        Some(h) => Outcome::Resolved {
            digest: h.digest.clone(),
            pull_spec: h.pull_spec.clone(),
            source: name.to_owned(),
            chosen_tag: None,
            image: statuses
                .iter()
                .filter_map(|s| s.image.as_ref())
                .find(|i| i.digest == digest)
                .map(|i| Box::new(i.clone())),
        },
        None => failed(
            "NotFound",
            format!("no tag of stream {namespace}/{stream} has had the image {digest}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::grants::FakeGrants;
    use crate::testing::fixtures::{NS, TagFixture, istag};

    /// A cache held in a map, standing in for the controller's watch cache.
    #[derive(Default)]
    struct FakeCache(BTreeMap<(String, String, String), ImageStreamTag>);

    impl TagLookup for FakeCache {
        fn tag(&self, namespace: &str, stream: &str, tag: &str) -> Option<&ImageStreamTag> {
            self.0.get(&(namespace.into(), stream.into(), tag.into()))
        }
        fn tags_of(&self, namespace: &str, stream: &str) -> Vec<&ImageStreamTag> {
            self.0
                .iter()
                .filter(|((n, s, _), _)| n == namespace && s == stream)
                .map(|(_, t)| t)
                .collect()
        }
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn cache(tags: Vec<ImageStreamTag>) -> FakeCache {
        FakeCache(
            tags.into_iter()
                .map(|t| (("ns".into(), t.spec.stream.clone(), t.spec.tag.clone()), t))
                .collect(),
        )
    }

    /// The source within one namespace: no grant is needed, so none is asked.
    fn src(t: &ImageStreamTag, namespace: &str, c: &FakeCache) -> Source {
        source_of(t, namespace, c, &FakeGrants::default()).expect("no grant needed")
    }

    fn reason(source: Source) -> String {
        match source {
            Source::Known(Outcome::Failed { reason, .. }) => reason,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_tag_by_name_goes_to_the_registry() {
        let t = istag(NS, "demo", "v1").follows_image("10.213.0.1:5000/berth/demo:v1");
        assert!(matches!(src(&t, "ns", &cache(vec![])), Source::Registry(_)));
    }

    #[test]
    fn pinned_digests_and_references_need_no_registry() {
        let t = istag(NS, "demo", "v1").follows_image(&format!("reg.example/demo@{D1}"));
        let Source::Known(Outcome::Resolved {
            digest, pull_spec, ..
        }) = src(&t, "ns", &cache(vec![]))
        else {
            panic!()
        };
        assert_eq!(
            (digest.as_str(), pull_spec),
            (D1, format!("reg.example/demo@{D1}"))
        );
        let mut rolled_back = t.clone();
        rolled_back.metadata.annotations = Some(
            [(
                ROLLED_BACK_FROM_ANNOTATION.to_owned(),
                r#"{"kind":"DockerImage","name":"reg.example/demo:v1"}"#.to_owned(),
            )]
            .into(),
        );
        let Source::Known(Outcome::Resolved { source, .. }) = src(&rolled_back, "ns", &cache(vec![])) else {
            panic!()
        };
        assert_eq!(
            source,
            format!("reg.example/demo@{D1} (pinned by a rollback from reg.example/demo:v1)")
        );
        let mut t = istag(NS, "demo", "v1").follows_image("reg.example/demo:v1");
        t.spec.reference = true;
        assert!(matches!(
            src(&t, "ns", &cache(vec![])),
            Source::Known(Outcome::Recorded { .. })
        ));
    }

    #[test]
    fn bad_references_are_reported() {
        for bad in [
            "reg.example/Demo:v1",
            "reg.example/demo@sha512:abc",
            "reg.example/demo@sha256:abc",
        ] {
            let t = istag(NS, "demo", "v1").follows_image(bad);
            assert_eq!(reason(src(&t, "ns", &cache(vec![]))), "InvalidReference", "{bad}");
        }
    }

    #[test]
    fn alias_chains_take_the_image_at_their_end() {
        let base = istag(NS, "demo", "v1").follows_image("reg/demo:v1").imported(D1);
        let mid = istag(NS, "demo", "stable").follows_tag("v1");
        let top = istag(NS, "demo", "latest").follows_tag("demo:stable");
        let c = cache(vec![base, mid, top.clone()]);
        let Source::Known(Outcome::Resolved { digest, source, .. }) = src(&top, "ns", &c) else {
            panic!()
        };
        assert_eq!(digest, D1);
        assert_eq!(source, "demo:latest -> demo:stable -> demo:v1");
    }

    #[test]
    fn alias_loops_missing_targets_and_unimported_targets_are_reported() {
        let a = istag(NS, "demo", "a").follows_tag("b");
        let b = istag(NS, "demo", "b").follows_tag("a");
        let c = cache(vec![a.clone(), b]);
        assert_eq!(reason(src(&a, "ns", &c)), "AliasLoop");
        let lonely = istag(NS, "demo", "x").follows_tag("nothing");
        assert_eq!(reason(src(&lonely, "ns", &cache(vec![]))), "NotFound");
        let waiting = istag(NS, "demo", "y").follows_tag("v1");
        let c = cache(vec![istag(NS, "demo", "v1").follows_image("reg/demo:v1")]);
        assert_eq!(reason(src(&waiting, "ns", &c)), "AliasTargetNotImported");
    }

    #[test]
    fn long_chains_stop() {
        let mut tags: Vec<_> = (0..40)
            .map(|i| istag(NS, "demo", &format!("t{i}")).follows_tag(&format!("t{}", i + 1)))
            .collect();
        tags.push(istag(NS, "demo", "t40").follows_image("reg/demo:v1").imported(D1));
        let first = tags[0].clone();
        assert_eq!(reason(src(&first, "ns", &cache(tags))), "AliasChainTooLong");
    }

    #[test]
    fn stream_images_are_found_in_history() {
        let c = cache(vec![
            istag(NS, "demo", "v1").follows_image("reg/demo:v1").imported(D1),
        ]);
        let t = istag(NS, "other", "pinned").follows(SourceKind::ImageStreamImage, &format!("demo@{D1}"));
        assert!(matches!(
            src(&t, "ns", &c),
            Source::Known(Outcome::Resolved { .. })
        ));
        let t = istag(NS, "other", "pinned").follows(
            SourceKind::ImageStreamImage,
            &format!("demo@sha256:{}", "2".repeat(64)),
        );
        assert_eq!(reason(src(&t, "ns", &c)), "NotFound");
    }

    /// `tag` in namespace `ns`, with `from.namespace` set.
    fn in_ns(
        ns: &str,
        mut t: ImageStreamTag,
        from_ns: Option<&str>,
    ) -> ((String, String, String), ImageStreamTag) {
        t.metadata.namespace = Some(ns.into());
        t.spec.from.namespace = from_ns.map(Into::into);
        ((ns.into(), t.spec.stream.clone(), t.spec.tag.clone()), t)
    }

    #[test]
    fn another_namespace_is_read_only_as_it_grants_and_a_denial_hides_what_it_holds() {
        let secret = in_ns(
            "team-b",
            istag(NS, "secret", "v1").follows_image("reg/s:v1").imported(D1),
            None,
        );
        let (_, alias) = in_ns(
            "team-a",
            istag(NS, "mine", "v1").follows_tag("secret:v1"),
            Some("team-b"),
        );
        let (_, missing) = in_ns(
            "team-a",
            istag(NS, "mine", "v2").follows_tag("secret:nothing"),
            Some("team-b"),
        );
        let (_, pinned) = in_ns(
            "team-a",
            istag(NS, "mine", "v3").follows(SourceKind::ImageStreamImage, &format!("secret@{D1}")),
            Some("team-b"),
        );
        let c = FakeCache([secret].into_iter().collect());

        // Nobody asked yet: the decision asks, and reads nothing of team-b.
        let ask = GrantRequest {
            consumer: "team-a".into(),
            source: "team-b".into(),
        };
        for t in [&alias, &missing, &pinned] {
            assert_eq!(
                source_of(t, "team-a", &c, &FakeGrants::default()),
                Err(ask.clone())
            );
        }

        // Denied: Forbidden, no digest, and the same words whether the tag exists or not.
        let mut denied = FakeGrants::default();
        denied.0.insert(("team-a".into(), "team-b".into()), false);
        let message = |t: &ImageStreamTag| match source_of(t, "team-a", &c, &denied) {
            Ok(Source::Known(Outcome::Failed { reason, message })) => {
                assert_eq!(reason, "Forbidden");
                message.replace("mine:v2", "mine:v1")
            }
            other => panic!("expected Forbidden, got {other:?}"),
        };
        assert_eq!(message(&alias), message(&missing));
        assert!(!message(&alias).contains(D1), "no digest of team-b");
        assert!(message(&alias).contains("--group=system:serviceaccounts:team-a"));
        assert!(message(&pinned).contains("kubectl -n team-b create rolebinding"));

        // Granted: resolved as within one namespace.
        let granted = FakeGrants::granting(&[("team-a", "team-b")]);
        for t in [&alias, &pinned] {
            assert!(matches!(
                source_of(t, "team-a", &c, &granted),
                Ok(Source::Known(Outcome::Resolved { digest, .. })) if digest == D1
            ));
        }
        assert_eq!(
            reason(source_of(&missing, "team-a", &c, &granted).unwrap()),
            "NotFound"
        );
    }

    #[test]
    fn each_hop_of_a_chain_needs_the_grant_of_the_namespace_it_enters_to_the_one_it_leaves() {
        // team-a/app:v1 -> team-b/mid:v1 -> team-c/base:v1
        let base = in_ns(
            "team-c",
            istag(NS, "base", "v1").follows_image("reg/b:v1").imported(D1),
            None,
        );
        let mid = in_ns(
            "team-b",
            istag(NS, "mid", "v1").follows_tag("base:v1"),
            Some("team-c"),
        );
        let (_, top) = in_ns(
            "team-a",
            istag(NS, "app", "v1").follows_tag("mid:v1"),
            Some("team-b"),
        );
        let c = FakeCache([base, mid].into_iter().collect());
        // team-c granting team-a is not enough: team-b's tag is the one that reads team-c.
        let mut grants = FakeGrants::granting(&[("team-a", "team-b"), ("team-a", "team-c")]);
        grants.0.insert(("team-b".into(), "team-c".into()), false);
        assert_eq!(
            reason(source_of(&top, "team-a", &c, &grants).unwrap()),
            "Forbidden"
        );
        let grants = FakeGrants::granting(&[("team-a", "team-b"), ("team-b", "team-c")]);
        assert!(matches!(
            source_of(&top, "team-a", &c, &grants),
            Ok(Source::Known(Outcome::Resolved { .. }))
        ));
    }
}
