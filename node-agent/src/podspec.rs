//! Translating a Pod into CRI configurations (sandbox and containers). What the agent cannot
//! honour never gets here: [`crate::admission`] refuses it first. Pure functions.

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::cri::api::{
    ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerConfig, LinuxPodSandboxConfig,
    PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};
use crate::cri::labels;
use crate::{resources, security};

/// What the pod's downward-API environment can refer to besides the pod itself.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    /// The node's name.
    pub node_name: String,
    /// The node's IP.
    pub host_ip: String,
    /// The node's memory in bytes (the OOM score of Burstable containers).
    pub memory_bytes: i64,
    /// The directory of the node's `Localhost` seccomp profiles.
    pub seccomp_root: std::path::PathBuf,
    /// The node's resolver (`--resolv-conf`), the base of `dnsPolicy: Default`.
    pub resolv: crate::dns::ResolvConf,
    /// The cluster's DNS (`--cluster-dns`, `--cluster-domain`).
    pub cluster_dns: crate::dns::ClusterDns,
}

fn meta(pod: &Pod) -> (&str, &str, &str) {
    (
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or(""),
    )
}

/// The labels on every sandbox and container of `pod`.
pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let (name, ns, uid) = meta(pod);
    HashMap::from([
        (labels::POD_UID.to_string(), uid.to_string()),
        (labels::POD_NAME.to_string(), name.to_string()),
        (labels::POD_NAMESPACE.to_string(), ns.to_string()),
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_AGENT.to_string(),
        ),
    ])
}

/// The pod's log directory: `<root>/<namespace>_<name>_<uid>`.
pub fn log_directory(root: &Path, pod: &Pod) -> std::path::PathBuf {
    let (name, ns, uid) = meta(pod);
    root.join(format!("{ns}_{name}_{uid}"))
}

/// The sandbox configuration of `pod` (attempt `attempt`).
pub fn sandbox_config(pod: &Pod, attempt: u32, log_root: &Path, facts: &NodeFacts) -> PodSandboxConfig {
    let (name, ns, uid) = meta(pod);
    let spec = pod.spec.as_ref();
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| name.chars().take(63).collect());
    let port_mappings = spec
        .into_iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            } as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: ns.to_string(),
            attempt,
        }),
        hostname,
        log_directory: log_directory(log_root, pod).display().to_string(),
        dns_config: Some(crate::dns::pod_dns(pod, &facts.resolv, &facts.cluster_dns)),
        port_mappings,
        labels: pod_labels(pod),
        annotations: HashMap::new(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(security::sandbox(pod, &facts.seccomp_root)),
            sysctls: spec
                .and_then(|s| s.security_context.as_ref())
                .into_iter()
                .flat_map(|sc| sc.sysctls.iter().flatten())
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The CRI configuration of spec container `c` (attempt `attempt`) with its environment
/// `env` ([`crate::env::build`]); `command` and `args` are expanded against it. The caller
/// adds the mounts ([`crate::volumes::prepare_container`]).
pub fn container_config(
    pod: &Pod,
    c: &Container,
    attempt: u32,
    facts: &NodeFacts,
    env: Vec<KeyValue>,
) -> ContainerConfig {
    let mut container_labels = pod_labels(pod);
    container_labels.insert(labels::CONTAINER_NAME.to_string(), c.name.clone());
    let grace = crate::lifecycle::grace_period(pod).as_secs();
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: c
            .command
            .iter()
            .flatten()
            .map(|s| crate::env::expand_with(s, &env))
            .collect(),
        args: c
            .args
            .iter()
            .flatten()
            .map(|s| crate::env::expand_with(s, &env))
            .collect(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env,
        log_path: format!("{}/{attempt}.log", c.name),
        labels: container_labels,
        annotations: HashMap::from([
            (
                labels::ANNOTATION_SPEC_IMAGE.to_string(),
                c.image.clone().unwrap_or_default(),
            ),
            (labels::ANNOTATION_GRACE.to_string(), grace.to_string()),
        ]),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources::linux_resources(
                resources::qos(pod),
                c,
                facts.memory_bytes,
            )),
            security_context: Some(security::container(pod, c, &facts.seccomp_root)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec};

    fn pod() -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("r/demo:v1".into()),
                    command: Some(vec!["sh".into(), "-c".into()]),
                    args: Some(vec!["echo $(GREETING) $$(x)".into()]),
                    working_dir: Some("/www".into()),
                    env: Some(vec![
                        EnvVar {
                            name: "GREETING".into(),
                            value: Some("hi".into()),
                            value_from: None,
                        },
                        EnvVar {
                            name: "POD".into(),
                            value: None,
                            value_from: Some(EnvVarSource {
                                field_ref: Some(ObjectFieldSelector {
                                    field_path: "metadata.name".into(),
                                    api_version: None,
                                }),
                                ..Default::default()
                            }),
                        },
                        EnvVar {
                            name: "IP".into(),
                            value: None,
                            value_from: Some(EnvVarSource {
                                field_ref: Some(ObjectFieldSelector {
                                    field_path: "status.podIP".into(),
                                    api_version: None,
                                }),
                                ..Default::default()
                            }),
                        },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn container_config_carries_command_env_and_labels() {
        let p = pod();
        let facts = NodeFacts {
            node_name: "berth-1".into(),
            host_ip: "10.213.0.11".into(),
            ..Default::default()
        };
        let spec = &p.spec.as_ref().unwrap().containers[0];
        let src = crate::env::Sources {
            node_name: facts.node_name.clone(),
            host_ip: facts.host_ip.clone(),
            pod_ip: "10.214.1.9".into(),
            ..Default::default()
        };
        let env = crate::env::build(&p, spec, &src).expect("env").vars;
        let c = container_config(&p, spec, 2, &facts, env);
        assert_eq!(c.command, vec!["sh", "-c"]);
        assert_eq!(c.args, vec!["echo hi $(x)"]);
        assert_eq!(c.working_dir, "/www");
        let env: HashMap<_, _> = c
            .envs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect();
        assert_eq!(env["POD"], "web");
        assert_eq!(env["IP"], "10.214.1.9");
        assert_eq!(c.log_path, "app/2.log");
        assert_eq!(c.labels[labels::POD_UID], "u-1");
        assert_eq!(c.labels[labels::CONTAINER_NAME], "app");
        assert_eq!(c.metadata.unwrap().attempt, 2);
    }

    #[test]
    fn sandbox_config_names_the_pod() {
        let s = sandbox_config(&pod(), 1, Path::new("/var/log/pods"), &NodeFacts::default());
        assert_eq!(s.log_directory, "/var/log/pods/shop_web_u-1");
        assert_eq!(s.hostname, "web");
        assert_eq!(s.metadata.unwrap().attempt, 1);
    }
}
