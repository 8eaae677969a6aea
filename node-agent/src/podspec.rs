//! Translating a Pod into CRI configurations (sandbox and containers), and listing the pod
//! fields the agent does not implement. Pure functions.

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

use crate::cri::api::{
    ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    PortMapping, Protocol,
};
use crate::cri::labels;

/// What the pod's downward-API environment can refer to besides the pod itself.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    /// The node's name.
    pub node_name: String,
    /// The node's IP.
    pub host_ip: String,
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
pub fn sandbox_config(pod: &Pod, attempt: u32, log_root: &Path) -> PodSandboxConfig {
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
        port_mappings,
        labels: pod_labels(pod),
        annotations: HashMap::new(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The value of a downward-API `fieldRef`, if the agent supports it.
fn field_ref(pod: &Pod, facts: &NodeFacts, pod_ip: &str, path: &str) -> Option<String> {
    let (name, ns, uid) = meta(pod);
    Some(match path {
        "metadata.name" => name.to_string(),
        "metadata.namespace" => ns.to_string(),
        "metadata.uid" => uid.to_string(),
        "status.podIP" => pod_ip.to_string(),
        "status.hostIP" => facts.host_ip.clone(),
        "spec.nodeName" => facts.node_name.clone(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        _ => return None,
    })
}

/// Expands `$(VAR)` references to earlier variables, as the kubelet (`$$` escapes).
fn expand(value: &str, vars: &[KeyValue]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(end) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..=end];
            match vars.iter().rev().find(|kv| kv.key == name) {
                Some(kv) => out.push_str(&kv.value),
                None => out.push_str(&rest[i..i + end + 3]),
            }
            rest = &after[end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment: literal values (with `$(VAR)` expansion) and downward-API
/// `fieldRef`s; other sources are unsupported and skipped.
pub fn environment(pod: &Pod, c: &Container, facts: &NodeFacts, pod_ip: &str) -> Vec<KeyValue> {
    let mut vars: Vec<KeyValue> = Vec::new();
    for EnvVar {
        name,
        value,
        value_from,
    } in c.env.iter().flatten()
    {
        let v = match (value, value_from) {
            (Some(v), _) => Some(expand(v, &vars)),
            (None, Some(from)) => from
                .field_ref
                .as_ref()
                .and_then(|f| field_ref(pod, facts, pod_ip, &f.field_path)),
            (None, None) => Some(String::new()),
        };
        if let Some(value) = v {
            vars.push(KeyValue {
                key: name.clone(),
                value,
            });
        }
    }
    vars
}

/// The CRI configuration of spec container `c` (attempt `attempt`).
pub fn container_config(
    pod: &Pod,
    c: &Container,
    attempt: u32,
    facts: &NodeFacts,
    pod_ip: &str,
) -> ContainerConfig {
    let env = environment(pod, c, facts, pod_ip);
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
        command: c.command.iter().flatten().map(|s| expand(s, &env)).collect(),
        args: c.args.iter().flatten().map(|s| expand(s, &env)).collect(),
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
        ..Default::default()
    }
}

/// True for the service-account token volume the API server's admission adds to every pod
/// (`kube-api-access-*` or a `<sa>-token-*` secret): not mounted, and not worth a warning.
fn is_service_account_volume(name: &str) -> bool {
    name.starts_with("kube-api-access-") || name.contains("-token-")
}

/// True for probes the agent cannot run (gRPC, HTTPS): they fail every period.
fn unsupported_probe(p: &k8s_openapi::api::core::v1::Probe) -> bool {
    p.grpc.is_some()
        || p.http_get.as_ref().is_some_and(|h| {
            h.scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
        })
}

/// The pod's fields the agent ignores, as JSON paths (for an Event and a condition).
pub fn unsupported_fields(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return vec![];
    };
    let mut out = Vec::new();
    if spec
        .volumes
        .iter()
        .flatten()
        .any(|v| !is_service_account_volume(&v.name))
    {
        out.push("spec.volumes".to_string());
    }
    if spec.init_containers.as_ref().is_some_and(|v| !v.is_empty()) {
        out.push("spec.initContainers".to_string());
    }
    if spec.host_network == Some(true) {
        out.push("spec.hostNetwork".to_string());
    }
    for c in &spec.containers {
        let p = format!("spec.containers[{}]", c.name);
        if c.volume_mounts
            .iter()
            .flatten()
            .any(|m| !is_service_account_volume(&m.name))
        {
            out.push(format!("{p}.volumeMounts"));
        }
        if c.env_from.as_ref().is_some_and(|v| !v.is_empty()) {
            out.push(format!("{p}.envFrom"));
        }
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                let ok = from
                    .field_ref
                    .as_ref()
                    .is_some_and(|f| field_ref(pod, &NodeFacts::default(), "", &f.field_path).is_some());
                if !ok {
                    out.push(format!("{p}.env[{}].valueFrom", e.name));
                }
            }
        }
        for (set, name) in [
            (
                c.liveness_probe.as_ref().is_some_and(unsupported_probe),
                "livenessProbe",
            ),
            (
                c.readiness_probe.as_ref().is_some_and(unsupported_probe),
                "readinessProbe",
            ),
            (
                c.startup_probe.as_ref().is_some_and(unsupported_probe),
                "startupProbe",
            ),
            (c.lifecycle.is_some(), "lifecycle"),
            (c.security_context.is_some(), "securityContext"),
        ] {
            if set {
                out.push(format!("{p}.{name}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVarSource, ObjectFieldSelector, PodSpec, Volume};

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
        };
        let c = container_config(
            &p,
            &p.spec.as_ref().unwrap().containers[0],
            2,
            &facts,
            "10.214.1.9",
        );
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
        let s = sandbox_config(&pod(), 1, Path::new("/var/log/pods"));
        assert_eq!(s.log_directory, "/var/log/pods/shop_web_u-1");
        assert_eq!(s.hostname, "web");
        assert_eq!(s.metadata.unwrap().attempt, 1);
    }

    #[test]
    fn unsupported_fields_are_listed_but_service_account_volumes_are_not() {
        let mut p = pod();
        assert!(unsupported_fields(&p).is_empty());
        p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
            name: "default-token-abcde".into(),
            ..Default::default()
        }]);
        assert!(unsupported_fields(&p).is_empty());
        p.spec.as_mut().unwrap().volumes.as_mut().unwrap().push(Volume {
            name: "data".into(),
            ..Default::default()
        });
        assert_eq!(unsupported_fields(&p), vec!["spec.volumes"]);
    }
}
