//! End-to-end: cluster DNS answered by each node's agent (`--dns-listen` on the node's address,
//! `--cluster-dns` the same address, as `hack/lib/berth.sh` starts them). A pod with
//! `dnsPolicy: ClusterFirst` on a Berth node gets its node as nameserver with the cluster's
//! search path, and resolves `kubernetes.default` and a Service the test creates, by its full
//! name and by its short name through the search path; a missing name is NXDOMAIN.
//!
//! The client is the demo image's busybox (Debian's 1.35, static): its `nslookup` sends its
//! own queries (glibc's static `getaddrinfo` crashes), and applies the search path only to
//! names without a dot, so `kubernetes.default` is asked as
//! `kubernetes.default.svc.cluster.local` and the short-name check uses the Service's name
//! alone.
//!
//! Run: `cargo test -p berth-e2e --test cluster_dns -- --nocapture`

use std::time::Duration;

use anyhow::{Context as _, ensure};
use berth_e2e::api::wait_for;
use berth_e2e::cluster::LocalCluster;
use berth_e2e::k8s::{admin_client, create_pod, phase, setup, wait_pod};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

/// `kubectl exec POD -- /bin/busybox ARGS...` in `ns`, ended after 30 s: (exit code, stdout,
/// stderr).
async fn busybox(
    cluster: &LocalCluster,
    ns: &str,
    pod: &str,
    args: &[&str],
) -> anyhow::Result<(i32, String, String)> {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["-n", ns, "exec", pod, "--", "/bin/busybox"])
        .args(args)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .context("kubectl exec did not end within 30 s")??;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The addresses busybox `nslookup` printed as answers (the `Address:` lines after a `Name:`
/// line; the first `Address:` line is the server's).
fn answered(out: &str) -> Vec<String> {
    let mut in_answer = false;
    let mut found = Vec::new();
    for line in out.lines() {
        if line.starts_with("Name:") {
            in_answer = true;
        } else if let Some(addr) = line.strip_prefix("Address:").filter(|_| in_answer) {
            found.push(addr.trim().to_string());
        }
    }
    found
}

/// Waits until `nslookup name` in the pod answers `want` (the agent's index follows the API
/// server within a second or so).
async fn resolves(cluster: &LocalCluster, ns: &str, pod: &str, name: &str, want: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("{name} to resolve to {want} in pod {pod}"),
        TIMEOUT,
        || async {
            let (code, out, err) = busybox(cluster, ns, pod, &["nslookup", name]).await?;
            let addrs = answered(&out);
            Ok(if addrs.iter().any(|a| a == want) {
                Ok(())
            } else {
                Err(format!("exit {code}, answers {addrs:?}: {out} {err}"))
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_pod_resolves_services_through_its_node_s_agent() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-dns").await? else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let node = cluster.nodes.first().context("no hosts")?;

    // A Service with a ClusterIP (no backends needed: DNS answers its ClusterIP).
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))?;
    let web_ip = services
        .create(&PostParams::default(), &svc)
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the Service has no ClusterIP")?;
    let kubernetes_ip = Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the kubernetes Service has no ClusterIP")?;

    let pods = ns.pods();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "client"},
        "spec": {"nodeName": node.name, "automountServiceAccountToken": false, "enableServiceLinks": false,
                 "terminationGracePeriodSeconds": 1, "dnsPolicy": "ClusterFirst",
                 "containers": [{"name": "app", "image": format!("{}/berth/demo:v1", cluster.registry)}]},
    }))?;
    create_pod(&pods, &pod).await?;
    wait_pod(&pods, "client", TIMEOUT, |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await?;

    // The pod asks its own node, with the cluster's search path.
    let (code, conf, err) = busybox(&cluster, &ns.name, "client", &["cat", "/etc/resolv.conf"]).await?;
    ensure!(code == 0, "cat /etc/resolv.conf: {err}");
    ensure!(
        conf.lines()
            .any(|l| l.split_whitespace().eq(["nameserver", node.ip.as_str()])),
        "the pod's nameserver is not its node {}: {conf}",
        node.ip
    );
    let search = format!(
        "search {0}.svc.cluster.local svc.cluster.local cluster.local",
        ns.name
    );
    ensure!(
        conf.lines().any(|l| l.starts_with(&search)),
        "no `{search}` in {conf}"
    );
    ensure!(conf.contains("ndots:5"), "no ndots:5 in {conf}");

    resolves(
        &cluster,
        &ns.name,
        "client",
        "kubernetes.default.svc.cluster.local",
        &kubernetes_ip,
    )
    .await?;
    let full = format!("web.{}.svc.cluster.local", ns.name);
    resolves(&cluster, &ns.name, "client", &full, &web_ip).await?;
    // The short name, through the search path (`web.<ns>.svc.cluster.local` first).
    resolves(&cluster, &ns.name, "client", "web", &web_ip).await?;

    // A name of the cluster domain that does not exist: NXDOMAIN, no address.
    let missing = format!("nope.{}.svc.cluster.local", ns.name);
    let (code, out, err) = busybox(&cluster, &ns.name, "client", &["nslookup", &missing]).await?;
    ensure!(
        code != 0 && out.contains("NXDOMAIN") && answered(&out).is_empty(),
        "{missing}: exit {code}, {out} {err}"
    );
    Ok(())
}
