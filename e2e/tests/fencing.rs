//! Leader fencing (issue 12 item 5): a leader paused past its Lease (SIGSTOP) writes nothing after it
//! resumes. Two replicas of the controller are started by the test (the cluster's own is stopped and
//! started again afterwards); 200 new tags are created while the leader is stopped, and it is continued
//! once the standby leads and has imported them. The API server's audit log (`logs/audit.log`: the controller's writes at
//! Metadata level, with the user agent that names the replica) must show no write the resumed replica made
//! and the API server accepted, from its resumption until it exits. This stops the cluster's controller for
//! about a minute, so it is ignored unless asked for (`hack/test.sh` runs every test with
//! `--include-ignored`).

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use berth_api::image::ImageStreamTag;
use berth_e2e::api::{TestNamespace, admin_client, import_condition, unique, wait_for};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::controller::{ClusterController, LEASE, Replica, RestoreClusterController, readyz};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, PostParams};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Tags created while the leader is stopped.
const TAGS: usize = 200;

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill {sig} {pid} failed");
    Ok(())
}

async fn wait_leading(replica: &Replica) -> anyhow::Result<()> {
    wait_for(
        &format!("replica {} to lead", replica.identity),
        LEASE * 3,
        || {
            let addr = replica.metrics_addr.clone();
            async move {
                Ok(match readyz(&addr).await {
                    Ok(200) => Ok(()),
                    other => Err(format!("/readyz {other:?}")),
                })
            }
        },
    )
    .await
}

/// The writes of the audit log made by a client whose user agent names `identity` and that the API server
/// accepted (status below 400), received after `after` (RFC 3339, UTC): "VERB RESOURCE NAME" each. Writes
/// of the leader Lease itself are left out: kube-lease-manager 0.13 renews with a patch of `renewTime` alone,
/// so a replica resumed from a stop may send one renewal onto the new holder's Lease (it only extends the
/// new holder's term; the test checks that the holder stays).
fn accepted_writes(audit: &str, identity: &str, after: &str) -> Vec<String> {
    audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["userAgent"]
                .as_str()
                .is_some_and(|ua| ua.contains(&format!("({identity})")))
        })
        .filter(|e| e["requestReceivedTimestamp"].as_str().is_some_and(|t| t > after))
        .filter(|e| e["responseStatus"]["code"].as_u64().is_some_and(|c| c < 400))
        .filter(|e| e["objectRef"]["resource"].as_str() != Some("leases"))
        .map(|e| {
            format!(
                "{} {} {}/{} at {}",
                e["verb"].as_str().unwrap_or("?"),
                e["objectRef"]["resource"].as_str().unwrap_or("?"),
                e["objectRef"]["namespace"].as_str().unwrap_or(""),
                e["objectRef"]["name"].as_str().unwrap_or(""),
                e["requestReceivedTimestamp"].as_str().unwrap_or("?"),
            )
        })
        .collect()
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

#[tokio::test]
#[ignore = "stops the cluster's berth-controller for about a minute; hack/test.sh runs it with --include-ignored"]
async fn e2e_a_leader_paused_past_its_lease_writes_nothing_after_it_resumes() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let audit_path = cluster.state.join("logs/audit.log");
    ensure!(
        audit_path.is_file(),
        "{} is missing: the API server runs without the audit log of hack/lib/control-plane.sh (hack/down.sh, \
         then hack/up.sh)",
        audit_path.display()
    );
    let cluster_controller = ClusterController::find(&cluster)?;
    let mut restore = RestoreClusterController::of(&cluster, &cluster_controller);
    // SIGTERM: the cluster's controller gives the Lease up at once.
    signal(cluster_controller.pid, "-TERM")?;

    let run = unique();
    let mut leader = Replica::start(&cluster, &format!("e2e-fence-a-{run}"), &[])?;
    wait_leading(&leader).await?;
    let mut standby = Replica::start(&cluster, &format!("e2e-fence-b-{run}"), &[])?;
    standby.wait_standing_by(TIMEOUT).await?;

    // Work the leader has not done when it is stopped: tags pinned by digest (imported without a registry
    // request), created while it is stopped, so that it finds them in its watches on resuming and would
    // write their status at once (the new leader imports them meanwhile).
    let ns = TestNamespace::create(&client, "fencing").await?;
    let tags: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    let new_tag = |name: &str, from: &str| -> anyhow::Result<ImageStreamTag> {
        Ok(serde_json::from_value(serde_json::json!({
            "apiVersion": "image.berth.dev/v1alpha1", "kind": "ImageStreamTag",
            "metadata": {"name": format!("app.{name}")},
            "spec": {"stream": "app", "tag": name, "importPolicy": {"insecure": true},
                     "from": {"kind": "DockerImage", "name": from}}
        }))?)
    };
    let demo = format!("{}/berth/demo", cluster.registry);
    tags.create(&PostParams::default(), &new_tag("ref", &format!("{demo}:v1"))?)
        .await?;
    let digest = wait_for("the reference tag to be imported", TIMEOUT, || async {
        let tag = tags.get("app.ref").await?;
        Ok(tag
            .status
            .and_then(|s| s.digest)
            .ok_or_else(|| "no digest yet".to_string()))
    })
    .await?;
    let imported = || async {
        let list = tags.list(&ListParams::default()).await?;
        anyhow::Ok(
            list.items
                .iter()
                .filter(|t| import_condition(t).is_some_and(|(status, _, _)| status == "True"))
                .count(),
        )
    };
    signal(leader.pid(), "-STOP")?;
    let resumed = async {
        for i in 0..TAGS {
            let pinned = new_tag(&format!("t{i}"), &format!("{demo}@{digest}"))?;
            tags.create(&PostParams::default(), &pinned).await?;
        }
        wait_leading(&standby).await?;
        wait_for("the new leader to import the new tags", TIMEOUT, || async {
            let n = imported().await?;
            Ok(if n > TAGS / 2 {
                Ok(())
            } else {
                Err(format!("{n} imported"))
            })
        })
        .await?;
        let resumed_at = now_rfc3339();
        signal(leader.pid(), "-CONT")?;
        anyhow::Ok(resumed_at)
    }
    .await;
    // Whatever happened, the leader must not stay stopped.
    let _ = signal(leader.pid(), "-CONT");
    let resumed_at = resumed?;

    let deadline = std::time::Instant::now() + LEASE * 2;
    while leader.exited().is_none() {
        if std::time::Instant::now() > deadline {
            bail!(
                "the resumed replica still runs {:?} after it was continued: {}",
                LEASE * 2,
                leader.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The audit log is written in batches; give it a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let audit =
        std::fs::read_to_string(&audit_path).with_context(|| format!("reading {}", audit_path.display()))?;
    let writes = accepted_writes(&audit, &leader.identity, &resumed_at);
    ensure!(
        writes.is_empty(),
        "the replica paused past its Lease wrote after it resumed: {writes:#?}\nits log: {}",
        leader.log_text()
    );
    let standby_writes = accepted_writes(&audit, &standby.identity, "");
    ensure!(
        !standby_writes.is_empty(),
        "the audit log shows no write of the new leader either: the check above would see nothing"
    );
    eprintln!(
        "resumed at {resumed_at}: no accepted write by {}; {} by the new leader {}",
        leader.identity,
        standby_writes.len(),
        standby.identity
    );
    let lease = Api::<Lease>::namespaced(client.clone(), "berth-system")
        .get("berth-controller")
        .await?;
    let holder = lease.spec.and_then(|s| s.holder_identity);
    ensure!(
        holder.as_deref() == Some(standby.identity.as_str()),
        "the new leader {} lost the Lease to {holder:?}",
        standby.identity
    );
    drop(standby);
    restore.restore()?;
    Ok(())
}
