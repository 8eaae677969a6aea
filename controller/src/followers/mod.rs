//! Who follows a tag: what each kind of follower follows, defined once (an alias: a tag whose `from` names
//! another tag, [`alias_of`]; a Workload: `imageFrom` or a short `STREAM:TAG` image, [`workload_follows`];
//! annotation triggers), and one index from a tag to its followers ([`FollowerIndex`]): the triggers keep one
//! across their reconciles, import aliases and Workloads one kept in step with their watch caches
//! ([`live::LiveIndex`]). Pure but for `live`: no cluster, no cache.
//!
//! Namespaces are resolved here, once: a reference without a namespace means the follower's own. Whether a
//! follower may read another namespace is not this module's business: the grant check (see
//! [`crate::grants`]) runs when the follower is reconciled.

pub mod live;

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use berth_api::apps::Workload;
use berth_api::image::{ImageStreamTag, SourceKind};
use kube::ResourceExt;

/// A tag, with its namespace resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagKey {
    /// The stream's namespace.
    pub namespace: String,
    /// The stream.
    pub stream: String,
    /// The tag.
    pub tag: String,
}

impl TagKey {
    /// The key of `tag` itself.
    pub fn of(tag: &ImageStreamTag) -> Self {
        Self {
            namespace: tag.namespace().unwrap_or_default(),
            stream: tag.spec.stream.clone(),
            tag: tag.spec.tag.clone(),
        }
    }
}

impl std::fmt::Display for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.stream, self.tag)
    }
}

/// Tags and the objects (of key `O`) that follow them.
#[derive(Debug)]
pub struct FollowerIndex<O> {
    by_tag: HashMap<TagKey, BTreeSet<O>>,
    by_object: HashMap<O, BTreeSet<TagKey>>,
}

impl<O> Default for FollowerIndex<O> {
    fn default() -> Self {
        Self {
            by_tag: HashMap::new(),
            by_object: HashMap::new(),
        }
    }
}

impl<O: Clone + Ord + Hash> FollowerIndex<O> {
    /// An index of `objects` and the tags each follows.
    pub fn build(objects: impl IntoIterator<Item = (O, BTreeSet<TagKey>)>) -> Self {
        let mut index = Self::default();
        for (object, tags) in objects {
            index.set(object, tags);
        }
        index
    }

    /// Records that `object` follows `tags` now (and nothing else); no tags forgets it.
    pub fn set(&mut self, object: O, tags: BTreeSet<TagKey>) {
        self.remove(&object);
        if tags.is_empty() {
            return;
        }
        for tag in &tags {
            self.by_tag.entry(tag.clone()).or_default().insert(object.clone());
        }
        self.by_object.insert(object, tags);
    }

    /// Forgets `object`.
    pub fn remove(&mut self, object: &O) {
        for tag in self.by_object.remove(object).unwrap_or_default() {
            if let Some(followers) = self.by_tag.get_mut(&tag) {
                followers.remove(object);
                if followers.is_empty() {
                    self.by_tag.remove(&tag);
                }
            }
        }
    }

    /// Forgets every object for which `keep` is false, returning them.
    pub fn retain(&mut self, mut keep: impl FnMut(&O) -> bool) -> Vec<O> {
        let stale: Vec<O> = self.by_object.keys().filter(|o| !keep(o)).cloned().collect();
        for object in &stale {
            self.remove(object);
        }
        stale
    }

    /// The objects that follow `tag`, in order.
    pub fn followers(&self, tag: &TagKey) -> Vec<O> {
        self.by_tag
            .get(tag)
            .map(|f| f.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many objects follow at least one tag.
    pub fn len(&self) -> usize {
        self.by_object.len()
    }

    /// Whether no object follows any tag.
    pub fn is_empty(&self) -> bool {
        self.by_object.is_empty()
    }
}

/// `STREAM:TAG` split at its first `:`, or `None` without one.
fn stream_and_tag(name: &str) -> Option<(&str, &str)> {
    name.split_once(':')
}

/// The tag an alias follows (`from.kind: ImageStreamTag`, `from.name` `STREAM:TAG` or just `TAG` of its own
/// stream, in `from.namespace` or its own); nothing for a tag that is no alias.
pub fn alias_of(tag: &ImageStreamTag) -> BTreeSet<TagKey> {
    let from = &tag.spec.from;
    if from.kind != SourceKind::ImageStreamTag {
        return BTreeSet::new();
    }
    let own = tag.namespace().unwrap_or_default();
    let (stream, name) = stream_and_tag(&from.name).unwrap_or((&tag.spec.stream, &from.name));
    BTreeSet::from([TagKey {
        namespace: from.namespace.clone().unwrap_or(own),
        stream: stream.to_owned(),
        tag: name.to_owned(),
    }])
}

/// The tags a Workload's containers follow: `imageFrom` (`STREAM:TAG`, in its namespace or the Workload's),
/// or an `image` written `STREAM:TAG`, which names a tag of the Workload's namespace when that stream allows
/// local lookup (followed whether it does or not: the reconcile decides).
pub fn workload_follows(workload: &Workload) -> BTreeSet<TagKey> {
    let own = workload.namespace().unwrap_or_default();
    workload
        .spec
        .template
        .spec
        .containers
        .iter()
        .filter_map(|c| {
            let (name, namespace) = match (&c.image_from, &c.image) {
                (Some(from), _) => (&from.name, from.namespace.clone()),
                (None, Some(image)) => (image, None),
                (None, None) => return None,
            };
            let (stream, tag) = stream_and_tag(name)?;
            Some(TagKey {
                namespace: namespace.unwrap_or_else(|| own.clone()),
                stream: stream.to_owned(),
                tag: tag.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures::{NS, TagFixture, container, container_from, istag, workload};

    fn key(namespace: &str, stream: &str, tag: &str) -> TagKey {
        TagKey {
            namespace: namespace.into(),
            stream: stream.into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn an_index_answers_exactly_the_followers_of_a_tag_and_moves_them() {
        let mut index = FollowerIndex::build([
            (
                "a",
                BTreeSet::from([key(NS, "app", "live"), key(NS, "side", "v1")]),
            ),
            ("b", BTreeSet::from([key(NS, "app", "live")])),
            ("c", BTreeSet::new()),
        ]);
        assert_eq!(index.followers(&key(NS, "app", "live")), vec!["a", "b"]);
        assert_eq!(index.followers(&key("other", "app", "live")), Vec::<&str>::new());
        assert_eq!(index.len(), 2);
        index.set("a", BTreeSet::from([key(NS, "app", "v2")]));
        assert_eq!(index.followers(&key(NS, "app", "live")), vec!["b"]);
        assert!(index.followers(&key(NS, "side", "v1")).is_empty());
        assert_eq!(index.retain(|o| *o != "b"), vec!["b"]);
        assert!(index.followers(&key(NS, "app", "live")).is_empty());
        index.remove(&"a");
        assert!(index.is_empty());
    }

    #[test]
    fn an_alias_follows_its_target_in_its_own_namespace_unless_it_names_one() {
        let short = istag(NS, "demo", "latest").follows_tag("v1");
        assert_eq!(alias_of(&short), BTreeSet::from([key(NS, "demo", "v1")]));
        let long = istag(NS, "demo", "latest").follows_tag("base:v2");
        assert_eq!(alias_of(&long), BTreeSet::from([key(NS, "base", "v2")]));
        let across = istag(NS, "demo", "latest")
            .follows_tag("base:v2")
            .source_namespace("team-b");
        assert_eq!(alias_of(&across), BTreeSet::from([key("team-b", "base", "v2")]));
        let image = istag(NS, "demo", "v1").follows_image("reg/demo:v1");
        assert!(alias_of(&image).is_empty());
    }

    #[test]
    fn a_workload_follows_its_image_from_tags_and_its_short_names() {
        let w = workload(
            NS,
            "web",
            1,
            vec![
                container_from("a", "app:live", None),
                container_from("b", "base:v1", Some("team-b")),
                container("c", "side:v2"),
                // No `:`: names no tag.
                container_from("d", "app", None),
            ],
        );
        assert_eq!(
            workload_follows(&w),
            BTreeSet::from([
                key(NS, "app", "live"),
                key("team-b", "base", "v1"),
                key(NS, "side", "v2")
            ])
        );
    }
}
