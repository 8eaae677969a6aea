//! Every server-side apply the agent makes: which field manager it uses and what the body
//! carries. Pure, so the rule below is checked by unit tests.
//!
//! The rule: objects (Node metadata and spec, Lease) are applied as [`FIELD_MANAGER`]; the Node's
//! status as [`STATUS_FIELD_MANAGER`], with a body carrying nothing but the Node's name and
//! `status`. Pod status is patched, not applied ([`crate::status_patch`] says why), under the
//! same [`STATUS_FIELD_MANAGER`].
//!
//! Why two managers: an apply makes its manager own exactly the fields of the body and removes
//! those it owned before and no longer sends. Servers before 1.22 do not track managed fields
//! per subresource, so with one manager a status apply (no labels) released the labels the
//! registration applied, and the Kubernetes 1.20 API server removed them; the node strategy
//! kept the spec (a status write cannot change it), so only the labels vanished. With a
//! manager per concern neither apply touches the other's fields, on old and current servers.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use kube::api::PatchParams;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The field manager of the objects the agent applies (Node metadata and spec, Lease).
pub const FIELD_MANAGER: &str = "berth-agent";

/// The field manager of the status the agent writes (Node status applied, Pod status patched).
pub const STATUS_FIELD_MANAGER: &str = "berth-agent-status";

/// Apply parameters of an object (`FIELD_MANAGER`, forced: the agent is the authority).
pub fn object_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Apply parameters of a status subresource (`STATUS_FIELD_MANAGER`, forced).
pub fn status_params() -> PatchParams {
    PatchParams::apply(STATUS_FIELD_MANAGER).force()
}

fn to_value<T: serde::Serialize>(what: &str, v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Config(format!("serializing {what}: {e}")))
}

/// The registration body of a Node: its metadata and spec, never a status.
pub fn node_body(node: &Node) -> Result<Value> {
    let mut body = to_value("node", node)?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Node".into();
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    Ok(body)
}

/// The status body of Node `name`: its name and status, no labels, no spec.
pub fn node_status_body(name: &str, status: &NodeStatus) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": status})
}

/// The body of a Lease renewal.
pub fn lease_body(lease: &Lease) -> Result<Value> {
    let mut body = to_value("lease", lease)?;
    body["apiVersion"] = "coordination.k8s.io/v1".into();
    body["kind"] = "Lease".into();
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        k.sort_unstable();
        k
    }

    #[test]
    fn status_and_objects_have_their_own_managers() {
        assert_ne!(FIELD_MANAGER, STATUS_FIELD_MANAGER);
        assert_eq!(object_params().field_manager.as_deref(), Some(FIELD_MANAGER));
        assert_eq!(
            status_params().field_manager.as_deref(),
            Some(STATUS_FIELD_MANAGER)
        );
        assert!(object_params().force && status_params().force);
    }

    #[test]
    fn status_bodies_carry_identity_and_status_only() {
        let status = NodeStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        let b = node_status_body("berth-2", &status);
        assert_eq!(keys(&b), ["apiVersion", "kind", "metadata", "status"]);
        assert_eq!(b["metadata"], json!({"name": "berth-2"}));
    }

    #[test]
    fn the_node_body_carries_labels_and_spec_and_no_status() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("berth-2".into()),
                labels: Some(BTreeMap::from([(
                    "kubernetes.io/hostname".to_string(),
                    "berth-2".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus::default()),
        };
        let b = node_body(&node).expect("body");
        assert_eq!(keys(&b), ["apiVersion", "kind", "metadata", "spec"]);
        assert_eq!(b["metadata"]["labels"]["kubernetes.io/hostname"], "berth-2");
    }
}
