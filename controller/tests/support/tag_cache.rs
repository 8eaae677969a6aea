//! The tag cache both webhook suites start from: `tests/webhooks.rs` and the unit tests of
//! `src/webhook/tests.rs`, which include this file by `#[path]` (integration tests cannot see `#[cfg(test)]`
//! items, and the library should not export test scaffolding). It names only `berth_api` and `kube`, so it
//! compiles in either crate.

use berth_api::image::{ImageStreamTag, ImageStreamTagSpec, SourceKind, TagSource};
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

/// Tag `name` of stream `s` in namespace `ns`, following the image `from`.
pub fn tag(name: &str, from: &str) -> ImageStreamTag {
    let mut t = ImageStreamTag::new(
        name,
        ImageStreamTagSpec {
            stream: "s".into(),
            tag: name.into(),
            from: TagSource {
                kind: SourceKind::DockerImage,
                name: from.into(),
                namespace: None,
            },
            ..Default::default()
        },
    );
    t.metadata.namespace = Some("ns".into());
    t
}

/// A synced cache holding `tags`, as the controller's reflector would have it.
pub fn store(tags: impl IntoIterator<Item = ImageStreamTag>) -> Store<ImageStreamTag> {
    let mut writer = Writer::<ImageStreamTag>::default();
    let store = writer.as_reader();
    writer.apply_watcher_event(&Event::InitDone);
    for t in tags {
        writer.apply_watcher_event(&Event::Apply(t));
    }
    store
}
