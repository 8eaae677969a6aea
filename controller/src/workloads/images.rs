//! Which image each container of a Workload runs: `imageFrom` and short `STREAM:TAG` names resolved through
//! the tag cache to `REPO@sha256:...`; a paused trigger keeps what the Workload runs now.

use berth_api::apps::{ContainerImage, Workload};
use berth_api::names::StreamTagRef;

use crate::grants::{self, GrantLookup, GrantRequest, Refusal};
use crate::import::source::TagLookup;

/// Looks up streams' `lookupPolicy.local`.
pub trait StreamLookup {
    /// Whether the stream `namespace/stream` exists and lets its tags be named short.
    fn local_lookup(&self, namespace: &str, stream: &str) -> bool;
}

/// Why a container's image could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// The container.
    pub container: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// The image of every container, in order, or every container whose image cannot be resolved.
pub type Resolution = Result<Vec<ContainerImage>, Vec<Unresolved>>;

/// Resolves the image of every container. A tag of another namespace is read only as that namespace grants
/// (see [`crate::grants`]); a grant nobody knows yet is asked for.
pub fn resolve_images(
    workload: &Workload,
    namespace: &str,
    tags: &impl TagLookup,
    streams: &impl StreamLookup,
    grants: &impl GrantLookup,
) -> Result<Resolution, GrantRequest> {
    let paused = workload
        .spec
        .image_change_trigger
        .as_ref()
        .is_some_and(|t| t.paused);
    let current = workload
        .status
        .as_ref()
        .map(|s| s.images.as_slice())
        .unwrap_or_default();
    let mut images = Vec::new();
    let mut problems = Vec::new();
    for container in &workload.spec.template.spec.containers {
        let unresolved = |message: String| Unresolved {
            container: container.name.clone(),
            message,
        };
        let (tag_ref, tag_namespace) = match (&container.image_from, &container.image) {
            (Some(from), _) => match from.name.parse::<StreamTagRef>() {
                Ok(r) => (r, from.namespace.clone().unwrap_or_else(|| namespace.to_owned())),
                Err(e) => {
                    problems.push(unresolved(format!("imageFrom.name: {e}")));
                    continue;
                }
            },
            (None, Some(image)) => match short_stream_name(image, namespace, streams) {
                Some(r) => (r, namespace.to_owned()),
                None => {
                    images.push(ContainerImage {
                        container: container.name.clone(),
                        from: None,
                        image: image.clone(),
                    });
                    continue;
                }
            },
            (None, None) => {
                problems.push(unresolved("neither image nor imageFrom is set".to_owned()));
                continue;
            }
        };
        let from = format!("{tag_namespace}/{tag_ref}");
        match grants::require(grants, namespace, &tag_namespace) {
            Ok(()) => {}
            Err(Refusal::Ask(request)) => return Err(request),
            Err(Refusal::Forbidden(message)) => {
                problems.push(unresolved(format!("imageFrom {from}: {message}")));
                continue;
            }
        }
        let kept = current
            .iter()
            .find(|c| c.container == container.name && c.from.as_deref() == Some(from.as_str()));
        if let (true, Some(kept)) = (paused, kept) {
            images.push(kept.clone());
            continue;
        }
        match tags.tag(&tag_namespace, &tag_ref.stream, &tag_ref.tag) {
            None => problems.push(unresolved(format!("image stream tag {from} does not exist"))),
            Some(tag) => match tag
                .status
                .as_ref()
                .and_then(|s| s.digest.as_ref().and(s.pull_spec.clone()))
            {
                Some(pull_spec) => images.push(ContainerImage {
                    container: container.name.clone(),
                    from: Some(from),
                    image: pull_spec,
                }),
                None => problems.push(unresolved(format!(
                    "image stream tag {from} has no image yet (see its ImportSuccess condition)"
                ))),
            },
        }
    }
    Ok(if problems.is_empty() {
        Ok(images)
    } else {
        Err(problems)
    })
}

/// `STREAM:TAG` naming a stream of this namespace with `lookupPolicy.local`, as a tag reference.
fn short_stream_name(image: &str, namespace: &str, streams: &impl StreamLookup) -> Option<StreamTagRef> {
    if image.contains('/') || image.contains('@') {
        return None;
    }
    let r: StreamTagRef = image.parse().ok()?;
    streams.local_lookup(namespace, &r.stream).then_some(r)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::grants::FakeGrants;
    use crate::testing::fixtures::{self, TagFixture, istag};
    use berth_api::apps::{
        Container, ImageChangeTrigger, ImageFrom, PodSpec, PodTemplate, WorkloadSpec, WorkloadStatus,
    };
    use berth_api::image::ImageStreamTag;

    /// Tags and streams held in maps, standing in for the controller's caches.
    #[derive(Default)]
    struct FakeCaches {
        tags: BTreeMap<(String, String, String), ImageStreamTag>,
        local_streams: Vec<(String, String)>,
    }

    impl TagLookup for FakeCaches {
        fn tag(&self, namespace: &str, stream: &str, tag: &str) -> Option<&ImageStreamTag> {
            self.tags.get(&(namespace.into(), stream.into(), tag.into()))
        }
        fn tags_of(&self, _: &str, _: &str) -> Vec<&ImageStreamTag> {
            Vec::new()
        }
    }

    impl StreamLookup for FakeCaches {
        fn local_lookup(&self, namespace: &str, stream: &str) -> bool {
            self.local_streams.contains(&(namespace.into(), stream.into()))
        }
    }

    fn with_tag(
        mut caches: FakeCaches,
        ns: &str,
        stream: &str,
        tag: &str,
        digest: Option<char>,
    ) -> FakeCaches {
        let t = istag(ns, stream, tag);
        let t = match digest {
            Some(d) => t.imported(&fixtures::digest(d)),
            None => t,
        };
        caches.tags.insert((ns.into(), stream.into(), tag.into()), t);
        caches
    }

    /// Resolution within one namespace: no grant is needed, so none is asked.
    fn resolve(wl: &Workload, ns: &str, tags: &FakeCaches, streams: &FakeCaches) -> Resolution {
        resolve_images(wl, ns, tags, streams, &FakeGrants::default()).expect("no grant needed")
    }

    fn workload(containers: Vec<Container>) -> Workload {
        Workload::new(
            "web",
            WorkloadSpec {
                replicas: 1,
                template: PodTemplate {
                    metadata: None,
                    spec: PodSpec {
                        containers,
                        ..Default::default()
                    },
                },
                ..Default::default()
            },
        )
    }

    fn from(name: &str) -> Container {
        Container {
            name: "app".into(),
            image_from: Some(ImageFrom {
                name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn image_from_resolves_to_the_tags_pull_spec() {
        let caches = with_tag(FakeCaches::default(), "ns", "demo", "stable", Some('a'));
        let images = resolve(&workload(vec![from("demo:stable")]), "ns", &caches, &caches).unwrap();
        assert_eq!(images[0].image, format!("reg/demo@sha256:{}", "a".repeat(64)));
        assert_eq!(images[0].from.as_deref(), Some("ns/demo:stable"));
    }

    #[test]
    fn short_names_resolve_only_with_local_lookup() {
        let plain = Container {
            name: "app".into(),
            image: Some("demo:stable".into()),
            ..Default::default()
        };
        let mut caches = with_tag(FakeCaches::default(), "ns", "demo", "stable", Some('a'));
        let images = resolve(&workload(vec![plain.clone()]), "ns", &caches, &caches).unwrap();
        assert_eq!(
            images[0].image, "demo:stable",
            "without lookupPolicy.local the name is an image"
        );
        caches.local_streams.push(("ns".into(), "demo".into()));
        let images = resolve(&workload(vec![plain]), "ns", &caches, &caches).unwrap();
        assert!(images[0].image.starts_with("reg/demo@sha256:"));
    }

    #[test]
    fn missing_and_unimported_tags_are_reported_per_container() {
        let caches = with_tag(FakeCaches::default(), "ns", "demo", "new", None);
        let err = resolve(
            &workload(vec![from("demo:missing"), from("demo:new")]),
            "ns",
            &caches,
            &caches,
        )
        .unwrap_err();
        assert!(err[0].message.contains("does not exist"), "{err:?}");
        assert!(err[1].message.contains("no image yet"), "{err:?}");
    }

    #[test]
    fn a_paused_trigger_keeps_the_current_digest() {
        let caches = with_tag(FakeCaches::default(), "ns", "demo", "stable", Some('b'));
        let mut wl = workload(vec![from("demo:stable")]);
        wl.spec.image_change_trigger = Some(ImageChangeTrigger { paused: true });
        let old = ContainerImage {
            container: "app".into(),
            from: Some("ns/demo:stable".into()),
            image: "reg/demo@sha256:old".into(),
        };
        wl.status = Some(WorkloadStatus {
            images: vec![old.clone()],
            ..Default::default()
        });
        assert_eq!(resolve(&wl, "ns", &caches, &caches).unwrap(), vec![old]);
        wl.spec.image_change_trigger = Some(ImageChangeTrigger { paused: false });
        assert!(
            resolve(&wl, "ns", &caches, &caches).unwrap()[0]
                .image
                .ends_with(&"b".repeat(64))
        );
    }

    #[test]
    fn image_from_another_namespace_needs_its_grant() {
        let caches = with_tag(FakeCaches::default(), "team-b", "secret", "v1", Some('c'));
        let mut c = from("secret:v1");
        c.image_from.as_mut().unwrap().namespace = Some("team-b".into());
        let wl = workload(vec![c]);
        let ask = resolve_images(&wl, "team-a", &caches, &caches, &FakeGrants::default());
        assert_eq!(ask.unwrap_err().source, "team-b");
        let mut denied = FakeGrants::default();
        denied.0.insert(("team-a".into(), "team-b".into()), false);
        let err = resolve_images(&wl, "team-a", &caches, &caches, &denied)
            .unwrap()
            .unwrap_err();
        assert!(
            err[0].message.contains("does not grant namespace team-a"),
            "{err:?}"
        );
        assert!(!err[0].message.contains(&"c".repeat(64)), "{err:?}");
        let granted = FakeGrants::granting(&[("team-a", "team-b")]);
        let images = resolve_images(&wl, "team-a", &caches, &caches, &granted)
            .unwrap()
            .unwrap();
        assert!(images[0].image.ends_with(&"c".repeat(64)));
    }
}
