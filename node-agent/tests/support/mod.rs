//! What the agent's FakeCri suites share: a fake API server that records every request and
//! serves ConfigMaps, Secrets and Services from a map, and a harness of the agent's
//! [`Shared`] wired to it and to [`FakeCri`].
#![allow(dead_code, reason = "each test binary uses a part of the support")]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_agent::cri::CriClient;
use berth_agent::metrics::Metrics;
use berth_agent::podspec::NodeFacts;
use berth_agent::sync::Shared;
use kube::runtime::events::{Recorder, Reporter};

use crate::fake_cri::FakeCri;

/// One request the agent sent to the API server: method, path and query, body.
pub type Seen = Arc<Mutex<Vec<(String, String, String)>>>;
/// The objects the fake API server holds, by path (`/api/v1/namespaces/default/configmaps/app`).
pub type Objects = Arc<Mutex<HashMap<String, serde_json::Value>>>;

fn not_found() -> (u16, String) {
    (
        404,
        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.into(),
    )
}

/// A kube client whose "API server" records every request and answers: `objects` for GETs of
/// ConfigMaps, Secrets and Services (404 when absent) and lists of Services, a token for a
/// TokenRequest, the request body for Events, a minimal Pod otherwise.
pub fn fake_api(objects: Objects) -> (kube::Client, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let log = log.clone();
        let objects = objects.clone();
        async move {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let path = req.uri().path().to_string();
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            let body = String::from_utf8_lossy(&body).into_owned();
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((method.clone(), uri.clone(), body.clone()));
            let objs = objects.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let (code, answer) = if method == "GET" && path.ends_with("/services") {
                let items: Vec<_> = objs
                    .iter()
                    .filter(|(k, _)| k.starts_with(&format!("{path}/")))
                    .map(|(_, v)| v.clone())
                    .collect();
                (
                    200,
                    serde_json::json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": items})
                        .to_string(),
                )
            } else if method == "GET"
                && (path.contains("/configmaps/")
                    || path.contains("/secrets/")
                    || path.contains("/services/"))
            {
                match objs.get(&path) {
                    Some(o) => (200, o.to_string()),
                    None => not_found(),
                }
            } else if method == "POST" && path.ends_with("/token") {
                (
                    201,
                    serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 3600, "audiences": []},
                    "status": {"token": "tok", "expirationTimestamp": "2099-01-01T00:00:00Z"}})
                    .to_string(),
                )
            } else if method == "POST" && path.contains("/events") {
                (201, body)
            } else {
                (
                    200,
                    r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"}}"#
                        .to_string(),
                )
            };
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(answer.into_bytes()))
                .expect("response");
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    (kube::Client::new(service, "default"), seen)
}

/// The agent's shared state on FakeCri and the fake API server, in a temporary directory.
pub struct Harness {
    pub fake: FakeCri,
    pub shared: Arc<Shared>,
    pub seen: Seen,
    pub objects: Objects,
    /// The agent's root dir (pod volumes).
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

/// A harness with no objects in the API server.
pub async fn harness() -> Harness {
    harness_with(Objects::default(), None).await
}

/// A harness whose API server holds `objects`; `refresh` is the volume manager's period.
pub async fn harness_with(objects: Objects, refresh: Option<Duration>) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let (fake, endpoint) = FakeCri::start(dir.path()).await;
    let cri = CriClient::connect(&endpoint)
        .await
        .expect("connecting to FakeCri");
    let (client, seen) = fake_api(objects.clone());
    let root = dir.path().join("root");
    let shared = Arc::new(Shared {
        client: client.clone(),
        cri,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "berth-agent".into(),
                instance: Some("node-1".into()),
            },
        ),
        facts: NodeFacts {
            node_name: "node-1".into(),
            host_ip: "192.0.2.1".into(),
            ..Default::default()
        },
        policy: Default::default(),
        volumes: berth_agent::volumes::Settings {
            root: root.clone(),
            refresh,
            ..Default::default()
        },
        runtime_name: "fake".into(),
        log_root: dir.path().join("logs"),
        metrics: Metrics::new(),
    });
    Harness {
        fake,
        shared,
        seen,
        objects,
        root,
        _dir: dir,
    }
}

/// Waits until `check` holds, at most `secs`.
pub async fn until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last status the agent wrote (server-side apply body of `.../pods/web/status`).
pub fn last_status(seen: &Seen) -> Option<serde_json::Value> {
    last_status_in(&seen.lock().unwrap_or_else(|e| e.into_inner()))
}

/// [`last_status`] of requests already taken.
pub fn last_status_in(seen: &[(String, String, String)]) -> Option<serde_json::Value> {
    seen.iter()
        .rev()
        .find(|(m, p, _)| m == "PATCH" && p.contains("/pods/web/status"))
        .and_then(|(_, _, b)| serde_json::from_str::<serde_json::Value>(b).ok())
        .map(|v| v["status"].clone())
}

/// The bodies of the Events the agent posted.
pub fn events(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.contains("/events"))
        .map(|(_, _, b)| b.clone())
        .collect()
}
