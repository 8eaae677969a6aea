//! End-to-end tests of berth-agent's probes on the local cluster: readiness (exec and HTTP)
//! drives `ready` and the `Ready` condition, a failing liveness probe restarts the container.
//!
//! Run: `cargo test -p berth-e2e --test agent_probes -- --nocapture --test-threads 2`

use std::time::{Duration, Instant};

use anyhow::ensure;
use berth_e2e::k8s::{create_pod, phase, setup, wait_pod};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::Api;

fn pod(name: &str, node: &str, container: serde_json::Value) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "automountServiceAccountToken": false,
                 "terminationGracePeriodSeconds": 1, "containers": [container]}
    }))?)
}

fn condition(p: &Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn first_status(p: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn ready(p: &Pod) -> bool {
    condition(p, "Ready").as_deref() == Some("True")
        && condition(p, "ContainersReady").as_deref() == Some("True")
        && first_status(p).is_some_and(|c| c.ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_agent_exec_readiness_probe_gates_ready_until_a_file_exists() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-probe-exec").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let container = serde_json::json!({
        "name": "app", "image": image,
        "command": ["sh", "-c", "sleep 6; touch /tmp/ready; while true; do sleep 1; done"],
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
    });
    let t = Instant::now();
    create_pod(&api, &pod("gated", &cluster.nodes[0].name, container)?).await?;
    // Running but not ready while the file is missing.
    wait_pod(&api, "gated", Duration::from_secs(60), |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await?;
    let running_after = t.elapsed();
    let p = api.get("gated").await?;
    if t.elapsed() < Duration::from_secs(5) {
        ensure!(!ready(&p), "ready before the file exists: {:?}", p.status);
        ensure!(
            condition(&p, "Ready").as_deref() == Some("False"),
            "Ready should be False while the probe fails"
        );
    }
    wait_pod(&api, "gated", Duration::from_secs(30), |p| ready(p).then_some(())).await?;
    let ready_after = t.elapsed();
    eprintln!(
        "exec readiness: Running after {running_after:?}, Ready after {ready_after:?} (file made at ~6 s)"
    );
    ensure!(
        ready_after >= Duration::from_secs(6),
        "Ready too early: {ready_after:?}"
    );
    let restarts = first_status(&api.get("gated").await?).map_or(-1, |c| c.restart_count);
    ensure!(restarts == 0, "restartCount {restarts}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_agent_http_readiness_and_healthy_liveness() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-probe-http").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let container = serde_json::json!({
        "name": "app", "image": image,
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1},
    });
    let t = Instant::now();
    create_pod(&api, &pod("web", &cluster.nodes[1].name, container)?).await?;
    wait_pod(&api, "web", Duration::from_secs(60), |p| ready(p).then_some(())).await?;
    eprintln!("HTTP readiness: pod Ready {:?} after creation", t.elapsed());
    // A liveness probe that passes never restarts the container.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let p = api.get("web").await?;
    ensure!(ready(&p), "no longer ready: {:?}", p.status);
    let restarts = first_status(&p).map_or(-1, |c| c.restart_count);
    ensure!(
        restarts == 0,
        "healthy container restarted: restartCount {restarts}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_agent_liveness_probe_on_a_wrong_port_restarts_the_container() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-probe-live").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let container = serde_json::json!({
        "name": "app", "image": image,
        "livenessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1, "failureThreshold": 2},
    });
    let t = Instant::now();
    create_pod(&api, &pod("sick", &cluster.nodes[2].name, container)?).await?;
    wait_pod(&api, "sick", Duration::from_secs(60), |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await?;
    let last = wait_pod(&api, "sick", Duration::from_secs(60), |p| {
        let c = first_status(p)?;
        (c.restart_count >= 1).then(|| c.last_state.clone())
    })
    .await?;
    eprintln!(
        "liveness on a wrong port: first restart {:?} after creation",
        t.elapsed()
    );
    ensure!(
        last.and_then(|s| s.terminated).is_some(),
        "lastState.terminated missing after a liveness kill"
    );
    // Reported as Events: the first failure (Unhealthy) and the kill (Killing).
    let events: Api<Event> = Api::namespaced(ns.pods().into_client(), &ns.name);
    let reasons: Vec<(String, String)> = events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    ensure!(
        reasons
            .iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed")),
        "no Unhealthy event: {reasons:?}"
    );
    ensure!(
        reasons
            .iter()
            .any(|(r, m)| r == "Killing" && m.contains("failed liveness probe")),
        "no Killing event: {reasons:?}"
    );
    // The replacement runs again (and will be killed again, with growing back-off).
    wait_pod(&api, "sick", Duration::from_secs(30), |p| {
        let c = first_status(p)?;
        (c.restart_count >= 1 && c.state.as_ref()?.running.is_some()).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_agent_https_probe_does_not_verify_the_certificate() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-probe-https").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    // The API server's /healthz answers anonymous requests; its certificate is of a CA the
    // agent does not trust: an HTTPS probe must pass anyway, as the kubelet's.
    let container = serde_json::json!({
        "name": "app", "image": image,
        "readinessProbe": {"httpGet": {"scheme": "HTTPS", "host": "10.213.0.1", "port": 6443, "path": "/healthz"},
                           "periodSeconds": 1},
    });
    create_pod(&api, &pod("tls", &cluster.nodes[0].name, container)?).await?;
    wait_pod(&api, "tls", Duration::from_secs(60), |p| ready(p).then_some(())).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_agent_startup_probe_holds_started_and_ready_until_it_passes() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-probe-startup").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    // No readiness probe: ready as soon as the startup probe passed (file made 6 s after the start).
    let container = serde_json::json!({
        "name": "app", "image": image,
        "command": ["sh", "-c", "sleep 6; touch /tmp/started; while true; do sleep 1; done"],
        "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 30},
    });
    let t = Instant::now();
    create_pod(&api, &pod("slow-start", &cluster.nodes[1].name, container)?).await?;
    // Every status seen while Running and not yet started must be neither started nor ready; at least one
    // such status must be seen (the container runs 6 s before the probe can pass), whatever the timing.
    let mut held = 0;
    wait_pod(&api, "slow-start", Duration::from_secs(60), |p| {
        let c = first_status(p)?;
        if phase(p) == Some("Running") && c.started != Some(true) {
            if c.ready {
                return Some(Err(format!("ready before the startup probe passed: {c:?}")));
            }
            held += 1;
        }
        (c.started == Some(true)).then_some(Ok(()))
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    ensure!(
        held > 0,
        "never saw the container Running and held back by its startup probe"
    );
    ensure!(
        t.elapsed() >= Duration::from_secs(6),
        "started before the file existed"
    );
    wait_pod(&api, "slow-start", Duration::from_secs(30), |p| {
        ready(p).then_some(())
    })
    .await?;
    eprintln!(
        "startup probe: started and Ready {:?} after creation",
        t.elapsed()
    );
    Ok(())
}
