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
//! the controller; this keeps the local registry's rate limit busy for other tests meanwhile),
//! BERTH_BENCH_COLD=1 (the cluster's controller is stopped while the tags are created and started again
//! after, with the settings it had, so the figure is a cold controller's: caches, queues and windows empty;
//! the clock starts when it is started), BERTH_BENCH_QPS=Q (with COLD: started with a registry rate of Q/s
//! and a burst of 2·Q, e.g. its default 10), BERTH_BENCH_MISSING=P (P percent of the tags name a repository
//! the registry does not have; done means every tag has an `ImportSuccess` condition, True or False, and the
//! bound the fairness issue sets, tags / rate + 10 s, is printed beside the figure).
//! It fails when the cluster is not there (`hack/up.sh`), unless BERTH_E2E=skip.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use berth_api::image::{IMPORT_SUCCESS, ImageStreamTag};
use berth_e2e::api::{TestNamespace, admin_client};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::controller::{
    ClusterController, RestoreClusterController, metric_sum, parse_duration, scrape,
};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

struct Settings {
    tags: usize,
    idle: Duration,
    scheduled: bool,
    cold: bool,
    qps: Option<f64>,
    missing_percent: usize,
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
            cold: var("BERTH_BENCH_COLD").is_some_and(|v| v == "1"),
            qps: var("BERTH_BENCH_QPS")
                .map(|v| v.parse())
                .transpose()
                .context("BERTH_BENCH_QPS")?,
            missing_percent: var("BERTH_BENCH_MISSING")
                .map(|v| v.parse())
                .transpose()
                .context("BERTH_BENCH_MISSING (a percentage)")?
                .unwrap_or(0)
                .min(100),
        })
    }
}

/// Whether tag `i` is one of the `percent` in a hundred that name a missing repository (spread evenly).
fn is_missing(i: usize, percent: usize) -> bool {
    (i % 100) * percent / 100 != ((i % 100) + 1) * percent / 100
}

fn tag(i: usize, registry: &str, scheduled: bool, missing: bool) -> anyhow::Result<ImageStreamTag> {
    let version = if i.is_multiple_of(2) { "v1" } else { "v2" };
    let repository = if missing {
        format!("berth/missing-{i}")
    } else {
        "berth/demo".to_owned()
    };
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "image.berth.dev/v1alpha1",
        "kind": "ImageStreamTag",
        "metadata": {"name": format!("bench.t{i}")},
        "spec": {
            "stream": "bench",
            "tag": format!("t{i}"),
            "from": {"kind": "DockerImage", "name": format!("{registry}/{repository}:{version}")},
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

/// Whether the tag has an answer: an `ImportSuccess` condition, True or False.
fn answered(t: &ImageStreamTag) -> bool {
    t.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == IMPORT_SUCCESS))
}

/// name → resourceVersion of every tag of the namespace, and how many are done: imported, or with
/// `answers` answered at all.
async fn snapshot(
    api: &Api<ImageStreamTag>,
    answers: bool,
) -> anyhow::Result<(BTreeMap<String, String>, usize)> {
    let list = api.list(&ListParams::default()).await?;
    let done = list
        .items
        .iter()
        .filter(|t| if answers { answered(t) } else { imported(t) })
        .count();
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

/// Stops the cluster's controller (SIGTERM) and returns what starts it again with its settings, the
/// registry rate overridden by `qps`.
fn stop_controller(
    cluster: &LocalCluster,
    controller: &ClusterController,
    qps: Option<f64>,
) -> anyhow::Result<RestoreClusterController> {
    let mut restore = RestoreClusterController::of(cluster, controller);
    if let Some(q) = qps {
        restore.env.retain(|(k, _)| !k.starts_with("BERTH_REGISTRY_"));
        restore.env.push(("BERTH_REGISTRY_QPS".into(), q.to_string()));
        restore.env.push((
            "BERTH_REGISTRY_BURST".into(),
            ((2.0 * q).ceil() as u64).to_string(),
        ));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &controller.pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {} failed", controller.pid);
    let deadline = Instant::now() + Duration::from_secs(15);
    while controller.alive() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "berth-controller did not stop within 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(restore)
}

async fn create_tags(api: &Api<ImageStreamTag>, registry: &str, settings: &Settings) -> anyhow::Result<()> {
    let mut creating = tokio::task::JoinSet::new();
    for chunk in (0..settings.tags)
        .collect::<Vec<_>>()
        .chunks(settings.tags.div_ceil(8).max(1))
    {
        let api = api.clone();
        let tags = chunk
            .iter()
            .map(|i| {
                let missing = is_missing(*i, settings.missing_percent);
                tag(*i, registry, settings.scheduled, missing)
            })
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
    Ok(())
}

async fn run(cluster: LocalCluster, settings: Settings) -> anyhow::Result<()> {
    let mut controller = ClusterController::find(&cluster)?;
    let addr = controller.metrics_addr();
    let interval = controller.import_interval()?;
    let client = admin_client(&cluster).await?;
    println!(
        "import_idle: {} tags (scheduled: {}, {}% missing, {}), idle {:?}; berth-controller pid {}, import \
         interval {interval:?}",
        settings.tags,
        settings.scheduled,
        settings.missing_percent,
        if settings.cold {
            "cold controller"
        } else {
            "running controller"
        },
        settings.idle,
        controller.pid
    );
    let ns = TestNamespace::create(&client, "bench").await?;
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    let mut restore = settings
        .cold
        .then(|| stop_controller(&cluster, &controller, settings.qps))
        .transpose()?;
    let rss_before = (!settings.cold).then(|| rss(&controller)).transpose()?;

    let mut start = Instant::now();
    create_tags(&api, &cluster.registry, &settings).await?;
    let created = start.elapsed();
    if restore.is_none() {
        println!("created {} tags in {created:.2?}", settings.tags);
    }
    if let Some(r) = restore.as_mut() {
        start = Instant::now();
        tokio::task::block_in_place(|| r.restore())?;
        controller = ClusterController::find(&cluster)?;
        println!(
            "created {} tags in {created:.2?} with the controller stopped; it was ready {:.2?} after its start",
            settings.tags,
            start.elapsed()
        );
    }
    let rss_start = match rss_before {
        Some(kib) => kib,
        None => rss(&controller)?,
    };
    let answers = settings.missing_percent > 0;

    let deadline = Duration::from_secs(900);
    let mut last_done = 0;
    let all_done = loop {
        let (_, done) = snapshot(&api, answers).await?;
        if done == settings.tags {
            break start.elapsed();
        }
        anyhow::ensure!(
            start.elapsed() < deadline,
            "only {done} of {} tags done after {deadline:?}",
            settings.tags
        );
        if done / 500 != last_done / 500 {
            println!("  {done} done after {:?}", start.elapsed());
        }
        last_done = done;
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rss_imported = rss(&controller)?;
    let clock = if settings.cold {
        "the controller's start"
    } else {
        "the first create"
    };
    if answers {
        let qps = controller
            .env
            .get("BERTH_REGISTRY_QPS")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(10.0);
        let (_, imported) = snapshot(&api, false).await?;
        let present = (0..settings.tags)
            .filter(|i| !is_missing(*i, settings.missing_percent))
            .count();
        println!(
            "every tag answered {all_done:.2?} after {clock} (the fairness bound, tags / rate + 10 s: {:.0} s at \
             {qps}/s); {imported} of the {present} present tags imported",
            settings.tags as f64 / qps + 10.0
        );
    } else {
        println!(
            "all {} tags imported {all_done:.2?} after {clock} ({:.1} tags/s)",
            settings.tags,
            settings.tags as f64 / all_done.as_secs_f64()
        );
    }

    // Let the last writes and Events land, then watch idleness.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (versions_before, _) = snapshot(&api, answers).await?;
    let events_before = event_count(&client, &ns.name).await?;
    let before = counters(&addr).await?;
    tokio::time::sleep(settings.idle).await;
    let (versions_after, done_after) = snapshot(&api, answers).await?;
    let events_after = event_count(&client, &ns.name).await?;
    let after = counters(&addr).await?;
    let rss_idle = rss(&controller)?;
    let rewritten = versions_before
        .iter()
        .filter(|(name, rv)| versions_after.get(*name) != Some(rv))
        .count();

    println!(
        "controller RSS: {} {}, {} with all done, {} after idling",
        mib(rss_start),
        if settings.cold { "at its start" } else { "before" },
        mib(rss_imported),
        mib(rss_idle)
    );
    println!(
        "idle {:?}: {} tag(s) of {} rewritten (resourceVersion moved), {} Event(s) in the namespace, \
         berth_status_writes_total +{}, berth_imports_total +{} (the two counters are the whole controller's: \
         other tests on the cluster count too); {done_after} still done",
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
