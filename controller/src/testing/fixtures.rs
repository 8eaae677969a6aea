//! The objects tests start from: one ImageStreamTag builder (and a stream and a Workload) for every test of
//! the crate, and caches filled as the controller's reflectors fill them.
//!
//! The unit tests reach it as `crate::testing::fixtures`; the integration tests include this file by
//! `#[path]` (they cannot see `#[cfg(test)]` items, and the library exports no test scaffolding), so it names
//! only `berth_api`, `kube` and `k8s_openapi`.
#![allow(dead_code)]

use std::hash::Hash;

use berth_api::apps::{Container, ImageFrom, PodSpec, PodTemplate, Workload, WorkloadSpec};
use berth_api::image::{
    IMPORT_SUCCESS, ImageStream, ImageStreamSpec, ImageStreamTag, ImageStreamTagSpec, ImageStreamTagStatus,
    SourceKind, TagEvent, TagImportPolicy, TagReference, TagSource,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

/// The namespace of every fixture unless a test says otherwise.
pub const NS: &str = "ns";

/// `sha256:` and 64 times `c`.
pub fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// Tag `tag` of `stream` in `namespace`, named `STREAM.TAG`, following nothing yet.
pub fn istag(namespace: &str, stream: &str, tag: &str) -> ImageStreamTag {
    let mut t = ImageStreamTag::new(
        &format!("{stream}.{tag}"),
        ImageStreamTagSpec {
            stream: stream.into(),
            tag: tag.into(),
            ..Default::default()
        },
    );
    t.metadata.namespace = Some(namespace.into());
    t
}

/// Builds on an [`istag`].
pub trait TagFixture: Sized {
    /// Another object name.
    fn named(self, name: &str) -> Self;
    /// No namespace (a tag as a pure decision sees it when the namespace is passed apart).
    fn without_namespace(self) -> Self;
    /// Follows `from` of `kind`.
    fn follows(self, kind: SourceKind, from: &str) -> Self;
    /// Follows the registry image `from` (`REPO:TAG` or `REPO@sha256:...`).
    fn follows_image(self, from: &str) -> Self {
        self.follows(SourceKind::DockerImage, from)
    }
    /// Follows the tag `from` (`STREAM:TAG`, or `TAG` of the same stream): an alias.
    fn follows_tag(self, from: &str) -> Self {
        self.follows(SourceKind::ImageStreamTag, from)
    }
    /// `from.namespace`.
    fn source_namespace(self, namespace: &str) -> Self;
    /// Uid and generation, as the API server sets them.
    fn stored(self, uid: &str, generation: i64) -> Self;
    /// `importPolicy.insecure` and `importPolicy.scheduled`.
    fn import_policy(self, insecure: bool, scheduled: bool) -> Self;
    /// A status with only a pull spec (what triggers read).
    fn pulled(self, pull_spec: &str) -> Self;
    /// Imported at `digest` (pull spec `reg/STREAM@DIGEST`): digest, pull spec, one history entry, and
    /// `ImportSuccess=True` for the generation it has.
    fn imported(self, digest: &str) -> Self {
        let repository = format!("reg/{}", self.stream_name());
        self.imported_from(&repository, digest)
    }
    /// Imported at `digest` of `repository` (pull spec `REPOSITORY@DIGEST`), as [`imported`](Self::imported).
    fn imported_from(self, repository: &str, digest: &str) -> Self;
    /// The stream it belongs to.
    fn stream_name(&self) -> String;
}

impl TagFixture for ImageStreamTag {
    fn named(mut self, name: &str) -> Self {
        self.metadata.name = Some(name.into());
        self
    }

    fn without_namespace(mut self) -> Self {
        self.metadata.namespace = None;
        self
    }

    fn follows(mut self, kind: SourceKind, from: &str) -> Self {
        self.spec.from = TagSource {
            kind,
            name: from.into(),
            namespace: self.spec.from.namespace.take(),
        };
        self
    }

    fn source_namespace(mut self, namespace: &str) -> Self {
        self.spec.from.namespace = Some(namespace.into());
        self
    }

    fn stored(mut self, uid: &str, generation: i64) -> Self {
        self.metadata.uid = Some(uid.into());
        self.metadata.generation = Some(generation);
        self
    }

    fn import_policy(mut self, insecure: bool, scheduled: bool) -> Self {
        self.spec.import_policy = Some(TagImportPolicy {
            insecure,
            scheduled,
            ..Default::default()
        });
        self
    }

    fn stream_name(&self) -> String {
        self.spec.stream.clone()
    }

    fn pulled(mut self, pull_spec: &str) -> Self {
        self.status = Some(ImageStreamTagStatus {
            pull_spec: Some(pull_spec.into()),
            ..Default::default()
        });
        self
    }

    fn imported_from(mut self, repository: &str, digest: &str) -> Self {
        let pull_spec = format!("{repository}@{digest}");
        let generation = self.metadata.generation;
        self.status = Some(ImageStreamTagStatus {
            digest: Some(digest.into()),
            pull_spec: Some(pull_spec.clone()),
            observed_generation: generation,
            history: vec![TagEvent {
                created: Time(Default::default()),
                digest: digest.into(),
                pull_spec,
                tag: None,
                generation,
            }],
            conditions: vec![Condition {
                type_: IMPORT_SUCCESS.into(),
                status: "True".into(),
                reason: "Imported".into(),
                message: String::new(),
                last_transition_time: Time(Default::default()),
                observed_generation: generation,
            }],
            ..Default::default()
        });
        self
    }
}

/// Stream `name` in `namespace` with uid `NAME-uid` and the inline tags `(tag, registry image)`.
pub fn stream(namespace: &str, name: &str, tags: &[(&str, &str)]) -> ImageStream {
    let mut s = ImageStream::new(
        name,
        ImageStreamSpec {
            tags: tags
                .iter()
                .map(|(tag, from)| TagReference {
                    name: (*tag).into(),
                    from: Some(TagSource {
                        kind: SourceKind::DockerImage,
                        name: (*from).into(),
                        namespace: None,
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    );
    s.metadata.namespace = Some(namespace.into());
    s.metadata.uid = Some(format!("{name}-uid"));
    s.metadata.generation = Some(1);
    s
}

/// A container named `name` running `image` (a reference, or `STREAM:TAG` with a local lookup).
pub fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        ..Default::default()
    }
}

/// A container named `name` running the tag `from` (`STREAM:TAG`) of `namespace` (its own when `None`).
pub fn container_from(name: &str, from: &str, namespace: Option<&str>) -> Container {
    Container {
        name: name.into(),
        image: None,
        image_from: Some(ImageFrom {
            kind: Default::default(),
            name: from.into(),
            namespace: namespace.map(Into::into),
        }),
        ..Default::default()
    }
}

/// Workload `name` in `namespace` with uid `NAME-uid`, `replicas` of the `containers`.
pub fn workload(namespace: &str, name: &str, replicas: i32, containers: Vec<Container>) -> Workload {
    let mut w = Workload::new(
        name,
        WorkloadSpec {
            replicas,
            template: PodTemplate {
                metadata: None,
                spec: PodSpec {
                    containers,
                    ..Default::default()
                },
            },
            ..Default::default()
        },
    );
    w.metadata.namespace = Some(namespace.into());
    w.metadata.uid = Some(format!("{name}-uid"));
    w.metadata.generation = Some(1);
    w
}

/// A synced cache holding `objects`, as the controller's reflector has it after its first list.
pub fn store<K>(objects: impl IntoIterator<Item = K>) -> Store<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    let mut writer = Writer::<K>::default();
    let store = writer.as_reader();
    writer.apply_watcher_event(&Event::Init);
    for o in objects {
        writer.apply_watcher_event(&Event::InitApply(o));
    }
    writer.apply_watcher_event(&Event::InitDone);
    store
}
