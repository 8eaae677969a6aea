//! What one scheduling pass decides, without I/O: which pods wait for Berth's scheduler, what every node
//! already holds (the Pod cache plus the bindings made but not yet seen in it), and where each waiting pod goes.

use std::collections::HashMap;
use std::sync::Arc;

use berth_api::apps::{REVISION_LABEL, SCHEDULER_NAME};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::fit::{self, NodeView, Resources};

/// The pods that spread across nodes together: those of one controller (a Workload, a ReplicaSet, ...) and
/// one revision. During a rollout the old revision's pods are on their way out and do not count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    owner: String,
    revision: String,
}

impl Group {
    /// The group of `pod`, if a controller owns it.
    pub fn of(pod: &Pod) -> Option<Self> {
        let owner = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))?;
        Some(Self {
            owner: owner.uid.clone(),
            revision: pod.labels().get(REVISION_LABEL).cloned().unwrap_or_default(),
        })
    }
}

/// A binding made and not yet seen in the Pod cache.
#[derive(Clone, Debug)]
struct Assumed {
    /// The pod bound (a pod deleted and created again under its name is another).
    uid: Option<String>,
    node: String,
    requests: Resources,
    group: Option<Group>,
}

/// The bindings made and not yet seen in the Pod cache, so that one pass never overfills a node with pods
/// the previous pass bound. Keyed by the pod's object reference; an entry goes as soon as the cache shows that
/// pod bound, or no longer holds it (deleted, or replaced by another pod of the same name).
#[derive(Debug, Default)]
pub struct Assumptions(HashMap<ObjectRef<Pod>, Assumed>);

impl Assumptions {
    /// Remembers that `pod` was bound to `node`.
    pub fn bound(&mut self, pod: &Pod, node: &str) {
        self.0.insert(
            ObjectRef::from_obj(pod),
            Assumed {
                uid: pod.uid(),
                node: node.to_owned(),
                requests: fit::requests(pod),
                group: Group::of(pod),
            },
        );
    }

    /// Forgets every binding the cache (`pods`) now accounts for, or that no longer matters.
    pub fn settle(&mut self, pods: &[Arc<Pod>]) {
        let unbound: HashMap<ObjectRef<Pod>, Option<String>> = pods
            .iter()
            .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_none()))
            .map(|p| (ObjectRef::from_obj(p.as_ref()), p.uid()))
            .collect();
        self.0
            .retain(|key, a| unbound.get(key).is_some_and(|uid| *uid == a.uid));
    }

    /// Whether `pod` was bound by an earlier pass and the cache does not show it yet: not to be bound again.
    pub fn holds(&self, pod: &Pod) -> bool {
        self.0
            .get(&ObjectRef::from_obj(pod))
            .is_some_and(|a| a.uid == pod.uid())
    }

    /// How many bindings wait to be seen.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `pod` occupies its node: bound, and neither finished nor failed.
fn occupies(pod: &Pod) -> Option<&str> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    pod.spec.as_ref()?.node_name.as_deref()
}

/// The pods waiting for Berth's scheduler (`schedulerName: berth`, no node, not being deleted), oldest first
/// as kube-scheduler's queue orders equal priorities.
pub fn pending(pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let mut waiting: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.node_name.is_none() && s.scheduler_name.as_deref() == Some(SCHEDULER_NAME))
        })
        .cloned()
        .collect();
    waiting.sort_by_key(|p| {
        let created = p.creation_timestamp().map(|t| t.0);
        (created, p.namespace(), p.name_any())
    });
    waiting
}

/// What every node holds: the requests bound to it, and the pods of each spreading group on it.
#[derive(Debug, Default)]
pub struct Usage {
    used: HashMap<String, Resources>,
    spread: HashMap<Group, HashMap<String, usize>>,
}

impl Usage {
    /// What `pods` (the cache) and `assumed` (bindings not yet in it) put on each node.
    pub fn of(pods: &[Arc<Pod>], assumed: &Assumptions) -> Self {
        let mut usage = Self::default();
        for p in pods {
            if let Some(node) = occupies(p) {
                let group = Group::of(p).filter(|_| p.metadata.deletion_timestamp.is_none());
                usage.add(node, fit::requests(p), group);
            }
        }
        for a in assumed.0.values() {
            usage.add(&a.node, a.requests, a.group.clone());
        }
        usage
    }

    fn add(&mut self, node: &str, requests: Resources, group: Option<Group>) {
        *self.used.entry(node.to_owned()).or_default() += requests;
        if let Some(group) = group {
            *self
                .spread
                .entry(group)
                .or_default()
                .entry(node.to_owned())
                .or_default() += 1;
        }
    }

    /// Chooses a node for `pod` among `nodes` ([`fit::choose`]) and counts it there, so that the next pod
    /// of the pass sees it; the error says why no node fits, as kube-scheduler says it.
    pub fn place(&mut self, pod: &Pod, nodes: &[NodeView]) -> Result<String, String> {
        let group = Group::of(pod);
        let none = HashMap::new();
        let same = group.as_ref().and_then(|g| self.spread.get(g)).unwrap_or(&none);
        let node = fit::choose(pod, nodes, &self.used, same)?;
        self.add(&node, fit::requests(pod), group);
        Ok(node)
    }

    /// The requests bound to each node, by name.
    #[cfg(test)]
    pub fn used(&self) -> std::collections::BTreeMap<&str, Resources> {
        self.used.iter().map(|(n, r)| (n.as_str(), *r)).collect()
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
