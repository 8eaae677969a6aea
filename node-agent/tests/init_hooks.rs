//! The pod worker's init containers, lifecycle hooks and active deadline against
//! [`FakeCri`](fake_cri::FakeCri) and a fake API server that records what the agent writes.
//!
//! Scenarios: init containers run one at a time in order, each to success, before the app
//! container; a failed init container under `restartPolicy: Never` fails the pod and starts
//! nothing more; a failed postStart hook is a `FailedPostStartHook` Event, kills the
//! container, and it restarts after back-off; a preStop hook runs before `StopContainer` on
//! deletion; a pod past its `activeDeadlineSeconds` is stopped and fails `DeadlineExceeded`.

mod fake_cri;
mod support;

use std::sync::Arc;
use std::time::Duration;

use berth_agent::cri::api::ContainerState;
use berth_agent::sync::{self};
use fake_cri::FakeCri;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use support::{Seen, events, harness, last_status, until};

const RUNNING: i32 = ContainerState::ContainerRunning as i32;
const EXITED: i32 = ContainerState::ContainerExited as i32;

/// Pod `web` (uid `uid`) with `spec` merged over one app container and a 1 s grace period.
fn pod(uid: &str, spec: Value) -> Pod {
    let mut s = json!({
        "nodeName": "node-1",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": "registry.test/demo:v1"}],
    });
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": s,
    }))
    .expect("pod")
}

fn init(name: &str) -> Value {
    json!({"name": name, "image": "registry.test/demo:v1"})
}

fn app_with(extra: Value) -> Value {
    let mut c = json!({"name": "app", "image": "registry.test/demo:v1"});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    json!([c])
}

/// Waits until `check` holds, at most `secs`.
/// True when an Event with `reason` was posted.
fn event(seen: &Seen, reason: &str) -> bool {
    let want = format!("\"reason\":\"{reason}\"");
    events(seen).iter().any(|b| b.contains(&want))
}

/// The id of container `name`'s attempt `attempt` in state `state`, if there is one.
fn container(fake: &FakeCri, uid: &str, name: &str, attempt: u32, state: i32) -> Option<String> {
    fake.containers_of(uid)
        .into_iter()
        .find(|(_, n, a, st)| n == name && *a == attempt && *st == state)
        .map(|(id, ..)| id)
}

fn names(fake: &FakeCri, uid: &str) -> Vec<String> {
    let mut n: Vec<String> = fake.containers_of(uid).into_iter().map(|(_, n, ..)| n).collect();
    n.sort();
    n
}

#[tokio::test]
async fn init_containers_run_one_at_a_time_in_order_before_the_app() {
    let h = harness().await;
    let p = pod("i1", json!({"initContainers": [init("first"), init("second")]}));
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(p));
    until("first init container running", 10, || {
        container(&h.fake, "i1", "first", 0, RUNNING).is_some()
    })
    .await;
    until("Pending, not initialized, app PodInitializing", 10, || {
        last_status(&h.seen).is_some_and(|s| {
            s["phase"] == "Pending"
                && s["initContainerStatuses"][0]["state"]["running"].is_object()
                && s["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
                && s["conditions"].as_array().is_some_and(|c| {
                    c.iter().any(|c| {
                        c["type"] == "Initialized"
                            && c["status"] == "False"
                            && c["message"] == "containers with incomplete status: [first second]"
                    })
                })
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        names(&h.fake, "i1"),
        vec!["first"],
        "nothing else starts while it runs"
    );

    let first = container(&h.fake, "i1", "first", 0, RUNNING).expect("first");
    h.fake.exit(&first, 0, 1, 0);
    until("second init container running", 10, || {
        container(&h.fake, "i1", "second", 0, RUNNING).is_some()
    })
    .await;
    assert_eq!(names(&h.fake, "i1"), vec!["first", "second"]);

    let second = container(&h.fake, "i1", "second", 0, RUNNING).expect("second");
    h.fake.exit(&second, 0, 1, 0);
    until("app running", 10, || {
        container(&h.fake, "i1", "app", 0, RUNNING).is_some()
    })
    .await;
    until("Running and initialized", 10, || {
        last_status(&h.seen).is_some_and(|s| {
            s["phase"] == "Running"
                && s["initContainerStatuses"][1]["state"]["terminated"]["reason"] == "Completed"
                && s["initContainerStatuses"][1]["ready"] == true
                && s["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Initialized" && c["status"] == "True")
                })
        })
    })
    .await;
    // The app exits and restarts: the init containers do not run again.
    let app = container(&h.fake, "i1", "app", 0, RUNNING).expect("app");
    h.fake.exit(&app, 1, 5, 15);
    until("app restarted", 10, || {
        container(&h.fake, "i1", "app", 1, RUNNING).is_some()
    })
    .await;
    let inits = h
        .fake
        .containers_of("i1")
        .into_iter()
        .filter(|(_, n, ..)| n != "app")
        .count();
    assert_eq!(inits, 2, "each init container ran once");
}

#[tokio::test]
async fn a_failed_init_container_under_never_fails_the_pod() {
    let h = harness().await;
    let p = pod(
        "i2",
        json!({"restartPolicy": "Never", "initContainers": [init("setup")]}),
    );
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(p));
    until("init container running", 10, || {
        container(&h.fake, "i2", "setup", 0, RUNNING).is_some()
    })
    .await;
    let setup = container(&h.fake, "i2", "setup", 0, RUNNING).expect("setup");
    h.fake.exit(&setup, 3, 1, 0);
    until("Failed", 10, || {
        last_status(&h.seen).is_some_and(|s| {
            s["phase"] == "Failed" && s["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
        })
    })
    .await;
    until("sandbox stopped", 10, || {
        !h.fake.snapshot().sandboxes.values().any(|s| s.ready)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        names(&h.fake, "i2"),
        vec!["setup"],
        "neither the app nor a retry started"
    );
}

#[tokio::test]
async fn a_failed_post_start_hook_kills_the_container_and_it_restarts() {
    let h = harness().await;
    let hook = json!({"lifecycle": {"postStart": {"exec": {"command": ["warm-up"]}}}});
    let p = pod("h1", json!({"containers": app_with(hook)}));
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(p));
    until("FailedPostStartHook Event", 10, || {
        event(&h.seen, "FailedPostStartHook")
    })
    .await;
    until("first attempt killed", 10, || {
        container(&h.fake, "h1", "app", 0, EXITED).is_some()
    })
    .await;
    let first = container(&h.fake, "h1", "app", 0, EXITED).expect("first");
    let calls = h.fake.calls();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or(usize::MAX);
    assert!(
        at(&format!("StartContainer {first}")) < at(&format!("ExecSync {first} warm-up"))
            && at(&format!("ExecSync {first} warm-up")) < at(&format!("StopContainer {first}")),
        "{calls:?}"
    );
    until("CrashLoopBackOff reported", 10, || {
        last_status(&h.seen)
            .is_some_and(|s| s["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff")
    })
    .await;
    // The hook works now: after the back-off (10 s) the next attempt runs and stays.
    h.fake.exec_succeeds("warm-up");
    until("second attempt running", 20, || {
        container(&h.fake, "h1", "app", 1, RUNNING).is_some()
    })
    .await;
    until("Running, restartCount 1", 10, || {
        last_status(&h.seen).is_some_and(|s| {
            s["phase"] == "Running"
                && s["containerStatuses"][0]["restartCount"] == 1
                && s["containerStatuses"][0]["state"]["running"].is_object()
        })
    })
    .await;
}

#[tokio::test]
async fn a_pre_stop_hook_runs_before_the_container_is_stopped() {
    let h = harness().await;
    let hook = json!({"lifecycle": {"preStop": {"exec": {"command": ["drain", "now"]}}}});
    let p = pod("h2", json!({"containers": app_with(hook)}));
    h.fake.exec_succeeds("drain now");
    let tx = sync::spawn_worker(h.shared.clone(), Arc::new(p.clone()));
    until("app running", 10, || {
        container(&h.fake, "h2", "app", 0, RUNNING).is_some()
    })
    .await;
    let id = container(&h.fake, "h2", "app", 0, RUNNING).expect("app");
    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    deleting.metadata.deletion_grace_period_seconds = Some(5);
    tx.send_replace(Some(Arc::new(deleting)));
    until("everything removed", 10, || h.fake.containers_of("h2").is_empty()).await;
    let calls = h.fake.calls();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or(usize::MAX);
    assert!(
        at(&format!("ExecSync {id} drain now")) < at(&format!("StopContainer {id}")),
        "{calls:?}"
    );
    assert!(!event(&h.seen, "FailedPreStopHook"));
}

#[tokio::test]
async fn a_failing_pre_stop_hook_is_reported_and_the_stop_goes_on() {
    let h = harness().await;
    let hook = json!({"lifecycle": {"preStop": {"exec": {"command": ["drain"]}}}});
    let p = pod("h3", json!({"containers": app_with(hook)}));
    let tx = sync::spawn_worker(h.shared.clone(), Arc::new(p.clone()));
    until("app running", 10, || {
        container(&h.fake, "h3", "app", 0, RUNNING).is_some()
    })
    .await;
    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    tx.send_replace(Some(Arc::new(deleting)));
    until("everything removed", 10, || h.fake.containers_of("h3").is_empty()).await;
    assert!(event(&h.seen, "FailedPreStopHook"));
}

#[tokio::test]
async fn past_its_active_deadline_the_pod_is_stopped_and_fails() {
    let h = harness().await;
    let mut p = pod("d1", json!({"activeDeadlineSeconds": 5}));
    p.status = Some(
        serde_json::from_value(json!({
            "phase": "Running",
            "startTime": "2020-01-01T00:00:00Z",
        }))
        .expect("status"),
    );
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(p));
    until("Failed, DeadlineExceeded", 10, || {
        last_status(&h.seen).is_some_and(|s| {
            s["phase"] == "Failed"
                && s["reason"] == "DeadlineExceeded"
                && s["message"] == "Pod was active on the node longer than the specified deadline"
        })
    })
    .await;
    assert!(event(&h.seen, "DeadlineExceeded"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !h.fake.containers_of("d1").iter().any(|(.., st)| *st == RUNNING),
        "nothing runs past the deadline"
    );
}
