//! Lifecycle hooks as the kubelet runs them: which hook a container has and what it does
//! (`exec` through CRI `ExecSync`, `httpGet` to the pod's IP, `sleep`), how much of the grace
//! period is left for `StopContainer` once a preStop hook ran, and the messages of failed
//! hooks. Pure; [`crate::hook_runner`] runs them.
//!
//! Semantics (the kubelet's `kuberuntime_container.go` and `lifecycle/handlers.go`):
//! - postStart runs right after the container started; the container is not reported running
//!   before it returns. A failure is a `FailedPostStartHook` Event and the container is killed
//!   (its preStop hook runs), then restarted per the restart policy with the usual back-off.
//! - preStop runs before every stop of a container (deletion, a probe's kill, an image change,
//!   the pod's end), for at most the grace period; a failure is a `FailedPreStopHook` Event and
//!   the stop goes on. `StopContainer` gets what is left of the grace period, never less than
//!   [`MIN_STOP_GRACE`]. Without any grace (0 s) the preStop hook is skipped.
//! - Init containers have no hooks (the API server refuses them there).
//! - `httpGet` succeeds when a response arrives, whatever its status code (the kubelet's
//!   handler only fails on a transport error); a blank host is the pod's IP, the scheme and
//!   headers are sent as given. `tcpSocket` is not a hook the kubelet runs: it fails with
//!   `invalid handler`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};

use crate::probe::{self, Check};

/// The least grace period a stopped container gets after its preStop hook (the kubelet's
/// `minimumGracePeriodInSeconds`), so that it is never killed without a chance to exit.
pub const MIN_STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a postStart hook may run before it counts as failed. The kubelet waits without
/// a bound (its pod worker hangs); berth-agent gives up after this long, and a deletion of
/// the pod abandons the hook at once.
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `lifecycle.postStart`.
    PostStart,
    /// `lifecycle.preStop`.
    PreStop,
}

impl Hook {
    /// The reason of the Warning Event of a failure.
    pub fn failure_reason(self) -> &'static str {
        match self {
            Hook::PostStart => "FailedPostStartHook",
            Hook::PreStop => "FailedPreStopHook",
        }
    }

    /// The lower-case name (log fields).
    pub fn name(self) -> &'static str {
        match self {
            Hook::PostStart => "postStart",
            Hook::PreStop => "preStop",
        }
    }
}

/// What a hook does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `exec` (a [`Check::Exec`]) or `httpGet` (a [`Check::Http`]).
    Check(Check),
    /// `sleep`: wait this long.
    Sleep(Duration),
}

/// One hook of one container, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookSpec {
    /// Which hook.
    pub hook: Hook,
    /// The container's name.
    pub container: String,
    /// What it does, or why it cannot run (a failure, as the kubelet's `invalid handler`).
    pub action: Result<Action, String>,
}

/// The app container `name` of the pod, if the spec has it.
fn app_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    pod.spec.as_ref()?.containers.iter().find(|c| c.name == name)
}

/// What `handler` of `container` does.
pub fn action(container: &Container, handler: &LifecycleHandler) -> Result<Action, String> {
    if let Some(e) = &handler.exec {
        return probe::exec_check(e).map(Action::Check);
    }
    if let Some(h) = &handler.http_get {
        return probe::http_get_check(container, h).map(Action::Check);
    }
    if let Some(s) = &handler.sleep {
        return u64::try_from(s.seconds)
            .map(|s| Action::Sleep(Duration::from_secs(s)))
            .map_err(|_| format!("invalid sleep of {} seconds", s.seconds));
    }
    Err("invalid handler: only exec, httpGet and sleep hooks run (not tcpSocket)".into())
}

/// The hook `hook` of app container `name`, if it has one.
pub fn hook_spec(pod: &Pod, name: &str, hook: Hook) -> Option<HookSpec> {
    let c = app_container(pod, name)?;
    let lifecycle = c.lifecycle.as_ref()?;
    let handler = match hook {
        Hook::PostStart => lifecycle.post_start.as_ref(),
        Hook::PreStop => lifecycle.pre_stop.as_ref(),
    }?;
    Some(HookSpec {
        hook,
        container: name.to_string(),
        action: action(c, handler),
    })
}

/// The preStop hook to run before stopping container `name` with `grace`, and how long it may
/// run: none when the container has no preStop hook or there is no grace to run it in.
pub fn pre_stop(pod: &Pod, name: &str, grace: Duration) -> Option<(HookSpec, Duration)> {
    if grace.is_zero() {
        return None;
    }
    hook_spec(pod, name, Hook::PreStop).map(|h| (h, grace))
}

/// The grace period `StopContainer` gets after a preStop hook that ran `hook_ran` of `grace`:
/// what is left, never less than [`MIN_STOP_GRACE`].
pub fn stop_grace(grace: Duration, hook_ran: Duration) -> Duration {
    grace.saturating_sub(hook_ran).max(MIN_STOP_GRACE)
}

/// The pod as the kubelet names it in messages: `name_namespace(uid)`.
pub fn pod_label(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Why a hook failed: the error, and the output of the command or response, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong (`command 'x' exited with 1: ...`, `Get "http://...": ...`).
    pub error: String,
    /// The command's output (exec hooks).
    pub output: String,
    /// True when the hook did not return in the time it had.
    pub timed_out: bool,
}

/// The message of a failed hook, in the kubelet's words (the Event's note).
pub fn failure_message(pod: &Pod, spec: &HookSpec, failure: &Failure) -> String {
    let pod = pod_label(pod);
    let name = &spec.container;
    let Failure { error, output, .. } = failure;
    match &spec.action {
        Ok(Action::Check(Check::Exec { command })) => format!(
            "Exec lifecycle hook ([{}]) for Container {name:?} in Pod {pod:?} failed - error: {error}, message: {output:?}",
            command.join(" ")
        ),
        Ok(Action::Check(Check::Http { path, .. })) => format!(
            "HTTP lifecycle hook ({path}) for Container {name:?} in Pod {pod:?} failed - error: {error}, message: {output:?}"
        ),
        Ok(Action::Check(Check::Tcp { .. })) | Err(_) => format!("Cannot run handler: {error}"),
        Ok(Action::Sleep(d)) => format!(
            "Sleep lifecycle hook ({}) for Container {name:?} in Pod {pod:?} failed - error: {error}",
            d.as_secs()
        ),
    }
}

/// The error of an exec hook whose command exited with `code` (the kubelet's wording).
pub fn exec_error(command: &[String], code: i32, output: &str) -> String {
    format!("command '{}' exited with {code}: {output}", command.join(" "))
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
