//! The annotation-trigger controller: a watch per kind (Deployment, StatefulSet, DaemonSet, CronJob) in every
//! namespace, a reconcile when an annotated object changes or a tag it follows moves, and a patch of exactly
//! the containers whose image differs from the tag's pull spec.
//!
//! The caches stay lean: managed fields, status and `kubectl.kubernetes.io/last-applied-configuration` are
//! dropped from every object, and an object without a trigger annotation keeps only its metadata (label
//! selectors cannot select on annotations, so all are watched; only annotated ones are reconciled).

use std::collections::{BTreeMap, HashMap};
use std::future::ready;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::image::ImageStreamTag;
use futures::channel::mpsc;
use futures::{Stream, StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use tracing::{Instrument, debug, info, info_span, instrument, warn};

use super::annotation::{TagKey, TriggerError, trigger_annotation, triggers_of};
use super::index::{IndexFeed, ObjectKey, TriggerIndex, key_of};
use super::plan::{self, ImageChange};
use super::target::TargetKind;
use crate::context::{Context, FIELD_MANAGER, TagSnapshot};
use crate::error::{Error, Result};
use crate::grants;
use crate::import::source::TagLookup;

/// Requests for one object that come closer together than this make one reconcile: several moves of a tag
/// in a short time end in one write, of the last digest.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// The annotation `kubectl apply` keeps a whole copy of the object in; never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the controllers of the four kinds share.
pub struct Triggers {
    ctx: Arc<Context>,
    index: Mutex<TriggerIndex>,
    /// The last `InvalidTrigger` reported per object, so each distinct error is published once.
    reported: Mutex<HashMap<ObjectKey, String>>,
}

impl Triggers {
    /// Whether `error` is news for `object` (and remembers it).
    fn first_report(&self, object: &ObjectKey, error: &str) -> bool {
        let mut reported = self.reported.lock().expect("not poisoned");
        if reported.get(object).is_some_and(|e| e == error) {
            return false;
        }
        reported.insert(object.clone(), error.to_owned());
        true
    }

    fn forget_report(&self, object: &ObjectKey) {
        self.reported.lock().expect("not poisoned").remove(object);
    }

    /// The objects that follow `tag` now.
    pub fn followers(&self, tag: &ImageStreamTag) -> Vec<ObjectKey> {
        self.index
            .lock()
            .expect("not poisoned")
            .followers(&TagKey::of(tag))
    }
}

/// One kind's reconcile context.
struct KindContext {
    kind: TargetKind,
    resource: ApiResource,
    shared: Arc<Triggers>,
}

/// Runs the controllers of the four kinds. `tag_events` is a subscriber of the shared ImageStreamTag watch:
/// each tag that changes enqueues the objects that follow it. Never returns.
pub async fn run(
    client: Client,
    tag_events: impl Stream<Item = Arc<ImageStreamTag>> + Send + 'static,
    ctx: Arc<Context>,
) {
    let shared = Arc::new(Triggers {
        ctx,
        index: Mutex::default(),
        reported: Mutex::default(),
    });
    let mut senders = BTreeMap::new();
    let mut kinds = Vec::new();
    for kind in TargetKind::ALL {
        let (tx, rx) = mpsc::unbounded();
        senders.insert(kind, tx);
        let span = info_span!("triggers", kind = %kind);
        kinds.push(run_kind(kind, client.clone(), shared.clone(), rx).instrument(span));
    }
    let fan_out = {
        let shared = shared.clone();
        tag_events.for_each(move |tag| {
            for object in shared.followers(&tag) {
                if let Some(tx) = senders.get(&object.kind) {
                    // A closed channel is a kind the server does not serve.
                    let _ = tx.unbounded_send(object);
                }
            }
            ready(())
        })
    };
    futures::future::join(fan_out, futures::future::join_all(kinds)).await;
    futures::future::pending::<()>().await;
}

/// The controller of one kind, once the server says which version it serves.
async fn run_kind(
    kind: TargetKind,
    client: Client,
    shared: Arc<Triggers>,
    requests: mpsc::UnboundedReceiver<ObjectKey>,
) {
    let Some(version) = served_version(&client, kind).await else {
        info!("the API server does not serve this kind: no triggers for it");
        return;
    };
    info!(version, "watching for trigger annotations");
    let resource = kind.api_resource(&version);
    let api = Api::<DynamicObject>::all_with(client, &resource);
    let writer = Writer::new(resource.clone());
    let reader = writer.as_reader();
    let mut feed = IndexFeed::new(kind);
    let index_shared = shared.clone();
    let objects = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(lean)
        .reflect(writer)
        .inspect_ok(move |event| {
            let gone = feed.observe(&mut index_shared.index.lock().expect("not poisoned"), event);
            for object in gone {
                index_shared.forget_report(&object);
            }
            // An object whose annotation was removed is not reconciled again: forget what it was told.
            if let watcher::Event::Apply(o) = event
                && trigger_annotation(o.annotations()).is_none()
                && let Some(key) = key_of(kind, o)
            {
                index_shared.forget_report(&key);
            }
        })
        .inspect_err(|e| warn!(error = %e, "watch error; retrying"))
        .applied_objects()
        .try_filter(|o| ready(trigger_annotation(o.annotations()).is_some()));
    let refs = {
        let resource = resource.clone();
        requests.map(move |o| ObjectRef::new_with(&o.name, resource.clone()).within(&o.namespace))
    };
    let cx = Arc::new(KindContext {
        kind,
        resource: resource.clone(),
        shared,
    });
    Controller::for_stream_with(objects, reader, resource)
        .with_config(controller::Config::default().debounce(DEBOUNCE))
        .reconcile_on(refs)
        .run(reconcile, error_policy, cx)
        .for_each(|_| ready(()))
        .await;
}

/// The version of `kind` the server serves, preferred first. A server that does not answer is asked again.
async fn served_version(client: &Client, kind: TargetKind) -> Option<String> {
    loop {
        let mut unsure = false;
        for version in kind.versions() {
            match client
                .list_api_group_resources(&format!("{}/{version}", kind.group()))
                .await
            {
                Ok(list) if list.resources.iter().any(|r| r.name == kind.plural()) => {
                    return Some((*version).to_owned());
                }
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    warn!(error = %e, version, "cannot ask the API server which versions it serves; asking again");
                    unsure = true;
                }
            }
        }
        if !unsure {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Keeps a cached object small: no managed fields, status or last-applied copy, and no spec at all when it
/// has no trigger annotation (it is never reconciled then).
fn lean(object: &mut DynamicObject) {
    object.managed_fields_mut().clear();
    if let Some(annotations) = object.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    if trigger_annotation(object.annotations()).is_none() {
        object.data = Value::Object(serde_json::Map::new());
    } else if let Some(data) = object.data.as_object_mut() {
        data.remove("status");
    }
}

/// Sets the images the object's triggers ask for, when they differ; reports a malformed annotation once.
#[instrument(skip_all, fields(kind = %cx.kind, namespace = object.namespace().unwrap_or_default(), name = %object.name_any()))]
async fn reconcile(object: Arc<DynamicObject>, cx: Arc<KindContext>) -> Result<Action> {
    let key = key_of(cx.kind, &object).ok_or(Error::Incomplete(cx.kind.name()))?;
    let Some(parsed) = triggers_of(object.annotations(), &key.namespace, cx.kind) else {
        cx.shared.forget_report(&key);
        return Ok(Action::await_change());
    };
    // A decision from a tag cache still filling would miss tags; the tag events that fill it come back here
    // only for objects already indexed.
    if cx.shared.ctx.tags.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let parsed = match parsed {
        Ok(triggers) => {
            let refused = cx
                .shared
                .ctx
                .grants
                .decide(|grants| plan::refused(&triggers, &key.namespace, grants))
                .await?;
            refused.map_or(Ok(triggers), Err)
        }
        Err(e) => Err(e),
    };
    let tags = TagSnapshot(cx.shared.ctx.tags.state());
    let changes = match parsed.and_then(|triggers| plan::plan(cx.kind, &object.data, &triggers, &tags)) {
        Ok(changes) => {
            cx.shared.forget_report(&key);
            changes
        }
        Err(e) => {
            report_invalid(&object, &key, &e, &cx).await;
            return Ok(Action::await_change());
        }
    };
    if changes.is_empty() {
        debug!("every triggered image is current");
        return Ok(Action::await_change());
    }
    let resource_version = object
        .resource_version()
        .ok_or(Error::Incomplete(cx.kind.name()))?;
    let body = plan::patch(cx.kind, &resource_version, &changes);
    let api =
        Api::<DynamicObject>::namespaced_with(cx.shared.ctx.client.clone(), &key.namespace, &cx.resource);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match api.patch(&key.name, &params, &Patch::Strategic(&body)).await {
        Ok(_) => {}
        // The object changed after the version this decision read: its watch event brings it back here.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            debug!("the object changed meanwhile; deciding again");
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    }
    publish_triggered(&object, &changes, &tags, &cx).await;
    Ok(Action::await_change())
}

async fn publish_triggered(
    object: &DynamicObject,
    changes: &[ImageChange],
    tags: &TagSnapshot,
    cx: &KindContext,
) {
    let note = plan::note(changes);
    info!(note, "triggered");
    // The tag that moved, at the version that moved it.
    let related = changes.first().and_then(|c| {
        tags.tag(&c.tag.namespace, &c.tag.stream, &c.tag.tag)
            .map(|t| t.object_ref(&()))
    });
    let event = Event {
        type_: EventType::Normal,
        reason: "Triggered".to_owned(),
        note: Some(note),
        action: "Trigger".to_owned(),
        secondary: related,
    };
    publish(&event, object, cx).await;
}

/// Publishes `event` about `object`. The reference names the object's version: kube's Recorder folds Events
/// with the same reason about the same reference into one series that keeps the first note, and each Event
/// here says something new (another digest, another error).
async fn publish(event: &Event, object: &DynamicObject, cx: &KindContext) -> bool {
    let mut regarding = object.object_ref(&cx.resource);
    regarding.resource_version = object.resource_version();
    match cx.shared.ctx.recorder.publish(event, &regarding).await {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "cannot publish an Event");
            false
        }
    }
}

/// Publishes a Warning `InvalidTrigger`, once per distinct error of the object.
async fn report_invalid(object: &DynamicObject, key: &ObjectKey, error: &TriggerError, cx: &KindContext) {
    let message = error.to_string();
    if !cx.shared.first_report(key, &message) {
        return;
    }
    warn!(error = %message, "invalid trigger annotation");
    let reason = match error {
        TriggerError::Forbidden { .. } => grants::REASON_FORBIDDEN,
        _ => "InvalidTrigger",
    };
    let event = Event {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(message),
        action: "Trigger".to_owned(),
        secondary: None,
    };
    if !publish(&event, object, cx).await {
        // Try again at the next reconcile.
        cx.shared.forget_report(key);
    }
}

/// After an error talking to the API server: try again soon.
/// Classified, counted and backed off per object, as every controller's (`metrics::reconciles`).
fn error_policy(object: Arc<DynamicObject>, error: &Error, cx: Arc<KindContext>) -> Action {
    cx.shared.ctx.metrics.reconciles.error_policy(
        "triggers",
        ObjectRef::from_obj_with(object.as_ref(), cx.resource.clone()),
        error,
    )
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod mocked;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::annotation::OPENSHIFT_TRIGGERS;
    use serde_json::json;

    fn object(annotated: bool) -> DynamicObject {
        let mut o = DynamicObject::new("web", &TargetKind::Deployment.api_resource("v1"))
            .within("ns")
            .data(json!({"spec": {"template": {}}, "status": {"replicas": 1}}));
        let mut annotations = BTreeMap::from([(LAST_APPLIED.to_owned(), "{...}".to_owned())]);
        if annotated {
            annotations.insert(OPENSHIFT_TRIGGERS.to_owned(), "[]".to_owned());
        }
        o.metadata.annotations = Some(annotations);
        o.metadata.managed_fields = Some(vec![Default::default()]);
        o
    }

    #[test]
    fn cached_objects_are_lean() {
        let mut plain = object(false);
        lean(&mut plain);
        assert_eq!(plain.data, json!({}));
        assert!(plain.managed_fields().is_empty());
        assert!(plain.annotations().is_empty());

        let mut annotated = object(true);
        lean(&mut annotated);
        assert_eq!(annotated.data, json!({"spec": {"template": {}}}));
        assert_eq!(annotated.annotations().len(), 1);
    }
}
