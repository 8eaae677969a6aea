//! Pure decisions of the pod lifecycle: given a Pod, what the runtime holds for it and what
//! the agent remembers (pull failures), which actions bring the runtime closer to the spec.
//! No I/O here; [`crate::sync`] executes the actions.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::backoff;
use crate::observe::{Container, Observed, State};

/// How often a pod with live containers is looked at again (container exits are noticed by
/// polling the runtime, as the kubelet's relist).
pub const RESYNC: Duration = Duration::from_secs(2);

/// The default termination grace period.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// One step towards the desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create a sandbox with this attempt number.
    RunSandbox {
        /// CRI attempt.
        attempt: u32,
    },
    /// Stop a sandbox (its containers stop too).
    StopSandbox {
        /// Runtime id.
        id: String,
    },
    /// Stop and remove a sandbox that is no longer used.
    RemoveSandbox {
        /// Runtime id.
        id: String,
    },
    /// Ensure the image (per pull policy) and create and start container `name`.
    StartContainer {
        /// Name in the pod spec.
        name: String,
        /// CRI attempt (the restart count).
        attempt: u32,
    },
    /// Stop a container: SIGTERM, SIGKILL after `grace`.
    KillContainer {
        /// Runtime id.
        id: String,
        /// Name in the pod spec.
        name: String,
        /// Grace period.
        grace: Duration,
    },
    /// Remove a stopped container.
    RemoveContainer {
        /// Runtime id.
        id: String,
    },
    /// Everything is gone: delete the Pod object with grace period 0.
    DeletePod,
}

/// What failed before a container could start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureKind {
    /// Pulling its image (`ErrImagePull`, then `ImagePullBackOff`).
    #[default]
    Pull,
    /// Building its configuration (`CreateContainerConfigError`): a `runAsNonRoot` the image
    /// breaks, a missing ConfigMap or Secret.
    Config,
}

/// A remembered failure to start a container (its image pull or its configuration), retried
/// with back-off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullFailure {
    /// What failed.
    pub kind: FailureKind,
    /// The image that failed.
    pub image: String,
    /// Consecutive failures.
    pub failures: u32,
    /// When the next pull may be tried, Unix nanoseconds.
    pub retry_at: i64,
    /// The runtime's error.
    pub message: String,
}

/// What [`plan`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Actions, in order.
    pub actions: Vec<Action>,
    /// When to look at the pod again at the latest.
    pub requeue: Option<Duration>,
}

/// Whether and when an exited container restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// The restart policy says no.
    Never,
    /// Now.
    Now,
    /// Back-off: at this Unix time in nanoseconds.
    At(i64),
}

/// The pod's restart policy (`Always` by default).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether the exited container `c` restarts, and when.
pub fn restart(policy: &str, c: &Container, now: i64) -> Restart {
    let wanted = match policy {
        "Never" => false,
        "OnFailure" => c.exit_code != 0,
        _ => true,
    };
    if !wanted {
        return Restart::Never;
    }
    let ran = Duration::from_nanos(u64::try_from(c.finished_at - c.started_at).unwrap_or(0));
    let delay = backoff::restart_delay(c.attempt, ran);
    let due = c.finished_at.max(c.created_at) + i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX);
    if now >= due {
        Restart::Now
    } else {
        Restart::At(due)
    }
}

/// The grace period for stopping the pod's containers: the deletion's, else the spec's, else 30 s.
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The names and images of the pod's containers, in spec order.
pub fn spec_containers(pod: &Pod) -> Vec<(&str, &str)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}

/// The names and images of the pod's init containers, in spec order.
pub fn spec_init_containers(pod: &Pod) -> Vec<(&str, &str)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}

/// The reason of a pod failed by its `activeDeadlineSeconds` (the kubelet's).
pub const DEADLINE_REASON: &str = "DeadlineExceeded";
/// The message of a pod failed by its `activeDeadlineSeconds` (the kubelet's).
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// When the pod's `activeDeadlineSeconds` runs out (Unix nanoseconds): counted from the
/// `startTime` of its status, as the kubelet; `None` without a deadline or a start time.
pub fn deadline(pod: &Pod) -> Option<i64> {
    let secs = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?;
    let start = i64::try_from(start.0.as_nanosecond()).ok()?;
    Some(start.saturating_add(secs.saturating_mul(1_000_000_000)))
}

/// True when a pod not yet done has been active longer than its `activeDeadlineSeconds`: its
/// containers are killed and it fails with [`DEADLINE_REASON`].
pub fn deadline_exceeded(pod: &Pod, now: i64) -> bool {
    !terminal(pod) && deadline(pod).is_some_and(|at| now >= at)
}

/// True when an init container failed and the restart policy is `Never`: the pod fails.
pub fn init_failed_for_good(pod: &Pod, obs: &Observed) -> bool {
    restart_policy(pod) == "Never"
        && spec_init_containers(pod).iter().any(|(name, _)| {
            obs.latest(name)
                .is_some_and(|c| c.state == State::Exited && c.exit_code != 0)
        })
}

/// Where the pod's initialization stands in its current sandbox (as the kubelet's
/// `findNextInitContainerToRun`): init containers run one at a time in spec order, each to
/// success, before any app container; a new sandbox runs them all again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Init {
    /// No init containers, all succeeded in this sandbox, or an app container was created in
    /// it already (init containers never run again then, even if removed since).
    Done,
    /// Init container `name` is to start: its first run in this sandbox or a restart due now;
    /// `replace` is a container of it that was created but never started (removed first).
    Start {
        /// Its name.
        name: String,
        /// A created, never started container of it to remove first.
        replace: Option<String>,
    },
    /// An init container runs: wait for it.
    Running,
    /// An init container failed and restarts at this time (Unix nanoseconds), after back-off.
    BackOff {
        /// When.
        at: i64,
    },
    /// Init container `name` failed and the restart policy is `Never`: the pod fails.
    Failed {
        /// Its name.
        name: String,
    },
}

/// The initialization of `pod` in sandbox `sandbox_id` at `now` (see [`Init`]).
pub fn init_progress(pod: &Pod, obs: &Observed, sandbox_id: &str, now: i64) -> Init {
    let inits = spec_init_containers(pod);
    let in_sandbox = |name: &str| obs.attempts(name).find(|c| c.sandbox_id == sandbox_id).cloned();
    if inits.is_empty() || spec_containers(pod).iter().any(|(n, _)| in_sandbox(n).is_some()) {
        return Init::Done;
    }
    let policy = restart_policy(pod);
    for (name, _) in inits {
        let name = name.to_string();
        match in_sandbox(&name) {
            None => return Init::Start { name, replace: None },
            Some(c) if c.state == State::Running => return Init::Running,
            Some(c) if c.state != State::Exited => {
                return Init::Start {
                    name,
                    replace: Some(c.id),
                };
            }
            Some(c) if c.exit_code == 0 => {}
            Some(c) => {
                return match restart(policy, &c, now) {
                    Restart::Never => Init::Failed { name },
                    Restart::Now => Init::Start { name, replace: None },
                    Restart::At(at) => Init::BackOff { at },
                };
            }
        }
    }
    Init::Done
}

/// True when every container has run and none will run again: the pod is done
/// (`Succeeded` or `Failed`). A pod whose status already says so stays done; so does a pod
/// past its active deadline, and one whose init container failed under `Never`.
pub fn pod_finished(pod: &Pod, obs: &Observed, now: i64) -> bool {
    if terminal(pod) || deadline_exceeded(pod, now) || init_failed_for_good(pod, obs) {
        return true;
    }
    let policy = restart_policy(pod);
    let containers = spec_containers(pod);
    !containers.is_empty()
        && containers.iter().all(|(name, _)| {
            obs.latest(name)
                .is_some_and(|c| c.state == State::Exited && restart(policy, c, now) == Restart::Never)
        })
}

fn earliest(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn nanos_until(at: i64, now: i64) -> Duration {
    Duration::from_nanos(u64::try_from(at - now).unwrap_or(0)).max(Duration::from_millis(100))
}

/// Starts container `name` as its next attempt, unless a failed pull of `image` is backing
/// off: then look again when it may be retried.
fn start_or_wait(
    plan: &mut Plan,
    obs: &Observed,
    pulls: &HashMap<String, PullFailure>,
    name: &str,
    image: &str,
    now: i64,
) {
    let blocked = pulls
        .get(name)
        .filter(|p| p.image == image && p.retry_at > now)
        .map(|p| p.retry_at);
    match blocked {
        Some(at) => plan.requeue = earliest(plan.requeue, nanos_until(at, now)),
        None => plan.actions.push(Action::StartContainer {
            name: name.to_string(),
            attempt: obs.attempts(name).map(|c| c.attempt + 1).max().unwrap_or(0),
        }),
    }
}

/// Stops container `c` with the pod's grace period.
fn kill(pod: &Pod, c: &Container) -> Action {
    Action::KillContainer {
        id: c.id.clone(),
        name: c.name.clone(),
        grace: grace_period(pod),
    }
}

/// The actions for a pod being deleted: stop containers with the grace period, stop and
/// remove the sandboxes, then delete the Pod object.
fn plan_deletion(pod: &Pod, obs: &Observed) -> Plan {
    let mut plan = Plan::default();
    for c in obs.containers.iter().filter(|c| c.state != State::Exited) {
        plan.actions.push(kill(pod, c));
    }
    for c in &obs.containers {
        plan.actions.push(Action::RemoveContainer { id: c.id.clone() });
    }
    for s in &obs.sandboxes {
        plan.actions.push(Action::RemoveSandbox { id: s.id.clone() });
    }
    plan.actions.push(Action::DeletePod);
    plan
}

/// The actions for a pod that admission refused ([`crate::admission`]): nothing starts, and
/// whatever runs (started before the refusal, by an older agent) stops; sandboxes stop too.
pub fn plan_rejected(pod: &Pod, obs: &Observed) -> Plan {
    let mut plan = Plan::default();
    for c in obs.containers.iter().filter(|c| c.state != State::Exited) {
        plan.actions.push(kill(pod, c));
    }
    for s in obs.sandboxes.iter().filter(|s| s.ready) {
        plan.actions.push(Action::StopSandbox { id: s.id.clone() });
    }
    plan
}

/// Decides the next actions for `pod` given what the runtime holds (`obs`), remembered pull
/// failures by container name, and the time `now` (Unix nanoseconds).
pub fn plan(pod: &Pod, obs: &Observed, pulls: &HashMap<String, PullFailure>, now: i64) -> Plan {
    if pod.metadata.deletion_timestamp.is_some() {
        return plan_deletion(pod, obs);
    }
    let mut plan = Plan::default();
    let spec = spec_containers(pod);
    let inits = spec_init_containers(pod);

    // Containers of names no longer in the spec, and all but the two newest attempts of each.
    for c in &obs.containers {
        let known = spec.iter().chain(&inits).any(|(n, _)| *n == c.name);
        let stale = obs.attempts(&c.name).position(|x| x.id == c.id).unwrap_or(0) >= 2;
        if !known || stale {
            if c.state != State::Exited {
                plan.actions.push(kill(pod, c));
            }
            plan.actions.push(Action::RemoveContainer { id: c.id.clone() });
        }
    }

    if pod_finished(pod, obs, now) {
        // Done: stop what still runs (past the deadline, or a failed init container under
        // Never), stop the sandbox, keep containers for status and logs.
        let stale = |c: &&Container| {
            plan.actions
                .iter()
                .any(|a| matches!(a, Action::RemoveContainer { id } if *id == c.id))
        };
        let live: Vec<&Container> = obs
            .containers
            .iter()
            .filter(|c| c.state != State::Exited)
            .filter(|c| !stale(c))
            .collect();
        for c in live {
            plan.actions.push(kill(pod, c));
        }
        for s in obs.sandboxes.iter().filter(|s| s.ready) {
            plan.actions.push(Action::StopSandbox { id: s.id.clone() });
        }
        return plan;
    }

    // Sandboxes: the newest ready one is used; older or dead ones go.
    let Some(sandbox) = obs.ready_sandbox() else {
        for c in obs.containers.iter().filter(|c| c.state != State::Exited) {
            plan.actions.push(kill(pod, c));
        }
        for s in &obs.sandboxes {
            plan.actions.push(Action::RemoveSandbox { id: s.id.clone() });
        }
        let attempt = obs.sandboxes.iter().map(|s| s.attempt + 1).max().unwrap_or(0);
        plan.actions.push(Action::RunSandbox { attempt });
        plan.requeue = Some(Duration::ZERO);
        return plan;
    };
    for s in obs.sandboxes.iter().filter(|s| s.id != sandbox.id) {
        plan.actions.push(Action::RemoveSandbox { id: s.id.clone() });
    }

    // Init containers first, one at a time; app containers once they all succeeded.
    match init_progress(pod, obs, &sandbox.id, now) {
        Init::Done => {}
        Init::Start { name, replace } => {
            if let Some(id) = replace {
                plan.actions.push(Action::RemoveContainer { id });
            }
            let image = inits.iter().find(|(n, _)| *n == name).map_or("", |(_, i)| *i);
            start_or_wait(&mut plan, obs, pulls, &name, image, now);
            plan.requeue = earliest(plan.requeue, RESYNC);
            return plan;
        }
        Init::BackOff { at } => {
            plan.requeue = earliest(plan.requeue, nanos_until(at, now).min(RESYNC));
            return plan;
        }
        Init::Running | Init::Failed { .. } => {
            plan.requeue = earliest(plan.requeue, RESYNC);
            return plan;
        }
    }

    let policy = restart_policy(pod);
    for (name, image) in &spec {
        let start = |plan: &mut Plan| start_or_wait(plan, obs, pulls, name, image, now);
        match obs.latest(name) {
            // Never started, or the sandbox is new: containers of a dead sandbox restart.
            None => start(&mut plan),
            Some(c) if c.sandbox_id != sandbox.id && c.state != State::Exited => {
                plan.actions.push(kill(pod, c));
            }
            Some(c) if c.sandbox_id != sandbox.id => start(&mut plan),
            Some(c) if c.state == State::Running && !c.spec_image.is_empty() && c.spec_image != *image => {
                // The spec's image changed: replace the container.
                plan.actions.push(kill(pod, c));
                plan.requeue = Some(Duration::ZERO);
            }
            Some(c) if c.state == State::Running => {}
            Some(c) if c.state == State::Created || c.state == State::Unknown => {
                // Created but never started (agent died in between): replace it.
                plan.actions.push(Action::RemoveContainer { id: c.id.clone() });
                start(&mut plan);
            }
            Some(c) => match restart(policy, c, now) {
                Restart::Never => {}
                Restart::Now => start(&mut plan),
                Restart::At(at) => plan.requeue = earliest(plan.requeue, nanos_until(at, now)),
            },
        }
    }
    plan.requeue = earliest(plan.requeue, RESYNC);
    plan
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
pub(crate) mod tests;
