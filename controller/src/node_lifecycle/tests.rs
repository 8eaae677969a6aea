//! The node lifecycle's eviction against a mocked API server that expects each request in order
//! ([`crate::testing::api_server`]).

use std::collections::BTreeSet;

use berth_api::apps::WorkloadStatus;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::*;
use crate::testing::api_server::{self, Expect};
use crate::testing::context;
use crate::testing::fixtures::{NS, store, workload};

/// Pod `name` on `node`, controlled by an object of `kind` named `web`.
fn pod(name: &str, node: &str, kind: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.namespace = Some(NS.into());
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("{name}-uid"));
    p.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps.berth.dev/v1alpha1".into(),
        kind: kind.into(),
        name: "web".into(),
        uid: "web-uid".into(),
        controller: Some(true),
        ..Default::default()
    }]);
    p.spec = Some(PodSpec {
        node_name: Some(node.into()),
        ..Default::default()
    });
    p
}

fn nodes(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn only_workload_pods_on_nodes_being_evicted_from_are_victims() {
    let mut going = pod("going", "n1", "Workload");
    going.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::UNIX_EPOCH,
    ));
    let pods: Vec<Arc<Pod>> = [
        pod("a", "n1", "Workload"),
        pod("b", "n2", "Workload"),
        pod("c", "n1", "ReplicaSet"),
        going,
    ]
    .into_iter()
    .map(Arc::new)
    .collect();
    let names = |n: &[&str]| -> Vec<String> {
        victims(&pods, &nodes(n))
            .iter()
            .map(|(p, _)| p.name_any())
            .collect()
    };
    assert_eq!(names(&["n1"]), ["a"]);
    assert_eq!(names(&["n2"]), ["b"]);
    assert!(names(&[]).is_empty());
}

#[tokio::test]
async fn a_lost_nodes_workload_pod_is_deleted_at_once_and_reported_once() {
    let mut web = workload(NS, "web", 1, vec![]);
    web.status = Some(WorkloadStatus {
        revision: 3,
        ..Default::default()
    });
    let (client, server) = api_server::mock([
        Expect::delete(format!("/api/v1/namespaces/{NS}/pods/web-0")).json("/gracePeriodSeconds", json!(0)),
        Expect::event(NS)
            .json("/reason", json!("NodeLost"))
            .json("/type", json!("Warning"))
            .json("/action", json!("Revision3"))
            .json("/regarding/kind", json!("Workload"))
            .json("/regarding/name", json!("web"))
            .json("/related/name", json!("web-0"))
            .json("/note", json!("node n1 lost its lease; pod web-0 is replaced")),
    ]);
    let mut lifecycle = NodeLifecycle {
        ctx: context(client, vec![], vec![]),
        pods: store([pod("web-0", "n1", "Workload"), pod("web-1", "n2", "Workload")]),
        nodes: store([]),
        leases: store([]),
        workloads: store([web]),
        grace: Duration::from_secs(40),
        observations: Observations::default(),
        evicted: HashSet::new(),
        pacing: EvictionPacing::default(),
    };
    server
        .run(async {
            lifecycle.evict(&nodes(&["n1"])).await;
            // The cache has not caught up yet: the pod is not deleted or reported again.
            lifecycle.evict(&nodes(&["n1"])).await;
        })
        .await;
}
