//! The node's heartbeat: a Lease in `kube-node-lease` renewed every 10 s (40 s duration).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch};
use tracing::{debug, warn};

use crate::apply;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The namespace of node leases.
pub const NAMESPACE: &str = "kube-node-lease";

/// The Lease of node `node` (uid `node_uid`, its owner) renewed at `now`.
pub fn lease(node: &str, node_uid: Option<&str>, duration_seconds: i32, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.to_string(),
                    uid: uid.to_string(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Renews the Lease once (applied as [`apply::FIELD_MANAGER`]).
pub async fn renew(api: &Api<Lease>, lease: &Lease) -> Result<()> {
    let name = lease.metadata.name.clone().unwrap_or_default();
    let body = apply::lease_body(lease)?;
    api.patch(&name, &apply::object_params(), &Patch::Apply(&body))
        .await
        .map_err(|e| Error::kube(format!("renewing lease {NAMESPACE}/{name}"), e))?;
    Ok(())
}

/// Renews the Lease every `every` forever; failures are logged and retried next tick.
pub async fn run(
    api: Api<Lease>,
    node: String,
    node_uid: Option<String>,
    duration_seconds: i32,
    every: Duration,
    metrics: Metrics,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let l = lease(&node, node_uid.as_deref(), duration_seconds, Timestamp::now());
        match renew(&api, &l).await {
            Ok(()) => {
                metrics.lease_renewed(true);
                debug!("lease renewed");
            }
            Err(e) => {
                metrics.lease_renewed(false);
                warn!(error = %e, "lease renewal failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_its_holder_and_owner() {
        let l = lease("berth-1", Some("u"), 40, Timestamp::UNIX_EPOCH);
        assert_eq!(l.metadata.namespace.as_deref(), Some(NAMESPACE));
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("berth-1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(l.metadata.owner_references.unwrap()[0].kind, "Node");
    }
}
