//! Berth's scheduler: binds the pods that name `schedulerName: berth` (every Workload's pods, and any other
//! pod that asks for it) to Berth nodes, as kube-scheduler binds the rest.
//!
//! One loop owns everything it remembers, so nothing is locked across I/O: it wakes on any change of the
//! shared Pod watch, on a change of node health (from the node lifecycle), and every [`RETRY`] for pods that
//! fit nowhere yet. Each pass reads the caches, decides where every waiting pod goes (`plan`, with `fit` for
//! one pod's filters and score), and writes a Binding per pod, or `PodScheduled=False` with kube-scheduler's
//! message and a `FailedScheduling` Event.

pub mod fit;
pub mod plan;

#[cfg(test)]
mod scenarios;

use std::future::ready;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::caches::Subscription;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::node_lifecycle::liveness::Health;
use fit::NodeView;
use plan::{Assumptions, Usage};

/// The controller's name in logs and metrics.
pub const CONTROLLER: &str = "scheduler";

/// How often pods that fit nowhere are tried again when nothing else wakes the scheduler.
pub const RETRY: Duration = Duration::from_secs(5);

/// The scheduler and what it remembers between passes.
pub struct Scheduler {
    /// Client, recorder, metrics.
    pub ctx: Arc<Context>,
    /// Every Pod.
    pub pods: Store<Pod>,
    /// Every Node.
    pub nodes: Store<Node>,
    /// Which nodes look lost (the node lifecycle's judgement): they take no new pods.
    pub health: watch::Receiver<Arc<Health>>,
    /// Bindings made and not yet seen in the Pod cache.
    pub assumed: Assumptions,
}

impl Scheduler {
    /// Schedules until the process stops; `pod_events` wakes it on every change of the shared Pod watch.
    pub async fn run(mut self, pod_events: Subscription<Pod>) {
        let wake = Notify::new();
        let forward = pod_events.for_each(|_| {
            wake.notify_one();
            ready(())
        });
        let schedule = async {
            let synced =
                futures::future::join(self.pods.wait_until_ready(), self.nodes.wait_until_ready()).await;
            if !matches!(synced, (Ok(()), Ok(()))) {
                return;
            }
            loop {
                self.pass().await;
                tokio::select! {
                    () = wake.notified() => {}
                    changed = self.health.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        };
        tokio::select! {
            () = forward => {}
            () = schedule => {}
        }
    }

    /// One pass over the pods waiting for this scheduler. A failed binding is counted and logged as any
    /// reconcile's failure ([`crate::metrics::reconciles`]) and tried again on the next pass.
    pub async fn pass(&mut self) {
        let all = self.pods.state();
        self.assumed.settle(&all);
        let waiting: Vec<_> = plan::pending(&all)
            .into_iter()
            .filter(|p| !self.assumed.holds(p))
            .collect();
        if waiting.is_empty() {
            return;
        }
        let health = self.health.borrow().clone();
        let nodes: Vec<NodeView> = self
            .nodes
            .state()
            .iter()
            .map(|n| NodeView::of(n, health.alive(&n.name_any())))
            .collect();
        let mut usage = Usage::of(&all, &self.assumed);
        let Self { ctx, assumed, .. } = self;
        let reconciles = &ctx.metrics.reconciles;
        for pod in waiting {
            let object = ObjectRef::from_obj(pod.as_ref()).erase();
            let placed = usage.place(&pod, &nodes);
            let done = reconciles.run(CONTROLLER, object.clone(), async {
                match &placed {
                    Ok(node) => {
                        if bind(ctx, &pod, node).await? {
                            assumed.bound(&pod, node);
                        }
                    }
                    Err(why) => mark_unschedulable(ctx, &pod, why).await?,
                }
                Ok(kube::runtime::controller::Action::await_change())
            });
            if let Err(e) = done.await {
                reconciles.error_policy(CONTROLLER, object, &e);
            }
        }
    }
}

/// Binds `pod` to `node`; false when it was bound or deleted meanwhile.
async fn bind(ctx: &Context, pod: &Pod, node: &str) -> Result<bool> {
    let namespace = pod.namespace().ok_or(Error::Incomplete("Pod"))?;
    let name = pod.name_any();
    let binding = serde_json::json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match api
        .create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding)
        .await
    {
        Ok(_) => {
            info!(pod = name, namespace, node, "bound");
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(false),
        Err(e) => Err(Error::kube("create Pod binding")(e)),
    }
}

/// `PodScheduled=False` with the reason, and a `FailedScheduling` Event when the reason is new.
async fn mark_unschedulable(ctx: &Context, pod: &Pod, why: &str) -> Result<()> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if current.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(why)) {
        return Ok(());
    }
    let namespace = pod.namespace().ok_or(Error::Incomplete("Pod"))?;
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why,
        "lastTransitionTime": jiff::Timestamp::now().to_string(),
    }]}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(&pod.name_any(), &params, &Patch::Strategic(&patch))
        .await
        .map_err(Error::kube("patch Pod status"))?;
    warn!(pod = %pod.name_any(), namespace, why, "unschedulable");
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
