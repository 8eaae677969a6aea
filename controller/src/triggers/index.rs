//! The trigger index (a [`FollowerIndex`]): from a tag to the annotated objects that follow it, so that a tag that moves enqueues
//! exactly its followers. It is kept in step with the objects' watches, event by event, and rebuilt from the
//! full list after every (re)list, so it never holds more than the caches do.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher;

use super::annotation::{TagKey, triggers_of};
use super::target::TargetKind;
use crate::followers::FollowerIndex;

/// One annotated object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Its kind.
    pub kind: TargetKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Tags and the annotated objects that follow them ([`crate::followers`]' index).
pub type TriggerIndex = FollowerIndex<ObjectKey>;

/// Forgets every object of `kind` that is not in `keep` (after a list of that kind), returning them.
pub fn retain_kind(index: &mut TriggerIndex, kind: TargetKind, keep: &BTreeSet<ObjectKey>) -> Vec<ObjectKey> {
    index.retain(|o| o.kind != kind || keep.contains(o))
}

/// The key of `object` of `kind`, when it has a namespace and a name.
pub fn key_of(kind: TargetKind, object: &DynamicObject) -> Option<ObjectKey> {
    Some(ObjectKey {
        kind,
        namespace: object.namespace()?,
        name: object.metadata.name.clone()?,
    })
}

/// The tags `object` follows with triggers that are not paused. An annotation that does not parse follows
/// nothing (its object is reconciled when it changes, and reported then).
pub fn followed_tags(kind: TargetKind, object: &DynamicObject) -> BTreeSet<TagKey> {
    let namespace = object.namespace().unwrap_or_default();
    match triggers_of(object.annotations(), &namespace, kind) {
        Some(Ok(triggers)) => triggers
            .into_iter()
            .filter(|t| !t.paused)
            .map(|t| t.from)
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// Follows one kind's watch events into the index.
#[derive(Debug)]
pub struct IndexFeed {
    kind: TargetKind,
    /// The objects seen since a (re)list began.
    listing: Option<BTreeSet<ObjectKey>>,
}

impl IndexFeed {
    /// A feed for the watch of `kind`.
    pub fn new(kind: TargetKind) -> Self {
        Self { kind, listing: None }
    }

    /// Applies one watch event: objects seen are (re)indexed at once, deleted ones forgotten, and when a
    /// (re)list is complete the objects of the kind it did not list are forgotten. Returns the objects
    /// forgotten.
    pub fn observe(
        &mut self,
        index: &mut TriggerIndex,
        event: &watcher::Event<DynamicObject>,
    ) -> Vec<ObjectKey> {
        let kind = self.kind;
        match event {
            watcher::Event::Apply(o) => {
                if let Some(key) = key_of(kind, o) {
                    index.set(key, followed_tags(kind, o));
                }
                Vec::new()
            }
            watcher::Event::Delete(o) => key_of(kind, o)
                .map(|key| {
                    index.remove(&key);
                    vec![key]
                })
                .unwrap_or_default(),
            watcher::Event::Init => {
                self.listing = Some(BTreeSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(o) => {
                if let Some(key) = key_of(kind, o) {
                    index.set(key.clone(), followed_tags(kind, o));
                    self.listing.get_or_insert_default().insert(key);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                retain_kind(index, kind, &listed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::annotation::OPENSHIFT_TRIGGERS;
    use serde_json::json;

    fn tag(stream: &str, tag: &str) -> TagKey {
        TagKey {
            namespace: "ns".into(),
            stream: stream.into(),
            tag: tag.into(),
        }
    }

    fn object(name: &str, follows: &[(&str, bool)]) -> DynamicObject {
        let triggers: Vec<_> = follows
            .iter()
            .enumerate()
            .map(|(i, (from, paused))| {
                json!({"from": {"kind": "ImageStreamTag", "name": from},
                       "fieldPath": format!("spec.template.spec.containers[?(@.name==\"c{i}\")].image"),
                       "paused": paused})
            })
            .collect();
        let mut o = DynamicObject::new(name, &TargetKind::Deployment.api_resource("v1")).within("ns");
        o.metadata.annotations = Some([(OPENSHIFT_TRIGGERS.to_owned(), json!(triggers).to_string())].into());
        o
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: TargetKind::Deployment,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_tag_finds_exactly_its_followers() {
        let mut index = TriggerIndex::default();
        let mut feed = IndexFeed::new(TargetKind::Deployment);
        for o in [
            object("a", &[("app:live", false), ("side:v1", false)]),
            object("b", &[("app:live", false)]),
            object("paused", &[("app:live", true)]),
            object("other", &[("app:v2", false)]),
        ] {
            feed.observe(&mut index, &watcher::Event::Apply(o));
        }
        assert_eq!(index.followers(&tag("app", "live")), vec![key("a"), key("b")]);
        assert_eq!(index.followers(&tag("side", "v1")), vec![key("a")]);
        assert!(index.followers(&tag("app", "v3")).is_empty());
        assert_eq!(index.len(), 3);

        // A changed annotation moves the object; a deletion forgets it.
        feed.observe(
            &mut index,
            &watcher::Event::Apply(object("a", &[("app:v2", false)])),
        );
        assert_eq!(index.followers(&tag("app", "live")), vec![key("b")]);
        assert!(index.followers(&tag("side", "v1")).is_empty());
        assert_eq!(index.followers(&tag("app", "v2")), vec![key("a"), key("other")]);
        let gone = feed.observe(&mut index, &watcher::Event::Delete(object("b", &[])));
        assert_eq!(gone, vec![key("b")]);
        assert!(index.followers(&tag("app", "live")).is_empty());
    }

    #[test]
    fn unannotated_and_malformed_objects_follow_nothing() {
        let mut index = TriggerIndex::default();
        let mut feed = IndexFeed::new(TargetKind::Deployment);
        let plain = DynamicObject::new("plain", &TargetKind::Deployment.api_resource("v1")).within("ns");
        let mut broken = object("broken", &[]);
        broken.metadata.annotations = Some([(OPENSHIFT_TRIGGERS.to_owned(), "[{".to_owned())].into());
        feed.observe(&mut index, &watcher::Event::Apply(plain));
        feed.observe(&mut index, &watcher::Event::Apply(broken));
        assert!(index.is_empty());
    }

    #[test]
    fn a_relist_rebuilds_the_kind_from_what_it_lists() {
        let mut index = TriggerIndex::default();
        let mut feed = IndexFeed::new(TargetKind::Deployment);
        feed.observe(
            &mut index,
            &watcher::Event::Apply(object("deleted-while-away", &[("app:live", false)])),
        );
        let sts = ObjectKey {
            kind: TargetKind::StatefulSet,
            ..key("db")
        };
        index.set(sts.clone(), [tag("app", "live")].into());

        feed.observe(&mut index, &watcher::Event::Init);
        feed.observe(
            &mut index,
            &watcher::Event::InitApply(object("kept", &[("app:live", false)])),
        );
        // Until the list is complete, the old entries still answer, and the listed ones already do.
        assert_eq!(index.followers(&tag("app", "live")).len(), 3);
        let gone = feed.observe(&mut index, &watcher::Event::InitDone);
        assert_eq!(gone, vec![key("deleted-while-away")]);
        assert_eq!(index.followers(&tag("app", "live")), vec![key("kept"), sts]);
    }
}
