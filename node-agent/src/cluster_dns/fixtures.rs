//! Services and Endpoints of a small cluster, as the API server serves them, for the tests of
//! [`super::records`] and [`super::answer`].

use std::collections::BTreeMap;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use serde_json::json;

use super::records::{EndpointsEntry, Index, Key, ServiceEntry, endpoints_entry, key, service_entry};

/// `cluster.local.`
pub fn zone() -> Name {
    Name::from_ascii("cluster.local.").expect("a valid zone")
}

/// The Services: `default/kubernetes` (ClusterIP, https), `shop/web` (ClusterIP, http and
/// metrics), `shop/plain` (ClusterIP, one unnamed port), `shop/db` (headless, a StatefulSet's
/// three pods, one not ready), `shop/peers` (headless, publishing not-ready addresses),
/// `shop/empty` (headless, no endpoints), `shop/ext` (ExternalName outside the cluster),
/// `shop/alias` (ExternalName to `web.shop`), `shop/pending` (no ClusterIP yet).
pub fn services() -> Vec<Service> {
    let svc = |v: serde_json::Value| serde_json::from_value::<Service>(v).expect("a Service");
    vec![
        svc(json!({"metadata": {"namespace": "default", "name": "kubernetes"},
            "spec": {"clusterIP": "10.215.0.1", "clusterIPs": ["10.215.0.1"], "type": "ClusterIP",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})),
        svc(json!({"metadata": {"namespace": "shop", "name": "web"},
            "spec": {"clusterIP": "10.215.0.20", "type": "ClusterIP", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                               {"name": "metrics", "port": 9090, "protocol": "TCP"},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}})),
        svc(json!({"metadata": {"namespace": "shop", "name": "plain"},
            "spec": {"clusterIP": "10.215.0.21", "ports": [{"port": 8080}]}})),
        svc(json!({"metadata": {"namespace": "shop", "name": "db"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"},
                     "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}})),
        svc(json!({"metadata": {"namespace": "shop", "name": "peers",
                                "annotations": {"service.alpha.kubernetes.io/tolerate-unready-endpoints": "true"}},
            "spec": {"clusterIP": "None", "ports": [{"name": "gossip", "port": 7946, "protocol": "UDP"}]}})),
        svc(json!({"metadata": {"namespace": "shop", "name": "empty"},
            "spec": {"clusterIP": "None", "ports": [{"name": "x", "port": 1}]}})),
        svc(json!({"metadata": {"namespace": "shop", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"}})),
        svc(json!({"metadata": {"namespace": "shop", "name": "alias"},
            "spec": {"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"}})),
        svc(json!({"metadata": {"namespace": "shop", "name": "pending"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}})),
    ]
}

/// The Endpoints of `shop/web` (one pod, no hostname), `shop/db` (`db-0`, `db-1` ready, `db-2`
/// not ready), `shop/peers` (one not-ready address) and `shop/empty` (no subsets).
pub fn endpoints() -> Vec<Endpoints> {
    let ep = |v: serde_json::Value| serde_json::from_value::<Endpoints>(v).expect("Endpoints");
    vec![
        ep(json!({"metadata": {"namespace": "shop", "name": "web"},
            "subsets": [{"addresses": [{"ip": "10.214.1.10", "nodeName": "berth-1",
                                        "targetRef": {"kind": "Pod", "name": "web-abc", "namespace": "shop"}}],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                   {"name": "metrics", "port": 9090, "protocol": "TCP"}]}]})),
        ep(json!({"metadata": {"namespace": "shop", "name": "db"},
            "subsets": [{"addresses": [{"ip": "10.214.1.5", "hostname": "db-0"},
                                       {"ip": "10.214.2.6", "hostname": "db-1"}],
                         "notReadyAddresses": [{"ip": "10.214.3.7", "hostname": "db-2"}],
                         "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}]})),
        ep(json!({"metadata": {"namespace": "shop", "name": "peers"},
            "subsets": [{"notReadyAddresses": [{"ip": "10.214.2.9"}],
                         "ports": [{"name": "gossip", "port": 7946, "protocol": "UDP"}]}]})),
        ep(json!({"metadata": {"namespace": "shop", "name": "empty"}})),
    ]
}

/// The services' entries by key.
pub fn service_entries() -> BTreeMap<Key, ServiceEntry> {
    services()
        .iter()
        .filter_map(|s| Some((key(&s.metadata)?, service_entry(s)?)))
        .collect()
}

/// The endpoints' entries by key.
pub fn endpoints_entries() -> BTreeMap<Key, EndpointsEntry> {
    endpoints()
        .iter()
        .filter_map(|e| Some((key(&e.metadata)?, endpoints_entry(e))))
        .collect()
}

/// The index of all of the above, serial 7.
pub fn index() -> Index {
    Index::build(&zone(), &service_entries(), Some(&endpoints_entries()), 7)
}

/// A fully qualified name.
pub fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a valid name")
}
