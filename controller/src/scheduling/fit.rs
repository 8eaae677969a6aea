//! Choosing a node for a Pod, as kube-scheduler's filters and a spreading score would: Ready Berth nodes
//! whose labels match the node selector, whose taints the Pod tolerates, and whose allocatable resources hold
//! the Pod's requests next to what is already bound there; among them, the one with the fewest Pods of the
//! same Workload, then the least requested CPU.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::ResourceExt;

/// Resource amounts in the units the scheduler compares: millicores, bytes, Pods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu_milli: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Pods.
    pub pods: i64,
}

impl std::ops::AddAssign for Resources {
    fn add_assign(&mut self, o: Self) {
        self.cpu_milli += o.cpu_milli;
        self.memory += o.memory;
        self.pods += o.pods;
    }
}

/// What the scheduler knows of a node.
#[derive(Clone, Debug)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its taints.
    pub taints: Vec<Taint>,
    /// What Pods may use.
    pub allocatable: Resources,
    /// Ready, not cordoned, and its agent's Lease is fresh.
    pub schedulable: bool,
}

impl NodeView {
    /// The view of `node`; `alive` says whether its agent's Lease is fresh.
    pub fn of(node: &Node, alive: bool) -> Self {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let spec = node.spec.as_ref();
        let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let alloc = status.and_then(|s| s.allocatable.as_ref());
        let get = |key: &str| alloc.and_then(|a| a.get(key)).map(|q| q.0.as_str());
        Self {
            name: node.name_any(),
            labels: node.labels().clone(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            allocatable: Resources {
                cpu_milli: get("cpu").and_then(|q| quantity(q, 1000)).unwrap_or(0),
                memory: get("memory").and_then(|q| quantity(q, 1)).unwrap_or(0),
                pods: get("pods").and_then(|q| quantity(q, 1)).unwrap_or(110),
            },
            schedulable: ready && alive && !cordoned,
        }
    }
}

/// A Kubernetes quantity (`50m`, `1.5`, `16Mi`, `1G`, `2e3`) times `scale` (1000 for millicores), rounded
/// up; `None` when it does not parse.
pub fn quantity(text: &str, scale: i64) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    Some((value * factor * scale as f64).ceil() as i64)
}

/// The resources a Pod requests (a Pod slot, plus the sum of its containers' requests).
pub fn requests(pod: &Pod) -> Resources {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let mut sum = Resources {
        pods: 1,
        ..Resources::default()
    };
    for c in containers {
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let get = |key: &str, scale| {
            req.and_then(|r| r.get(key))
                .and_then(|q| quantity(&q.0, scale))
                .unwrap_or(0)
        };
        sum += Resources {
            cpu_milli: get("cpu", 1000),
            memory: get("memory", 1),
            pods: 0,
        };
    }
    sum
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    if taint.effect == "PreferNoSchedule" {
        return true;
    }
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = t.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key);
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        };
        effect_ok && key_ok && value_ok && (t.key.is_some() || t.operator.as_deref() == Some("Exists"))
    })
}

/// Chooses a node for `pod`. `used` is what is bound to each node already; `same_workload` counts the Pods
/// of the Pod's Workload per node. The error says why no node fits, as kube-scheduler says it.
pub fn choose(
    pod: &Pod,
    nodes: &[NodeView],
    used: &HashMap<String, Resources>,
    same_workload: &HashMap<String, usize>,
) -> Result<String, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let selector = spec.node_selector.unwrap_or_default();
    let tolerations = spec.tolerations.unwrap_or_default();
    let want = requests(pod);
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut fits = Vec::new();
    for node in nodes {
        let used = used.get(&node.name).copied().unwrap_or_default();
        let reason = if !node.schedulable {
            Some("node(s) were not ready")
        } else if !selector.iter().all(|(k, v)| node.labels.get(k) == Some(v)) {
            Some("node(s) didn't match node selector")
        } else if !node
            .taints
            .iter()
            .filter(|t| t.effect != "PreferNoSchedule")
            .all(|t| tolerates(&tolerations, t))
        {
            Some("node(s) had taints that the pod didn't tolerate")
        } else if used.cpu_milli + want.cpu_milli > node.allocatable.cpu_milli {
            Some("Insufficient cpu")
        } else if used.memory + want.memory > node.allocatable.memory {
            Some("Insufficient memory")
        } else if used.pods + want.pods > node.allocatable.pods {
            Some("Too many pods")
        } else {
            None
        };
        match reason {
            Some(r) => *reasons.entry(r).or_default() += 1,
            None => fits.push((
                same_workload.get(&node.name).copied().unwrap_or(0),
                used.cpu_milli,
                node.name.clone(),
            )),
        }
    }
    fits.sort();
    match fits.into_iter().next() {
        Some((_, _, name)) => Ok(name),
        None => {
            let why: Vec<_> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            Err(format!(
                "0/{} nodes are available: {}.",
                nodes.len(),
                why.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn node(name: &str, cpu: i64, labels: &[(&str, &str)]) -> NodeView {
        NodeView {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            taints: vec![Taint {
                key: "berth.dev/agent".into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }],
            allocatable: Resources {
                cpu_milli: cpu,
                memory: 1 << 30,
                pods: 110,
            },
            schedulable: true,
        }
    }

    fn pod(cpu: &str, selector: &[(&str, &str)], tolerate: bool) -> Pod {
        let requests = [("cpu".to_owned(), Quantity(cpu.into()))].into();
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(requests),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                node_selector: (!selector.is_empty())
                    .then(|| selector.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
                tolerations: tolerate.then(|| {
                    vec![Toleration {
                        key: Some("berth.dev/agent".into()),
                        operator: Some("Exists".into()),
                        effect: Some("NoSchedule".into()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(quantity("50m", 1000), Some(50));
        assert_eq!(quantity("1.5", 1000), Some(1500));
        assert_eq!(quantity("16Mi", 1), Some(16 << 20));
        assert_eq!(quantity("1G", 1), Some(1_000_000_000));
        assert_eq!(quantity("2e3", 1), Some(2000));
        assert_eq!(quantity("12 apples", 1), None);
    }

    #[test]
    fn replicas_spread_across_nodes() {
        let nodes = [node("a", 2000, &[]), node("b", 2000, &[]), node("c", 2000, &[])];
        let mut same = HashMap::new();
        let mut chosen = Vec::new();
        for _ in 0..3 {
            let n = choose(&pod("100m", &[], true), &nodes, &HashMap::new(), &same).unwrap();
            *same.entry(n.clone()).or_default() += 1;
            chosen.push(n);
        }
        chosen.sort();
        assert_eq!(chosen, ["a", "b", "c"]);
    }

    #[test]
    fn selectors_taints_readiness_and_full_nodes_filter() {
        let mut down = node("down", 4000, &[]);
        down.schedulable = false;
        let nodes = [
            node("small", 100, &[("disk", "ssd")]),
            node("big", 4000, &[]),
            down,
        ];
        assert_eq!(
            choose(&pod("500m", &[], true), &nodes, &HashMap::new(), &HashMap::new()),
            Ok("big".into())
        );
        let err = choose(
            &pod("500m", &[("disk", "ssd")], true),
            &nodes,
            &HashMap::new(),
            &HashMap::new(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match node selector, 1 node(s) were not ready."
        );
        let err = choose(&pod("1m", &[], false), &nodes, &HashMap::new(), &HashMap::new()).unwrap_err();
        assert!(
            err.contains("2 node(s) had taints that the pod didn't tolerate"),
            "{err}"
        );
        let used = [(
            "big".to_owned(),
            Resources {
                cpu_milli: 3800,
                memory: 0,
                pods: 3,
            },
        )]
        .into();
        assert!(
            choose(&pod("500m", &[], true), &nodes, &used, &HashMap::new()).is_err(),
            "what is bound counts"
        );
    }

    #[test]
    fn uneven_nodes_fill_the_emptier_first() {
        let nodes = [node("a", 4000, &[]), node("b", 4000, &[])];
        let used = [(
            "a".to_owned(),
            Resources {
                cpu_milli: 3000,
                memory: 0,
                pods: 5,
            },
        )]
        .into();
        assert_eq!(
            choose(&pod("100m", &[], true), &nodes, &used, &HashMap::new()),
            Ok("b".into())
        );
    }
}
