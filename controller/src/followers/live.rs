//! A [`FollowerIndex`] kept in step with a watch cache: which objects of kind `K` follow which tags, updated
//! from a subscription of the shared watch of `K` ([`crate::caches::shared`]). The Workload controller asks it
//! which Workloads a changed tag concerns, and the import which aliases follow a changed tag, instead of
//! scanning every object of the cache on every tag event.
//!
//! Each object the subscription delivers is indexed as the cache holds it at that moment (the watch updates the
//! cache before it feeds its subscribers), and forgotten when the cache no longer holds it (deleted).

use std::collections::BTreeSet;
use std::future::{Future, ready};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::{FollowerIndex, TagKey};
use crate::caches::{Cached, Subscription};

/// What a `K` follows.
pub type Follows<K> = fn(&K) -> BTreeSet<TagKey>;

/// An object by namespace and name: ordered, as the index keeps its followers.
type Key = (Option<String>, String);

fn key<K: Cached>(object: &K) -> Key {
    (object.namespace(), object.name_any())
}

/// The followers of each tag among the objects of a cache.
pub struct LiveIndex<K: Cached> {
    index: Arc<Mutex<FollowerIndex<Key>>>,
    kind: std::marker::PhantomData<fn() -> K>,
}

impl<K: Cached> Clone for LiveIndex<K> {
    fn clone(&self) -> Self {
        Self {
            index: self.index.clone(),
            kind: std::marker::PhantomData,
        }
    }
}

impl<K: Cached> LiveIndex<K> {
    /// The index of `store`'s objects by what they `follow`, and the future that keeps it while `events` (a
    /// subscription of the watch that fills `store`) delivers changes.
    pub fn new(
        store: Store<K>,
        events: Subscription<K>,
        follows: Follows<K>,
    ) -> (Self, impl Future<Output = ()>) {
        let live = Self {
            index: Arc::default(),
            kind: std::marker::PhantomData,
        };
        let index = live.index.clone();
        let keep = events.for_each(move |object| {
            let now = store.get(&ObjectRef::from_obj(object.as_ref()));
            let mut index = index.lock().expect("not poisoned");
            match now {
                Some(current) => index.set(key(object.as_ref()), follows(&current)),
                None => index.remove(&key(object.as_ref())),
            }
            ready(())
        });
        (live, keep)
    }

    /// The objects that follow `tag`, ordered by namespace and name.
    pub fn followers(&self, tag: &TagKey) -> Vec<ObjectRef<K>> {
        let followers = self.index.lock().expect("not poisoned").followers(tag);
        followers
            .into_iter()
            .map(|(namespace, name)| match namespace {
                Some(ns) => ObjectRef::new(&name).within(&ns),
                None => ObjectRef::new(&name),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use berth_api::image::ImageStreamTag;
    use futures::SinkExt;
    use futures::channel::mpsc;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::followers::alias_of;
    use crate::testing::fixtures::{NS, TagFixture, istag};

    #[tokio::test]
    async fn the_index_follows_the_cache_as_its_watch_changes() {
        let target = istag(NS, "demo", "v1").follows_image("reg/demo:v1");
        let alias = istag(NS, "demo", "latest").follows_tag("v1");
        let across = istag("team-b", "mine", "v1")
            .follows_tag("demo:v1")
            .source_namespace(NS);
        let elsewhere = istag("team-b", "demo", "latest").follows_tag("v1");
        let mut writer = Writer::<ImageStreamTag>::default();
        let (mut tx, rx) = mpsc::channel(16);
        let (live, keep) = LiveIndex::new(writer.as_reader(), rx, alias_of);
        let keep = tokio::spawn(keep);
        // What the shared watch does: the cache first, then the subscribers.
        let mut deliver = async |event: Event<ImageStreamTag>| {
            writer.apply_watcher_event(&event);
            if let Event::Apply(o) | Event::Delete(o) = event {
                tx.send(Arc::new(o)).await.expect("the index listens");
            }
        };
        for t in [&target, &alias, &across, &elsewhere] {
            deliver(Event::Apply(t.clone())).await;
        }
        let key = |t: &ImageStreamTag| TagKey::of(t);
        // The index catches up as soon as its task runs.
        let caught_up = async |want: usize| {
            for _ in 0..1000 {
                if live.followers(&key(&target)).len() == want {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        caught_up(2).await;
        assert_eq!(
            live.followers(&key(&target)),
            [ObjectRef::from_obj(&alias), ObjectRef::from_obj(&across)]
        );
        assert!(live.followers(&key(&alias)).is_empty());
        // An alias that moves away is no longer a follower; a deleted one neither.
        deliver(Event::Apply(alias.clone().follows_tag("v2"))).await;
        deliver(Event::Delete(across.clone())).await;
        caught_up(0).await;
        assert!(live.followers(&key(&target)).is_empty());
        drop(tx);
        keep.await.expect("ends with its subscription");
    }
}
