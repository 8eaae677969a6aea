//! End-to-end tests of container logs through the API server (`kubectl logs -f`, `--tail`),
//! and of the agent's HTTPS port refusing clients without a certificate of the cluster CA or a token.
//!
//! Run: `cargo test -p berth-e2e --test agent_logs -- --nocapture --test-threads 2`

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::k8s::{create_pod, phase, setup, wait_pod};
use k8s_openapi::api::core::v1::Pod;

fn kubectl(cluster: &LocalCluster, ns: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("kubectl");
    c.arg("--kubeconfig").arg(&cluster.kubeconfig).args(["-n", ns]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_agent_kubectl_logs_follow_and_tail() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-logs").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    // 20 lines over about 6 s, then the container exits for good.
    let script = "i=1; while [ $i -le 20 ]; do echo line $i; i=$((i+1)); sleep 0.3; done";
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "talker"},
        "spec": {"nodeName": cluster.nodes[0].name, "restartPolicy": "Never",
                 "automountServiceAccountToken": false, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": image, "command": ["sh", "-c", script]}]}
    }))?;
    create_pod(&api, &pod).await?;
    wait_pod(&api, "talker", Duration::from_secs(60), |p| {
        matches!(phase(p), Some("Running" | "Succeeded")).then_some(())
    })
    .await?;
    // -f streams what is written after the request and ends when the container exits.
    let t = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(40),
        kubectl(&cluster, &ns.name)
            .args(["logs", "-f", "talker"])
            .output(),
    )
    .await
    .context("kubectl logs -f did not end after the container exited")??;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "kubectl logs -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: String = (1..=20).map(|i| format!("line {i}\n")).collect();
    ensure!(text == want, "kubectl logs -f printed {text:?}");
    eprintln!("kubectl logs -f ended {:?} after it started", t.elapsed());
    ensure!(
        t.elapsed() >= Duration::from_secs(2),
        "-f returned at once ({:?}): it did not follow",
        t.elapsed()
    );
    let out = kubectl(&cluster, &ns.name)
        .args(["logs", "--tail=3", "talker"])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text == "line 18\nline 19\nline 20\n",
        "kubectl logs --tail=3 printed {text:?} ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn curl(args: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .context("running curl")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_agent_https_port_requires_a_client_of_the_cluster() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let pki = cluster.state.join("pki");
    let path = |f: &str| pki.join(f).display().to_string();
    for node in &cluster.nodes {
        let url = format!("https://{}:10250/healthz", node.ip);
        // Without a certificate or token: 401 (a token could authenticate; see agent_streams.rs).
        let (_, text) = curl(&["-k", &url])?;
        ensure!(
            text.trim() == "Unauthorized",
            "{}: no client cert, yet: {text}",
            node.name
        );
        // The API server's kubelet client certificate (what `kubectl logs` uses) is accepted.
        let (ok, text) = curl(&[
            "--cacert",
            &path("ca.crt"),
            "--cert",
            &path("apiserver-kubelet-client.crt"),
            "--key",
            &path("apiserver-kubelet-client.key"),
            &url,
        ])?;
        ensure!(
            ok && text.trim() == "ok",
            "{}: with the kubelet client cert: {text}",
            node.name
        );
    }
    Ok(())
}
