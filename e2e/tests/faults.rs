//! Control-plane faults must not take the service down. The API server stops answering for 60 s (SIGSTOP: its
//! connections hang, as an overloaded or cut-off server's do), longer than the 40 s node grace: nobody can
//! renew a Lease meanwhile. When it answers again no pod may be replaced: the controller measures a Lease's
//! age from its own observation of a renewal and evicts nothing while all nodes look lost at once. etcd is
//! stopped for as long and started again on its data (the API server answers every request with an error
//! meanwhile): the same must hold, and nothing may be lost. containerd restarted under a pod keeps it Ready.
//!
//! Each stops part of the shared cluster: ignored in casual runs, run alone by `hack/test.sh`
//! (`--include-ignored --test-threads=1`). Guards put the cluster back also when a test fails.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use berth_api::apps::Workload;
use berth_e2e::api::{
    LivePod, TestNamespace, admin_client, kubectl_apply, wait_for, wait_hosts_ready, workload_pods,
};
use berth_e2e::cluster::{LocalCluster, control_plane_op, node_op, restart_agent};
use berth_e2e::controller::{ClusterController, RestoreClusterController};
use berth_e2e::web::{WEB_WORKLOAD, answers};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;

const OUTAGE: Duration = Duration::from_secs(60);
/// etcd's outage: shorter than the controller's leader Lease, so the leader keeps leading through it and must
/// resume its watches (a longer one makes it step down and start afresh).
const ETCD_OUTAGE: Duration = Duration::from_secs(10);

/// The API server's pid, as `hack/up.sh` recorded it ("PID STARTTIME").
fn apiserver_pid(cluster: &LocalCluster) -> anyhow::Result<i32> {
    let file = cluster.state.join("pids/kube-apiserver.pid");
    std::fs::read_to_string(&file)?
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no pid in {}", file.display()))
}

fn signal(pid: i32, sig: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kill {sig} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Resumes the API server when dropped.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        if let Err(e) = signal(self.0, "-CONT") {
            eprintln!("could not resume the API server (pid {}): {e}", self.0);
        }
    }
}

/// Starts a control-plane component again when dropped, unless it was started on purpose.
struct StartAgain(Option<&'static str>);

impl Drop for StartAgain {
    fn drop(&mut self) {
        if let Some(component) = self.0.take()
            && let Err(e) = control_plane_op("start", component)
        {
            eprintln!(
                "could not start {component} again: {e:#}; run hack/control-plane.sh start {component}"
            );
        }
    }
}

/// The example Workload (3 replicas, one a host), Ready, in a namespace of its own.
struct Service {
    _ns: TestNamespace,
    pods: Api<Pod>,
    before: Vec<LivePod>,
}

impl Service {
    async fn start(client: &kube::Client, cluster: &LocalCluster, prefix: &str) -> anyhow::Result<Self> {
        let ns = TestNamespace::create(client, prefix).await?;
        kubectl_apply(
            cluster,
            &ns.name,
            &WEB_WORKLOAD.replace("REGISTRY", &cluster.registry),
        )
        .map_err(anyhow::Error::msg)?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        let before = wait_for("3 Ready pods", Duration::from_secs(90), || async {
            let p = workload_pods(&pods, "web").await?;
            Ok(if p.len() == 3 && p.iter().all(|p| p.ready) {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            })
        })
        .await?;
        Ok(Self {
            _ns: ns,
            pods,
            before,
        })
    }

    /// Every pod answers, checked every 5 s for `how_long`: the pods are the agents' and the
    /// runtime's, not the control plane's.
    async fn answers_throughout(&self, how_long: Duration) {
        let since = Instant::now();
        while since.elapsed() < how_long {
            for p in &self.before {
                assert!(
                    answers(&p.ip).await,
                    "{} at {} stopped answering during the fault",
                    p.name,
                    p.ip
                );
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    /// For a node grace and more after the fault, the same three pods stay, Ready, none replaced,
    /// and answer.
    async fn stays(&self) {
        let names: BTreeSet<String> = self.before.iter().map(|p| p.name.clone()).collect();
        let watch_until = Instant::now() + Duration::from_secs(50);
        let mut seen_ready = false;
        while Instant::now() < watch_until {
            if let Ok(now) = workload_pods(&self.pods, "web").await {
                let now_names: BTreeSet<String> = now.iter().map(|p| p.name.clone()).collect();
                assert_eq!(now_names, names, "pods were replaced after the fault: {now:?}");
                seen_ready |= now.iter().all(|p| p.ready) && now.len() == 3;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        assert!(seen_ready, "the three pods were never all Ready after the fault");
        for p in &self.before {
            assert!(
                answers(&p.ip).await,
                "{} at {} does not answer after the fault",
                p.name,
                p.ip
            );
        }
    }

    /// A fourth replica is created, bound and Ready: the controller sees what happens after the fault.
    async fn scales_to_four(&self, workloads: &Api<Workload>) -> anyhow::Result<()> {
        let scale = serde_json::json!({"spec": {"replicas": 4}});
        workloads
            .patch(
                "web",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&scale),
            )
            .await?;
        wait_for(
            "4 Ready pods after scaling up",
            Duration::from_secs(90),
            || async {
                let p = workload_pods(&self.pods, "web").await?;
                Ok(if p.len() == 4 && p.iter().all(|p| p.ready) {
                    Ok(())
                } else {
                    Err(format!("{p:?}"))
                })
            },
        )
        .await
    }
}

/// What each control-plane fault starts from: Ready hosts, the cluster's controller (restored should it step
/// down over the fault, for what runs next) and the example Workload, Ready.
struct Scenario {
    cluster: LocalCluster,
    client: kube::Client,
    leader: ClusterController,
    restore: RestoreClusterController,
    service: Service,
}

impl Scenario {
    async fn start(prefix: &str) -> anyhow::Result<Option<Self>> {
        let Some(cluster) = LocalCluster::require() else {
            return Ok(None);
        };
        let client = admin_client(&cluster).await?;
        wait_hosts_ready(&client, &cluster, Duration::from_secs(60)).await?;
        let leader = ClusterController::find(&cluster)?;
        let restore = RestoreClusterController::of(&cluster, &leader);
        let service = Service::start(&client, &cluster, prefix).await?;
        Ok(Some(Self {
            cluster,
            client,
            leader,
            restore,
            service,
        }))
    }

    /// The Workload's API.
    fn workloads(&self) -> Api<Workload> {
        Api::namespaced(
            self.client.clone(),
            self.service.pods.namespace().unwrap_or_default(),
        )
    }

    /// After the fault: the same pods stay Ready and answer, the hosts are Ready, and a controller that
    /// stepped down over the fault is restored.
    async fn after_the_fault(&mut self) -> anyhow::Result<()> {
        self.service.stays().await;
        wait_hosts_ready(&self.client, &self.cluster, Duration::from_secs(60)).await?;
        if !self.leader.alive() {
            eprintln!("the controller that led before the fault no longer runs; restoring it");
            self.restore.restore()?;
        }
        Ok(())
    }
}

#[tokio::test]
#[ignore = "pauses the shared cluster's API server for 60 s: run alone (hack/test.sh does)"]
async fn e2e_an_api_server_outage_longer_than_the_node_grace_replaces_no_pod() -> anyhow::Result<()> {
    let Some(mut scenario) = Scenario::start("outage").await? else {
        return Ok(());
    };
    let pid = apiserver_pid(&scenario.cluster)?;
    signal(pid, "-STOP")?;
    let resume = Resume(pid);
    scenario.service.answers_throughout(OUTAGE).await;
    drop(resume);
    eprintln!("API server resumed after {OUTAGE:?}");
    scenario.after_the_fault().await
}

#[tokio::test]
#[ignore = "stops the shared cluster's etcd for 10 s: run alone (hack/test.sh does)"]
async fn e2e_an_etcd_restart_replaces_no_pod_and_loses_nothing() -> anyhow::Result<()> {
    let Some(mut scenario) = Scenario::start("etcd-restart").await? else {
        return Ok(());
    };
    let workloads = scenario.workloads();
    let generation = workloads.get("web").await?.metadata.generation;

    control_plane_op("stop", "etcd")?;
    let mut start_again = StartAgain(Some("etcd"));
    scenario.service.answers_throughout(ETCD_OUTAGE).await;
    start_again.0 = None;
    control_plane_op("start", "etcd")?;
    eprintln!("etcd started again after {ETCD_OUTAGE:?}");

    scenario.after_the_fault().await?;
    // Nothing written before the restart is lost, nor changed by it.
    let after = workloads.get("web").await?;
    anyhow::ensure!(
        after.metadata.generation == generation,
        "the Workload's generation moved over the restart: {generation:?} -> {:?}",
        after.metadata.generation
    );
    // The controller still sees what happens after the restart (its watches resumed).
    scenario.service.scales_to_four(&workloads).await
}

/// The pod's IP, whether it is Ready, and its container's restart count.
fn pod_state(p: &Pod) -> (Option<String>, bool, i32) {
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let restarts = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count);
    (status.and_then(|s| s.pod_ip.clone()), ready, restarts)
}

#[tokio::test]
#[ignore = "restarts containerd on a host of the shared cluster: run alone (hack/test.sh does)"]
async fn e2e_a_containerd_restart_keeps_the_pod_running_ready_and_probed_at_its_ip() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    wait_hosts_ready(&client, &cluster, Duration::from_secs(60)).await?;
    let ns = TestNamespace::create(&client, "runtime").await?;
    let node = cluster.nodes[1].name.clone();
    // An HTTP readiness probe every second: it needs the pod's IP, which the agent must still know after
    // containerd forgot its sandboxes' network state.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "steady"},
        "spec": {"nodeName": node, "automountServiceAccountToken": false, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "web", "image": format!("{}/berth/demo:v1", cluster.registry),
                                 "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                                    "periodSeconds": 1, "failureThreshold": 2}}]}
    }))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    berth_e2e::k8s::create_pod(&pods, &pod).await?;
    let (ip, _, restarts) = wait_for("the pod Ready", Duration::from_secs(60), || async {
        let state = pod_state(&pods.get("steady").await?);
        Ok(if state.1 {
            Ok(state)
        } else {
            Err(format!("{state:?}"))
        })
    })
    .await?;
    let ip = ip.expect("a Ready pod has an IP");

    node_op("restart-containerd", &node)?;
    let restarted = Instant::now();
    // The container never stops serving, and once the node has caught up the pod is Ready, at the same IP,
    // without a restart, and stays so: a probe aimed anywhere but the pod's IP would fail it within 2 s.
    let mut ready_since: Option<Instant> = None;
    while ready_since.is_none_or(|t| t.elapsed() < Duration::from_secs(20)) {
        anyhow::ensure!(
            restarted.elapsed() < Duration::from_secs(60),
            "the pod was not Ready for 20 s in a row within 60 s of the restart: {:?}",
            pod_state(&pods.get("steady").await?)
        );
        assert!(answers(&ip).await, "the pod at {ip} stopped answering");
        let (now_ip, ready, now_restarts) = pod_state(&pods.get("steady").await?);
        assert_eq!(now_ip.as_deref(), Some(ip.as_str()), "the pod's IP changed");
        assert_eq!(now_restarts, restarts, "the container was restarted");
        ready_since = match (ready, ready_since) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "containerd restarted: the pod Ready again (for 20 s) {:?} after",
        restarted.elapsed().saturating_sub(Duration::from_secs(20))
    );
    wait_hosts_ready(&client, &cluster, Duration::from_secs(60)).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "stops the shared cluster's API server and controller for 50 s: run alone (hack/test.sh does)"]
async fn e2e_the_api_server_and_the_controller_restarted_together_replace_no_pod() -> anyhow::Result<()> {
    let Some(mut scenario) = Scenario::start("cp-restart").await? else {
        return Ok(());
    };
    signal(i32::try_from(scenario.leader.pid)?, "-KILL")?;
    control_plane_op("stop", "kube-apiserver")?;
    let mut start_again = StartAgain(Some("kube-apiserver"));
    // Longer than the 40 s node grace: every Lease is older than that when the controller starts again.
    scenario.service.answers_throughout(Duration::from_secs(50)).await;
    start_again.0 = None;
    control_plane_op("start", "kube-apiserver")?;
    // A controller that starts cold, beside nodes whose Leases went unrenewed for 50 s, must not judge them.
    scenario.restore.restore()?;
    eprintln!("API server and controller started again");

    scenario.after_the_fault().await?;
    scenario.service.scales_to_four(&scenario.workloads()).await
}

/// Restarts the agent on time when dropped.
struct OnTime(String);

impl Drop for OnTime {
    fn drop(&mut self) {
        if let Err(e) = restart_agent(&self.0, None) {
            eprintln!(
                "could not restart the agent of {} on time: {e:#}; hack/node.sh stop-agent, start-agent",
                self.0
            );
        }
    }
}

/// Seconds from now to `node`'s last Lease renewal as its agent wrote it (positive: the agent's clock is ahead).
async fn lease_skew(client: &kube::Client, node: &str) -> anyhow::Result<i64> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renewed = leases
        .get(node)
        .await?
        .spec
        .and_then(|s| s.renew_time)
        .with_context(|| format!("the Lease of {node} has no renewTime"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    Ok(renewed.0.as_second() - i64::try_from(now)?)
}

/// Whether `node` is Ready.
async fn node_ready(client: &kube::Client, node: &str) -> anyhow::Result<bool> {
    let node = Api::<Node>::all(client.clone()).get(node).await?;
    Ok(node
        .status
        .and_then(|s| s.conditions)
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")))
}

#[tokio::test]
#[ignore = "runs an agent of the shared cluster with its clock 60 s ahead, then behind: run alone (hack/test.sh does)"]
async fn e2e_an_agent_whose_clock_is_60_s_off_is_not_judged_lost() -> anyhow::Result<()> {
    let Some(mut scenario) = Scenario::start("clock-skew").await? else {
        return Ok(());
    };
    let node = scenario.cluster.nodes[2].name.clone();
    let on_time = OnTime(node.clone());
    for offset in ["+60", "-60"] {
        restart_agent(&node, Some(offset))?;
        let skew = wait_for(
            "the skewed agent's Lease renewal",
            Duration::from_secs(30),
            || async {
                let skew = lease_skew(&scenario.client, &node).await?;
                Ok(if skew.abs() >= 50 {
                    Ok(skew)
                } else {
                    Err(format!("{skew} s"))
                })
            },
        )
        .await?;
        eprintln!("{node}: Lease renewed {skew:+} s from the cluster's clock");
        // Longer than the 40 s node grace: a controller that read the agent's timestamps as ages would judge
        // the node lost (behind) or miss its loss (ahead).
        let since = Instant::now();
        while since.elapsed() < Duration::from_secs(45) {
            anyhow::ensure!(
                node_ready(&scenario.client, &node).await?,
                "{node} ({offset} s) went NotReady"
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        scenario.service.answers_throughout(Duration::from_secs(1)).await;
    }
    // On time again before the checks that read Lease ages by this host's clock.
    drop(on_time);
    scenario.after_the_fault().await
}
