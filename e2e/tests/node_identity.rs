//! End-to-end test of the nodes' identities (issue 12 item 3). Each Berth agent authenticates as
//! `system:node:<name>` in group `system:nodes` with its own client certificate, and the API
//! server runs `--authorization-mode=Node,RBAC` with the `NodeRestriction` admission plugin, so
//! an agent reaches only its own Node, Lease and pods, and only the Secrets of pods bound to it.
//! The test uses one agent's own kubeconfig (`nodes/<node>/kubeconfig`) against objects of its
//! node and of another. Run as root on the local cluster:
//! `cargo test -p berth-e2e --test node_identity -- --nocapture`

use std::time::Duration;

use anyhow::{Context, bail};
use berth_e2e::k8s::{admin_client, create_pod, phase, setup, wait_pod};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);

/// A client with the identity of the agent whose kubeconfig is `path`.
async fn node_client(path: &std::path::Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The message of a 403 answer; fails on success or any other error.
fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) -> anyhow::Result<String> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(e.message),
        Err(e) => bail!("{what}: expected 403 Forbidden, got {e}"),
        Ok(v) => bail!("{what}: expected 403 Forbidden, but it was allowed: {v:?}"),
    }
}

fn pod_with_secret(name: &str, node: &str, secret: &str, image: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "s", "secret": {"secretName": secret}}],
            "containers": [{"name": "app", "image": image, "command": ["sh", "-c", "sleep 3600"],
                            "volumeMounts": [{"name": "s", "mountPath": "/etc/s"}]}]}
    }))?)
}

fn secret(name: &str) -> anyhow::Result<Secret> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name}, "stringData": {"key": "e2e-node-identity"}
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_an_agent_reaches_only_its_own_node_lease_pods_and_their_secrets() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-node-identity").await? else {
        return Ok(());
    };
    if cluster.nodes.len() < 2 {
        bail!("this scenario needs two Berth hosts (hack/up.sh --nodes 2 or more)");
    }
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let admin = admin_client(&cluster).await?;
    let image = format!("{}/berth/demo:v1", cluster.registry);

    // A pod on each node, each with a Secret of its own: both agents run theirs under their
    // node identities, which also shows the Node authorizer lets an agent read what its pods use.
    let admin_secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns.name);
    for s in ["secret-a", "secret-b", "secret-unused"] {
        admin_secrets.create(&PostParams::default(), &secret(s)?).await?;
    }
    let admin_pods = ns.pods();
    create_pod(
        &admin_pods,
        &pod_with_secret("pod-a", &a.name, "secret-a", &image)?,
    )
    .await?;
    let pod_b = create_pod(
        &admin_pods,
        &pod_with_secret("pod-b", &b.name, "secret-b", &image)?,
    )
    .await?;
    for name in ["pod-a", "pod-b"] {
        wait_pod(&admin_pods, name, TIMEOUT, |p| {
            (phase(p) == Some("Running")).then_some(())
        })
        .await?;
    }

    let node_a = node_client(&a.kubeconfig).await?;
    let secrets: Api<Secret> = Api::namespaced(node_a.clone(), &ns.name);
    secrets
        .get("secret-a")
        .await
        .context("the agent of node a reads the Secret its own pod mounts")?;
    let msg = forbidden(
        "node a reads the Secret of a pod on node b",
        secrets.get("secret-b").await,
    )?;
    assert!(msg.contains("no relationship found"), "{msg}");
    forbidden(
        "node a reads a Secret no pod uses",
        secrets.get("secret-unused").await,
    )?;
    forbidden("node a lists Secrets", secrets.list(&ListParams::default()).await)?;

    let nodes: Api<Node> = Api::all(node_a.clone());
    let label =
        |v: Option<&str>| Patch::Merge(json!({"metadata": {"labels": {"e2e.berth.dev/identity": v}}}));
    nodes
        .patch(&a.name, &PatchParams::default(), &label(Some("probe")))
        .await
        .context("node a labels its own Node")?;
    nodes
        .patch(&a.name, &PatchParams::default(), &label(None))
        .await?;
    let msg = forbidden(
        "node a labels node b",
        nodes
            .patch(&b.name, &PatchParams::default(), &label(Some("probe")))
            .await,
    )?;
    assert!(
        msg.contains(&format!("is not allowed to modify node {:?}", b.name)),
        "{msg}"
    );
    let own = nodes.get(&a.name).await?;
    let mut taints = own.spec.and_then(|s| s.taints).unwrap_or_default();
    taints.retain(|t| t.key != "berth.dev/agent");
    let msg = forbidden(
        "node a lifts its own taint",
        nodes
            .patch(
                &a.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taints": taints}})),
            )
            .await,
    )?;
    assert!(msg.contains("not allowed to modify taints"), "{msg}");

    let leases: Api<Lease> = Api::namespaced(node_a.clone(), "kube-node-lease");
    leases.get(&a.name).await.context("node a reads its own Lease")?;
    let renew = Patch::Merge(json!({"spec": {"holderIdentity": a.name}}));
    forbidden(
        "node a writes node b's Lease",
        leases.patch(&b.name, &PatchParams::default(), &renew).await,
    )?;

    let pods: Api<Pod> = Api::namespaced(node_a.clone(), &ns.name);
    let msg = forbidden(
        "node a deletes a pod bound to node b",
        pods.delete("pod-b", &DeleteParams::default()).await,
    )?;
    assert!(
        msg.contains("can only delete pods with spec.nodeName set to itself"),
        "{msg}"
    );
    let status = Patch::Merge(json!({"status": {"message": "written by another node"}}));
    forbidden(
        "node a writes the status of a pod bound to node b",
        pods.patch_status("pod-b", &PatchParams::default(), &status).await,
    )?;
    let alive = admin_pods.get("pod-b").await?;
    assert_eq!(alive.metadata.uid, pod_b.metadata.uid, "pod-b was not replaced");
    assert!(
        alive.metadata.deletion_timestamp.is_none(),
        "pod-b is not being deleted"
    );

    let token: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": ["berth-e2e"], "expirationSeconds": 600,
                 "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "pod-b", "uid": pod_b.metadata.uid}}
    }))?;
    let sas: Api<ServiceAccount> = Api::namespaced(node_a.clone(), &ns.name);
    forbidden(
        "node a asks a token bound to a pod of node b",
        sas.create_token_request("default", &PostParams::default(), &token)
            .await,
    )?;
    Ok(())
}
