//! The Pod's status as a pure function of the Pod, what the runtime holds and what the agent
//! remembers; written by [`crate::sync`] with server-side apply only when it changed.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::lifecycle::{self, PullFailure, Restart};
use crate::observe::{Container, Observed, State};
use crate::probe::{self, Kind};
use crate::prober::Probes;

/// The condition type the agent sets when a pod uses fields it does not implement.
pub const UNSUPPORTED_CONDITION: &str = "berth.dev/UnsupportedFields";

/// Inputs of [`compute`] besides the pod and the runtime's view.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// The node's IP (`hostIP`).
    pub host_ip: String,
    /// The runtime's name, the scheme of container ids (`containerd`).
    pub runtime_name: String,
    /// Remembered pull failures by container name.
    pub pulls: Option<&'a HashMap<String, PullFailure>>,
    /// The digest reference (`imageID`) of each container's image, by container name.
    pub image_ids: Option<&'a HashMap<String, String>>,
    /// Fields of the pod the agent ignores (for the `UnsupportedFields` condition).
    pub unsupported: Vec<String>,
    /// Admission's refusal of the pod: phase `Failed` with its reason and message.
    pub rejection: Option<&'a crate::admission::Rejection>,
    /// Probe results of running containers (readiness, startup gate).
    pub probes: Option<&'a Probes>,
    /// Now, Unix nanoseconds.
    pub now: i64,
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
        .map(Time)
}

fn now_time(nanos: i64) -> Time {
    time(nanos).unwrap_or(Time(Timestamp::UNIX_EPOCH))
}

fn terminated(c: &Container, runtime: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: Some(if c.reason.is_empty() {
            if c.exit_code == 0 { "Completed" } else { "Error" }.to_string()
        } else {
            c.reason.clone()
        }),
        message: (!c.message.is_empty()).then(|| c.message.clone()),
        started_at: time(c.started_at),
        finished_at: time(c.finished_at),
        container_id: Some(format!("{runtime}://{}", c.id)),
        signal: None,
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

/// The status of one spec container (`init`: one of the init containers).
fn container_status(
    pod: &Pod,
    name: &str,
    image: &str,
    init: bool,
    obs: &Observed,
    ctx: &Context<'_>,
) -> ContainerStatus {
    let mut attempts = obs.attempts(name);
    let latest = attempts.next();
    let previous = attempts.next();
    let pull = ctx.pulls.and_then(|p| p.get(name)).filter(|p| p.image == image);
    let mut status = ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        image_id: ctx
            .image_ids
            .and_then(|m| m.get(name))
            .cloned()
            .unwrap_or_default(),
        restart_count: latest.map_or(0, |c| i32::try_from(c.attempt).unwrap_or(i32::MAX)),
        ready: false,
        started: Some(false),
        container_id: latest.map(|c| format!("{}://{}", ctx.runtime_name, c.id)),
        ..Default::default()
    };
    let mut last = previous.map(|c| terminated(c, &ctx.runtime_name));
    let state = match (latest, pull) {
        (Some(c), _) if c.state == State::Running => {
            let spec = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|x| x.name == name));
            let tracker = |k: Kind| ctx.probes.and_then(|p| p.get(&(c.id.clone(), k)));
            let has_startup = spec.is_some_and(|s| s.startup_probe.is_some());
            let has_readiness = spec.is_some_and(|s| s.readiness_probe.is_some());
            let started = probe::started(has_startup, tracker(Kind::Startup));
            status.ready =
                probe::container_ready(true, started, has_readiness.then(|| tracker(Kind::Readiness)));
            status.started = Some(started);
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time(c.started_at),
                }),
                ..Default::default()
            }
        }
        (_, Some(p)) if p.kind == lifecycle::FailureKind::Config => {
            if let Some(c) = latest.filter(|c| c.state == State::Exited) {
                last = Some(terminated(c, &ctx.runtime_name));
            }
            waiting("CreateContainerConfigError", Some(p.message.clone()))
        }
        (_, Some(p)) => {
            let reason = if p.retry_at > ctx.now && p.failures > 1 {
                "ImagePullBackOff"
            } else {
                "ErrImagePull"
            };
            if let Some(c) = latest.filter(|c| c.state == State::Exited) {
                last = Some(terminated(c, &ctx.runtime_name));
            }
            waiting(reason, Some(p.message.clone()))
        }
        // An init container that succeeded is done, whatever the restart policy.
        (Some(c), None) if c.state == State::Exited && init && c.exit_code == 0 => ContainerState {
            terminated: Some(terminated(c, &ctx.runtime_name)),
            ..Default::default()
        },
        (Some(c), None) if c.state == State::Exited => {
            match lifecycle::restart(lifecycle::restart_policy(pod), c, ctx.now) {
                Restart::At(_) => {
                    last = Some(terminated(c, &ctx.runtime_name));
                    waiting(
                        "CrashLoopBackOff",
                        Some(format!("back-off restarting failed container {name}")),
                    )
                }
                _ => ContainerState {
                    terminated: Some(terminated(c, &ctx.runtime_name)),
                    ..Default::default()
                },
            }
        }
        // Not created yet: `PodInitializing` in a pod with init containers, as the kubelet.
        _ if !lifecycle::spec_init_containers(pod).is_empty() => waiting("PodInitializing", None),
        _ => waiting("ContainerCreating", None),
    };
    if init {
        // An init container is ready once it succeeded; `started` is not reported for it.
        status.ready = state.terminated.as_ref().is_some_and(|t| t.exit_code == 0);
        status.started = None;
    }
    status.state = Some(state);
    status.last_state = last.map(|t| ContainerState {
        terminated: Some(t),
        ..Default::default()
    });
    status
}

/// The phase: Pending until every container has started once, Running while any runs or will
/// restart, Succeeded/Failed when all are done for good. A terminal phase never changes.
fn phase(pod: &Pod, statuses: &[ContainerStatus], obs: &Observed, now: i64) -> &'static str {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => return "Succeeded",
        Some("Failed") => return "Failed",
        _ => {}
    }
    if lifecycle::deadline_exceeded(pod, now) || lifecycle::init_failed_for_good(pod, obs) {
        return "Failed";
    }
    if lifecycle::pod_finished(pod, obs, now) {
        let all_ok = statuses.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        });
        return if all_ok { "Succeeded" } else { "Failed" };
    }
    let all_started = statuses.iter().all(|s| {
        s.restart_count > 0
            || s.state
                .as_ref()
                .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });
    if !statuses.is_empty() && all_started && obs.ready_sandbox().is_some() {
        "Running"
    } else {
        "Pending"
    }
}

/// A condition keeping its last transition time when its status did not change.
fn condition(
    pod: &Pod,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: i64,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let last_transition_time = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now_time(now)),
    };
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time,
        last_probe_time: None,
        ..Default::default()
    }
}

/// The `Initialized` condition, as the kubelet's: true without init containers or once all
/// succeeded; else false, naming those not done.
fn initialized(pod: &Pod, init_statuses: &[ContainerStatus], phase: &str, now: i64) -> PodCondition {
    let incomplete: Vec<&str> = init_statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    if phase == "Succeeded" && !init_statuses.is_empty() {
        return condition(pod, "Initialized", true, Some("PodCompleted"), None, now);
    }
    if incomplete.is_empty() {
        return condition(pod, "Initialized", true, None, None, now);
    }
    let message = format!("containers with incomplete status: [{}]", incomplete.join(" "));
    condition(
        pod,
        "Initialized",
        false,
        Some("ContainersNotInitialized"),
        Some(message),
        now,
    )
}

/// The pod's `reason` and `message` besides an admission refusal: the active deadline's when
/// it ran out; a terminal pod keeps those it was given; else none.
fn reason_message(pod: &Pod, now: i64) -> (Option<String>, Option<String>) {
    if lifecycle::deadline_exceeded(pod, now) {
        return (
            Some(lifecycle::DEADLINE_REASON.to_string()),
            Some(lifecycle::DEADLINE_MESSAGE.to_string()),
        );
    }
    match pod.status.as_ref() {
        Some(s) if matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")) => {
            (s.reason.clone(), s.message.clone())
        }
        _ => (None, None),
    }
}

/// The first readiness gate (`spec.readinessGates`) whose condition is not `True`, as the
/// kubelet's message for it (`pkg/kubelet/status/generate.go`).
pub fn unmet_readiness_gate(pod: &Pod) -> Option<String> {
    let gates = pod.spec.as_ref()?.readiness_gates.as_ref()?;
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    gates.iter().find_map(|g| {
        let t = &g.condition_type;
        match conditions.into_iter().flatten().find(|c| &c.type_ == t) {
            None => Some(format!(
                "corresponding condition of pod readiness gate {t:?} does not exist."
            )),
            Some(c) if c.status != "True" => Some(format!(
                "the status of pod readiness gate {t:?} is not \"True\", but {}",
                c.status
            )),
            Some(_) => None,
        }
    })
}

/// `Ready`: the containers are ready and every readiness gate's condition is `True`.
fn ready_condition(
    pod: &Pod,
    containers_ready: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: i64,
) -> PodCondition {
    match unmet_readiness_gate(pod).filter(|_| containers_ready) {
        Some(gate) => condition(
            pod,
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(gate),
            now,
        ),
        None => condition(pod, "Ready", containers_ready, reason, message, now),
    }
}

/// The full pod status the agent reports.
pub fn compute(pod: &Pod, obs: &Observed, ctx: &Context<'_>) -> PodStatus {
    let statuses: Vec<ContainerStatus> = lifecycle::spec_containers(pod)
        .into_iter()
        .map(|(name, image)| container_status(pod, name, image, false, obs, ctx))
        .collect();
    let init_statuses: Vec<ContainerStatus> = lifecycle::spec_init_containers(pod)
        .into_iter()
        .map(|(name, image)| container_status(pod, name, image, true, obs, ctx))
        .collect();
    let phase = match ctx.rejection {
        Some(_) => "Failed",
        None => phase(pod, &statuses, obs, ctx.now),
    };
    // The running sandbox's IP (rebuilt by `pod_ip::resolve` when the runtime leaves it out);
    // without a running sandbox the IP last reported stays.
    let pod_ip = match obs.ready_sandbox() {
        Some(s) => s.ip.clone(),
        None => pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
    };
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let not_ready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let (reason, message) = if all_ready {
        (None, None)
    } else if matches!(phase, "Succeeded" | "Failed") {
        (Some("PodCompleted"), None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                not_ready.join(" ")
            )),
        )
    };
    let mut conditions = vec![
        initialized(pod, &init_statuses, phase, ctx.now),
        condition(
            pod,
            "ContainersReady",
            all_ready,
            reason,
            message.clone(),
            ctx.now,
        ),
        ready_condition(pod, all_ready, reason, message, ctx.now),
    ];
    if !ctx.unsupported.is_empty() {
        conditions.push(condition(
            pod,
            UNSUPPORTED_CONDITION,
            true,
            Some("UnsupportedFields"),
            Some(format!("berth-agent ignores: {}", ctx.unsupported.join(", "))),
            ctx.now,
        ));
    }
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .or_else(|| Some(now_time(ctx.now)));
    let (pod_reason, pod_message) = reason_message(pod, ctx.now);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(ctx.host_ip.clone()),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time,
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        qos_class: pod
            .status
            .as_ref()
            .and_then(|s| s.qos_class.clone())
            .or_else(|| Some(crate::resources::qos(pod).name().to_string())),
        reason: ctx.rejection.map(|r| r.reason.to_string()).or(pod_reason),
        message: ctx.rejection.map(|r| r.message.clone()).or(pod_message),
        ..Default::default()
    }
}

/// True when `new` differs from what the pod already reports in anything the agent owns.
pub fn changed(pod: &Pod, new: &PodStatus) -> bool {
    let Some(old) = pod.status.as_ref() else {
        return true;
    };
    // PodScheduled is the scheduler's, readiness gates' conditions are their controllers'.
    let ours = |c: &&PodCondition| crate::status_patch::agent_condition(pod, &c.type_);
    let old_conditions: Vec<&PodCondition> = old.conditions.iter().flatten().filter(ours).collect();
    let new_conditions: Vec<&PodCondition> = new.conditions.iter().flatten().filter(ours).collect();
    old.phase != new.phase
        || old.reason != new.reason
        || old.message != new.message
        || old.host_ip != new.host_ip
        || old.pod_ip != new.pod_ip
        || old.start_time != new.start_time
        || old.container_statuses != new.container_statuses
        || old.init_container_statuses != new.init_container_statuses
        || old_conditions.len() != new_conditions.len()
        || old_conditions.iter().any(|o| !new_conditions.contains(o))
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
