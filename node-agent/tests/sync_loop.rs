//! The agent's pod worker (the real sync loop: observe, plan, act, probe, report) against
//! [`FakeCri`](fake_cri::FakeCri), an in-process CRI server, and a fake API server that
//! records what the agent writes. No containerd, no cluster.
//!
//! Scenarios: pull then sandbox then start; restart after an exit (new attempt, same
//! sandbox); readiness from an exec probe; a liveness failure kills and restarts; deletion
//! stops and removes everything and deletes the Pod object (also while a probe hangs); a
//! vanished pod is cleaned up; after the runtime restarts and forgets the sandbox's IP (and
//! after the agent restarts too), HTTP probes still reach the pod's IP.

mod fake_cri;
mod support;

use std::sync::{Arc, Mutex};

use berth_agent::cri::api::ContainerState;
use berth_agent::sync::{self};
use fake_cri::FakeCri;
use k8s_openapi::api::core::v1::Pod;
use support::{harness, last_status, last_status_in, until};

const RUNNING: i32 = ContainerState::ContainerRunning as i32;
const EXITED: i32 = ContainerState::ContainerExited as i32;

fn pod(uid: &str, container: serde_json::Value) -> Pod {
    let mut c = serde_json::json!({"name": "app", "image": "registry.test/demo:v1"});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), container.as_object()) {
        c.extend(extra.clone());
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 1, "containers": [c]}
    }))
    .expect("pod")
}

fn running_attempt(fake: &FakeCri, uid: &str, attempt: u32) -> Option<String> {
    fake.containers_of(uid)
        .into_iter()
        .find(|(_, name, a, st)| name == "app" && *a == attempt && *st == RUNNING)
        .map(|(id, ..)| id)
}

#[tokio::test]
async fn pulls_then_runs_the_sandbox_then_starts_and_reports_running() {
    let h = harness().await;
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u1", serde_json::json!({}))));
    until("container running", 10, || {
        running_attempt(&h.fake, "u1", 0).is_some()
    })
    .await;
    let calls = h.fake.calls();
    let idx = |prefix: &str| {
        calls
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or(usize::MAX)
    };
    assert!(idx("RunPodSandbox") < idx("PullImage"), "{calls:?}");
    assert!(idx("PullImage") < idx("CreateContainer"), "{calls:?}");
    assert!(idx("CreateContainer") < idx("StartContainer"), "{calls:?}");
    until("Running status written", 10, || {
        last_status(&h.seen)
            .is_some_and(|s| s["phase"] == "Running" && s["containerStatuses"][0]["ready"] == true)
    })
    .await;
    let s = last_status(&h.seen).expect("status");
    assert_eq!(s["hostIP"], "192.0.2.1");
    assert!(s["podIP"].as_str().is_some_and(|ip| ip.starts_with("10.0.0.")));
    assert!(
        s["containerStatuses"][0]["imageID"]
            .as_str()
            .is_some_and(|i| i.contains("@sha256:"))
    );
    assert_eq!(h.fake.sandboxes_of("u1"), 1);
}

#[tokio::test]
async fn an_exited_container_restarts_as_the_next_attempt_in_the_same_sandbox() {
    let h = harness().await;
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u2", serde_json::json!({}))));
    until("first attempt running", 10, || {
        running_attempt(&h.fake, "u2", 0).is_some()
    })
    .await;
    let first = running_attempt(&h.fake, "u2", 0).expect("running");
    // Ran 5 s, ended 15 s ago: past the first back-off (10 s), so it restarts at once.
    h.fake.exit(&first, 2, 5, 15);
    until("second attempt running", 10, || {
        running_attempt(&h.fake, "u2", 1).is_some()
    })
    .await;
    assert_eq!(h.fake.sandboxes_of("u2"), 1, "the sandbox is kept");
    let pulls = h
        .fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("PullImage"))
        .count();
    assert_eq!(pulls, 1, "IfNotPresent: the image is pulled once");
    until("restartCount 1 reported", 10, || {
        last_status(&h.seen).is_some_and(|s| {
            s["containerStatuses"][0]["restartCount"] == 1
                && s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 2
        })
    })
    .await;
}

#[tokio::test]
async fn readiness_from_an_exec_probe_and_a_liveness_kill() {
    let h = harness().await;
    let probes = serde_json::json!({
        "readinessProbe": {"exec": {"command": ["test", "-f", "/ready"]}, "periodSeconds": 1},
        "livenessProbe": {"exec": {"command": ["alive"]}, "periodSeconds": 1, "failureThreshold": 2},
    });
    h.fake.exec_succeeds("alive");
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u3", probes)));
    until("container running", 10, || {
        running_attempt(&h.fake, "u3", 0).is_some()
    })
    .await;
    until("Running, not ready", 10, || {
        last_status(&h.seen)
            .is_some_and(|s| s["phase"] == "Running" && s["containerStatuses"][0]["ready"] == false)
    })
    .await;
    h.fake.exec_succeeds("test -f /ready");
    until("ready", 10, || {
        last_status(&h.seen).is_some_and(|s| {
            s["containerStatuses"][0]["ready"] == true
                && s["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    })
    .await;
    // The liveness command starts failing: after 2 failures the container is stopped.
    h.fake.exec_fails("alive");
    let first = running_attempt(&h.fake, "u3", 0).expect("running");
    until("killed by liveness", 10, || {
        h.fake
            .containers_of("u3")
            .iter()
            .any(|(id, _, _, st)| *id == first && *st == EXITED)
    })
    .await;
    assert!(
        h.fake
            .calls()
            .iter()
            .any(|c| c == &format!("StopContainer {first}"))
    );
}

#[tokio::test]
async fn deletion_stops_removes_and_deletes_the_pod_object() {
    let h = harness().await;
    let p = pod("u4", serde_json::json!({}));
    let tx = sync::spawn_worker(h.shared.clone(), Arc::new(p.clone()));
    until("container running", 10, || {
        running_attempt(&h.fake, "u4", 0).is_some()
    })
    .await;
    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    deleting.metadata.deletion_grace_period_seconds = Some(1);
    tx.send_replace(Some(Arc::new(deleting)));
    until("everything removed", 10, || {
        h.fake.containers_of("u4").is_empty() && h.fake.sandboxes_of("u4") == 0
    })
    .await;
    until("Pod object deleted", 10, || {
        let seen = h.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .any(|(m, p, b)| m == "DELETE" && p.contains("/pods/web") && b.contains("u4"))
    })
    .await;
}

#[tokio::test]
async fn a_vanished_pod_has_its_runtime_objects_removed() {
    let h = harness().await;
    let tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u5", serde_json::json!({}))));
    until("container running", 10, || {
        running_attempt(&h.fake, "u5", 0).is_some()
    })
    .await;
    tx.send_replace(None);
    until("everything removed", 10, || {
        h.fake.containers_of("u5").is_empty() && h.fake.sandboxes_of("u5") == 0
    })
    .await;
}

#[tokio::test]
async fn a_deletion_does_not_wait_for_a_hanging_probe() {
    let h = harness().await;
    let probe = serde_json::json!({
        "readinessProbe": {"exec": {"command": ["hang"]}, "timeoutSeconds": 300}
    });
    let p = pod("u6", probe);
    let tx = sync::spawn_worker(h.shared.clone(), Arc::new(p.clone()));
    until("probe hanging", 10, || {
        h.fake.calls().iter().any(|c| c.ends_with(" hang"))
    })
    .await;
    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    tx.send_replace(Some(Arc::new(deleting)));
    until("everything removed despite the hanging probe", 5, || {
        h.fake.containers_of("u6").is_empty() && h.fake.sandboxes_of("u6") == 0
    })
    .await;
}

/// An HTTP server on `ip` (a loopback address) answering 200 and recording each request's
/// `Host` header.
async fn pod_http(ip: &str) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hosts: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = hosts.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let host = head
                .lines()
                .find_map(|l| l.strip_prefix("Host: "))
                .unwrap_or_default()
                .to_string();
            log.lock().unwrap_or_else(|e| e.into_inner()).push(host);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        }
    });
    (port, hosts)
}

fn count(hosts: &Arc<Mutex<Vec<String>>>) -> usize {
    hosts.lock().unwrap_or_else(|e| e.into_inner()).len()
}

#[tokio::test]
async fn probes_keep_the_pod_ip_after_the_runtime_and_the_agent_restart() {
    let h = harness().await;
    let ip = "127.0.0.7";
    let (port, hosts) = pod_http(ip).await;
    h.fake.assign_ip(ip);
    let probe = serde_json::json!({
        "readinessProbe": {"httpGet": {"port": port, "path": "/ready"}, "periodSeconds": 1}
    });
    let tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u7", probe.clone())));
    until("ready, with the sandbox's IP", 10, || {
        last_status(&h.seen).is_some_and(|s| s["podIP"] == ip && s["containerStatuses"][0]["ready"] == true)
    })
    .await;
    {
        let seen = h.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (_, path, _) = seen
            .iter()
            .find(|(m, p, _)| m == "PATCH" && p.contains("/pods/web/status"))
            .expect("a status apply");
        assert!(path.contains("fieldManager=berth-agent-status"), "{path}");
    }

    // containerd is killed and started again: connections drop, and the running sandbox's
    // status no longer carries its IP.
    h.fake.restart(true).await;
    let sandbox = h.fake.snapshot().sandboxes.into_keys().next().expect("sandbox");
    let reported = h
        .shared
        .cri
        .pod_sandbox_status(&sandbox)
        .await
        .expect("reconnected");
    assert_eq!(
        reported.and_then(|s| s.network).map(|n| n.ip),
        Some(String::new())
    );
    let before = count(&hosts);
    until(
        "probes against the pod's IP after the runtime restart",
        20,
        || count(&hosts) >= before + 3,
    )
    .await;
    let s = last_status(&h.seen).expect("status");
    assert_eq!(s["podIP"], ip);
    assert_eq!(s["containerStatuses"][0]["ready"], true);

    // The agent restarts as well: a worker without memory, given the Pod as the API server
    // has it, rebuilds the IP from the Pod's status (written for this very sandbox).
    drop(tx);
    let mut known = pod("u7", probe);
    known.status = Some(serde_json::from_value(s).expect("pod status"));
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(known));
    let before = count(&hosts);
    until("probes against the pod's IP after the agent restart", 10, || {
        count(&hosts) >= before + 3
    })
    .await;
    let hosts = hosts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(hosts.iter().all(|h| *h == format!("{ip}:{port}")), "{hosts:?}");
    assert!(running_attempt(&h.fake, "u7", 0).is_some(), "nothing restarted");
    assert_eq!(h.fake.sandboxes_of("u7"), 1);
    let seen = h.seen.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        !seen
            .iter()
            .any(|(m, p, b)| m == "POST" && p.contains("/events") && b.contains("Unhealthy")),
        "no probe failed"
    );
    let s = last_status_in(&seen).expect("status");
    assert_eq!(
        (s["podIP"].as_str(), s["containerStatuses"][0]["ready"].as_bool()),
        (Some(ip), Some(true))
    );
}
