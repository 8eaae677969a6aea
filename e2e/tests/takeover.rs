//! The controller is killed in the middle of a rollout: a standby takes the Lease, finishes the rollout, and
//! no duplicate pods arise. This stops the cluster's own controller for up to half a minute, so it is ignored
//! unless asked for (`hack/test.sh` runs every test one at a time with `--include-ignored`).

use std::time::{Duration, Instant};

use anyhow::ensure;
use berth_api::apps::{REVISION_LABEL, WORKLOAD_LABEL, Workload};
use berth_e2e::api::{
    TestNamespace, admin_client, copy_image, kubectl_apply, unique, wait_for, workload_pods,
};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::controller::{ClusterController, LEASE, Replica, RestoreClusterController, readyz};
use berth_e2e::http::get;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

const TIMEOUT: Duration = Duration::from_secs(90);

const MANIFESTS: &str = r#"apiVersion: image.berth.dev/v1alpha1
kind: ImageStreamTag
metadata: {name: app.live}
spec:
  stream: app
  tag: live
  from: {kind: DockerImage, name: "FROM"}
  importPolicy: {insecure: true}
---
apiVersion: apps.berth.dev/v1alpha1
kind: Workload
metadata: {name: web}
spec:
  replicas: 3
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        imageFrom: {kind: ImageStreamTag, name: "app:live"}
        readinessProbe: {httpGet: {path: /, port: 8080}, initialDelaySeconds: 2, periodSeconds: 1}
"#;

/// Waits until the Workload serves `version` from 3 Ready pods on 3 hosts.
async fn serving(pods: &Api<Pod>, version: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("3 Ready pods on 3 hosts answering {version}"),
        TIMEOUT,
        || async {
            let live = workload_pods(pods, "web").await?;
            let hosts: std::collections::BTreeSet<_> = live.iter().map(|p| p.node.clone()).collect();
            if live.len() != 3 || hosts.len() != 3 || !live.iter().all(|p| p.ready) {
                return Ok(Err(format!("{live:?}")));
            }
            for p in &live {
                let body = get(&format!("{}:8080", p.ip), "/", Duration::from_secs(2))
                    .await
                    .map(|r| r.body)
                    .unwrap_or_default();
                if !body.contains(&format!("berth-demo {version}")) {
                    return Ok(Err(format!("{} answered {body:?}", p.name)));
                }
            }
            Ok(Ok(()))
        },
    )
    .await
}

#[tokio::test]
#[ignore = "kills the cluster's berth-controller mid-rollout; hack/test.sh runs it with --include-ignored"]
async fn e2e_takeover_a_standby_finishes_a_rollout_the_killed_leader_began() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let leader = ClusterController::find(&cluster)?;
    ensure!(
        readyz(&leader.metrics_addr()).await? == 200,
        "the cluster's berth-controller is not leading"
    );
    let mut restore = RestoreClusterController::of(&cluster, &leader);
    let identity = format!("e2e-rollout-takeover-{}", unique());
    let mut standby = Replica::start(&cluster, &identity, &[])?;
    standby.wait_standing_by(TIMEOUT).await?;

    let ns = TestNamespace::create(&client, "rollout-takeover").await?;
    let repo = format!("berth/e2e-takeover-{}", unique());
    copy_image(&cluster.registry, "berth/demo:v1", &format!("{repo}:live"))?;
    let manifests = MANIFESTS.replace("FROM", &format!("{}/{repo}:live", cluster.registry));
    kubectl_apply(&cluster, &ns.name, &manifests).map_err(anyhow::Error::msg)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    serving(&pods, "v1").await?;

    // Version 2 arrives; as soon as the first pod of revision 2 exists, the leader dies.
    copy_image(&cluster.registry, "berth/demo:v2", &format!("{repo}:live"))?;
    let workloads: Api<Workload> = Api::namespaced(client.clone(), &ns.name);
    let new_hash = wait_for("the first pod of revision 2", TIMEOUT, || async {
        let status = workloads.get("web").await?.status.unwrap_or_default();
        Ok(match (status.revision, status.updated_replicas) {
            (2, 1..=2) => Ok(status.revision_hash.unwrap_or_default()),
            other => Err(format!("revision, updated: {other:?}")),
        })
    })
    .await?;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &leader.pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -KILL {} failed", leader.pid);
    let killed = Instant::now();

    wait_for("the standby to lead", LEASE * 2 + Duration::from_secs(10), || {
        let addr = standby.metrics_addr.clone();
        async move {
            Ok(match readyz(&addr).await? {
                200 => Ok(()),
                other => Err(format!("/readyz {other}")),
            })
        }
    })
    .await?;
    eprintln!(
        "the standby led {:?} after the leader was killed mid-rollout",
        killed.elapsed()
    );
    serving(&pods, "v2").await?;
    eprintln!(
        "the rollout finished {:?} after the leader was killed",
        killed.elapsed()
    );

    // No duplicates: the pods of revision 2 are exactly WORKLOAD-HASH-0..2 (the new leader made only the
    // missing ones; a second copy would have taken the name WORKLOAD-HASH-3).
    let all = pods
        .list(&ListParams::default().labels(&format!("{WORKLOAD_LABEL}=web")))
        .await?;
    let mut new_names: Vec<_> = all
        .iter()
        .filter(|p| p.labels().get(REVISION_LABEL) == Some(&new_hash))
        .map(ResourceExt::name_any)
        .collect();
    new_names.sort();
    let expected: Vec<_> = (0..3).map(|i| format!("web-{new_hash}-{i}")).collect();
    assert_eq!(new_names, expected, "pods of revision 2");
    wait_for(
        "status: revision 2 with 3 of 3 pods updated and available",
        TIMEOUT,
        || async {
            let s = workloads.get("web").await?.status.unwrap_or_default();
            let counts = (s.revision, s.replicas, s.updated_replicas, s.available_replicas);
            Ok(if counts == (2, 3, 3, 3) {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            })
        },
    )
    .await?;

    standby.terminate(Duration::from_secs(10));
    restore.restore()?;
    Ok(())
}
