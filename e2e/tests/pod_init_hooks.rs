//! End-to-end: init containers, lifecycle hooks and `activeDeadlineSeconds` on a Berth node,
//! checked through the API server as a user sees them (pod status, container logs, Events).
//!
//! - init containers run one at a time, in order, before the app (each prints the uptime of
//!   the host's kernel when it runs; the app waits `PodInitializing` meanwhile);
//! - a failed init container under `restartPolicy: Never` fails the pod, the app never runs;
//! - preStop runs before SIGTERM (the hook writes a file the container's TERM trap prints,
//!   read from the killed container's log); a failing preStop is a `FailedPreStopHook` Event;
//! - a failing postStart is a `FailedPostStartHook` Event and the container restarts;
//! - past its `activeDeadlineSeconds` a pod fails `DeadlineExceeded`.
//!
//! Run: `cargo test -p berth-e2e --test pod_init_hooks -- --test-threads=1`

use std::time::Duration;

use anyhow::{Context, ensure};
use berth_e2e::api::{events_about, wait_for};
use berth_e2e::k8s::{admin_client, create_pod, phase, setup, wait_pod, waiting_reason};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, DeleteParams, LogParams};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);

fn pod(name: &str, node: &str, spec: Value) -> anyhow::Result<Pod> {
    let mut s = json!({"nodeName": node, "automountServiceAccountToken": false,
                       "enableServiceLinks": false, "terminationGracePeriodSeconds": 5});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name}, "spec": s}),
    )?)
}

fn container(name: &str, image: &str, script: &str) -> Value {
    json!({"name": name, "image": image, "command": ["sh", "-c", script]})
}

fn init_statuses(p: &Pod) -> Vec<ContainerStatus> {
    p.status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .unwrap_or_default()
}

fn condition(p: &Pod, type_: &str) -> Option<(String, Option<String>, Option<String>)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn exit_code(c: &ContainerStatus) -> Option<i32> {
    c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

async fn logs(api: &Api<Pod>, pod: &str, container: &str, previous: bool) -> anyhow::Result<String> {
    let params = LogParams {
        container: Some(container.to_string()),
        previous,
        ..Default::default()
    };
    Ok(api.logs(pod, &params).await?)
}

/// The uptime (seconds) a container printed as `<tag> <uptime>`.
fn uptime(log: &str, tag: &str) -> anyhow::Result<f64> {
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("{tag} ")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no '{tag} <uptime>' line in {log:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_init_containers_run_one_at_a_time_before_the_app() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-init").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let stamp = |tag: &str, then: &str| format!("echo {tag} $(cat /proc/uptime); {then}");
    let p = pod(
        "init-order",
        &cluster.nodes[0].name,
        json!({
            "initContainers": [
                container("first", &image, &stamp("first", "sleep 1")),
                container("second", &image, &stamp("second", "sleep 4")),
            ],
            "containers": [container("app", &image, &stamp("app", "sleep 3600"))],
        }),
    )?;
    create_pod(&api, &p).await?;
    // While `second` runs: Pending, `first` done, the app waiting, not initialized.
    let during = wait_pod(&api, "init-order", TIMEOUT, |p| {
        let inits = init_statuses(p);
        let running = inits.get(1)?.state.as_ref()?.running.is_some();
        running.then(|| p.clone())
    })
    .await?;
    ensure!(
        phase(&during) == Some("Pending"),
        "phase during init: {:?}",
        phase(&during)
    );
    ensure!(
        waiting_reason(&during).as_deref() == Some("PodInitializing"),
        "app during init: {:?}",
        during.status.as_ref().and_then(|s| s.container_statuses.clone())
    );
    let first = &init_statuses(&during)[0];
    ensure!(
        exit_code(first) == Some(0) && first.ready,
        "first during init: {first:?}"
    );
    ensure!(
        condition(&during, "Initialized")
            == Some((
                "False".into(),
                Some("ContainersNotInitialized".into()),
                Some("containers with incomplete status: [second]".into())
            )),
        "Initialized during init: {:?}",
        condition(&during, "Initialized")
    );

    let done = wait_pod(&api, "init-order", TIMEOUT, |p| {
        (phase(p) == Some("Running")).then(|| p.clone())
    })
    .await?;
    for s in init_statuses(&done) {
        ensure!(exit_code(&s) == Some(0) && s.ready, "{}: {s:?}", s.name);
        ensure!(
            s.image_id.contains("@sha256:"),
            "{}: imageID {:?}",
            s.name,
            s.image_id
        );
        ensure!(
            s.container_id.as_deref().is_some_and(|id| id.contains("://")),
            "{s:?}"
        );
    }
    ensure!(condition(&done, "Initialized").is_some_and(|c| c.0 == "True"));
    let first = uptime(&logs(&api, "init-order", "first", false).await?, "first")?;
    let second = uptime(&logs(&api, "init-order", "second", false).await?, "second")?;
    let app = wait_for("the app's line", TIMEOUT, || async {
        let log = logs(&api, "init-order", "app", false).await?;
        Ok(uptime(&log, "app").map_err(|e| e.to_string()))
    })
    .await?;
    eprintln!("uptimes: first {first}, second {second}, app {app}");
    ensure!(
        first + 1.0 <= second,
        "second ran {second} before first ended ({first} + 1 s)"
    );
    ensure!(
        second + 4.0 <= app,
        "the app ran {app} before second ended ({second} + 4 s)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_failed_init_container_fails_a_pod_that_never_restarts() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-init-fail").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let p = pod(
        "init-fails",
        &cluster.nodes[0].name,
        json!({
            "restartPolicy": "Never",
            "initContainers": [container("setup", &image, "echo broken; exit 3")],
            "containers": [container("app", &image, "echo app ran; sleep 3600")],
        }),
    )?;
    create_pod(&api, &p).await?;
    let failed = wait_pod(&api, "init-fails", TIMEOUT, |p| {
        (phase(p) == Some("Failed")).then(|| p.clone())
    })
    .await?;
    let setup = &init_statuses(&failed)[0];
    ensure!(exit_code(setup) == Some(3) && !setup.ready, "setup: {setup:?}");
    ensure!(setup.restart_count == 0, "setup restarted under Never: {setup:?}");
    ensure!(
        waiting_reason(&failed).as_deref() == Some("PodInitializing"),
        "the app must never have run: {:?}",
        failed.status.as_ref().and_then(|s| s.container_statuses.clone())
    );
    ensure!(condition(&failed, "Initialized").is_some_and(|c| c.0 == "False"));
    let log = logs(&api, "init-fails", "setup", false).await?;
    ensure!(log.contains("broken"), "setup's log: {log:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = api.get("init-fails").await?;
    ensure!(phase(&later) == Some("Failed") && init_statuses(&later)[0].restart_count == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_pre_stop_runs_before_sigterm() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-prestop").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    // The TERM trap prints what the preStop hook wrote; the liveness probe fails 3 s after the
    // start, so the container is killed (preStop first), then restarted.
    let script = "trap 'echo \"TERM prestop=$(cat /tmp/prestop 2>/dev/null || echo none)\"; exit 0' TERM; \
                  touch /tmp/alive; (sleep 3; rm -f /tmp/alive) & echo started; \
                  while true; do sleep 0.2; done";
    let mut app = container("app", &image, script);
    app["lifecycle"] = json!({"preStop": {"exec": {"command": ["sh", "-c", "echo ran > /tmp/prestop"]}}});
    app["livenessProbe"] = json!({"exec": {"command": ["test", "-f", "/tmp/alive"]},
                                  "periodSeconds": 1, "failureThreshold": 1});
    let p = pod("prestop", &cluster.nodes[1].name, json!({"containers": [app]}))?;
    create_pod(&api, &p).await?;
    wait_pod(&api, "prestop", TIMEOUT, |p| {
        let cs = p.status.as_ref()?.container_statuses.as_ref()?.first()?.clone();
        (cs.restart_count >= 1).then_some(())
    })
    .await?;
    let previous = wait_for("the killed container's TERM line", TIMEOUT, || async {
        let log = logs(&api, "prestop", "app", true).await?;
        Ok(if log.contains("TERM") { Ok(log) } else { Err(log) })
    })
    .await?;
    ensure!(
        previous.contains("TERM prestop=ran"),
        "the TERM trap did not see the preStop hook's file: {previous:?}"
    );

    // A failing preStop on deletion: a Warning Event, and the pod still goes.
    let client = admin_client(&cluster).await?;
    let mut failing = container("app", &image, "sleep 3600");
    failing["lifecycle"] = json!({"preStop": {"exec": {"command": ["sh", "-c", "exit 7"]}}});
    let p = pod(
        "prestop-fails",
        &cluster.nodes[1].name,
        json!({"containers": [failing]}),
    )?;
    create_pod(&api, &p).await?;
    wait_pod(&api, "prestop-fails", TIMEOUT, |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await?;
    api.delete("prestop-fails", &DeleteParams::default()).await?;
    wait_for("the FailedPreStopHook Event", TIMEOUT, || async {
        let events = events_about(&client, &ns.name, "prestop-fails").await?;
        Ok(match events.iter().find(|e| e.reason == "FailedPreStopHook") {
            Some(e) => Ok(e.clone()),
            None => Err(format!("{events:?}")),
        })
    })
    .await
    .map(|e| eprintln!("FailedPreStopHook: {}", e.note))?;
    wait_for("the pod gone", TIMEOUT, || async {
        Ok(if api.get_opt("prestop-fails").await?.is_none() {
            Ok(())
        } else {
            Err("still there".to_string())
        })
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_failing_post_start_hook_is_reported_and_the_container_restarts() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-poststart").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let client = admin_client(&cluster).await?;
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let mut app = container("app", &image, "sleep 3600");
    app["lifecycle"] = json!({"postStart": {"exec": {"command": ["sh", "-c", "echo no; exit 2"]}}});
    let p = pod(
        "poststart",
        &cluster.nodes[2].name,
        json!({"terminationGracePeriodSeconds": 1, "containers": [app]}),
    )?;
    create_pod(&api, &p).await?;
    let event = wait_for("the FailedPostStartHook Event", TIMEOUT, || async {
        let events = events_about(&client, &ns.name, "poststart").await?;
        Ok(match events.iter().find(|e| e.reason == "FailedPostStartHook") {
            Some(e) => Ok(e.clone()),
            None => Err(format!("{events:?}")),
        })
    })
    .await?;
    eprintln!("FailedPostStartHook: {}", event.note);
    ensure!(
        event.type_ == "Warning" && event.note.contains("exited with 2"),
        "{event:?}"
    );
    // Killed, then restarted after the back-off (10 s): restartCount grows.
    wait_pod(&api, "poststart", TIMEOUT, |p| {
        let cs = p.status.as_ref()?.container_statuses.as_ref()?.first()?.clone();
        (cs.restart_count >= 1).then_some(())
    })
    .await?;
    let p = api.get("poststart").await?;
    ensure!(phase(&p) == Some("Running"), "phase {:?}", phase(&p));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_past_its_active_deadline_a_pod_fails() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-deadline").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let p = pod(
        "deadline",
        &cluster.nodes[0].name,
        json!({"activeDeadlineSeconds": 5, "terminationGracePeriodSeconds": 1,
               "containers": [container("app", &image, "sleep 3600")]}),
    )?;
    create_pod(&api, &p).await?;
    wait_pod(&api, "deadline", TIMEOUT, |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await?;
    let failed = wait_pod(&api, "deadline", TIMEOUT, |p| {
        (phase(p) == Some("Failed")).then(|| p.clone())
    })
    .await?;
    let status = failed.status.clone().unwrap_or_default();
    ensure!(status.reason.as_deref() == Some("DeadlineExceeded"), "{status:?}");
    ensure!(
        status.message.as_deref() == Some("Pod was active on the node longer than the specified deadline"),
        "{status:?}"
    );
    wait_pod(&api, "deadline", TIMEOUT, |p| {
        let cs = p.status.as_ref()?.container_statuses.as_ref()?.first()?.clone();
        exit_code(&cs).map(|_| ())
    })
    .await?;
    Ok(())
}
