//! The pod status write, made as the kubelet's status manager makes it: a strategic-merge
//! patch of `pods/status` that carries the pod's uid (a precondition: a pod recreated under the
//! same name refuses a patch meant for the old one) and every field the agent owns, `null` for
//! those it no longer reports. Pure, so the body is checked by unit tests.
//!
//! Why not server-side apply, as for the Node: on the Kubernetes 1.20 API server, an apply to
//! `pods/status` that changes nothing and races a graceful deletion stores the pod without its
//! `deletionTimestamp` (the grace period stays). The agent never sees the deletion and the pod
//! never terminates: `kubectl delete` waits forever. Measured on the local cluster, 30 identical
//! status writes racing one `kubectl delete`, 15 times each: server-side apply lost the
//! deletion 15 of 15 times, a strategic-merge patch 0 of 15. The conformance test "Kubectl
//! replace should update a single-container pod's image" met it, and hung CI with it;
//! `e2e/tests/agent.rs` replays it.
//!
//! What the patch leaves alone: `PodScheduled` (the scheduler's) and readiness gates'
//! conditions (their controllers'): conditions merge by `type`, and only the agent's are sent
//! (or deleted with `$patch: delete` when the agent stops reporting one).

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use kube::api::PatchParams;
use serde_json::{Map, Value, json};

use crate::apply::STATUS_FIELD_MANAGER;

/// Patch parameters of a status write (`STATUS_FIELD_MANAGER`; a patch is never forced).
pub fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(STATUS_FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// True for a condition type the agent reports (not `PodScheduled`, not a readiness gate's).
pub fn agent_condition(pod: &Pod, type_: &str) -> bool {
    type_ != "PodScheduled"
        && !pod
            .spec
            .iter()
            .flat_map(|s| s.readiness_gates.iter().flatten())
            .any(|g| g.condition_type == type_)
}

/// The strategic-merge patch that makes `pod`'s status read `new` in everything the agent owns.
pub fn patch(pod: &Pod, new: &PodStatus) -> Value {
    let mut status = Map::new();
    let mut put = |key: &str, v: Value| {
        status.insert(key.to_string(), v);
    };
    put("phase", json!(new.phase));
    put("reason", json!(new.reason));
    put("message", json!(new.message));
    put("hostIP", json!(new.host_ip));
    put("podIP", json!(new.pod_ip));
    // podIPs merge by `ip`: a new sandbox's IP must replace the old one, not join it.
    put(
        "podIPs",
        match &new.pod_ips {
            Some(ips) => {
                let mut list = vec![json!({"$patch": "replace"})];
                list.extend(ips.iter().map(|ip| json!(ip)));
                Value::Array(list)
            }
            None => Value::Null,
        },
    );
    put("startTime", json!(new.start_time));
    put("qosClass", json!(new.qos_class));
    // Lists without a merge key: the patch replaces them whole.
    put("containerStatuses", json!(new.container_statuses));
    put("initContainerStatuses", json!(new.init_container_statuses));
    let conditions = conditions(pod, new);
    if !conditions.is_empty() {
        put("conditions", Value::Array(conditions));
    }
    json!({"metadata": {"uid": pod.metadata.uid}, "status": status})
}

/// The agent's conditions of `new`, and a delete for each of its conditions the pod still has
/// that `new` no longer reports.
fn conditions(pod: &Pod, new: &PodStatus) -> Vec<Value> {
    let ours = |c: &&PodCondition| agent_condition(pod, &c.type_);
    let reported: Vec<&PodCondition> = new.conditions.iter().flatten().filter(ours).collect();
    let mut out: Vec<Value> = reported.iter().map(|c| json!(c)).collect();
    let old = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    for gone in old.into_iter().flatten().filter(ours) {
        if !reported.iter().any(|c| c.type_ == gone.type_) {
            out.push(json!({"type": gone.type_, "$patch": "delete"}));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodReadinessGate, PodSpec};
    use kube::api::ObjectMeta;

    fn condition(type_: &str) -> PodCondition {
        PodCondition {
            type_: type_.into(),
            status: "True".into(),
            ..Default::default()
        }
    }

    fn pod(conditions: &[&str], gates: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                readiness_gates: Some(
                    gates
                        .iter()
                        .map(|g| PodReadinessGate {
                            condition_type: g.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(conditions.iter().map(|c| condition(c)).collect()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_patch_carries_the_uid_and_nulls_what_the_agent_no_longer_reports() {
        let new = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        let p = patch(&pod(&[], &[]), &new);
        assert_eq!(p["metadata"], json!({"uid": "u-1"}));
        assert_eq!(p["status"]["phase"], "Running");
        for gone in [
            "reason",
            "message",
            "podIP",
            "podIPs",
            "containerStatuses",
            "startTime",
        ] {
            assert!(p["status"][gone].is_null(), "{gone} is sent as null");
            assert!(
                p["status"].as_object().unwrap().contains_key(gone),
                "{gone} is sent"
            );
        }
        assert!(params().field_manager.as_deref() == Some(STATUS_FIELD_MANAGER) && !params().force);
    }

    #[test]
    fn pod_ips_replace_the_old_list() {
        let new = PodStatus {
            pod_ips: Some(vec![PodIP {
                ip: "10.214.1.9".into(),
            }]),
            ..Default::default()
        };
        let p = patch(&pod(&[], &[]), &new);
        assert_eq!(
            p["status"]["podIPs"],
            json!([{"$patch": "replace"}, {"ip": "10.214.1.9"}])
        );
    }

    #[test]
    fn only_the_agents_conditions_are_sent_or_deleted() {
        let old = pod(
            &["PodScheduled", "Ready", "example.com/gate", "berth.dev/Gone"],
            &["example.com/gate"],
        );
        let new = PodStatus {
            conditions: Some(vec![condition("Ready"), condition("PodScheduled")]),
            ..Default::default()
        };
        let p = patch(&old, &new);
        let types: Vec<String> = p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}{}",
                    c["type"].as_str().unwrap(),
                    c.get("$patch").map_or("", |_| " (delete)")
                )
            })
            .collect();
        assert_eq!(types, ["Ready", "berth.dev/Gone (delete)"]);
        assert!(!agent_condition(&old, "PodScheduled") && !agent_condition(&old, "example.com/gate"));
    }
}
