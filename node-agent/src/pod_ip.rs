//! The pod's IP, which probes, the `status.podIP` environment and the status need, rebuilt on
//! every round from what survives a restart of the runtime or of the agent.
//!
//! The runtime's `PodSandboxStatus` is the source. It can stop reporting the IP of a sandbox
//! that still runs: containerd answers an empty IP once it believes the sandbox's network
//! namespace is closed, as after a restart in a mount namespace that no longer has the netns
//! mount (the local cluster runs containerd so). The agent then uses, in order: the IP the
//! runtime reported earlier for this very sandbox (remembered by the worker), else the
//! `podIP` of the Pod's status when that status was written for this sandbox (it names a
//! container the runtime holds in it, as after an agent restart). A new sandbox never
//! inherits an IP, and no IP is better than a wrong one: probes without one are skipped.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::observe::Observed;

/// IPs the runtime reported, by sandbox id.
pub type Known = HashMap<String, String>;

/// Where the IP of the ready sandbox came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// There is no ready sandbox.
    NoSandbox,
    /// The runtime reports it now.
    Runtime,
    /// The runtime reported it earlier for this sandbox.
    Remembered,
    /// The Pod's status, written for this sandbox.
    PodStatus,
    /// Nowhere: the runtime reports none and nothing vouches for one.
    Unknown,
}

/// The ids of the containers the Pod's status names (`runtime://id`).
fn reported_container_ids(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.container_id.as_deref())
        .map(|id| id.rsplit("://").next().unwrap_or(id))
}

/// Fills the IP of the ready sandbox of `obs` when the runtime left it out, remembers the IPs
/// the runtime reports (forgetting sandboxes that are gone) and says where the IP came from.
pub fn resolve(pod: &Pod, obs: &mut Observed, known: &mut Known) -> Source {
    known.retain(|id, _| obs.sandboxes.iter().any(|s| &s.id == id));
    for s in &obs.sandboxes {
        if let Some(ip) = s.ip.as_ref().filter(|ip| !ip.is_empty()) {
            known.insert(s.id.clone(), ip.clone());
        }
    }
    let Some(sandbox) = obs.ready_sandbox() else {
        return Source::NoSandbox;
    };
    if sandbox.ip.as_ref().is_some_and(|ip| !ip.is_empty()) {
        return Source::Runtime;
    }
    let id = sandbox.id.clone();
    let (ip, source) = if let Some(ip) = known.get(&id) {
        (Some(ip.clone()), Source::Remembered)
    } else {
        let written_for_it = reported_container_ids(pod)
            .any(|cid| obs.containers.iter().any(|c| c.id == cid && c.sandbox_id == id));
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty() && written_for_it);
        match ip {
            Some(ip) => (Some(ip), Source::PodStatus),
            None => (None, Source::Unknown),
        }
    };
    if let Some(s) = obs.sandboxes.iter_mut().find(|s| s.id == id) {
        s.ip = ip;
    }
    source
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::container;
    use crate::observe::{Sandbox, State};

    fn obs(sandbox: &str, ip: Option<&str>, container_id: &str) -> Observed {
        let mut c = container(container_id, 0, State::Running, 0, 100);
        c.sandbox_id = sandbox.into();
        Observed {
            sandboxes: vec![Sandbox {
                id: sandbox.into(),
                attempt: 0,
                ready: true,
                ip: ip.map(str::to_string),
            }],
            containers: vec![c],
        }
    }

    fn pod_reporting(ip: &str, container_id: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "status": {"podIP": ip, "containerStatuses": [{
                "name": "app", "image": "i", "imageID": "", "restartCount": 0, "ready": true,
                "containerID": format!("containerd://{container_id}")
            }]}
        }))
        .expect("pod")
    }

    fn ip(o: &Observed) -> Option<&str> {
        o.ready_sandbox().and_then(|s| s.ip.as_deref())
    }

    #[test]
    fn an_ip_the_runtime_stops_reporting_is_remembered() {
        let pod = pod_reporting("10.214.1.9", "other");
        let mut known = Known::new();
        let mut o = obs("sb1", Some("10.214.1.5"), "c1");
        assert_eq!(resolve(&pod, &mut o, &mut known), Source::Runtime);
        let mut o = obs("sb1", None, "c1");
        assert_eq!(resolve(&pod, &mut o, &mut known), Source::Remembered);
        assert_eq!(ip(&o), Some("10.214.1.5"));
        // A new sandbox inherits nothing, and the old one is forgotten.
        let mut o = obs("sb2", None, "c2");
        assert_eq!(resolve(&pod, &mut o, &mut known), Source::Unknown);
        assert_eq!(ip(&o), None);
        assert!(known.is_empty());
    }

    #[test]
    fn after_an_agent_restart_the_pod_status_vouches_for_its_own_sandbox() {
        let mut known = Known::new();
        let mut o = obs("sb1", None, "c1");
        let pod = pod_reporting("10.214.1.5", "c1");
        assert_eq!(resolve(&pod, &mut o, &mut known), Source::PodStatus);
        assert_eq!(ip(&o), Some("10.214.1.5"));
        // A status written for another sandbox's containers says nothing about this one.
        let mut o = obs("sb1", None, "c1");
        let stale = pod_reporting("10.214.1.7", "c0");
        assert_eq!(resolve(&stale, &mut o, &mut known), Source::Unknown);
        assert_eq!(ip(&o), None);
    }

    #[test]
    fn no_ready_sandbox_no_ip() {
        let mut o = obs("sb1", Some("10.214.1.5"), "c1");
        o.sandboxes[0].ready = false;
        let mut known = Known::new();
        let pod = pod_reporting("10.214.1.5", "c1");
        assert_eq!(resolve(&pod, &mut o, &mut known), Source::NoSandbox);
    }
}
