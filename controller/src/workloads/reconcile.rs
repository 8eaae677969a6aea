//! The Workload reconciler: resolve the images, take one rollout step, write the status when it changed. Every
//! decision is made by the pure modules beside it. Binding its Pods is the scheduler's job
//! ([`crate::scheduling`]), replacing those of lost nodes the node lifecycle's ([`crate::node_lifecycle`]).
//!
//! Driven by events: a change of the Workload, of a Pod it owns, of a tag it follows, or of a stream in its
//! namespace. Nothing in it depends on time, so it looks again unprompted only every [`RESYNC`] (or
//! [`grants::RECHECK`] while it reads another namespace, whose revoked grant it could not see).

use std::sync::Arc;
use std::time::Duration;

use berth_api::apps::{REVISION_LABEL, Workload};
use berth_api::image::ImageStream;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tracing::{info, instrument, warn};

use super::images::{StreamLookup, resolve_images};
use super::pods::{free_names, pod, revision_hash};
use super::rollout::{self, PodView};
use super::status;
use crate::context::{Context, FIELD_MANAGER, TagSnapshot};
use crate::error::{Error, Result};
use crate::{followers, grants};

/// What the Workload reconciler shares beyond the import context.
pub struct WorkloadContext {
    /// The import context (client, tag and stream caches, recorder, metrics).
    pub ctx: Arc<Context>,
    /// Every Pod.
    pub pods: Store<Pod>,
}

/// How often a Workload is looked at when nothing it depends on changed: a safety net for a missed event.
pub const RESYNC: Duration = Duration::from_secs(300);

impl StreamLookup for Store<ImageStream> {
    fn local_lookup(&self, namespace: &str, stream: &str) -> bool {
        self.get(&ObjectRef::new(stream).within(namespace))
            .is_some_and(|s| s.spec.lookup_policy.as_ref().is_some_and(|l| l.local))
    }
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn view(pod: &Pod) -> PodView {
    PodView {
        name: pod.name_any(),
        revision: pod.labels().get(REVISION_LABEL).cloned().unwrap_or_default(),
        ready: is_ready(pod),
        scheduled: pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some(),
        created: pod.creation_timestamp().map_or(0, |t| t.0.as_second()),
    }
}

/// The controller's name in logs and metrics.
pub const CONTROLLER: &str = "workloads";

/// Rolls `workload` one step towards its current revision.
#[instrument(skip_all, fields(workload = %workload.name_any(), namespace = workload.namespace().unwrap_or_default()))]
pub async fn reconcile(workload: Arc<Workload>, wctx: Arc<WorkloadContext>) -> Result<Action> {
    let object = ObjectRef::from_obj(workload.as_ref()).erase();
    let reconciles = &wctx.ctx.metrics.reconciles;
    reconciles
        .run(CONTROLLER, object, roll(workload, wctx.clone()))
        .await
}

/// After a failed reconcile: classified, counted, and tried again with back-off (see [`crate::error::retry`]).
pub fn error_policy(workload: Arc<Workload>, error: &Error, wctx: Arc<WorkloadContext>) -> Action {
    let object = ObjectRef::from_obj(workload.as_ref()).erase();
    wctx.ctx
        .metrics
        .reconciles
        .error_policy(CONTROLLER, object, error)
}

async fn roll(workload: Arc<Workload>, wctx: Arc<WorkloadContext>) -> Result<Action> {
    let ctx = &wctx.ctx;
    let namespace = workload.namespace().ok_or(Error::Incomplete("Workload"))?;
    let name = workload.name_any();
    if workload.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change()); // the garbage collector removes the Pods it owns
    }
    let now = jiff::Timestamp::now();
    let uid = workload.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let owned: Vec<Arc<Pod>> = wctx
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(namespace.as_str())
                && p.owner_references().iter().any(|o| o.uid == uid)
        })
        .collect();
    let live: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed"))
        .collect();
    let views: Vec<PodView> = live.iter().map(|p| view(p)).collect();
    let bounds = rollout::bounds(workload.spec.replicas, workload.spec.strategy.as_ref());

    let snapshot = TagSnapshot(ctx.tags.state());
    let images = ctx
        .grants
        .decide(|grants| resolve_images(&workload, &namespace, &snapshot, &ctx.streams, grants))
        .await?;
    let target = images.map(|images| status::target(&workload, revision_hash(&workload, &images), images));
    if let Ok(target) = &target {
        let step = rollout::step(workload.spec.replicas, &target.hash, &views, bounds);
        for victim in &step.delete {
            info!(pod = victim, "removing a pod");
            delete_pod(&pods_api, victim, None).await?;
        }
        let taken: Vec<String> = owned.iter().map(|p| p.name_any()).collect();
        for pod_name in free_names(&name, &target.hash, taken.iter().map(String::as_str), step.create) {
            info!(pod = pod_name, revision = target.revision, "creating a pod");
            match pods_api
                .create(
                    &PostParams::default(),
                    &pod(&workload, &target.hash, &target.images, &pod_name),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {} // made by an earlier run: no duplicate
                Err(e) => return Err(Error::kube("create Pod")(e)),
            }
        }
    }
    let new_status = status::compute(
        &workload,
        target.as_ref().map_err(Vec::as_slice),
        &views,
        bounds,
        &Time(now),
    );
    let old_status = workload.status.clone().unwrap_or_default();
    if new_status != old_status {
        let patch = serde_json::json!({
            "apiVersion": Workload::api_version(&()), "kind": Workload::kind(&()), "status": new_status,
        });
        Api::<Workload>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::kube("apply Workload status"))?;
        ctx.metrics.status_written("Workload");
        for (warning, reason, note) in status::events(&old_status, &new_status) {
            publish(ctx, &workload, (new_status.revision, None), warning, reason, note).await;
        }
    }
    let reads_another_namespace = followers::workload_follows(&workload)
        .iter()
        .any(|key| key.namespace != namespace);
    Ok(Action::requeue(if reads_another_namespace {
        grants::RECHECK
    } else {
        RESYNC
    }))
}

/// Deletes Pod `name` with `grace` (`None`: the pod's own); one already gone is no error.
pub async fn delete_pod(api: &Api<Pod>, name: &str, grace: Option<u32>) -> Result<()> {
    let params = DeleteParams {
        grace_period_seconds: grace,
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("delete Pod")(e)),
    }
}

/// Publishes an Event about `workload`. The action names the revision: the recorder folds repeats of one
/// (object, reason, action) into a series that keeps its first note, and each revision's story is its own.
pub async fn publish(
    ctx: &Context,
    workload: &Workload,
    (revision, related): (i64, Option<ObjectReference>),
    warning: bool,
    reason: &str,
    note: String,
) {
    info!(reason, note, "workload transition");
    let type_ = if warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: format!("Revision{revision}"),
        secondary: related,
    };
    if let Err(e) = ctx.recorder.publish(&event, &workload.object_ref(&())).await {
        warn!(error = %e, "cannot publish an Event");
    }
}
