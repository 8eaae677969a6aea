//! What every reconcile shares: the API client, the watch caches, the registry resolver, the Event recorder,
//! metrics, and the little this controller remembers in memory (when each tag was last checked, which tags a
//! registry push asked for).

use std::collections::HashMap;
use std::sync::Mutex;

use futures::channel::oneshot;

use berth_api::image::{ImageStream, ImageStreamTag};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::grants::Grants;
use crate::import::schedule::{Failure, LastCheck, Pacing};
use crate::import::source::TagLookup;
use crate::metrics::Metrics;
use crate::registry::{Credentials, RegistryCredentials, Resolver};

/// The field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "berth-controller";

/// Shared by all reconciles.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Every ImageStreamTag, from one shared watch.
    pub tags: Store<ImageStreamTag>,
    /// Every ImageStream, from one shared watch.
    pub streams: Store<ImageStream>,
    /// Pull secrets (`kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg`) of every namespace.
    pub pull_secrets: Vec<Store<Secret>>,
    /// Registry access.
    pub resolver: Resolver,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Import pacing.
    pub pacing: Pacing,
    /// Metrics.
    pub metrics: Metrics,
    /// Which namespaces let which read their images (see [`crate::grants`]).
    pub grants: Grants,
    checks: Mutex<HashMap<ObjectRef<ImageStreamTag>, LastCheck>>,
    pushed: Mutex<HashMap<ObjectRef<ImageStreamTag>, Push>>,
    /// Imports under way, by tag.
    importing: Mutex<HashMap<ObjectRef<ImageStreamTag>, Importing>>,
}

/// An import under way: what it imports for, and the sender that cancels it.
struct Importing {
    uid: Option<String>,
    generation: Option<i64>,
    cancel: oneshot::Sender<Cancelled>,
}

/// Why an import under way was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// Its tag was deleted (or replaced by another object of the same name).
    Deleted,
    /// Its tag's spec changed: the import of the new spec follows at once, as a spec change (first in its
    /// registry's queue), instead of waiting behind the old one.
    Superseded,
}

impl Context {
    /// A context over caches that are being filled.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        tags: Store<ImageStreamTag>,
        streams: Store<ImageStream>,
        pull_secrets: Vec<Store<Secret>>,
        resolver: Resolver,
        recorder: Recorder,
        pacing: Pacing,
        metrics: Metrics,
    ) -> Self {
        Self {
            grants: Grants::new(client.clone()),
            client,
            tags,
            streams,
            pull_secrets,
            resolver,
            recorder,
            pacing,
            metrics,
            checks: Mutex::default(),
            pushed: Mutex::default(),
            importing: Mutex::default(),
        }
    }

    /// Registers an import of `tag` under way; the future resolves when the tag is deleted or its spec
    /// changes ([`tag_seen`](Self::tag_seen)).
    pub fn importing(&self, tag: &ImageStreamTag) -> oneshot::Receiver<Cancelled> {
        let (cancel, cancelled) = oneshot::channel();
        let running = Importing {
            uid: tag.metadata.uid.clone(),
            generation: tag.metadata.generation,
            cancel,
        };
        let mut importing = self.importing.lock().expect("not poisoned");
        importing.insert(ObjectRef::from_obj(tag), running);
        cancelled
    }

    /// Forgets the import of `tag`: it ended.
    pub fn done_importing(&self, tag: &ImageStreamTag) {
        let key = ObjectRef::from_obj(tag);
        let mut importing = self.importing.lock().expect("not poisoned");
        if importing.get(&key).is_some_and(|i| i.uid == tag.metadata.uid) {
            importing.remove(&key);
        }
    }

    /// Called with every tag the watch delivers, before its reconcile is asked for: the import under way of
    /// a tag deleted or changed meanwhile is cancelled ([`cancellation`]).
    pub fn tag_seen(&self, seen: &ImageStreamTag) {
        let key = ObjectRef::from_obj(seen);
        let live = self.tags.get(&key);
        let mut importing = self.importing.lock().expect("not poisoned");
        let verdict = importing
            .get(&key)
            .and_then(|i| cancellation(seen, live.as_deref(), i.uid.as_deref(), i.generation));
        if let Some(why) = verdict
            && let Some(running) = importing.remove(&key)
        {
            let _ = running.cancel.send(why);
        }
    }

    /// What is remembered of `tag`'s last import.
    pub fn last_check(&self, tag: &ObjectRef<ImageStreamTag>) -> Option<LastCheck> {
        self.checks.lock().expect("not poisoned").get(tag).copied()
    }

    /// Remembers an import of `tag` at `at`: a success (`failure` is `None`) resets the failures, a failure
    /// counts one more.
    pub fn record_check(
        &self,
        tag: ObjectRef<ImageStreamTag>,
        at: i64,
        failure: Option<Failure>,
        retry_after: Option<std::time::Duration>,
    ) {
        let mut checks = self.checks.lock().expect("not poisoned");
        let failures = match failure {
            Some(_) => checks.get(&tag).map_or(0, |c| c.failures) + 1,
            None => 0,
        };
        checks.insert(
            tag,
            LastCheck {
                at,
                failures,
                retry_after,
                failure: failure.unwrap_or_default(),
            },
        );
        // Deleted tags are not reconciled again: now and then, drop what is remembered of them.
        if checks.len().is_multiple_of(1024) {
            checks.retain(|tag, _| self.tags.get(tag).is_some());
        }
    }

    /// Marks `tag` for import because its registry reported a push of `push.digest`.
    pub fn request_push_import(&self, tag: ObjectRef<ImageStreamTag>, push: Push) {
        let mut pushed = self.pushed.lock().expect("not poisoned");
        pushed.insert(tag, push);
        self.metrics
            .push_queue_depth
            .set(i64::try_from(pushed.len()).unwrap_or(i64::MAX));
    }

    /// The push that asked for `tag`'s import, if any; the request is taken.
    pub fn take_push_request(&self, tag: &ObjectRef<ImageStreamTag>) -> Option<Push> {
        let mut pushed = self.pushed.lock().expect("not poisoned");
        let taken = pushed.remove(tag);
        self.metrics
            .push_queue_depth
            .set(i64::try_from(pushed.len()).unwrap_or(i64::MAX));
        taken
    }

    /// The pull-secret credentials of `namespace` for `registry`/`repository`. All pull secrets of the
    /// namespace are considered, as OpenShift does; a secret that does not parse is skipped (and logged).
    pub fn credentials(&self, namespace: &str, registry: &str, repository: &str) -> Option<Credentials> {
        let mut all = RegistryCredentials::default();
        for secret in self.pull_secrets.iter().flat_map(Store::state) {
            if secret.namespace().as_deref() != Some(namespace) {
                continue;
            }
            let (Some(type_), Some(data)) = (secret.type_.as_deref(), secret.data.as_ref()) else {
                continue;
            };
            match RegistryCredentials::from_secret(type_, data) {
                Ok(c) => all.merge(c),
                Err(e) => {
                    tracing::warn!(namespace, secret = %secret.name_any(), error = %e, "skipping a pull secret")
                }
            }
        }
        all.lookup(registry, repository).cloned()
    }
}

/// Whether an import under way for the tag with `uid` at `generation` is given up, now that the watch
/// delivers `seen` and the cache holds `live`: when the tag is gone, or its spec moved past `generation`.
pub fn cancellation(
    seen: &ImageStreamTag,
    live: Option<&ImageStreamTag>,
    uid: Option<&str>,
    generation: Option<i64>,
) -> Option<Cancelled> {
    if seen.metadata.uid.as_deref() != uid {
        return None;
    }
    if gone(seen, live) {
        return Some(Cancelled::Deleted);
    }
    let newer = |g: Option<i64>| g.zip(generation).is_some_and(|(g, running)| g > running);
    (newer(seen.metadata.generation) || newer(live.and_then(|l| l.metadata.generation)))
        .then_some(Cancelled::Superseded)
}

/// Whether the tag `seen` in a watch event is gone: being deleted, absent from the cache (`live`), or replaced
/// there by another object of the same name.
pub fn gone(seen: &ImageStreamTag, live: Option<&ImageStreamTag>) -> bool {
    seen.metadata.deletion_timestamp.is_some() || live.is_none_or(|l| l.metadata.uid != seen.metadata.uid)
}

/// A registry push that asks for an import.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Push {
    /// The digest the registry says it stored, when the notification carries one.
    pub digest: Option<String>,
    /// How many imports have not yet seen that digest.
    pub attempts: u8,
    /// When the push was reported (or last looked for): a tag list cached before it may miss the pushed tag,
    /// so a version policy lists again.
    pub received: Option<std::time::Instant>,
}

impl Push {
    /// The registry sends its notification before the tag points at the new manifest, so an import right
    /// after it may still see the old digest: look again this many times, [`PUSH_RECHECK`] apart.
    pub const MAX_ATTEMPTS: u8 = 5;
}

/// The pause before looking again for a pushed digest.
pub const PUSH_RECHECK: std::time::Duration = std::time::Duration::from_millis(300);

/// A snapshot of the tag cache, as the alias logic reads it (a scan: the cache holds Arcs, so the snapshot is
/// cheap to take).
pub struct TagSnapshot(pub Vec<std::sync::Arc<ImageStreamTag>>);

impl TagLookup for TagSnapshot {
    fn tag(&self, namespace: &str, stream: &str, tag: &str) -> Option<&ImageStreamTag> {
        self.0.iter().map(AsRef::as_ref).find(|t| {
            t.spec.stream == stream && t.spec.tag == tag && t.namespace().as_deref() == Some(namespace)
        })
    }

    fn tags_of(&self, namespace: &str, stream: &str) -> Vec<&ImageStreamTag> {
        self.0
            .iter()
            .map(AsRef::as_ref)
            .filter(|t| t.spec.stream == stream && t.namespace().as_deref() == Some(namespace))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures::{NS, TagFixture, istag};

    #[test]
    fn an_import_is_given_up_when_its_tag_goes_or_its_spec_moves_on() {
        let running = istag(NS, "demo", "v1").stored("uid-1", 1);
        let at = |generation| {
            let mut t = running.clone();
            t.metadata.generation = Some(generation);
            t
        };
        let decide = |seen: &ImageStreamTag, live: Option<&ImageStreamTag>| {
            cancellation(seen, live, Some("uid-1"), Some(1))
        };
        assert_eq!(decide(&running, Some(&running)), None, "its own status write");
        assert_eq!(decide(&running, None), Some(Cancelled::Deleted));
        let mut deleting = running.clone();
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
        assert_eq!(decide(&deleting, Some(&deleting)), Some(Cancelled::Deleted));
        let other = istag(NS, "demo", "v1").stored("uid-2", 1);
        assert_eq!(
            decide(&running, Some(&other)),
            Some(Cancelled::Deleted),
            "replaced"
        );
        assert_eq!(decide(&other, Some(&other)), None, "an event of another object");
        assert_eq!(decide(&at(2), Some(&at(2))), Some(Cancelled::Superseded));
        assert_eq!(
            decide(&running, Some(&at(2))),
            Some(Cancelled::Superseded),
            "an old event, a newer cache"
        );
    }
}
