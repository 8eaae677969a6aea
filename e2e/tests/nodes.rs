//! Lost hosts: a host stopped, and a host cut off the network. Its Workload pods come back on the other hosts
//! once its Lease is older than the grace (40 s), the Workload's status counts the lost pod out until its
//! replacement is Ready, and when the host returns nothing stale keeps running.
//!
//! These scenarios stop parts of the shared local cluster; run them alone (`--test-threads=1`, as
//! `hack/test.sh` does). A guard brings the host back also when a test fails.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_api::apps::Workload;
use berth_e2e::api::{
    LivePod, TestNamespace, admin_client, kubectl_apply, wait_for, wait_hosts_ready, workload_pods,
};
use berth_e2e::cluster::{LocalCluster, node_op};
use berth_e2e::web::{WEB_WORKLOAD, answers};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// The node grace of the local cluster's controller plus what it takes to notice, replace and start.
const RECOVERY: Duration = Duration::from_secs(40 + 30);

/// Undoes an operation on a host when dropped.
struct HostGuard {
    undo: &'static str,
    node: String,
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        if let Err(e) = node_op(self.undo, &self.node) {
            eprintln!("could not bring {} back: {e}", self.node);
        }
    }
}

/// The (ready, available) replicas of a Workload's status, each change in order, from a watch.
struct ReadyCounts {
    seen: Arc<Mutex<Vec<(i32, i32)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyCounts {
    fn watch(api: Api<Workload>, name: &str) -> Self {
        let seen: Arc<Mutex<Vec<(i32, i32)>>> = Arc::default();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut objects = std::pin::pin!(watcher(api, config).applied_objects());
            while let Some(Ok(w)) = objects.next().await {
                let status = w.status.unwrap_or_default();
                let counts = (status.ready_replicas, status.available_replicas);
                let mut seen = record.lock().expect("not poisoned");
                if seen.last() != Some(&counts) {
                    seen.push(counts);
                }
            }
        });
        Self { seen, task }
    }

    fn seen(&self) -> Vec<(i32, i32)> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// Waits until the status says all 3 replicas are ready and available.
    async fn wait_all_ready(&self) -> anyhow::Result<()> {
        wait_for(
            "the Workload's status to say 3 ready, 3 available",
            Duration::from_secs(10),
            || async {
                let seen = self.seen();
                Ok(if seen.last() == Some(&(3, 3)) {
                    Ok(())
                } else {
                    Err(format!("{seen:?}"))
                })
            },
        )
        .await
    }
}

impl Drop for ReadyCounts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One host at a time: the scenarios of this file never overlap.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the scenario: `lose` a host, see the pods replaced, `undo` it, see nothing stale.
async fn scenario(prefix: &str, lose: &'static str, undo: &'static str) -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let client = admin_client(&cluster).await?;
    // A host that an earlier scenario brought back must be schedulable again first.
    wait_hosts_ready(&client, &cluster, Duration::from_secs(60)).await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    kubectl_apply(
        &cluster,
        &ns.name,
        &WEB_WORKLOAD.replace("REGISTRY", &cluster.registry),
    )
    .map_err(anyhow::Error::msg)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let spread = wait_for("3 Ready pods on 3 hosts", Duration::from_secs(90), || async {
        let pods = workload_pods(&pods, "web").await?;
        let hosts: BTreeSet<_> = pods.iter().map(|p| p.node.clone()).collect();
        Ok(
            if pods.len() == 3 && hosts.len() == 3 && pods.iter().all(|p| p.ready) {
                Ok(pods)
            } else {
                Err(format!("{pods:?}"))
            },
        )
    })
    .await?;
    let victim = cluster.nodes.last().expect("hosts").name.clone();
    let LivePod {
        name: stale_pod,
        ip: stale_ip,
        ..
    } = spread
        .iter()
        .find(|p| p.node == victim)
        .cloned()
        .expect("a pod on every host");

    // The replacement may take the free name again: the lost host's pod is told apart by its uid.
    let stale_uid = pods.get(&stale_pod).await?.metadata.uid;
    let counts = ReadyCounts::watch(Api::namespaced(client.clone(), &ns.name), "web");
    counts.wait_all_ready().await?;
    let before_loss = counts.seen().len();
    node_op(lose, &victim)?;
    let guard = HostGuard {
        undo,
        node: victim.clone(),
    };
    let lost_at = Instant::now();
    let replaced = wait_for(&format!("3 Ready pods without {victim}"), RECOVERY, || async {
        let pods = workload_pods(&pods, "web").await?;
        let ok = pods.len() == 3 && pods.iter().all(|p| p.ready && p.node != victim);
        Ok(if ok { Ok(pods) } else { Err(format!("{pods:?}")) })
    })
    .await?;
    eprintln!(
        "{lose} {victim}: 3 Ready pods on the other hosts after {:?}",
        lost_at.elapsed()
    );
    for LivePod { name, ip, .. } in &replaced {
        assert!(answers(ip).await, "{name} at {ip} does not answer");
    }
    // The status told the truth on the way: fewer than 3 ready while a pod was replaced, 3 again after.
    counts.wait_all_ready().await?;
    let seen = counts.seen();
    assert!(
        seen[before_loss..].iter().any(|(ready, _)| *ready < 3),
        "the status never counted the lost pod out: {seen:?}"
    );
    let now = pods.get_opt(&stale_pod).await?;
    assert!(
        now.is_none_or(|p| p.metadata.uid != stale_uid),
        "the pod of the lost host is still there"
    );

    drop(guard); // the host comes back
    let back = Instant::now();
    wait_for(
        &format!("{victim} to stop serving the replaced pod {stale_pod} at {stale_ip}"),
        Duration::from_secs(60),
        || async {
            Ok(if answers(&stale_ip).await {
                Err("it still answers".to_owned())
            } else {
                Ok(())
            })
        },
    )
    .await?;
    eprintln!(
        "{undo} {victim}: its stale container was gone {:?} after it returned",
        back.elapsed()
    );
    // The Workload never ends with more Ready pods than it asked for.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = workload_pods(&pods, "web").await?;
    assert_eq!(after.iter().filter(|p| p.ready).count(), 3, "{after:?}");
    // Leave the cluster whole for what runs next.
    wait_hosts_ready(&client, &cluster, Duration::from_secs(60)).await?;
    Ok(())
}

#[tokio::test]
async fn e2e_a_stopped_host_is_replaced_and_cleaned_when_it_returns() -> anyhow::Result<()> {
    scenario("stopped", "stop", "start").await
}

#[tokio::test]
async fn e2e_a_host_cut_off_the_network_is_replaced_and_cleaned_when_it_returns() -> anyhow::Result<()> {
    scenario("cut", "cut", "restore").await
}
