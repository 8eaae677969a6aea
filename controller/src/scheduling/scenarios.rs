//! Berth's scheduler against a mocked API server that expects each request in order
//! ([`crate::testing::api_server`]): waiting pods are bound once, a binding not yet seen in the cache counts on
//! its node in the next pass, a lost node takes no pod, and a pod that fits nowhere is marked so once.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_api::apps::SCHEDULER_NAME;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use tokio::sync::watch;

use super::Scheduler;
use crate::context::FIELD_MANAGER;
use crate::node_lifecycle::liveness::Health;
use crate::testing::api_server::{self, Expect};
use crate::testing::context;
use crate::testing::fixtures::{NS, store};

const PODS: &str = "/api/v1/namespaces/ns/pods";

/// Node `name`: Ready, with room for `pods` pods.
fn node(name: &str, pods: u32) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.status = Some(NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        allocatable: Some(
            [
                ("cpu", "4".to_owned()),
                ("memory", "8Gi".to_owned()),
                ("pods", pods.to_string()),
            ]
            .map(|(k, v)| (k.to_owned(), Quantity(v)))
            .into(),
        ),
        ..Default::default()
    });
    n
}

/// Pod `name` waiting for Berth's scheduler.
fn waiting(name: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.namespace = Some(NS.into());
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("{name}-uid"));
    p.spec = Some(PodSpec {
        scheduler_name: Some(SCHEDULER_NAME.into()),
        ..Default::default()
    });
    p
}

fn binding(pod: &str, node: &str) -> Expect {
    Expect::create(format!("{PODS}/{pod}/binding"))
        .json("/kind", json!("Binding"))
        .json("/metadata/name", json!(pod))
        .json(
            "/target",
            json!({"apiVersion": "v1", "kind": "Node", "name": node}),
        )
}

fn scheduler(client: kube::Client, pods: Vec<Pod>, nodes: Vec<Node>, lost: &[&str]) -> Scheduler {
    let health = Health {
        lost: lost.iter().map(|n| (*n).to_owned()).collect::<BTreeSet<_>>(),
        evict: true,
    };
    Scheduler {
        ctx: context(client, vec![], vec![]),
        pods: store(pods),
        nodes: store(nodes),
        health: watch::channel(Arc::new(health)).1,
        assumed: Default::default(),
    }
}

#[tokio::test]
async fn a_waiting_pod_is_bound_once_and_its_binding_counts_until_the_cache_shows_it() {
    // n1 has room for one pod; n2 is lost (its Lease not seen renewed) and takes none.
    let nodes = vec![node("n1", 1), node("n2", 10)];
    let (client, server) = api_server::mock([
        binding("a", "n1"),
        Expect::strategic(format!("{PODS}/b/status"), FIELD_MANAGER)
            .json("/status/conditions/0/type", json!("PodScheduled"))
            .json("/status/conditions/0/status", json!("False"))
            .json("/status/conditions/0/reason", json!("Unschedulable"))
            .json(
                "/status/conditions/0/message",
                json!("0/2 nodes are available: 1 Too many pods, 1 node(s) were not ready."),
            ),
        Expect::event(NS)
            .json("/reason", json!("FailedScheduling"))
            .json("/type", json!("Warning"))
            .json("/regarding/kind", json!("Pod"))
            .json("/regarding/name", json!("b")),
    ]);
    let mut s = scheduler(client.clone(), vec![waiting("a")], nodes.clone(), &["n2"]);
    server
        .run(async {
            s.pass().await;
            // The cache has not shown `a` bound yet, and `b` arrives: `a` is not bound again, and it still
            // fills n1.
            s.pods = store([waiting("a"), waiting("b")]);
            s.pass().await;
        })
        .await;
}

#[tokio::test]
async fn a_pod_bound_or_deleted_meanwhile_is_no_error() {
    let (client, server) = api_server::mock([binding("a", "n1").answer_status(409, "Conflict")]);
    let mut s = scheduler(client, vec![waiting("a")], vec![node("n1", 10)], &[]);
    server.run(s.pass()).await;
    assert!(
        s.assumed.is_empty(),
        "nothing bound by this scheduler to remember"
    );
}
