//! The Node object: what this host is (from /proc), built by pure functions, and registered
//! and kept up to date with server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch};

use crate::apply;
use crate::config::Config;
use crate::cri::api::RuntimeStatus;
use crate::error::{Error, Result};

/// Label and taint key marking nodes served by a Berth agent.
pub const AGENT_LABEL: &str = "berth.dev/agent";

/// Facts about the host, read from /proc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// Number of CPUs.
    pub cpus: usize,
    /// Total memory in KiB.
    pub memory_kib: u64,
    /// The kernel's hostname.
    pub hostname: String,
    /// Kernel release.
    pub kernel: String,
    /// OS image (`PRETTY_NAME` of os-release).
    pub os_image: String,
    /// Machine id / boot id.
    pub boot_id: String,
}

impl HostInfo {
    /// Reads the host's facts; missing files give empty values.
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        HostInfo {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_kib: parse_meminfo(&read("/proc/meminfo")),
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os_image: parse_os_release(&read("/etc/os-release")),
            boot_id: read("/proc/sys/kernel/random/boot_id").trim().to_string(),
        }
    }
}

/// `MemTotal` of /proc/meminfo, in KiB.
pub fn parse_meminfo(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn parse_os_release(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// The Node as this agent registers it (metadata and spec).
pub fn node_object(cfg: &Config, host: &HostInfo) -> Node {
    let labels = BTreeMap::from([
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), go_arch().to_string()),
        ("kubernetes.io/hostname".to_string(), cfg.node_name.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), go_arch().to_string()),
        (AGENT_LABEL.to_string(), "true".to_string()),
    ]);
    let _ = host;
    Node {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: cfg.pod_cidr.clone(),
            pod_cidrs: cfg.pod_cidr.clone().map(|c| vec![c]),
            taints: Some(vec![Taint {
                key: AGENT_LABEL.to_string(),
                value: Some("true".to_string()),
                effect: "NoSchedule".to_string(),
                time_added: None,
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The architecture as Kubernetes names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The Ready condition from the runtime's conditions.
pub fn ready_condition(
    runtime: Option<&RuntimeStatus>,
    now: Timestamp,
    previous: Option<&NodeCondition>,
) -> NodeCondition {
    let failing = match runtime {
        None => Some((
            "RuntimeUnreachable".to_string(),
            "the container runtime does not answer".to_string(),
        )),
        Some(s) => ["RuntimeReady", "NetworkReady"].iter().find_map(|t| {
            let c = s.conditions.iter().find(|c| c.r#type == *t);
            match c {
                Some(c) if c.status => None,
                Some(c) => Some((
                    if *t == "RuntimeReady" {
                        "RuntimeNotReady"
                    } else {
                        "NetworkNotReady"
                    }
                    .to_string(),
                    format!("{t}=false reason:{} message:{}", c.reason, c.message),
                )),
                None => Some((
                    format!("{t}Missing"),
                    format!("the runtime reports no {t} condition"),
                )),
            }
        }),
    };
    let (status, reason, message) = match failing {
        None => (
            "True",
            "AgentReady".to_string(),
            "berth-agent is posting ready status".to_string(),
        ),
        Some((r, m)) => ("False", r, m),
    };
    let transition = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    NodeCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(reason),
        message: Some(message),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: transition,
    }
}

/// The Node's status.
pub fn node_status(cfg: &Config, host: &HostInfo, ready: NodeCondition, runtime_version: &str) -> NodeStatus {
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(host.cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{}Ki", host.memory_kib))),
        ("pods".to_string(), Quantity(cfg.max_pods.to_string())),
    ]);
    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.node_name.clone(),
            },
        ]),
        conditions: Some(vec![ready]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(cfg.listen_addr.port()),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            operating_system: "linux".into(),
            kernel_version: host.kernel.clone(),
            os_image: host.os_image.clone(),
            container_runtime_version: runtime_version.to_string(),
            kubelet_version: format!("v1.20.0-berth-{}", env!("CARGO_PKG_VERSION")),
            kube_proxy_version: String::new(),
            boot_id: host.boot_id.clone(),
            machine_id: String::new(),
            system_uuid: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Registers (creates or updates) the Node object: its metadata and spec, applied as
/// [`apply::FIELD_MANAGER`]. NodeRestriction refuses a node's change of its own taints, so
/// the taints sent are those just read (see [`with_taints_of`]); when someone changes them
/// between the read and the apply (kube-controller-manager's node lifecycle), the apply is
/// refused and tried again on a fresh read, a few times.
pub async fn register(api: &Api<Node>, node: &Node) -> Result<()> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut attempt = 1;
    loop {
        match register_once(api, node, &name).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < REGISTER_ATTEMPTS => {
                tracing::warn!(node = %name, attempt, error = %e, "registering the node; trying again");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How often [`register`] tries before the agent gives up (and exits saying why).
const REGISTER_ATTEMPTS: u32 = 5;

async fn register_once(api: &Api<Node>, node: &Node, name: &str) -> Result<()> {
    let existing = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading node {name}"), e))?;
    let node = with_taints_of(node, existing.as_ref());
    let body = apply::node_body(&node)?;
    api.patch(name, &apply::object_params(), &Patch::Apply(&body))
        .await
        .map_err(|e| Error::kube(format!("registering node {name}"), e))?;
    Ok(())
}

/// `node` with the taints of the Node already registered, if any: as the kubelet's
/// `--register-with-taints`, the agent's taints apply when it creates its Node only, so a
/// restart does not put back a taint someone lifted (or drop one someone added).
pub fn with_taints_of(node: &Node, existing: Option<&Node>) -> Node {
    let mut node = node.clone();
    if let (Some(spec), Some(old)) = (node.spec.as_mut(), existing) {
        spec.taints = old.spec.as_ref().and_then(|s| s.taints.clone());
    }
    node
}

/// Writes the Node's status, applied as [`apply::STATUS_FIELD_MANAGER`] (never the manager
/// of the labels and spec: see [`apply`]).
pub async fn write_status(api: &Api<Node>, name: &str, status: &NodeStatus) -> Result<()> {
    let body = apply::node_status_body(name, status);
    api.patch_status(name, &apply::status_params(), &Patch::Apply(&body))
        .await
        .map_err(|e| Error::kube(format!("writing status of node {name}"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::api::RuntimeCondition;
    use clap::Parser;

    fn cfg() -> Config {
        Config::try_parse_from([
            "berth-agent",
            "--node-name=berth-1",
            "--node-ip=10.213.0.11",
            "--pod-cidr=10.214.1.0/24",
            "--tls-cert=/c",
            "--tls-key=/k",
            "--client-ca=/ca",
        ])
        .unwrap()
    }

    #[test]
    fn taints_are_the_registered_nodes_once_it_exists() {
        let fresh = node_object(&cfg(), &HostInfo::default());
        assert_eq!(
            with_taints_of(&fresh, None),
            fresh,
            "a new Node gets the agent's taints"
        );
        let mut lifted = fresh.clone();
        lifted.spec.as_mut().unwrap().taints = None;
        let again = with_taints_of(&fresh, Some(&lifted));
        assert_eq!(again.spec.unwrap().taints, None, "a lifted taint stays lifted");
    }

    #[test]
    fn node_has_labels_taint_and_cidr() {
        let n = node_object(&cfg(), &HostInfo::default());
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["berth.dev/agent"], "true");
        assert_eq!(labels["kubernetes.io/hostname"], "berth-1");
        let spec = n.spec.unwrap();
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.214.1.0/24"));
        let t = &spec.taints.unwrap()[0];
        assert_eq!(
            (t.key.as_str(), t.effect.as_str()),
            ("berth.dev/agent", "NoSchedule")
        );
    }

    #[test]
    fn status_capacity_address_and_port() {
        let host = HostInfo {
            cpus: 2,
            memory_kib: parse_meminfo("MemTotal:        8000000 kB\nMemFree: 1 kB\n"),
            ..Default::default()
        };
        let ready = ready_condition(None, Timestamp::UNIX_EPOCH, None);
        let s = node_status(&cfg(), &host, ready, "containerd://1.6.20");
        let cap = s.capacity.unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "8000000Ki");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(s.addresses.unwrap()[0].address, "10.213.0.11");
        assert_eq!(s.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 10250);
    }

    #[test]
    fn ready_follows_the_runtime() {
        let cond = |t: &str, ok: bool| RuntimeCondition {
            r#type: t.into(),
            status: ok,
            reason: if ok {
                String::new()
            } else {
                "NetworkPluginNotReady".into()
            },
            message: String::new(),
        };
        let ok = RuntimeStatus {
            conditions: vec![cond("RuntimeReady", true), cond("NetworkReady", true)],
        };
        let c = ready_condition(Some(&ok), Timestamp::UNIX_EPOCH, None);
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("True", Some("AgentReady"))
        );
        let bad = RuntimeStatus {
            conditions: vec![cond("RuntimeReady", true), cond("NetworkReady", false)],
        };
        let c2 = ready_condition(Some(&bad), Timestamp::UNIX_EPOCH, Some(&c));
        assert_eq!(
            (c2.status.as_str(), c2.reason.as_deref()),
            ("False", Some("NetworkNotReady"))
        );
        assert!(c2.message.unwrap().contains("NetworkPluginNotReady"));
        assert_eq!(ready_condition(None, Timestamp::UNIX_EPOCH, None).status, "False");
    }
}
