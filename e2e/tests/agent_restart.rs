//! End-to-end test of berth-agent's recovery from its own restart (`hack/node.sh
//! stop-agent/start-agent`): running containers are adopted (same container ID, same
//! restartCount, Ready never drops), and pods deleted while the agent was down have their
//! containers removed when it comes back (force-deleted ones by the orphan sweep, gracefully
//! deleted ones by the deletion path, which then removes the Pod object).
//!
//! It stops one host's agent for a few seconds: run it as root on the local cluster.
//! Run: `cargo test -p berth-e2e --test agent_restart -- --nocapture`

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_agent::cri::{CriClient, labels};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::k8s::{TestNamespace, admin_client, create_pod, wait_pod};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

fn node_sh(op: &str, node: &str) -> anyhow::Result<()> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hack/node.sh");
    let out = Command::new(&script)
        .args([op, node])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "hack/node.sh {op} {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The agent of a host, stopped; started again when dropped (also when the test fails).
struct StoppedAgent {
    node: String,
    started: bool,
}

impl StoppedAgent {
    fn stop(node: &str) -> anyhow::Result<Self> {
        node_sh("stop-agent", node)?;
        Ok(StoppedAgent {
            node: node.to_string(),
            started: false,
        })
    }

    fn start(&mut self) -> anyhow::Result<()> {
        self.started = true;
        node_sh("start-agent", &self.node)
    }
}

impl Drop for StoppedAgent {
    fn drop(&mut self) {
        if !self.started
            && let Err(e) = node_sh("start-agent", &self.node)
        {
            eprintln!("could not restart the agent of {}: {e:#}", self.node);
        }
    }
}

fn demo(name: &str, node: &str, image: &str, readiness: bool) -> anyhow::Result<Pod> {
    let mut c = serde_json::json!({"name": "app", "image": image, "ports": [{"containerPort": 8080}]});
    if readiness {
        c["readinessProbe"] = serde_json::json!({"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1});
    }
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "automountServiceAccountToken": false,
                 "terminationGracePeriodSeconds": 1, "containers": [c]}
    }))?)
}

fn container(p: &Pod) -> Option<(String, i32, bool)> {
    let c = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
    Some((c.container_id.clone()?, c.restart_count, c.ready))
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// How many containers and sandboxes the host's runtime holds for pod `uid`.
async fn runtime_objects(cri: &CriClient, uid: &str) -> anyhow::Result<usize> {
    let sel = HashMap::from([(labels::POD_UID.to_string(), uid.to_string())]);
    Ok(cri.list_containers(sel.clone()).await?.len() + cri.list_pod_sandboxes(sel).await?.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_agent_restart_adopts_running_containers_and_cleans_up_pods_deleted_meanwhile()
-> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "e2e-agent-restart").await?;
    let api: Api<Pod> = ns.pods();
    let node = cluster.nodes.last().context("no hosts")?;
    let cri = CriClient::connect(&node.cri_endpoint).await?;
    let image = format!("{}/berth/demo:v1", cluster.registry);
    for (name, probe) in [("keeper", true), ("forced", false), ("graceful", false)] {
        create_pod(&api, &demo(name, &node.name, &image, probe)?).await?;
    }
    let before = wait_pod(&api, "keeper", Duration::from_secs(60), |p| {
        container(p).filter(|c| c.2 && pod_ready(p))
    })
    .await?;
    let mut uids = HashMap::new();
    for name in ["forced", "graceful"] {
        let uid = wait_pod(&api, name, Duration::from_secs(60), |p| {
            container(p).and(p.metadata.uid.clone())
        })
        .await?;
        uids.insert(name, uid);
    }

    let mut agent = StoppedAgent::stop(&node.name)?;
    api.delete(
        "forced",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    api.delete("graceful", &DeleteParams::default()).await?;
    ensure!(
        api.get_opt("forced").await?.is_none(),
        "forced pod still in the API"
    );
    ensure!(
        runtime_objects(&cri, &uids["forced"]).await? > 0,
        "containers vanished while the agent was down"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.start()?;
    let t = Instant::now();

    // The orphan and the gracefully deleted pod are cleaned up; the keeper never flaps.
    let mut forced_gone = None;
    let mut graceful_gone = None;
    while t.elapsed() < Duration::from_secs(45) {
        let keeper = api.get("keeper").await?;
        let now = container(&keeper).context("keeper lost its container status")?;
        ensure!(
            now.0 == before.0 && now.1 == before.1,
            "keeper's container was not adopted: {before:?} then {now:?}"
        );
        ensure!(
            now.2 && pod_ready(&keeper),
            "keeper went unready after the agent restart"
        );
        if forced_gone.is_none() && runtime_objects(&cri, &uids["forced"]).await? == 0 {
            forced_gone = Some(t.elapsed());
        }
        if graceful_gone.is_none()
            && api.get_opt("graceful").await?.is_none()
            && runtime_objects(&cri, &uids["graceful"]).await? == 0
        {
            graceful_gone = Some(t.elapsed());
        }
        if forced_gone.is_some() && graceful_gone.is_some() && t.elapsed() > Duration::from_secs(8) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "after the agent restart: force-deleted pod's containers removed after {forced_gone:?}, \
         gracefully deleted pod gone after {graceful_gone:?}; keeper kept {} (restartCount {})",
        before.0, before.1
    );
    ensure!(
        forced_gone.is_some(),
        "containers of the force-deleted pod remain"
    );
    ensure!(
        graceful_gone.is_some(),
        "the gracefully deleted pod or its containers remain"
    );
    Ok(())
}
