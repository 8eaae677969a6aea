//! Image import in operation, against the local cluster: scheduled re-imports, a registry that goes away
//! and comes back, leader election between two controller replicas, and the controller's metrics.
//!
//! Scheduled imports and outages use a private `docker-registry` on 127.0.0.1 (no push notifications, so
//! only the controller's schedule or an explicit request can move a tag); it is killed when the test ends.
//!
//! Run: `cargo test -p berth-e2e --test import_ops -- --nocapture`. The takeover scenarios stop the
//! cluster's berth-controller (SIGKILL, then about 15 s until a standby leads; SIGTERM, a few seconds) and
//! restart it with `hack/up.sh`: they are ignored unless asked for,
//! `cargo test -p berth-e2e --test import_ops -- --ignored --nocapture takeover`.

use std::time::{Duration, Instant};

use anyhow::ensure;
use berth_api::image::{IMPORT_REQUESTED_ANNOTATION, ImageStreamTag};
use berth_e2e::api::{
    TestNamespace, admin_client, events_about, import_condition, kubectl_apply, unique, wait_for,
};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::controller::{
    ClusterController, LEASE, Replica, RestoreClusterController, metric_sum, readyz, scrape,
};
use berth_e2e::http::{self, registry_digest};
use berth_e2e::registry::PrivateRegistry;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

const TIMEOUT: Duration = Duration::from_secs(60);

/// How long after its slot a scheduled import may take to show in status (reconcile, resolve, write, watch).
const SCHEDULE_SLACK: Duration = Duration::from_secs(15);

fn digest(tag: &ImageStreamTag) -> Option<&str> {
    tag.status.as_ref()?.digest.as_deref()
}

fn history(tag: &ImageStreamTag) -> Vec<String> {
    tag.status
        .as_ref()
        .map(|s| s.history.iter().map(|h| h.digest.clone()).collect())
        .unwrap_or_default()
}

/// Waits at most `timeout` until the tag `name` satisfies `ok`, describing what it saw otherwise.
async fn wait_tag(
    api: &Api<ImageStreamTag>,
    name: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&ImageStreamTag) -> bool,
) -> anyhow::Result<ImageStreamTag> {
    wait_for(&format!("{name}: {what}"), timeout, || async {
        Ok(match api.get_opt(name).await? {
            Some(t) if ok(&t) => Ok(t),
            Some(t) => Err(format!(
                "condition {:?}, digest {:?}, history {:?}",
                import_condition(&t),
                digest(&t),
                history(&t)
            )),
            None => Err("no such ImageStreamTag".to_owned()),
        })
    })
    .await
}

fn tag_manifest(name: &str, from: &str, scheduled: bool) -> String {
    let (stream, tag) = name.split_once('.').expect("stream.tag");
    format!(
        "apiVersion: image.berth.dev/v1alpha1\nkind: ImageStreamTag\nmetadata: {{name: {name}}}\nspec:\n  stream: {stream}\n  tag: {tag}\n  from: {{kind: DockerImage, name: \"{from}\"}}\n  importPolicy: {{scheduled: {scheduled}, insecure: true}}\n"
    )
}

/// Asks for an import of `name` with the annotation's new `value`.
async fn request_import(api: &Api<ImageStreamTag>, name: &str, value: &str) -> anyhow::Result<()> {
    let patch = serde_json::json!({"metadata": {"annotations": {IMPORT_REQUESTED_ANNOTATION: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The Events about `name` in `ns`: (reason, note, reporting instance).
async fn events_for(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    Ok(events_about(client, ns, name)
        .await?
        .into_iter()
        .map(|e| (e.reason, e.note, e.instance))
        .collect())
}

fn reasons(events: &[(String, String, String)]) -> Vec<&str> {
    events.iter().map(|(r, ..)| r.as_str()).collect()
}

/// The cluster's controller, with a short enough import interval for scheduled scenarios.
fn scheduling_controller(cluster: &LocalCluster) -> anyhow::Result<(ClusterController, Duration)> {
    let controller = ClusterController::find(cluster)?;
    let interval = controller.import_interval()?;
    ensure!(
        interval <= Duration::from_secs(120),
        "the cluster's berth-controller re-imports every {interval:?}, too rarely for this test: restart it \
         with the local default (BERTH_IMPORT_INTERVAL=30s): kill $(cut -d' ' -f1 \
         $BERTH_STATE/pids/berth-controller.pid); sleep 1; hack/up.sh"
    );
    Ok((controller, interval))
}

#[tokio::test]
async fn e2e_a_scheduled_tag_picks_up_a_registry_change_within_its_interval() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let (_, interval) = scheduling_controller(&cluster)?;
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "sched").await?;
    let registry = PrivateRegistry::start().await?;
    registry.copy_from(&cluster.registry, "berth/demo:v1", "e2e/demo:live")?;
    let v1 = registry.digest("e2e/demo", "live").await?;

    let from = format!("{}/e2e/demo:live", registry.addr);
    kubectl_apply(&cluster, &ns.name, &tag_manifest("app.live", &from, true)).map_err(anyhow::Error::msg)?;
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    wait_tag(&api, "app.live", "imported at v1", TIMEOUT, |t| {
        digest(t) == Some(v1.as_str())
    })
    .await?;

    // Move the private registry's tag: it sends no notification, so only the schedule can see it.
    let moved_at = Instant::now();
    registry.copy_from(&cluster.registry, "berth/demo:v2", "e2e/demo:live")?;
    let v2 = registry.digest("e2e/demo", "live").await?;
    assert_ne!(v1, v2, "demo:v1 and demo:v2 have the same digest");
    let bound = interval + SCHEDULE_SLACK;
    let moved = wait_tag(
        &api,
        "app.live",
        &format!("moved to v2 by the schedule (interval {interval:?})"),
        bound,
        |t| digest(t) == Some(v2.as_str()),
    )
    .await?;
    eprintln!(
        "scheduled pickup: the tag showed the new digest {:?} after the registry's tag moved \
         (interval {interval:?}, bound {bound:?})",
        moved_at.elapsed()
    );
    assert_eq!(history(&moved), vec![v2.clone(), v1.clone()], "newest first");
    let (status, reason, _) = import_condition(&moved).expect("a condition");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Imported"));

    // The next scheduled import finds nothing new: it writes nothing and says nothing.
    tokio::time::sleep(interval + Duration::from_secs(3)).await;
    let idle = api.get("app.live").await?;
    assert_eq!(
        idle.resource_version(),
        moved.resource_version(),
        "a scheduled re-import without a change wrote the tag"
    );
    let events = events_for(&client, &ns.name, "app.live").await?;
    assert_eq!(reasons(&events), vec!["Imported", "TagUpdated"], "{events:?}");
    Ok(())
}

#[tokio::test]
async fn e2e_a_stopped_registry_is_reported_and_the_tag_recovers_with_its_history() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "outage").await?;
    let mut registry = PrivateRegistry::start().await?;
    registry.copy_from(&cluster.registry, "berth/demo:v1", "e2e/demo:live")?;
    let v1 = registry.digest("e2e/demo", "live").await?;
    let from = format!("{}/e2e/demo:live", registry.addr);
    kubectl_apply(&cluster, &ns.name, &tag_manifest("app.live", &from, false)).map_err(anyhow::Error::msg)?;
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    wait_tag(&api, "app.live", "imported at v1", TIMEOUT, |t| {
        digest(t) == Some(v1.as_str())
    })
    .await?;
    registry.copy_from(&cluster.registry, "berth/demo:v2", "e2e/demo:live")?;
    let v2 = registry.digest("e2e/demo", "live").await?;
    request_import(&api, "app.live", "moved").await?;
    let before = wait_tag(&api, "app.live", "moved to v2 on request", TIMEOUT, |t| {
        digest(t) == Some(v2.as_str())
    })
    .await?;
    let history_before = before.status.as_ref().expect("status").history.clone();
    assert_eq!(history(&before), vec![v2.clone(), v1.clone()]);

    // The registry goes away; an import is asked for.
    registry.stop();
    request_import(&api, "app.live", "while-down").await?;
    let failed = wait_tag(
        &api,
        "app.live",
        "ImportSuccess=False after the registry stopped",
        TIMEOUT,
        |t| {
            import_condition(t).is_some_and(|c| c.0 == "False")
                && t.status
                    .as_ref()
                    .and_then(|s| s.observed_import_request.as_deref())
                    == Some("while-down")
        },
    )
    .await?;
    // Counted from the failure: its first retry comes 10 s later.
    let metrics_addr = ClusterController::find(&cluster)?.metrics_addr();
    let unavailable = || async {
        let text = scrape(&metrics_addr).await?;
        anyhow::Ok(
            metric_sum(&text, "berth_imports_total", &[("result", "RegistryUnavailable")]).unwrap_or(0.0),
        )
    };
    let failures_before = unavailable().await?;
    let (_, reason, message) = import_condition(&failed).expect("a condition");
    assert_eq!(reason, "RegistryUnavailable", "{message}");
    assert!(
        message.contains(&registry.addr),
        "the message names the registry: {message}"
    );
    assert_eq!(digest(&failed), Some(v2.as_str()), "a failure keeps the digest");
    assert_eq!(
        failed.status.as_ref().expect("status").history,
        history_before,
        "a failure keeps the history"
    );
    wait_for("an ImportFailed Event", TIMEOUT, || async {
        let events = events_for(&client, &ns.name, "app.live").await?;
        Ok(
            if events
                .iter()
                .any(|(r, note, _)| r == "ImportFailed" && note.contains("RegistryUnavailable"))
            {
                Ok(())
            } else {
                Err(format!("{events:?}"))
            },
        )
    })
    .await?;

    // Retries while it stays down (the first comes 10 s after the failure) find the same failure: they
    // write nothing, even though their messages differ in detail (which schemes were tried, the back-off).
    let failed_rv = api.get("app.live").await?.resource_version();
    tokio::time::sleep(Duration::from_secs(15)).await;
    // The window proves something only if a retry fell inside it (or since the failure, counted above).
    let failures_after = unavailable().await?;
    assert!(
        failures_after > failures_before,
        "no retry within 15 s of the failure ({failures_before} RegistryUnavailable imports before, {failures_after} after)"
    );
    let still = api.get("app.live").await?;
    assert_eq!(
        still.resource_version(),
        failed_rv,
        "a retry rewrote the tag while the same failure lasted: {:?}",
        import_condition(&still)
    );

    // Back on the same port and storage: the controller's retry finds it, no new request needed.
    registry.resume().await?;
    let resumed = Instant::now();
    let recovered = wait_tag(
        &api,
        "app.live",
        "ImportSuccess=True again",
        Duration::from_secs(120),
        |t| import_condition(t).is_some_and(|c| c.0 == "True"),
    )
    .await?;
    eprintln!(
        "the tag recovered {:?} after the registry came back",
        resumed.elapsed()
    );
    assert_eq!(digest(&recovered), Some(v2.as_str()));
    assert_eq!(
        recovered.status.as_ref().expect("status").history,
        history_before,
        "recovering to the same digest keeps the history as it was"
    );
    // A repeated Event is one object with a series count: count occurrences, not objects.
    let events = events_about(&client, &ns.name, "app.live").await?;
    let occurrences = |reason: &str| -> usize {
        events
            .iter()
            .filter(|e| e.reason == reason)
            .map(|e| e.count)
            .sum()
    };
    assert_eq!(
        occurrences("ImportFailed"),
        1,
        "one ImportFailed Event per outage: {events:?}"
    );
    assert_eq!(
        occurrences("TagUpdated"),
        1,
        "the outage moved nothing: {events:?}"
    );
    Ok(())
}

#[tokio::test]
async fn e2e_a_second_replica_stays_standby_and_writes_nothing() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let leader = ClusterController::find(&cluster)?;
    ensure!(
        readyz(&leader.metrics_addr()).await? == 200,
        "the cluster's berth-controller is not ready (not leading?)"
    );
    let client = admin_client(&cluster).await?;
    let identity = format!("e2e-standby-{}", unique());
    let interval = leader
        .env
        .get("BERTH_IMPORT_INTERVAL")
        .cloned()
        .unwrap_or_else(|| "15m".into());
    let mut standby = Replica::start(&cluster, &identity, &[("BERTH_IMPORT_INTERVAL", &interval)])?;
    let started = Instant::now();
    standby.wait_standing_by(TIMEOUT).await?;
    assert_eq!(
        readyz(&standby.metrics_addr).await?,
        503,
        "a standby is not ready"
    );

    // The leader imports while the standby watches.
    let ns = TestNamespace::create(&client, "standby").await?;
    let v1 = registry_digest(&cluster.registry, "berth/demo", "v1").await?;
    let from = format!("{}/berth/demo:v1", cluster.registry);
    kubectl_apply(&cluster, &ns.name, &tag_manifest("app.v1", &from, false)).map_err(anyhow::Error::msg)?;
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    wait_tag(&api, "app.v1", "imported by the leader", TIMEOUT, |t| {
        digest(t) == Some(v1.as_str())
    })
    .await?;

    // Longer than a Lease lasts: a healthy leader keeps it.
    let hold = LEASE + Duration::from_secs(5);
    if let Some(left) = hold.checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    assert!(
        standby.exited().is_none(),
        "the standby exited: {}",
        standby.log_text()
    );
    assert_eq!(readyz(&standby.metrics_addr).await?, 503);
    let log = standby.log_text();
    assert!(
        !log.contains("berth_controller::leader: leading"),
        "the standby took the Lease from a healthy leader: {log}"
    );
    let holder = Api::<Lease>::namespaced(client.clone(), "berth-system")
        .get("berth-controller")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    assert_ne!(holder.as_deref(), Some(identity.as_str()));
    let metrics = scrape(&standby.metrics_addr).await?;
    for name in [
        "berth_status_writes_total",
        "berth_imports_total",
        "berth_registry_request_duration_seconds_count",
    ] {
        assert_eq!(
            metric_sum(&metrics, name, &[]),
            None,
            "the standby shows {name}:\n{metrics}"
        );
    }
    let from_standby: Vec<_> = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|e| e.reporting_instance.as_deref() == Some(identity.as_str()))
        .map(|e| e.reason.unwrap_or_default())
        .collect();
    assert!(
        from_standby.is_empty(),
        "the standby published Events: {from_standby:?}"
    );
    let events = events_for(&client, &ns.name, "app.v1").await?;
    assert_eq!(reasons(&events), vec!["Imported"], "imported once: {events:?}");
    eprintln!(
        "standby {identity} (pid {}) waited {:?} without leading, importing or writing",
        standby.pid(),
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn e2e_the_leader_is_ready_and_measures_imports_and_registries() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let leader = ClusterController::find(&cluster)?;
    let addr = leader.metrics_addr();
    assert_eq!(readyz(&addr).await?, 200, "/readyz of the leader");
    assert_eq!(
        http::get(&addr, "/healthz", Duration::from_secs(5)).await?.status,
        200
    );
    let imported = [("trigger", "never imported"), ("result", "Imported")];
    let resolved = [("registry", cluster.registry.as_str()), ("outcome", "Resolved")];
    let before = scrape(&addr).await?;
    let imports_before = metric_sum(&before, "berth_imports_total", &imported).unwrap_or(0.0);
    let resolves_before = metric_sum(
        &before,
        "berth_registry_request_duration_seconds_count",
        &resolved,
    )
    .unwrap_or(0.0);

    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "metrics").await?;
    let v1 = registry_digest(&cluster.registry, "berth/demo", "v1").await?;
    let from = format!("{}/berth/demo:v1", cluster.registry);
    kubectl_apply(&cluster, &ns.name, &tag_manifest("app.v1", &from, false)).map_err(anyhow::Error::msg)?;
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    wait_tag(&api, "app.v1", "imported", TIMEOUT, |t| {
        digest(t) == Some(v1.as_str())
    })
    .await?;

    let after = scrape(&addr).await?;
    let imports = metric_sum(&after, "berth_imports_total", &imported).unwrap_or(0.0);
    assert!(
        imports > imports_before,
        "berth_imports_total{{trigger=\"never imported\",result=\"Imported\"}} went from {imports_before} to {imports}"
    );
    let resolves =
        metric_sum(&after, "berth_registry_request_duration_seconds_count", &resolved).unwrap_or(0.0);
    assert!(
        resolves > resolves_before,
        "registry latency samples for {} went from {resolves_before} to {resolves}",
        cluster.registry
    );
    assert!(
        after.contains("# TYPE berth_registry_request_duration_seconds histogram")
            && metric_sum(
                &after,
                "berth_registry_request_duration_seconds_bucket",
                &resolved
            )
            .is_some(),
        "no histogram buckets:\n{after}"
    );
    assert!(
        metric_sum(
            &after,
            "berth_status_writes_total",
            &[("result", "ImageStreamTag")]
        )
        .is_some_and(|w| w >= 1.0),
        "{after}"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "kills the cluster's berth-controller for about half a minute; run it alone with --ignored takeover"]
async fn e2e_takeover_a_standby_leads_and_imports_when_the_leader_dies() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    takeover(&cluster).await
}

#[tokio::test]
#[ignore = "restarts the cluster's berth-controller (a few seconds without a leader); run it with --ignored takeover"]
async fn e2e_takeover_a_leader_stopped_with_sigterm_releases_the_lease_for_the_next() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let _one_at_a_time = TAKEOVER.lock().await;
    let leader = ClusterController::find(&cluster)?;
    ensure!(
        readyz(&leader.metrics_addr()).await? == 200,
        "the cluster's berth-controller is not ready (not leading?)"
    );
    let mut restore = RestoreClusterController::of(&cluster, &leader);
    let client = admin_client(&cluster).await?;
    let leases = Api::<Lease>::namespaced(client.clone(), "berth-system");

    // SIGTERM (kill, hack/down.sh, the kubelet): the leader stops and releases its Lease.
    ensure!(leader.alive(), "the leader exited by itself");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &leader.pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -TERM {} failed", leader.pid);
    wait_for(
        "the leader to exit after SIGTERM",
        Duration::from_secs(15),
        || async {
            Ok(if leader.alive() {
                Err("still running".to_owned())
            } else {
                Ok(())
            })
        },
    )
    .await?;
    let log = std::fs::read_to_string(cluster.state.join("logs/berth-controller.log")).unwrap_or_default();
    let tail: Vec<_> = log.lines().rev().take(20).collect();
    assert!(
        tail.iter().any(|l| l.contains("released the Lease")),
        "the old leader's log does not say it released the Lease: {tail:?}"
    );
    let holder = leases
        .get("berth-controller")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder, None, "the Lease still has a holder after a graceful stop");

    // The next controller leads at once instead of waiting for the Lease to expire.
    let restarted = Instant::now();
    restore.restore()?;
    let took = restarted.elapsed();
    eprintln!("after SIGTERM, the restarted berth-controller was ready {took:?} after hack/up.sh began");
    assert!(
        took < LEASE / 2,
        "the restarted controller took {took:?}: it waited for the Lease (of {LEASE:?}) to expire"
    );
    Ok(())
}

/// One takeover at a time: both scenarios stop the cluster's controller.
static TAKEOVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts a standby, kills the cluster's controller, expects the standby to lead once the Lease expires and
/// to import, then gives the cluster its own controller back.
async fn takeover(cluster: &LocalCluster) -> anyhow::Result<()> {
    let _one_at_a_time = TAKEOVER.lock().await;
    let leader = ClusterController::find(cluster)?;
    ensure!(
        readyz(&leader.metrics_addr()).await? == 200,
        "the cluster's berth-controller is not ready (not leading?)"
    );
    let mut restore = RestoreClusterController::of(cluster, &leader);
    let identity = format!("e2e-takeover-{}", unique());
    let extra: Vec<(&str, &str)> = restore
        .env
        .iter()
        .filter(|(k, _)| k == "BERTH_IMPORT_INTERVAL")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut standby = Replica::start(cluster, &identity, &extra)?;
    standby.wait_standing_by(TIMEOUT).await?;

    // Kill the leader (by its recorded pid, checked against its start time): it cannot hand the Lease over,
    // the standby takes it when it expires.
    ensure!(leader.alive(), "the leader exited by itself");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &leader.pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -KILL {} failed", leader.pid);
    let bound = LEASE * 2 + Duration::from_secs(10);
    let killed = Instant::now();
    wait_for("the standby to lead after the leader was killed", bound, || {
        let addr = standby.metrics_addr.clone();
        async move {
            Ok(match readyz(&addr).await? {
                200 => Ok(()),
                other => Err(format!("/readyz {other}")),
            })
        }
    })
    .await?;
    let takeover = killed.elapsed();
    eprintln!("takeover: the standby was ready {takeover:?} after the leader was killed (Lease {LEASE:?})");
    wait_for("the old leader to exit", Duration::from_secs(15), || async {
        Ok(if leader.alive() {
            Err("still running".to_owned())
        } else {
            Ok(())
        })
    })
    .await?;

    let client = admin_client(cluster).await?;
    let ns = TestNamespace::create(&client, "takeover").await?;
    let v1 = registry_digest(&cluster.registry, "berth/demo", "v1").await?;
    let from = format!("{}/berth/demo:v1", cluster.registry);
    kubectl_apply(cluster, &ns.name, &tag_manifest("app.v1", &from, false)).map_err(anyhow::Error::msg)?;
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    wait_tag(&api, "app.v1", "imported by the new leader", TIMEOUT, |t| {
        digest(t) == Some(v1.as_str())
    })
    .await?;
    let metrics = scrape(&standby.metrics_addr).await?;
    assert!(
        metric_sum(&metrics, "berth_imports_total", &[("result", "Imported")]).is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    let events = events_for(&client, &ns.name, "app.v1").await?;
    assert!(
        events.iter().any(|(r, _, by)| r == "Imported" && *by == identity),
        "the new leader published the Imported Event: {events:?}"
    );
    let holder = Api::<Lease>::namespaced(client.clone(), "berth-system")
        .get("berth-controller")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some(identity.as_str()));

    // Stopped with SIGTERM, the replica releases the Lease too: the cluster's controller leads at once.
    standby.terminate(Duration::from_secs(10));
    let restarted = Instant::now();
    restore.restore()?;
    let back = ClusterController::find(cluster)?;
    eprintln!(
        "the cluster's berth-controller (pid {}) leads again {:?} after the replica stopped",
        back.pid,
        restarted.elapsed()
    );
    assert_eq!(
        back.env.get("BERTH_IMPORT_INTERVAL"),
        leader.env.get("BERTH_IMPORT_INTERVAL"),
        "restored with the same settings"
    );
    Ok(())
}
