//! Running lifecycle hooks and stopping containers with them: the I/O around [`hooks`].
//! `exec` goes through CRI `ExecSync` and `httpGet` through the prober's HTTP client
//! ([`prober::http_get`]), so hooks and probes reach containers the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::EventType;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::cri::CriClient;
use crate::error::Result;
use crate::hooks::{self, Action, Failure, Hook, HookSpec};
use crate::lifecycle;
use crate::probe::Check;
use crate::prober;
use crate::sync::{Shared, publish};

fn failure(error: String, output: String) -> Failure {
    Failure {
        error,
        output,
        timed_out: false,
    }
}

/// Runs `action` against container `id` (the pod's IP is the default host of `httpGet`) for
/// at most `timeout`.
pub async fn run(
    cri: &CriClient,
    id: &str,
    action: &Action,
    pod_ip: Option<&str>,
    timeout: Duration,
) -> std::result::Result<(), Failure> {
    let work = async {
        match action {
            Action::Sleep(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            Action::Check(Check::Exec { command }) => match cri.exec_sync(id, command.clone(), timeout).await
            {
                Ok((0, _)) => Ok(()),
                Ok((code, out)) => Err(failure(hooks::exec_error(command, code, &out), out)),
                Err(e) => Err(failure(e.to_string(), String::new())),
            },
            Action::Check(Check::Http {
                scheme,
                host,
                port,
                path,
                headers,
            }) => {
                let Some(host) = prober::target(host.as_deref(), pod_ip) else {
                    return Err(failure(
                        format!("the pod's IP is unknown, so port {port} has no host"),
                        String::new(),
                    ));
                };
                // Any response is a success, as the kubelet's HTTP handler.
                prober::http_get(scheme, host, *port, path, headers, timeout)
                    .await
                    .map(|_| ())
                    .map_err(|e| failure(e, String::new()))
            }
            Action::Check(Check::Tcp { .. }) => {
                Err(failure("invalid handler: tcpSocket".into(), String::new()))
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure {
            error: format!("did not complete within {timeout:?}"),
            output: String::new(),
            timed_out: true,
        }),
    }
}

async fn run_spec(
    cri: &CriClient,
    id: &str,
    spec: &HookSpec,
    pod_ip: Option<&str>,
    timeout: Duration,
) -> std::result::Result<(), Failure> {
    match &spec.action {
        Ok(a) => run(cri, id, a, pod_ip, timeout).await,
        Err(why) => Err(failure(why.clone(), String::new())),
    }
}

/// Runs the postStart hook of app container `name` (runtime id `id`), if it has one. A
/// failure is a `FailedPostStartHook` Event and the container is killed (it restarts per the
/// restart policy). A deletion of the pod seen on `updates` abandons the hook.
pub(crate) async fn post_start(
    shared: &Shared,
    pod: &Pod,
    name: &str,
    id: &str,
    pod_ip: Option<&str>,
    mut updates: watch::Receiver<Option<Arc<Pod>>>,
) -> Result<()> {
    let Some(spec) = hooks::hook_spec(pod, name, Hook::PostStart) else {
        return Ok(());
    };
    let deleted = updates.wait_for(|p| p.as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
    let outcome = tokio::select! {
        o = run_spec(&shared.cri, id, &spec, pod_ip, hooks::POST_START_TIMEOUT) => o,
        _ = deleted => {
            info!(container = name, "postStart hook abandoned: the pod is being deleted");
            return Ok(());
        }
    };
    let Err(f) = outcome else {
        debug!(container = name, "postStart hook completed");
        return Ok(());
    };
    let message = hooks::failure_message(pod, &spec, &f);
    warn!(container = name, error = %f.error, "postStart hook failed; killing the container");
    publish(
        shared,
        pod,
        EventType::Warning,
        Hook::PostStart.failure_reason(),
        message,
    )
    .await;
    let note = Hook::PostStart.failure_reason().to_string();
    kill(
        shared,
        pod,
        id,
        name,
        lifecycle::grace_period(pod),
        pod_ip,
        Some(note),
    )
    .await
}

/// Stops container `name` (runtime id `id`) with `grace`: its preStop hook first, if it has
/// one, for at most `grace` (a failure is a `FailedPreStopHook` Event, the stop goes on),
/// then `StopContainer` with what is left ([`hooks::stop_grace`]). `note` is the `Killing`
/// Event's, if one is to be published.
pub(crate) async fn kill(
    shared: &Shared,
    pod: &Pod,
    id: &str,
    name: &str,
    grace: Duration,
    pod_ip: Option<&str>,
    note: Option<String>,
) -> Result<()> {
    if let Some(note) = note {
        publish(shared, pod, EventType::Normal, "Killing", note).await;
    }
    let mut ran = Duration::ZERO;
    if let Some((spec, budget)) = hooks::pre_stop(pod, name, grace) {
        let t = Instant::now();
        let outcome = run_spec(&shared.cri, id, &spec, pod_ip, budget).await;
        ran = t.elapsed();
        match outcome {
            Ok(()) => debug!(
                container = name,
                ran_ms = ran.as_millis(),
                "preStop hook completed"
            ),
            Err(f) if f.timed_out => {
                warn!(
                    container = name,
                    grace_s = grace.as_secs(),
                    "preStop hook did not complete in the grace period"
                )
            }
            Err(f) => {
                warn!(container = name, error = %f.error, "preStop hook failed");
                let message = hooks::failure_message(pod, &spec, &f);
                publish(
                    shared,
                    pod,
                    EventType::Warning,
                    Hook::PreStop.failure_reason(),
                    message,
                )
                .await;
            }
        }
    }
    let stop = hooks::stop_grace(grace, ran);
    info!(container = name, grace_s = stop.as_secs(), "stopping container");
    shared.cri.stop_container(id, stop).await
}
