//! The agent's server-side applies against a fake API server that keeps managed fields the way
//! a Kubernetes 1.20 server does: one set of fields per manager, not per subresource. An apply
//! makes its manager own exactly the leaves of its body; leaves it owned before and no longer
//! sends, and that no other manager owns, are removed. Then the Node strategies run: a status
//! write keeps the old spec, an object write keeps the old status (metadata is not reset).
//!
//! On such a server, labels registered and then a status applied under one manager vanish
//! (issue 17); the agent's own calls must keep them, also across an agent restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use berth_agent::apply::{FIELD_MANAGER, STATUS_FIELD_MANAGER};
use berth_agent::config::Config;
use berth_agent::node::{self, HostInfo};
use berth_agent::{lease, lease::NAMESPACE};
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

type Leaf = Vec<String>;

/// Leaves of an apply body (objects recursed; lists and scalars are leaves), without the
/// identity every body carries.
fn leaves(v: &Value, prefix: &mut Leaf, out: &mut BTreeSet<Leaf>) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, child) in o {
                prefix.push(k.clone());
                let identity = matches!(
                    prefix.iter().map(String::as_str).collect::<Vec<_>>()[..],
                    ["apiVersion"] | ["kind"] | ["metadata", "name"] | ["metadata", "namespace"]
                );
                if !identity {
                    leaves(child, prefix, out);
                }
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

fn get<'a>(v: &'a Value, leaf: &[String]) -> Option<&'a Value> {
    leaf.iter().try_fold(v, |v, k| v.get(k))
}

fn set(v: &mut Value, leaf: &[String], value: Value) {
    let Some((last, path)) = leaf.split_last() else {
        return;
    };
    let mut at = v;
    for k in path {
        if !at.get(k).is_some_and(Value::is_object) {
            at[k.as_str()] = json!({});
        }
        at = &mut at[k.as_str()];
    }
    at[last.as_str()] = value;
}

fn remove(v: &mut Value, leaf: &[String]) {
    let Some((last, path)) = leaf.split_last() else {
        return;
    };
    let mut at = v;
    for k in path {
        match at.get_mut(k) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(o) = at.as_object_mut() {
        o.remove(last);
    }
}

/// The fake server's state: objects by path, and per object the leaves each manager owns.
#[derive(Default)]
struct Server {
    objects: BTreeMap<String, Value>,
    owners: BTreeMap<String, BTreeMap<String, BTreeSet<Leaf>>>,
    /// Every request: method, path and query, body.
    requests: Vec<(String, String, Value)>,
}

impl Server {
    /// A server-side apply of `body` by `manager` to `path` (`.../status` for the status).
    fn apply(&mut self, path: &str, manager: &str, body: &Value) -> Value {
        let (object, status) = match path.strip_suffix("/status") {
            Some(o) => (o.to_string(), true),
            None => (path.to_string(), false),
        };
        let old = self.objects.get(&object).cloned().unwrap_or_else(|| {
            json!({
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "metadata": {"name": body["metadata"]["name"]},
            })
        });
        let mut new = old.clone();
        let mut sent = BTreeSet::new();
        leaves(body, &mut Vec::new(), &mut sent);
        let owners = self.owners.entry(object.clone()).or_default();
        let before = owners.remove(manager).unwrap_or_default();
        for leaf in before.difference(&sent) {
            if !owners.values().any(|o| o.contains(leaf)) {
                remove(&mut new, leaf);
            }
        }
        for leaf in &sent {
            if let Some(v) = get(body, leaf) {
                set(&mut new, leaf, v.clone());
            }
        }
        owners.insert(manager.to_string(), sent);
        // The Node strategies: the status endpoint keeps the spec, the object's keeps the status.
        let kept = if status { "spec" } else { "status" };
        match old.get(kept) {
            Some(v) => new[kept] = v.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove(kept);
                }
            }
        }
        self.objects.insert(object, new.clone());
        new
    }
}

/// The `fieldManager` of a request's query.
fn manager_of(uri: &str) -> &str {
    let query = uri.split_once('?').map_or(uri, |(_, q)| q);
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldManager="))
        .unwrap_or_default()
}

fn fake_api() -> (kube::Client, Arc<Mutex<Server>>) {
    let server: Arc<Mutex<Server>> = Arc::default();
    let state = server.clone();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let state = state.clone();
        async move {
            let method = req.method().to_string();
            let uri = req.uri().clone();
            let query = uri.query().unwrap_or_default().to_string();
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.requests.push((method.clone(), uri.to_string(), body.clone()));
            let manager = manager_of(&query).to_string();
            let (code, answer) = match method.as_str() {
                "PATCH" => (200, s.apply(uri.path(), &manager, &body)),
                "GET" => match s.objects.get(uri.path()) {
                    Some(o) => (200, o.clone()),
                    None => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    ),
                },
                _ => (405, json!({"kind": "Status", "apiVersion": "v1", "code": 405})),
            };
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(answer.to_string().into_bytes()))
                .expect("response");
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    (kube::Client::new(service, "default"), server)
}

fn cfg() -> Config {
    Config::try_parse_from([
        "berth-agent",
        "--node-name=berth-2",
        "--node-ip=10.213.0.12",
        "--pod-cidr=10.214.2.0/24",
        "--tls-cert=/c",
        "--tls-key=/k",
        "--client-ca=/ca",
    ])
    .expect("config")
}

const NODE: &str = "/api/v1/nodes/berth-2";

/// Registration then status writes, as the agent does at start and on every heartbeat.
async fn agent_start(nodes: &Api<Node>, cfg: &Config) {
    node::register(nodes, &node::node_object(cfg, &HostInfo::default()))
        .await
        .expect("register");
    for _ in 0..2 {
        let ready = node::ready_condition(None, Timestamp::now(), None);
        let status = node::node_status(cfg, &HostInfo::default(), ready, "fake://1");
        node::write_status(nodes, "berth-2", &status)
            .await
            .expect("status");
    }
}

fn node_labels(server: &Arc<Mutex<Server>>) -> Value {
    let s = server.lock().unwrap_or_else(|e| e.into_inner());
    s.objects[NODE]["metadata"]["labels"].clone()
}

#[tokio::test]
async fn node_labels_survive_status_writes_and_an_agent_restart() {
    let (client, server) = fake_api();
    let nodes: Api<Node> = Api::all(client);
    let cfg = cfg();
    agent_start(&nodes, &cfg).await;
    let labels = node_labels(&server);
    for key in [
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "berth.dev/agent",
    ] {
        assert!(labels.get(key).is_some(), "label {key} missing: {labels}");
    }
    assert_eq!(labels["kubernetes.io/hostname"], "berth-2");
    {
        let s = server.lock().unwrap_or_else(|e| e.into_inner());
        let node = &s.objects[NODE];
        assert_eq!(node["spec"]["taints"][0]["key"], "berth.dev/agent");
        assert_eq!(node["status"]["conditions"][0]["type"], "Ready");
        // Every write is an apply under the right manager (registration first reads the
        // Node, to keep the taints of one already registered).
        for (method, uri, body) in s.requests.iter().filter(|(m, ..)| m != "GET") {
            assert_eq!(method, "PATCH");
            if uri.contains("/status?") {
                assert_eq!(manager_of(uri), STATUS_FIELD_MANAGER, "{uri}");
                assert_eq!(body["metadata"], json!({"name": "berth-2"}), "{body}");
                assert!(body.get("spec").is_none(), "{body}");
            } else {
                assert_eq!(manager_of(uri), FIELD_MANAGER, "{uri}");
                assert!(body.get("status").is_none(), "{body}");
            }
            assert!(uri.contains("force=true"), "{uri}");
        }
    }
    // The agent restarts: registers again and writes its status again.
    agent_start(&nodes, &cfg).await;
    assert_eq!(node_labels(&server), labels);
    let lease = lease::lease("berth-2", Some("uid"), 40, Timestamp::now());
    let leases: Api<Lease> = Api::namespaced(nodes.clone().into_client(), NAMESPACE);
    lease::renew(&leases, &lease).await.expect("lease");
    let s = server.lock().unwrap_or_else(|e| e.into_inner());
    let (_, uri, _) = s.requests.last().expect("lease request");
    assert!(uri.starts_with("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/berth-2?"));
    assert_eq!(manager_of(uri), FIELD_MANAGER, "{uri}");
    assert_eq!(node_labels_of(&s), labels, "the lease touches no node");
}

fn node_labels_of(s: &Server) -> Value {
    s.objects[NODE]["metadata"]["labels"].clone()
}

/// The fake reproduces the failure of issue 17: the status applied under the manager that
/// registered the node removes the labels (so the test above would catch a regression).
#[tokio::test]
async fn one_manager_for_both_loses_the_labels_on_this_server() {
    let (client, server) = fake_api();
    let nodes: Api<Node> = Api::all(client);
    let cfg = cfg();
    node::register(&nodes, &node::node_object(&cfg, &HostInfo::default()))
        .await
        .expect("register");
    assert!(node_labels(&server).get("berth.dev/agent").is_some());
    let ready = node::ready_condition(None, Timestamp::now(), None);
    let status = node::node_status(&cfg, &HostInfo::default(), ready, "fake://1");
    let body = berth_agent::apply::node_status_body("berth-2", &status);
    nodes
        .patch_status(
            "berth-2",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .expect("status");
    let s = server.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        s.objects[NODE]["metadata"]
            .get("labels")
            .is_none_or(|l| l.get("berth.dev/agent").is_none())
    );
    assert_eq!(
        s.objects[NODE]["spec"]["taints"][0]["key"], "berth.dev/agent",
        "the spec stays"
    );
}
