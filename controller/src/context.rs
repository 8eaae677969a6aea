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
    /// Imports under way, by tag, with the tag's uid: dropping the sender cancels the import.
    importing: Mutex<HashMap<ObjectRef<ImageStreamTag>, Importing>>,
}

/// An import under way: the tag's uid, and the sender whose drop cancels the import.
type Importing = (Option<String>, oneshot::Sender<()>);

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

    /// Registers an import of `tag` (with `uid`) under way; the future resolves when the tag is deleted
    /// ([`tag_seen`](Self::tag_seen)).
    pub fn importing(&self, tag: &ObjectRef<ImageStreamTag>, uid: Option<&str>) -> oneshot::Receiver<()> {
        let (cancel, cancelled) = oneshot::channel();
        let mut importing = self.importing.lock().expect("not poisoned");
        importing.insert(tag.clone(), (uid.map(str::to_owned), cancel));
        cancelled
    }

    /// Forgets the import of `tag` (with `uid`): it ended.
    pub fn done_importing(&self, tag: &ObjectRef<ImageStreamTag>, uid: Option<&str>) {
        let mut importing = self.importing.lock().expect("not poisoned");
        if importing.get(tag).is_some_and(|(u, _)| u.as_deref() == uid) {
            importing.remove(tag);
        }
    }

    /// Called with every tag the watch delivers: when `seen` is gone from the cache (deleted, or replaced by
    /// another object of the same name) or is being deleted, its import under way is cancelled.
    pub fn tag_seen(&self, seen: &ImageStreamTag) {
        let key = ObjectRef::from_obj(seen);
        let live = self.tags.get(&key);
        if !gone(seen, live.as_deref()) {
            return;
        }
        let mut importing = self.importing.lock().expect("not poisoned");
        if importing
            .get(&key)
            .is_some_and(|(uid, _)| uid.as_deref() == seen.metadata.uid.as_deref())
        {
            // Dropping the sender wakes the import's select.
            importing.remove(&key);
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
