//! The downward API: the values a pod may read about itself (`fieldRef`) and about its
//! containers' resources (`resourceFieldRef`), shared by the environment ([`crate::env`]) and
//! the downwardAPI/projected volumes ([`crate::volumes`]). As the kubelet 1.20's
//! `podFieldSelectorRuntimeValue`, `fieldpath.ExtractFieldPathAsString` and
//! `containerResourceRuntimeValue` (limits left unset default to the node's allocatable). Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use crate::quantity;

/// What the node can give a container: the defaults of unset limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocatable {
    /// CPU in thousandths of a core.
    pub cpu_millis: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
    /// Ephemeral storage in bytes (0 when unknown).
    pub ephemeral_bytes: i64,
}

/// Formats labels or annotations as the kubelet does: sorted `key="value"` lines, the value
/// quoted as Go's `%q`.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote`, enough for label and annotation values.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The subscript of `metadata.labels['key']`, if `path` is one for `prefix`.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")
}

/// The value of `fieldRef.fieldPath` for the pod's metadata (volumes and env alike), `None`
/// for a path the downward API does not offer.
pub fn metadata_field(pod: &Pod, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let empty = BTreeMap::new();
    let labels = m.labels.as_ref().unwrap_or(&empty);
    let annotations = m.annotations.as_ref().unwrap_or(&empty);
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(labels),
        "metadata.annotations" => format_map(annotations),
        p => {
            if let Some(k) = subscript(p, "metadata.labels") {
                labels.get(k).cloned().unwrap_or_default()
            } else if let Some(k) = subscript(p, "metadata.annotations") {
                annotations.get(k).cloned().unwrap_or_default()
            } else {
                return None;
            }
        }
    })
}

/// The value of an environment variable's `fieldRef.fieldPath`: the metadata fields plus
/// `spec.nodeName`, `spec.serviceAccountName`, `status.hostIP`, `status.podIP(s)`.
pub fn env_field(pod: &Pod, node_name: &str, host_ip: &str, pod_ip: &str, path: &str) -> Option<String> {
    Some(match path {
        "spec.nodeName" => node_name.to_string(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        p => return metadata_field(pod, p),
    })
}

/// Why a `resourceFieldRef` has no value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// The named container is not in the pod.
    #[error("container {0} not found")]
    NoContainer(String),
    /// The resource is not one the downward API offers.
    #[error("unsupported container resource : {0}")]
    Unsupported(String),
    /// The divisor or the value is not a quantity.
    #[error("invalid quantity {0:?}")]
    Quantity(String),
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if b <= 0 {
        return 0;
    }
    let q = a / b;
    if a % b != 0 && a > 0 { q + 1 } else { q }
}

/// The value of `sel` for container `c` (for env: the container itself; for volumes: the
/// container `sel.containerName` of `pod`).
pub fn resource_field(
    c: &Container,
    sel: &ResourceFieldSelector,
    alloc: Allocatable,
) -> Result<String, ResourceError> {
    let res = c.resources.as_ref();
    let get = |which: &str, name: &str| -> Option<String> {
        let m = if which == "limits" {
            res.and_then(|r| r.limits.as_ref())
        } else {
            res.and_then(|r| r.requests.as_ref())
        };
        m.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let divisor = sel.divisor.as_ref().map_or("1", |d| d.0.as_str());
    let (which, name) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| ResourceError::Unsupported(sel.resource.clone()))?;
    if !matches!(which, "limits" | "requests") {
        return Err(ResourceError::Unsupported(sel.resource.clone()));
    }
    let default = |name: &str| match name {
        "cpu" => alloc.cpu_millis.to_string() + "m",
        "memory" => alloc.memory_bytes.to_string(),
        _ => alloc.ephemeral_bytes.to_string(),
    };
    let text = match (which, get(which, name)) {
        (_, Some(v)) => v,
        ("limits", None) => default(name),
        (_, None) => "0".to_string(),
    };
    let bad = |s: &str| ResourceError::Quantity(s.to_string());
    let n = match name {
        "cpu" => {
            let v = quantity::milli_value(&text).ok_or_else(|| bad(&text))?;
            let d = quantity::milli_value(divisor).ok_or_else(|| bad(divisor))?;
            // The API server stores an unset divisor as "0": the kubelet reads it as 1.
            ceil_div(v, if d == 0 { 1000 } else { d })
        }
        "memory" | "ephemeral-storage" => {
            let v = quantity::value(&text).ok_or_else(|| bad(&text))?;
            let d = quantity::value(divisor).ok_or_else(|| bad(divisor))?;
            ceil_div(v, d.max(1))
        }
        _ => return Err(ResourceError::Unsupported(sel.resource.clone())),
    };
    Ok(n.to_string())
}

/// [`resource_field`] for a volume item: the container is named by the selector.
pub fn pod_resource_field(
    pod: &Pod,
    sel: &ResourceFieldSelector,
    alloc: Allocatable,
) -> Result<String, ResourceError> {
    let name = sel.container_name.clone().unwrap_or_default();
    let c = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| c.name == name)
        .ok_or(ResourceError::NoContainer(name))?;
    resource_field(c, sel, alloc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1",
                "labels": {"b": "2", "a": "x\"y"}, "annotations": {"k": "v"}},
            "spec": {"serviceAccountName": "robot", "containers": [{"name": "app",
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}},
                {"name": "bare"}]}
        }))
        .expect("pod")
    }

    fn sel(resource: &str, divisor: Option<&str>, container: &str) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: Some(container.into()),
            divisor: divisor.map(|d| Quantity(d.into())),
            resource: resource.into(),
        }
    }

    #[test]
    fn metadata_fields_as_the_kubelet_formats_them() {
        let p = pod();
        assert_eq!(
            metadata_field(&p, "metadata.labels").unwrap(),
            "a=\"x\\\"y\"\nb=\"2\""
        );
        assert_eq!(metadata_field(&p, "metadata.labels['b']").unwrap(), "2");
        assert_eq!(metadata_field(&p, "metadata.annotations['none']").unwrap(), "");
        assert_eq!(metadata_field(&p, "metadata.namespace").unwrap(), "shop");
        assert_eq!(metadata_field(&p, "spec.nodeName"), None);
        assert_eq!(
            env_field(&p, "n1", "10.0.0.1", "10.1.0.2", "spec.nodeName").unwrap(),
            "n1"
        );
        assert_eq!(
            env_field(&p, "n1", "10.0.0.1", "10.1.0.2", "status.podIP").unwrap(),
            "10.1.0.2"
        );
        assert_eq!(
            env_field(&p, "n1", "", "", "spec.serviceAccountName").unwrap(),
            "robot"
        );
        assert_eq!(env_field(&p, "n1", "", "", "spec.hostname"), None);
    }

    #[test]
    fn resources_with_divisors_and_node_defaults() {
        let p = pod();
        let alloc = Allocatable {
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            ephemeral_bytes: 0,
        };
        let f = |r: &str, d: Option<&str>, c: &str| pod_resource_field(&p, &sel(r, d, c), alloc);
        assert_eq!(f("limits.cpu", None, "app").unwrap(), "1"); // 500m rounds up to 1 core
        assert_eq!(f("limits.cpu", Some("1m"), "app").unwrap(), "500");
        assert_eq!(f("requests.cpu", Some("1m"), "app").unwrap(), "250");
        assert_eq!(f("limits.memory", Some("1Mi"), "app").unwrap(), "64");
        assert_eq!(
            f("limits.memory", None, "bare").unwrap(),
            (1u64 << 30).to_string()
        );
        assert_eq!(f("limits.cpu", Some("1m"), "bare").unwrap(), "2000");
        assert_eq!(f("requests.memory", None, "bare").unwrap(), "0");
        // The API server stores an unset divisor as "0" (conformance's Downward API tests).
        assert_eq!(f("limits.cpu", Some("0"), "app").unwrap(), "1");
        assert_eq!(
            f("limits.memory", Some("0"), "app").unwrap(),
            (64u64 << 20).to_string()
        );
        assert!(matches!(
            f("limits.gpu", None, "app"),
            Err(ResourceError::Unsupported(_))
        ));
        assert!(matches!(
            f("limits.cpu", None, "nope"),
            Err(ResourceError::NoContainer(_))
        ));
    }
}
