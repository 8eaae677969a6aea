//! A container's resources as the kubelet 1.20 gives them to the runtime: CPU shares from the
//! request, a CFS quota from the limit, the memory limit, and the OOM score by QoS class
//! (`pkg/kubelet/qos`, `kuberuntime_container_linux.go`). Pure.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};

use crate::cri::api::LinuxContainerResources;
use crate::quantity;

/// The pod's quality-of-service class (`status.qosClass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    /// Every container has CPU and memory limits equal to its requests.
    Guaranteed,
    /// Some request or limit, but not Guaranteed.
    Burstable,
    /// No CPU or memory request or limit anywhere.
    BestEffort,
}

impl Qos {
    /// The name the API uses.
    pub fn name(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

/// The CFS period the kubelet uses, microseconds.
pub const CPU_PERIOD_US: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const MIN_QUOTA_US: i64 = 1000;
/// The OOM score of Guaranteed containers (the kubelet's `guaranteedOOMScoreAdj`).
pub const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
/// The OOM score of BestEffort containers.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

fn amount(
    map: Option<&std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
    milli: bool,
) -> Option<i64> {
    let q = map?.get(name)?;
    if milli {
        quantity::milli_value(&q.0)
    } else {
        quantity::value(&q.0)
    }
}

fn requests(r: Option<&ResourceRequirements>, name: &str, milli: bool) -> Option<i64> {
    amount(r.and_then(|r| r.requests.as_ref()), name, milli)
}

fn limits(r: Option<&ResourceRequirements>, name: &str, milli: bool) -> Option<i64> {
    amount(r.and_then(|r| r.limits.as_ref()), name, milli)
}

/// The pod's QoS class, computed as `pkg/apis/core/v1/helper/qos.GetPodQOS` does (CPU and
/// memory only; zero quantities count as absent).
pub fn qos(pod: &Pod) -> Qos {
    let Some(spec) = pod.spec.as_ref() else {
        return Qos::BestEffort;
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let r = c.resources.as_ref();
        for (name, milli) in [("cpu", true), ("memory", false)] {
            let req = requests(r, name, milli).filter(|v| *v != 0);
            let lim = limits(r, name, milli).filter(|v| *v != 0);
            any |= req.is_some() || lim.is_some();
            // Requests default to limits in the API server; a request without a limit, or a
            // limit that differs from the request, is Burstable.
            if lim.is_none() || req.is_some_and(|q| Some(q) != lim) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => Qos::BestEffort,
        (true, true) => Qos::Guaranteed,
        (true, false) => Qos::Burstable,
    }
}

/// CPU shares for a request of `milli` thousandths of a CPU (`milliCPUToShares`).
pub fn cpu_shares(milli: i64) -> i64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    (milli * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The CFS quota for a limit of `milli` thousandths of a CPU (`milliCPUToQuota`).
pub fn cpu_quota(milli: i64) -> i64 {
    (milli * CPU_PERIOD_US / 1000).max(MIN_QUOTA_US)
}

/// The container's OOM score adjustment (`GetContainerOOMScoreAdjust`); `memory_capacity` is
/// the node's memory in bytes.
pub fn oom_score_adj(qos: Qos, c: &Container, memory_capacity: i64) -> i64 {
    match qos {
        Qos::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        Qos::BestEffort => BEST_EFFORT_OOM_SCORE_ADJ,
        Qos::Burstable => {
            let request = requests(c.resources.as_ref(), "memory", false).unwrap_or(0);
            let capacity = memory_capacity.max(1);
            let adj = 1000 - (1000 * i128::from(request) / i128::from(capacity)) as i64;
            if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                1000 + GUARANTEED_OOM_SCORE_ADJ
            } else if adj == BEST_EFFORT_OOM_SCORE_ADJ {
                adj - 1
            } else {
                adj
            }
        }
    }
}

/// The runtime resources of container `c` of a pod of class `qos`.
pub fn linux_resources(qos: Qos, c: &Container, memory_capacity: i64) -> LinuxContainerResources {
    let r = c.resources.as_ref();
    let cpu_limit = limits(r, "cpu", true).filter(|v| *v > 0);
    // A limit without a request: the API server defaults the request to the limit.
    let cpu_request = requests(r, "cpu", true).or(cpu_limit).unwrap_or(0);
    LinuxContainerResources {
        cpu_shares: cpu_shares(cpu_request),
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD_US } else { 0 },
        cpu_quota: cpu_limit.map_or(0, cpu_quota),
        memory_limit_in_bytes: limits(r, "memory", false).filter(|v| *v > 0).unwrap_or(0),
        oom_score_adj: oom_score_adj(qos, c, memory_capacity),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const GIB: i64 = 1 << 30;

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let both = [("cpu", "500m"), ("memory", "64Mi")];
        assert_eq!(qos(&pod(vec![container(&[], &[])])), Qos::BestEffort);
        assert_eq!(qos(&pod(vec![container(&both, &both)])), Qos::Guaranteed);
        assert_eq!(qos(&pod(vec![container(&[], &both)])), Qos::Guaranteed);
        assert_eq!(
            qos(&pod(vec![container(&[("cpu", "100m")], &[])])),
            Qos::Burstable
        );
        assert_eq!(
            qos(&pod(vec![container(&[("memory", "32Mi")], &both)])),
            Qos::Burstable
        );
        assert_eq!(
            qos(&pod(vec![container(&both, &both), container(&[], &[])])),
            Qos::Burstable
        );
        // Other resources do not count.
        assert_eq!(
            qos(&pod(vec![container(&[("ephemeral-storage", "1Gi")], &[])])),
            Qos::BestEffort
        );
    }

    #[test]
    fn cpu_and_memory_become_shares_quota_and_a_limit() {
        let c = container(&[("cpu", "250m")], &[("cpu", "500m"), ("memory", "64Mi")]);
        let r = linux_resources(Qos::Burstable, &c, 8 * GIB);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        let none = linux_resources(Qos::BestEffort, &container(&[], &[]), 8 * GIB);
        assert_eq!(
            (none.cpu_shares, none.cpu_quota, none.memory_limit_in_bytes),
            (2, 0, 0)
        );
        assert_eq!(none.oom_score_adj, 1000);
        assert_eq!(cpu_quota(1), 1000, "the quota has a floor");
        assert_eq!(cpu_shares(1), 2, "shares have a floor");
    }

    #[test]
    fn oom_scores_follow_the_qos_class() {
        let c = container(&[("memory", "1Gi")], &[]);
        assert_eq!(oom_score_adj(Qos::Guaranteed, &c, 8 * GIB), -997);
        assert_eq!(oom_score_adj(Qos::Burstable, &c, 8 * GIB), 875);
        assert_eq!(oom_score_adj(Qos::Burstable, &container(&[], &[]), 8 * GIB), 999);
        assert_eq!(
            oom_score_adj(Qos::Burstable, &container(&[("memory", "8Gi")], &[]), 8 * GIB),
            3
        );
    }
}
