//! The Workload reconciler: resolve the images, take one rollout step, bind unscheduled Pods, replace Pods of
//! lost nodes, write the status when it changed. Every decision is made by the pure modules beside it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use berth_api::apps::{REVISION_LABEL, SCHEDULER_NAME, WORKLOAD_LABEL, Workload};
use berth_api::image::ImageStream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::Mutex;
use tracing::{info, instrument, warn};

use super::images::{StreamLookup, resolve_images};
use super::liveness::{self, Observations};
use super::pods::{free_names, pod, revision_hash};
use super::rollout::{self, PodView};
use super::scheduler::{self, NodeView, Resources};
use super::status;
use crate::context::{Context, FIELD_MANAGER, TagSnapshot};
use crate::error::{Error, Result};

/// What the Workload reconciler shares beyond the import context.
pub struct WorkloadContext {
    /// The import context (client, tag and stream caches, recorder, metrics).
    pub ctx: Arc<Context>,
    /// Every Pod.
    pub pods: Store<Pod>,
    /// Every Node.
    pub nodes: Store<Node>,
    /// The agents' Leases in `kube-node-lease`.
    pub leases: Store<Lease>,
    /// How long a node's Lease may go unrenewed (by this controller's observation) before its Pods are
    /// replaced elsewhere.
    pub node_grace: Duration,
    /// When this controller saw each node's Lease renewed ([`liveness`]). Never held across I/O.
    pub liveness: std::sync::Mutex<Observations>,
    /// Bindings made but not yet seen in the Pod cache, so that two reconciles never overfill a node.
    pub assumed: Mutex<HashMap<PodKey, Assumed>>,
}

/// A pod by namespace and name.
pub type PodKey = (String, String);

/// A binding not yet seen in the Pod cache.
#[derive(Clone, Debug)]
pub struct Assumed {
    /// The pod bound (a pod deleted and created again under its name is another).
    uid: Option<String>,
    node: String,
    revision: String,
    requests: Resources,
}

impl StreamLookup for Store<ImageStream> {
    fn local_lookup(&self, namespace: &str, stream: &str) -> bool {
        self.get(&ObjectRef::new(stream).within(namespace))
            .is_some_and(|s| s.spec.lookup_policy.as_ref().is_some_and(|l| l.local))
    }
}

/// Which nodes look lost now, and whether pods may be evicted from them.
struct Liveness {
    lost: HashSet<String>,
    evict: bool,
}

impl Liveness {
    /// A node that may take new pods.
    fn alive(&self, node: &str) -> bool {
        !self.lost.contains(node)
    }

    /// A node whose pods are to be replaced: lost, and not one of most nodes looking lost at once.
    fn evicting(&self, node: &str) -> bool {
        self.evict && self.lost.contains(node)
    }
}

impl WorkloadContext {
    /// Records what the Lease of `node` says now.
    fn record_lease(&self, observations: &mut Observations, node: &str, now: jiff::Timestamp) {
        let lease = self.leases.get(&ObjectRef::new(node).within("kube-node-lease"));
        let renewed = lease.and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.clone()));
        observations.record(node, renewed.map(|t| t.0.to_string()).as_deref(), now);
    }

    /// Judges every node of the cache, and those named in `also` (pods' nodes that may be gone).
    fn liveness<'a>(&self, also: impl IntoIterator<Item = &'a str>, now: jiff::Timestamp) -> Liveness {
        let mut observations = self.liveness.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: HashSet<String> = self.nodes.state().iter().map(|n| n.name_any()).collect();
        let total = names.len();
        observations.retain(|n| names.contains(n));
        names.extend(also.into_iter().map(str::to_owned));
        // Every Lease first: a renewal seen on any node may end a time the controller was blind.
        for n in &names {
            self.record_lease(&mut observations, n, now);
        }
        let lost: HashSet<String> = names
            .into_iter()
            .filter(|n| observations.age(n, now) > self.node_grace)
            .collect();
        let evict = liveness::evictions_allowed(lost.len(), total.max(lost.len()));
        Liveness { lost, evict }
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

    // Pods on nodes whose agent is gone are replaced: their objects go at once (no agent will confirm), and an
    // agent that comes back removes what it still runs of them. Not while most nodes look lost at once: then
    // the pods stay where they are ([`liveness`]).
    let judged = wctx.liveness(
        owned.iter().filter_map(|p| p.spec.as_ref()?.node_name.as_deref()),
        now,
    );
    if !judged.lost.is_empty() && !judged.evict {
        warn!(
            lost = judged.lost.len(),
            "most nodes look lost at once; evicting nothing until they are seen again"
        );
    }
    let mut lost = false;
    for p in owned.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        if judged.evicting(node) {
            lost = true;
            warn!(pod = %p.name_any(), node, "node lost; replacing its pod");
            delete(&pods_api, &p.name_any(), Some(0)).await?;
            let revision = workload.status.as_ref().map_or(0, |s| s.revision);
            publish(
                ctx,
                &workload,
                (revision, Some(p.object_ref(&()))),
                true,
                "NodeLost",
                format!("node {node} lost its lease; pod {} is replaced", p.name_any()),
            )
            .await;
        }
    }
    let live: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(|n| !judged.evicting(n))
        })
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
            delete(&pods_api, victim, None).await?;
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
    let unschedulable = bind_pending(&wctx, &workload, &namespace).await?;

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
    // Node liveness is time, not an event: look again within the grace; sooner while something moves.
    let settled = new_status.replicas == workload.spec.replicas
        && new_status.available_replicas == workload.spec.replicas;
    Ok(Action::requeue(if lost || unschedulable || !settled {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    }))
}

/// Binds the Workload's unscheduled Pods; returns whether some fit nowhere.
async fn bind_pending(wctx: &WorkloadContext, workload: &Workload, namespace: &str) -> Result<bool> {
    let ctx = &wctx.ctx;
    let now = jiff::Timestamp::now();
    let pending: Vec<Arc<Pod>> = wctx
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(namespace)
                && p.labels().get(WORKLOAD_LABEL) == Some(&workload.name_any())
        })
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.node_name.is_none() && s.scheduler_name.as_deref() == Some(SCHEDULER_NAME))
        })
        .collect();
    if pending.is_empty() {
        return Ok(false);
    }
    let judged = wctx.liveness([], now);
    let nodes: Vec<NodeView> = wctx
        .nodes
        .state()
        .iter()
        .map(|n| NodeView::of(n, judged.alive(&n.name_any())))
        .collect();
    let mut assumed = wctx.assumed.lock().await;
    let all = wctx.pods.state();
    // A binding shows in the cache soon; until then it is counted from `assumed`. Only while the cache still
    // holds that very pod unbound: a pod bound, deleted, or replaced under its name counts as the cache says.
    assumed.retain(|key, a| still_assumed(key, a, &all));
    let mut used: HashMap<String, Resources> = HashMap::new();
    // Replicas spread by revision: during a rollout the old Pods are on their way out.
    let mut same: HashMap<(String, String), usize> = HashMap::new();
    for p in all.iter().filter(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|ph| ph != "Succeeded" && ph != "Failed")
    }) {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if p.labels().get(WORKLOAD_LABEL) == Some(&workload.name_any())
            && p.namespace().as_deref() == Some(namespace)
            && p.metadata.deletion_timestamp.is_none()
        {
            let revision = p.labels().get(REVISION_LABEL).cloned().unwrap_or_default();
            *same.entry((node.clone(), revision)).or_default() += 1;
        }
        *used.entry(node).or_default() += scheduler::requests(p);
    }
    for a in assumed.values() {
        *used.entry(a.node.clone()).or_default() += a.requests;
        *same.entry((a.node.clone(), a.revision.clone())).or_default() += 1;
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let mut unschedulable = false;
    for p in pending {
        let pod_name = p.name_any();
        let revision = p.labels().get(REVISION_LABEL).cloned().unwrap_or_default();
        let spread: HashMap<String, usize> = same
            .iter()
            .filter(|((_, r), _)| *r == revision)
            .map(|((n, _), c)| (n.clone(), *c))
            .collect();
        match scheduler::choose(&p, &nodes, &used, &spread) {
            Ok(node) => {
                let binding = serde_json::json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": pod_name, "namespace": namespace},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                });
                match api
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        &pod_name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue, // bound or gone meanwhile
                    Err(e) => return Err(Error::kube("create Pod binding")(e)),
                }
                info!(pod = pod_name, node, "bound");
                let requests = scheduler::requests(&p);
                *used.entry(node.clone()).or_default() += requests;
                *same.entry((node.clone(), revision.clone())).or_default() += 1;
                assumed.insert(
                    (namespace.to_owned(), pod_name),
                    Assumed {
                        uid: p.uid(),
                        node,
                        revision,
                        requests,
                    },
                );
            }
            Err(why) => {
                unschedulable = true;
                mark_unschedulable(ctx, &api, &p, &why).await?;
            }
        }
    }
    Ok(unschedulable)
}

/// Whether a binding made is still to be counted by hand: the cache holds that very pod (namespace, name and
/// uid) and does not show it bound yet.
fn still_assumed((ns, name): &PodKey, a: &Assumed, pods: &[Arc<Pod>]) -> bool {
    pods.iter().any(|p| {
        p.namespace().as_deref() == Some(ns.as_str())
            && p.name_any() == *name
            && p.uid() == a.uid
            && p.spec.as_ref().is_some_and(|s| s.node_name.is_none())
    })
}

/// `PodScheduled=False` with the reason, and a `FailedScheduling` Event when the reason is new.
async fn mark_unschedulable(ctx: &Context, api: &Api<Pod>, pod: &Pod, why: &str) -> Result<()> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if current.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(why)) {
        return Ok(());
    }
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why,
        "lastTransitionTime": jiff::Timestamp::now().to_string(),
    }]}});
    api.patch_status(
        &pod.name_any(),
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Strategic(&patch),
    )
    .await
    .map_err(Error::kube("patch Pod status"))?;
    warn!(pod = %pod.name_any(), why, "unschedulable");
    let event = Event {
        type_: EventType::Warning,
        reason: "FailedScheduling".into(),
        note: Some(why.to_owned()),
        action: "Scheduling".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &pod.object_ref(&())).await {
        warn!(error = %e, "cannot publish an Event");
    }
    Ok(())
}

async fn delete(api: &Api<Pod>, name: &str, grace: Option<u32>) -> Result<()> {
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
async fn publish(
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

#[cfg(test)]
mod assumed_tests {
    use super::*;

    fn pod(ns: &str, name: &str, uid: &str, node: Option<&str>) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(uid.into());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: node.map(Into::into),
            ..Default::default()
        });
        Arc::new(p)
    }

    #[test]
    fn a_binding_is_counted_by_hand_only_while_the_cache_holds_that_pod_unbound() {
        let a = Assumed {
            uid: Some("u1".into()),
            node: "n1".into(),
            revision: "r".into(),
            requests: Resources::default(),
        };
        let key = ("a".to_owned(), "web-0".to_owned());
        assert!(still_assumed(&key, &a, &[pod("a", "web-0", "u1", None)]));
        // Bound in the cache: counted from the cache.
        assert!(!still_assumed(&key, &a, &[pod("a", "web-0", "u1", Some("n1"))]));
        // Deleted before the binding was seen: its requests no longer count on n1.
        assert!(!still_assumed(&key, &a, &[]));
        // The same name in another namespace, or a new pod under the name, is another pod.
        assert!(!still_assumed(&key, &a, &[pod("b", "web-0", "u1", None)]));
        assert!(!still_assumed(&key, &a, &[pod("a", "web-0", "u2", None)]));
    }
}
