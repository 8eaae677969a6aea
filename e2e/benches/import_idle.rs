//! Import at scale, then idleness, against the local cluster's berth-controller: prints figures, asserts
//! nothing about time.
//!
//! Creates N ImageStreamTags (default 300) in a fresh namespace against the local registry, measures how long
//! until all are imported and the controller's resident memory, then stays idle for a while (default 30 s)
//! and counts what was written meanwhile: status writes (`berth_status_writes_total` of the controller),
//! Events in the namespace, and tags whose resourceVersion moved; all three should be zero.
//!
//! Run (the dev profile reuses the debug build instead of building everything again in release):
//!   cargo bench -p berth-e2e --bench import_idle --profile dev
//! Settings: BERTH_BENCH_TAGS=300, BERTH_BENCH_IDLE=30s, BERTH_BENCH_SCHEDULED=1 (tags with
//! `importPolicy.scheduled`, so that idleness includes one scheduled re-import of every tag per interval of
//! the controller; this keeps the local registry's rate limit busy for other tests meanwhile).
//! It fails when the cluster is not there (`hack/up.sh`), unless BERTH_E2E=skip.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use berth_api::image::{IMPORT_SUCCESS, ImageStreamTag};
use berth_e2e::api::{TestNamespace, admin_client};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::controller::{ClusterController, metric_sum, parse_duration, scrape};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

struct Settings {
    tags: usize,
    idle: Duration,
    scheduled: bool,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Self {
            tags: var("BERTH_BENCH_TAGS")
                .map(|v| v.parse())
                .transpose()
                .context("BERTH_BENCH_TAGS")?
                .unwrap_or(300),
            idle: var("BERTH_BENCH_IDLE")
                .map(|v| parse_duration(&v))
                .transpose()
                .context("BERTH_BENCH_IDLE")?
                .unwrap_or(Duration::from_secs(30)),
            scheduled: var("BERTH_BENCH_SCHEDULED").is_some_and(|v| v == "1"),
        })
    }
}

fn tag(i: usize, registry: &str, scheduled: bool) -> anyhow::Result<ImageStreamTag> {
    let version = if i.is_multiple_of(2) { "v1" } else { "v2" };
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "image.berth.dev/v1alpha1",
        "kind": "ImageStreamTag",
        "metadata": {"name": format!("bench.t{i}")},
        "spec": {
            "stream": "bench",
            "tag": format!("t{i}"),
            "from": {"kind": "DockerImage", "name": format!("{registry}/berth/demo:{version}")},
            "importPolicy": {"scheduled": scheduled, "insecure": true}
        }
    }))?)
}

fn imported(t: &ImageStreamTag) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.digest.is_some()
            && s.conditions
                .iter()
                .any(|c| c.type_ == IMPORT_SUCCESS && c.status == "True")
    })
}

/// name → resourceVersion of every tag of the namespace, and how many are imported.
async fn snapshot(api: &Api<ImageStreamTag>) -> anyhow::Result<(BTreeMap<String, String>, usize)> {
    let list = api.list(&ListParams::default()).await?;
    let done = list.items.iter().filter(|t| imported(t)).count();
    let versions = list
        .items
        .iter()
        .map(|t| (t.name_any(), t.resource_version().unwrap_or_default()))
        .collect();
    Ok((versions, done))
}

async fn event_count(client: &Client, ns: &str) -> anyhow::Result<usize> {
    Ok(Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .len())
}

struct Counters {
    writes: f64,
    imports: f64,
}

async fn counters(addr: &str) -> anyhow::Result<Counters> {
    let text = scrape(addr).await?;
    Ok(Counters {
        writes: metric_sum(&text, "berth_status_writes_total", &[]).unwrap_or(0.0),
        imports: metric_sum(&text, "berth_imports_total", &[]).unwrap_or(0.0),
    })
}

/// The controller's RSS, failing clearly when it is not the same process any more (others restart the
/// cluster's controller with `hack/up.sh`; its counters then start again from zero).
fn rss(controller: &ClusterController) -> anyhow::Result<u64> {
    anyhow::ensure!(
        controller.alive(),
        "berth-controller pid {} exited or was restarted during the run (hack/up.sh?); the figures would mix \
         two processes: run the bench again",
        controller.pid
    );
    controller.rss_kib()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn run(cluster: LocalCluster, settings: Settings) -> anyhow::Result<()> {
    let controller = ClusterController::find(&cluster)?;
    let addr = controller.metrics_addr();
    let interval = controller.import_interval()?;
    let client = admin_client(&cluster).await?;
    println!(
        "import_idle: {} tags (scheduled: {}), idle {:?}; berth-controller pid {}, import interval {interval:?}",
        settings.tags, settings.scheduled, settings.idle, controller.pid
    );
    let rss_start = rss(&controller)?;
    let ns = TestNamespace::create(&client, "bench").await?;
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);

    let start = Instant::now();
    let mut creating = tokio::task::JoinSet::new();
    for chunk in (0..settings.tags)
        .collect::<Vec<_>>()
        .chunks(settings.tags.div_ceil(8).max(1))
    {
        let api = api.clone();
        let tags = chunk
            .iter()
            .map(|i| tag(*i, &cluster.registry, settings.scheduled))
            .collect::<anyhow::Result<Vec<_>>>()?;
        creating.spawn(async move {
            for t in tags {
                api.create(&PostParams::default(), &t).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = creating.join_next().await {
        done??;
    }
    let created = start.elapsed();

    let deadline = Duration::from_secs(600);
    let mut last_done = 0;
    let all_imported = loop {
        let (_, done) = snapshot(&api).await?;
        if done == settings.tags {
            break start.elapsed();
        }
        anyhow::ensure!(
            start.elapsed() < deadline,
            "only {done} of {} tags imported after {deadline:?}",
            settings.tags
        );
        if done / 50 != last_done / 50 {
            println!("  {done} imported after {:?}", start.elapsed());
        }
        last_done = done;
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rss_imported = rss(&controller)?;
    println!(
        "created {} tags in {created:.2?}; all imported {all_imported:.2?} after the first create ({:.1} tags/s)",
        settings.tags,
        settings.tags as f64 / all_imported.as_secs_f64()
    );

    // Let the last writes and Events land, then watch idleness.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (versions_before, _) = snapshot(&api).await?;
    let events_before = event_count(&client, &ns.name).await?;
    let before = counters(&addr).await?;
    tokio::time::sleep(settings.idle).await;
    let (versions_after, done_after) = snapshot(&api).await?;
    let events_after = event_count(&client, &ns.name).await?;
    let after = counters(&addr).await?;
    let rss_idle = rss(&controller)?;
    let rewritten = versions_before
        .iter()
        .filter(|(name, rv)| versions_after.get(*name) != Some(rv))
        .count();

    println!(
        "controller RSS: {} before, {} with all imported, {} after idling",
        mib(rss_start),
        mib(rss_imported),
        mib(rss_idle)
    );
    println!(
        "idle {:?}: {} tag(s) of {} rewritten (resourceVersion moved), {} Event(s) in the namespace, \
         berth_status_writes_total +{}, berth_imports_total +{} (the two counters are the whole controller's: \
         other tests on the cluster count too); {done_after} still imported",
        settings.idle,
        rewritten,
        versions_before.len(),
        events_after.saturating_sub(events_before),
        after.writes - before.writes,
        after.imports - before.imports,
    );
    if rewritten > 0 || events_after > events_before {
        println!("import_idle: NOT IDLE: something was written while nothing changed");
    } else {
        println!("import_idle: idle: nothing written");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    berth_e2e::bench::main("import_idle", Settings::from_env, run)
}
