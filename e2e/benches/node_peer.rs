//! Berth's node agent beside the kubelet, in the same run: prints figures as ratios, asserts nothing about
//! time.
//!
//! Needs the local cluster with a kubelet host (`hack/up.sh --kubelet-host`); `hack/bench.sh` runs it with
//! release builds. For each count K of BERTH_BENCH_PODS (default `1,10,30`) it creates K pods at once, bound
//! by `nodeName` to one Berth node and then to the kubelet node (the same pod, the same image already
//! pulled on both), and measures from just before each create until a watch shows the pod Running with
//! every container started: p50, p99 and max per node kind. Then, with 0 pods and with the largest K
//! running, it reads the agent's and the kubelet's resident memory and the CPU seconds each used over
//! BERTH_BENCH_WINDOW (default 30s).
//!
//! Settings: BERTH_BENCH_PODS=1,10,30, BERTH_BENCH_WINDOW=30s, BERTH_BENCH_NODE (default the first Berth
//! node). It fails when the cluster or its kubelet host is not there, unless BERTH_E2E=skip.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use berth_e2e::api::{TestNamespace, admin_client};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::controller::{parse_duration, rss_kib};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};

struct Settings {
    pods: Vec<usize>,
    window: Duration,
    node: Option<String>,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let pods = var("BERTH_BENCH_PODS")
            .unwrap_or_else(|| "1,10,30".into())
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .context("BERTH_BENCH_PODS: a list like 1,10,30")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            pods,
            window: var("BERTH_BENCH_WINDOW")
                .map(|v| parse_duration(&v))
                .transpose()
                .context("BERTH_BENCH_WINDOW")?
                .unwrap_or(Duration::from_secs(30)),
            node: var("BERTH_BENCH_NODE"),
        })
    }
}

/// One kind of node under test: its name and the pid of what serves it.
struct Peer {
    label: &'static str,
    node: String,
    pid: u32,
}

fn read_pid(state: &Path, name: &str) -> anyhow::Result<u32> {
    let file = state.join("pids").join(format!("{name}.pid"));
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    // "PID STARTTIME", as hack/lib/common.sh records it.
    text.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("{} holds no pid", file.display()))
}

fn peers(cluster: &LocalCluster, settings: &Settings) -> anyhow::Result<[Peer; 2]> {
    let kubelet_list = cluster.state.join("kubelet-nodes.list");
    let kubelet = std::fs::read_to_string(&kubelet_list)
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .filter(|n| !n.is_empty())
        .with_context(|| {
            format!(
                "no kubelet host ({} is empty or missing): hack/down.sh, then hack/up.sh --kubelet-host",
                kubelet_list.display()
            )
        })?;
    let berth = match &settings.node {
        Some(n) => n.clone(),
        None => cluster.nodes.first().context("no Berth nodes")?.name.clone(),
    };
    Ok([
        Peer {
            label: "Berth agent",
            pid: read_pid(&cluster.state, &format!("berth-agent-{berth}"))?,
            node: berth,
        },
        Peer {
            label: "kubelet",
            pid: read_pid(&cluster.state, &format!("kubelet-{kubelet}"))?,
            node: kubelet,
        },
    ])
}

fn pod(name: &str, node: &str, image: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "node-peer"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 2,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "web", "image": image}]
        }
    }))?)
}

/// Running with every container started.
fn started(p: &Pod) -> bool {
    let Some(status) = &p.status else { return false };
    status.phase.as_deref() == Some("Running")
        && status.container_statuses.as_ref().is_some_and(|cs| {
            !cs.is_empty()
                && cs
                    .iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

/// Creates `count` pods on `node` at once; the time from each create to its start, sorted.
async fn start_pods(
    api: &Api<Pod>,
    node: &str,
    image: &str,
    count: usize,
    round: &str,
) -> anyhow::Result<Vec<Duration>> {
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watch = api
        .watch(&WatchParams::default().timeout(290), &rv)
        .await?
        .boxed();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut creating = tokio::task::JoinSet::new();
    for i in 0..count {
        let name = format!("{round}-{i}");
        let p = pod(&name, node, image)?;
        sent.insert(name, Instant::now());
        let api = api.clone();
        creating.spawn(async move { api.create(&PostParams::default(), &p).await });
    }
    let mut latencies = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while latencies.len() < count {
        let event = tokio::time::timeout_at(deadline, watch.try_next())
            .await
            .with_context(|| {
                format!(
                    "only {} of {count} pods on {node} started within 240 s",
                    latencies.len()
                )
            })??;
        match event {
            Some(WatchEvent::Added(p) | WatchEvent::Modified(p)) if started(&p) => {
                if let Some(t0) = sent.get(&p.name_any()) {
                    latencies.entry(p.name_any()).or_insert_with(|| t0.elapsed());
                }
            }
            Some(WatchEvent::Error(e)) => bail!("watch of pods failed: {e}"),
            Some(_) => {}
            None => bail!("the watch of pods ended before {count} pods on {node} started"),
        }
    }
    while let Some(done) = creating.join_next().await {
        done??;
    }
    let mut v: Vec<_> = latencies.into_values().collect();
    v.sort();
    Ok(v)
}

async fn delete_all(api: &Api<Pod>) -> anyhow::Result<()> {
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !api.list(&ListParams::default()).await?.items.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "pods not gone within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32, ticks: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<_> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11).context("odd stat")?.parse()?;
    let st: f64 = f.get(12).context("odd stat")?.parse()?;
    Ok((ut + st) / ticks)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// RSS (MiB) at the end and CPU seconds used over `window`, for each peer.
async fn resources(peers: &[Peer; 2], window: Duration) -> anyhow::Result<Vec<(f64, f64)>> {
    let ticks = clock_ticks();
    let before: Vec<f64> = peers
        .iter()
        .map(|p| cpu_seconds(p.pid, ticks))
        .collect::<Result<_, _>>()?;
    tokio::time::sleep(window).await;
    peers
        .iter()
        .zip(before)
        .map(|(p, b)| Ok((rss_kib(p.pid)? as f64 / 1024.0, cpu_seconds(p.pid, ticks)? - b)))
        .collect()
}

async fn run(cluster: LocalCluster, settings: Settings) -> anyhow::Result<()> {
    let peers = peers(&cluster, &settings)?;
    let client: Client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "bench-peer").await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let image = format!("{}/berth/demo:v1", cluster.registry);
    println!(
        "node_peer: {} ({}, pid {}) beside the {} ({}, pid {}); pods per node {:?}; window {:?}",
        peers[0].label,
        peers[0].node,
        peers[0].pid,
        peers[1].label,
        peers[1].node,
        peers[1].pid,
        settings.pods,
        settings.window
    );
    // Warm-up: the image pulled on both, each node's first sandbox made.
    for p in &peers {
        start_pods(&api, &p.node, &image, 1, &format!("warm-{}", p.node)).await?;
    }
    delete_all(&api).await?;

    let idle = resources(&peers, settings.window).await?;
    // One node at a time, so neither round competes with the other for the machine.
    let mut rows = Vec::new();
    for &k in &settings.pods {
        let mut figures = Vec::new();
        for p in &peers {
            figures.push(start_pods(&api, &p.node, &image, k, &format!("k{k}-{}", p.node)).await?);
            delete_all(&api).await?;
        }
        rows.push((k, figures));
    }
    // Both nodes holding the largest count, measured together.
    let largest = settings.pods.iter().copied().max().unwrap_or(0);
    let mut loaded = None;
    if largest > 0 {
        for p in &peers {
            start_pods(&api, &p.node, &image, largest, &format!("load-{}", p.node)).await?;
        }
        loaded = Some(resources(&peers, settings.window).await?);
        delete_all(&api).await?;
    }

    println!("\n### Pod created -> Running with every container started (through a watch)\n");
    println!(
        "| pods/node | Berth p50 | Berth p99 | Berth max | kubelet p50 | kubelet p99 | kubelet max | p50 Berth/kubelet | p99 Berth/kubelet |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (k, f) in &rows {
        let (b, kl) = (&f[0], &f[1]);
        let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        println!(
            "| {k} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s(quantile(b, 0.5)),
            s(quantile(b, 0.99)),
            s(*b.last().unwrap_or(&Duration::ZERO)),
            s(quantile(kl, 0.5)),
            s(quantile(kl, 0.99)),
            s(*kl.last().unwrap_or(&Duration::ZERO)),
            ratio(quantile(b, 0.5).as_secs_f64(), quantile(kl, 0.5).as_secs_f64()),
            ratio(quantile(b, 0.99).as_secs_f64(), quantile(kl, 0.99).as_secs_f64()),
        );
    }
    println!("\n### Resident memory and CPU over {:?}\n", settings.window);
    println!(
        "| pods on the node | Berth RSS | kubelet RSS | RSS Berth/kubelet | Berth CPU s | kubelet CPU s | CPU Berth/kubelet |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut res = vec![(0, idle)];
    if let Some(l) = loaded {
        res.push((largest, l));
    }
    for (k, r) in res {
        println!(
            "| {k} | {:.1} MiB | {:.1} MiB | {} | {:.2} | {:.2} | {} |",
            r[0].0,
            r[1].0,
            ratio(r[0].0, r[1].0),
            r[0].1,
            r[1].1,
            ratio(r[0].1, r[1].1)
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    berth_e2e::bench::main("node_peer", Settings::from_env, run)
}
