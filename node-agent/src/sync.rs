//! The per-pod worker: observe the runtime, ask [`lifecycle::plan`] what to do, do it, and
//! report the status computed by [`status::compute`]. Thin around the pure decisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::cri::CriClient;
use crate::error::{Error, Result};
use crate::lifecycle::{self, Action, PullFailure};
use crate::metrics::Metrics;
use crate::observe::{self, Observed};
use crate::podspec::{self, NodeFacts};
use crate::prober::{self, Probes};
use crate::{admission, hook_runner, pod_ip, status, status_patch};

/// What every pod worker shares.
pub struct Shared {
    /// The API client.
    pub client: Client,
    /// The runtime.
    pub cri: CriClient,
    /// Events, published on transitions.
    pub recorder: Recorder,
    /// This node.
    pub facts: NodeFacts,
    /// The runtime's name (container id scheme).
    pub runtime_name: String,
    /// Root of pod log directories.
    pub log_root: std::path::PathBuf,
    /// Metrics.
    pub metrics: Metrics,
    /// What this node allows pods beyond the default ([`admission`]).
    pub policy: admission::NodePolicy,
    /// Where pod volumes live and what they may be ([`crate::volumes`]).
    pub volumes: crate::volumes::Settings,
}

/// What a worker remembers between rounds (lost on restart, rebuilt from the runtime).
#[derive(Default)]
pub(crate) struct Memory {
    /// Pull failures by container name.
    pub(crate) pulls: HashMap<String, PullFailure>,
    /// `imageID` by container name (and `<name>#key` for what it was computed from).
    pub(crate) image_ids: HashMap<String, String>,
    /// Events already published: (reason, key) so each transition is reported once.
    published: std::collections::HashSet<(String, String)>,
    /// Probe state of the running containers.
    probes: Probes,
    /// The IPs the runtime reported, by sandbox (it may stop reporting them: [`pod_ip`]).
    ips: pod_ip::Known,
    /// Where the pod's IP came from last round (logged when it changes).
    ip_source: Option<pod_ip::Source>,
    /// The pod's volumes ([`crate::volumes`]).
    volumes: crate::volumes::PodVolumes,
    /// Set once the pod is evicted (an emptyDir over its sizeLimit): it fails, as rejected.
    evicted: Option<admission::Rejection>,
    /// The status last written, and when.
    last_status: Option<(k8s_openapi::api::core::v1::PodStatus, std::time::Instant)>,
}

/// How long a status just written is not written again (the kubelet's status manager
/// reconciles every 10 s).
const STATUS_RESEND: Duration = Duration::from_secs(10);

/// Unix time in nanoseconds.
pub fn now_nanos() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Runs the worker of one pod until the pod is gone and its runtime objects are removed.
/// `rx` carries the latest Pod, or `None` once it left the API server.
pub async fn pod_worker(shared: Arc<Shared>, uid: String, mut rx: watch::Receiver<Option<Arc<Pod>>>) {
    let mut memory = Memory::default();
    loop {
        let pod = rx.borrow_and_update().clone();
        let Some(pod) = pod else {
            match remove_all(&shared.cri, &uid).await {
                Ok(()) => crate::volumes::teardown(&shared.volumes, &uid),
                Err(e) => warn!(error = %e, "removing the runtime objects of a vanished pod"),
            }
            return;
        };
        let requeue = match sync_pod(&shared, &pod, &mut memory, rx.clone()).await {
            Ok(Some(d)) => d,
            Ok(None) => return, // deleted
            Err(e) => {
                warn!(error = %e, "pod sync failed; retrying");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(requeue) => {}
        }
    }
}

/// Stops and removes every sandbox and container of pod `uid`.
pub async fn remove_all(cri: &CriClient, uid: &str) -> Result<()> {
    let obs = observe::observe(cri, uid).await?;
    for c in &obs.containers {
        cri.stop_container(
            &c.id,
            Duration::from_secs(lifecycle::DEFAULT_GRACE_SECONDS as u64),
        )
        .await?;
        cri.remove_container(&c.id).await?;
    }
    for s in &obs.sandboxes {
        cri.stop_pod_sandbox(&s.id).await?;
        cri.remove_pod_sandbox(&s.id).await?;
    }
    Ok(())
}

/// What the runtime holds for the pod, with the pod's IP rebuilt when the runtime leaves it
/// out ([`pod_ip::resolve`]); a change of where it comes from is logged.
async fn observe_pod(shared: &Shared, pod: &Pod, mem: &mut Memory) -> Result<Observed> {
    let mut obs = observe::observe(&shared.cri, pod.metadata.uid.as_deref().unwrap_or_default()).await?;
    let source = pod_ip::resolve(pod, &mut obs, &mut mem.ips);
    crate::termination::fill(&shared.volumes.root, &shared.log_root, pod, &mut obs);
    if mem.ip_source.replace(source) != Some(source) {
        let ip = obs.ready_sandbox().and_then(|s| s.ip.as_deref()).unwrap_or("");
        match source {
            pod_ip::Source::Runtime | pod_ip::Source::NoSandbox => debug!(?source, %ip, "pod IP"),
            pod_ip::Source::Remembered | pod_ip::Source::PodStatus => {
                warn!(?source, %ip, "the runtime reports no IP for the running sandbox; using the one known")
            }
            pod_ip::Source::Unknown => {
                warn!(
                    "the runtime reports no IP for the running sandbox and none is known; HTTP and TCP probes wait"
                )
            }
        }
    }
    Ok(obs)
}

/// One round for one pod; `Ok(None)` once the pod object is deleted.
/// `updates` sees the pod's next versions (a deletion cuts a round of probes short).
async fn sync_pod(
    shared: &Shared,
    pod: &Pod,
    mem: &mut Memory,
    updates: watch::Receiver<Option<Arc<Pod>>>,
) -> Result<Option<Duration>> {
    let mut obs = observe_pod(shared, pod, mem).await?;
    let review = admission::review(pod, &shared.policy);
    let rejection = review.rejection().or_else(|| evicted(shared, pod, mem));
    let mut plan = match &rejection {
        Some(_) if pod.metadata.deletion_timestamp.is_none() => lifecycle::plan_rejected(pod, &obs),
        _ => lifecycle::plan(pod, &obs, &mem.pulls, now_nanos()),
    };
    if rejection.is_none() {
        mount_volumes(shared, pod, mem, &mut plan).await;
    }
    if let Some(r) = &rejection {
        publish_once(shared, pod, mem, EventType::Warning, r.reason, r.message.clone()).await;
    }
    if lifecycle::deadline_exceeded(pod, now_nanos()) {
        let note = lifecycle::DEADLINE_MESSAGE.to_string();
        publish_once(
            shared,
            pod,
            mem,
            EventType::Normal,
            lifecycle::DEADLINE_REASON,
            note,
        )
        .await;
    }
    let acted = !plan.actions.is_empty();
    // Consecutive kills run side by side (each runs its preStop hook within the grace
    // period, as the kubelet's), before the next action.
    let mut kills = Vec::new();
    for action in plan.actions {
        debug!(?action, "executing");
        if let Action::KillContainer { id, name, grace } = action {
            kills.push((id, name, grace));
            continue;
        }
        kill_all(shared, pod, &obs, std::mem::take(&mut kills)).await?;
        match action {
            Action::DeletePod => {
                crate::volumes::teardown(&shared.volumes, pod.metadata.uid.as_deref().unwrap_or(""));
                delete_pod(shared, pod).await?;
                return Ok(None);
            }
            a => execute(shared, pod, &obs, mem, a, updates.clone()).await?,
        }
    }
    kill_all(shared, pod, &obs, kills).await?;
    if acted {
        obs = observe_pod(shared, pod, mem).await?;
    }
    let next_probe = run_probes(shared, pod, &mut obs, mem, updates).await?;
    crate::pull::refresh_image_ids(shared, pod, &obs, mem).await;
    let unsupported = review.ignored_fields();
    if !unsupported.is_empty() {
        publish_once(
            shared,
            pod,
            mem,
            EventType::Warning,
            "UnsupportedFields",
            format!("berth-agent ignores: {}", unsupported.join(", ")),
        )
        .await;
    }
    let ctx = status::Context {
        host_ip: shared.facts.host_ip.clone(),
        runtime_name: shared.runtime_name.clone(),
        pulls: Some(&mem.pulls),
        image_ids: Some(&mem.image_ids),
        probes: Some(&mem.probes),
        unsupported,
        rejection: rejection.as_ref(),
        now: now_nanos(),
    };
    let new = status::compute(pod, &obs, &ctx);
    for cs in new.container_statuses.iter().flatten() {
        let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
        if waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff") {
            let note = format!(
                "Back-off restarting failed container {} (restart {})",
                cs.name, cs.restart_count
            );
            publish_once(shared, pod, mem, EventType::Warning, "BackOff", note).await;
        }
    }
    // The watch may not show the agent's last write yet: the same status is not sent twice
    // within STATUS_RESEND (after that it is, should someone else have changed it).
    let resend = mem
        .last_status
        .as_ref()
        .is_none_or(|(last, at)| *last != new || at.elapsed() >= STATUS_RESEND);
    if status::changed(pod, &new) && resend {
        write_status(shared, pod, &new).await?;
        mem.last_status = Some((new, std::time::Instant::now()));
    }
    let requeue = plan.requeue.unwrap_or(lifecycle::RESYNC);
    Ok(Some(next_probe.map_or(requeue, |p| p.min(requeue))))
}

/// The pod's eviction, as the kubelet's for local storage: once a disk-backed emptyDir uses
/// more than its `sizeLimit`, the pod fails with reason `Evicted` (its containers are stopped
/// as a rejected pod's); remembered, and rebuilt from the status after an agent restart.
fn evicted(shared: &Shared, pod: &Pod, mem: &mut Memory) -> Option<admission::Rejection> {
    let status = pod.status.as_ref();
    if mem.evicted.is_none() && status.and_then(|s| s.reason.as_deref()) == Some("Evicted") {
        mem.evicted = Some(admission::Rejection {
            reason: "Evicted",
            message: status.and_then(|s| s.message.clone()).unwrap_or_default(),
        });
    }
    let phase = status.and_then(|s| s.phase.as_deref());
    if mem.evicted.is_none()
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
        && let Some(message) = crate::volumes::over_limit(&shared.volumes, pod, &mut mem.volumes)
    {
        mem.evicted = Some(admission::Rejection {
            reason: "Evicted",
            message,
        });
    }
    mem.evicted.clone()
}

/// Sets up or refreshes the pod's volumes ([`crate::volumes::sync`]) unless it is being
/// deleted or is done; until they are set up, `plan` starts no sandbox and no container.
/// Each distinct failure is published once as `FailedMount`.
async fn mount_volumes(shared: &Shared, pod: &Pod, mem: &mut Memory, plan: &mut lifecycle::Plan) {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if pod.metadata.deletion_timestamp.is_some() || matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    let out = crate::volumes::sync(&shared.client, &shared.volumes, pod, &mut mem.volumes).await;
    for f in out.failures {
        warn!(message = %f, "volume set-up failed");
        publish_once(shared, pod, mem, EventType::Warning, "FailedMount", f).await;
    }
    if !out.ready {
        plan.actions
            .retain(|a| !matches!(a, Action::RunSandbox { .. } | Action::StartContainer { .. }));
    }
}

/// Runs the probes that are due, reports failures (`Unhealthy`, on the first of a run), kills
/// the containers that failed their liveness or startup probe (they restart per the restart
/// policy, with back-off) and re-observes then; returns when the next probe is due. A deletion
/// seen on `updates` abandons the round (its probes run again later if still wanted).
async fn run_probes(
    shared: &Shared,
    pod: &Pod,
    obs: &mut Observed,
    mem: &mut Memory,
    mut updates: watch::Receiver<Option<Arc<Pod>>>,
) -> Result<Option<Duration>> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let now = now_nanos();
    let (due, next) = prober::due(pod, obs, &mut mem.probes, now);
    let next = next.map(|at| Duration::from_nanos(u64::try_from(at - now).unwrap_or(0)));
    if due.is_empty() {
        return Ok(next);
    }
    let deleted = updates.wait_for(|p| p.as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
    let outcomes = tokio::select! {
        o = futures::future::join_all(due.iter().map(|d| prober::run(&shared.cri, d))) => o,
        _ = deleted => return Ok(Some(Duration::ZERO)),
    };
    for (d, o) in due.iter().zip(&outcomes) {
        shared.metrics.probed(d.spec.kind.name(), o.label());
    }
    let ran = due.into_iter().zip(outcomes).collect();
    let prober::Recorded {
        transitions,
        first_failures,
        kills,
        first_skips,
    } = prober::record(pod, &mut mem.probes, ran, now);
    for t in &first_skips {
        let message = t.message.as_deref().unwrap_or_default();
        warn!(container = %t.name, probe = t.kind.title(), %message, "probe skipped");
    }
    for t in &first_failures {
        let message = t.message.as_deref().unwrap_or_default();
        debug!(container = %t.name, probe = t.kind.title(), %message, "probe failed");
        let note = format!("{} probe failed: {message}", t.kind.title());
        publish(shared, pod, EventType::Warning, "Unhealthy", note).await;
    }
    for t in &transitions {
        info!(container = %t.name, probe = t.kind.title(), ok = t.ok, message = ?t.message, "probe result changed");
    }
    for k in &kills {
        let what = k.kind.name();
        info!(container = %k.name, probe = %what, "killing a container that failed its probe");
        let note = format!("Container {} failed {what} probe, will be restarted", k.name);
        let ip = obs.ready_sandbox().and_then(|s| s.ip.clone());
        hook_runner::kill(shared, pod, &k.id, &k.name, k.grace, ip.as_deref(), Some(note)).await?;
    }
    if !kills.is_empty() {
        *obs = observe_pod(shared, pod, mem).await?;
    }
    Ok(next)
}

/// Stops containers (id, name, grace) side by side, each after its preStop hook.
async fn kill_all(
    shared: &Shared,
    pod: &Pod,
    obs: &Observed,
    kills: Vec<(String, String, Duration)>,
) -> Result<()> {
    let ip = obs.ready_sandbox().and_then(|s| s.ip.clone());
    let stops = kills.iter().map(|(id, name, grace)| {
        let note = format!("Stopping container {name}");
        hook_runner::kill(shared, pod, id, name, *grace, ip.as_deref(), Some(note))
    });
    futures::future::try_join_all(stops).await.map(|_| ())
}

async fn execute(
    shared: &Shared,
    pod: &Pod,
    obs: &Observed,
    mem: &mut Memory,
    action: Action,
    updates: watch::Receiver<Option<Arc<Pod>>>,
) -> Result<()> {
    let cri = &shared.cri;
    match action {
        Action::RunSandbox { attempt } => {
            if crate::dns::base(pod, &shared.facts.cluster_dns).1 {
                let note = "pod: the node has no cluster DNS configured (berth-agent --cluster-dns) and cannot create the pod using the \"ClusterFirst\" policy; falling back to the \"Default\" policy";
                publish_once(
                    shared,
                    pod,
                    mem,
                    EventType::Warning,
                    "MissingClusterDNS",
                    note.to_string(),
                )
                .await;
            }
            let config = podspec::sandbox_config(pod, attempt, &shared.log_root, &shared.facts);
            let dir = config.log_directory.clone();
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                what: "creating pod log directory",
                path: dir,
                source,
            })?;
            let id = cri.run_pod_sandbox(config).await?;
            info!(sandbox = %id, attempt, "sandbox running");
        }
        Action::StopSandbox { id } => cri.stop_pod_sandbox(&id).await?,
        Action::RemoveSandbox { id } => {
            cri.stop_pod_sandbox(&id).await?;
            cri.remove_pod_sandbox(&id).await?;
        }
        Action::KillContainer { id, name, grace } => {
            kill_all(shared, pod, obs, vec![(id, name, grace)]).await?
        }
        Action::RemoveContainer { id } => cri.remove_container(&id).await?,
        Action::StartContainer { name, attempt } => {
            crate::start::start_container(shared, pod, obs, mem, &name, attempt, updates).await?
        }
        Action::DeletePod => {}
    }
    Ok(())
}

async fn write_status(
    shared: &Shared,
    pod: &Pod,
    status: &k8s_openapi::api::core::v1::PodStatus,
) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let body = status_patch::patch(pod, status);
    match api
        .patch_status(&name, &status_patch::params(), &Patch::Strategic(&body))
        .await
    {
        Ok(_) => {
            debug!(phase = ?status.phase, "status written");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("writing status of pod {ns}/{name}"), e)),
    }
}

async fn delete_pod(shared: &Shared, pod: &Pod) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            info!("pod deleted after its containers stopped");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("deleting pod {ns}/{name}"), e)),
    }
}

/// Publishes an Event about the pod (failures are logged, never fatal).
pub(crate) async fn publish(shared: &Shared, pod: &Pod, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(e) = shared.recorder.publish(&ev, &pod.object_ref(&())).await {
        debug!(error = %e, reason, "publishing an event failed");
    }
}

/// Publishes an Event once per worker lifetime for a given reason and note.
async fn publish_once(
    shared: &Shared,
    pod: &Pod,
    mem: &mut Memory,
    type_: EventType,
    reason: &str,
    note: String,
) {
    if mem.published.insert((reason.to_string(), note.clone())) {
        publish(shared, pod, type_, reason, note).await;
    }
}

/// The span of a pod's worker.
pub fn pod_span(pod: &Pod) -> tracing::Span {
    info_span!(
        "pod",
        namespace = pod.metadata.namespace.as_deref().unwrap_or(""),
        name = pod.metadata.name.as_deref().unwrap_or(""),
        uid = pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Spawns the worker of `pod` in its span.
pub fn spawn_worker(shared: Arc<Shared>, pod: Arc<Pod>) -> watch::Sender<Option<Arc<Pod>>> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let span = pod_span(&pod);
    let (tx, rx) = watch::channel(Some(pod));
    tokio::spawn(pod_worker(shared, uid, rx).instrument(span));
    tx
}
