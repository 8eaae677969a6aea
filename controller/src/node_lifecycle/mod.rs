//! Berth's node lifecycle: judges every node's agent alive or lost from its Lease, as this controller observes
//! it (`liveness`), tells the scheduler which nodes take no new pods, and replaces the Workload pods of a lost
//! node at once: their objects go (no agent will confirm), the Workload reconciler makes new ones elsewhere, and
//! an agent that comes back removes what it still runs of them. Not while most nodes look lost at once: then
//! the pods stay where they are.
//!
//! The Node conditions and taints (`Ready=Unknown`, `node.kubernetes.io/unreachable`) and the eviction of
//! every other pod after its toleration are kube-controller-manager's node lifecycle controller, which the
//! local cluster runs as any cluster does; this loop only replaces Berth's own Workload pods sooner.
//!
//! Eviction begins on one more lost node every 10 s at most, as kube-controller-manager paces it.
//!
//! Time is what moves a Lease's age, so the loop ticks every [`TICK`] rather than waiting for events.

pub mod liveness;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use berth_api::apps::Workload;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::workloads::reconcile::{delete_pod, publish};
use liveness::{EvictionPacing, Health, Observations};

/// The controller's name in logs and metrics.
pub const CONTROLLER: &str = "node-lifecycle";

/// How often every node is judged again.
pub const TICK: Duration = Duration::from_secs(2);

/// The node lifecycle and what it remembers between ticks.
pub struct NodeLifecycle {
    /// Client, recorder, metrics.
    pub ctx: Arc<Context>,
    /// Every Pod.
    pub pods: Store<Pod>,
    /// Every Node.
    pub nodes: Store<Node>,
    /// The agents' Leases in `kube-node-lease`.
    pub leases: Store<Lease>,
    /// Every Workload (for the revision its `NodeLost` Event names).
    pub workloads: Store<Workload>,
    /// How long a node's Lease may go unrenewed (by this controller's observation) before its Workload pods
    /// are replaced elsewhere.
    pub grace: Duration,
    /// When each node's Lease was seen renewed.
    pub observations: Observations,
    /// Pods deleted and not yet gone from the cache: deleted once, reported once.
    pub evicted: HashSet<String>,
    /// Which lost nodes eviction has begun on, one more every 10 s at most.
    pub pacing: EvictionPacing,
}

impl NodeLifecycle {
    /// Judges and evicts every [`TICK`] until the process stops, publishing each judgement to `health`.
    pub async fn run(mut self, health: watch::Sender<Arc<Health>>) {
        let synced = futures::future::join3(
            self.pods.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.leases.wait_until_ready(),
        )
        .await;
        if !matches!(synced, (Ok(()), Ok(()), Ok(()))) {
            return;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let judged = self.judge(jiff::Timestamp::now());
            if **health.borrow() != judged {
                report(&health.borrow(), &judged);
                health.send_replace(Arc::new(judged.clone()));
            }
            let admitted = self.pacing.admit(&judged, jiff::Timestamp::now());
            self.evict(&admitted).await;
        }
    }

    /// Every node there is, judged now.
    pub fn judge(&mut self, now: jiff::Timestamp) -> Health {
        let nodes: BTreeSet<String> = self.nodes.state().iter().map(|n| n.name_any()).collect();
        let leases = &self.leases;
        let renewed = |node: &str| {
            let lease = leases.get(&ObjectRef::new(node).within("kube-node-lease"))?;
            Some(lease.spec.as_ref()?.renew_time.as_ref()?.0.to_string())
        };
        Health::judge(&mut self.observations, &nodes, renewed, self.grace, now)
    }

    /// Deletes the Workload pods on the `evicted` nodes, each once, with a `NodeLost` Event on its Workload.
    /// A failed deletion is counted and logged as any reconcile's failure and tried on the next tick.
    pub async fn evict(&mut self, nodes: &BTreeSet<String>) {
        let pods = self.pods.state();
        self.evicted
            .retain(|uid| pods.iter().any(|p| p.uid().as_deref() == Some(uid.as_str())));
        let reconciles = &self.ctx.metrics.reconciles;
        for (pod, node) in victims(&pods, nodes) {
            let uid = pod.uid().unwrap_or_default();
            if self.evicted.contains(&uid) {
                continue;
            }
            let object = ObjectRef::from_obj(pod.as_ref()).erase();
            let evicted = reconciles.run(CONTROLLER, object.clone(), self.replace(&pod, &node));
            match evicted.await {
                Ok(_) => {
                    self.evicted.insert(uid);
                }
                Err(e) => {
                    reconciles.error_policy(CONTROLLER, object, &e);
                }
            }
        }
    }

    async fn replace(&self, pod: &Pod, node: &str) -> Result<kube::runtime::controller::Action> {
        let namespace = pod.namespace().ok_or(Error::Incomplete("Pod"))?;
        let name = pod.name_any();
        warn!(pod = name, namespace, node, "node lost; replacing its pod");
        let api = Api::<Pod>::namespaced(self.ctx.client.clone(), &namespace);
        delete_pod(&api, &name, Some(0)).await?;
        let owner = pod.owner_references().iter().find(|o| o.controller == Some(true));
        let workload = owner.and_then(|o| self.workloads.get(&ObjectRef::new(&o.name).within(&namespace)));
        if let Some(workload) = workload {
            let revision = workload.status.as_ref().map_or(0, |s| s.revision);
            let note = format!("node {node} lost its lease; pod {name} is replaced");
            publish(
                &self.ctx,
                &workload,
                (revision, Some(pod.object_ref(&()))),
                true,
                "NodeLost",
                note,
            )
            .await;
        }
        Ok(kube::runtime::controller::Action::await_change())
    }
}

/// The Workload pods (controlled by a Workload, not being deleted) on the `evicted` nodes, with their node.
pub fn victims(pods: &[Arc<Pod>], evicted: &BTreeSet<String>) -> Vec<(Arc<Pod>, String)> {
    let kind = Workload::kind(&());
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.kind == kind)
        })
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            evicted.contains(&node).then(|| (p.clone(), node))
        })
        .collect()
}

/// Logs a change of judgement once.
fn report(before: &Health, now: &Health) {
    for node in now.lost.difference(&before.lost) {
        warn!(node, "node lost: its Lease was not seen renewed within the grace");
    }
    for node in before.lost.difference(&now.lost) {
        info!(node, "node seen again");
    }
    if !now.lost.is_empty() && !now.evict && (before.evict || before.lost.is_empty()) {
        warn!(
            lost = now.lost.len(),
            "most nodes look lost at once; evicting nothing until they are seen again"
        );
    }
}

#[cfg(test)]
mod tests;
