//! Starting a container: pull its image per policy (a failed pull is remembered for back-off
//! and reported), check what its configuration needs (`runAsNonRoot` against the image's user;
//! a failure is `CreateContainerConfigError`, retried with back-off), then create and start it
//! in the pod's ready sandbox.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::EventType;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::backoff;
use crate::error::{Error, Result};
use crate::hook_runner;
use crate::images::{self, PullPolicy};
use crate::lifecycle::{FailureKind, PullFailure};
use crate::observe::Observed;
use crate::sync::{Memory, Shared, now_nanos, publish};
use crate::{podspec, security};

/// Pulls (per policy) and creates and starts container `name` (an app or an init container);
/// a failed pull is remembered for back-off and reported, not returned as an error. An app
/// container's postStart hook runs right after it started ([`hook_runner::post_start`]; a
/// deletion seen on `updates` abandons it).
pub(crate) async fn start_container(
    shared: &Shared,
    pod: &Pod,
    obs: &Observed,
    mem: &mut Memory,
    name: &str,
    attempt: u32,
    updates: watch::Receiver<Option<Arc<Pod>>>,
) -> Result<()> {
    let Some(spec) = pod.spec.as_ref().and_then(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .find(|c| c.name == name)
    }) else {
        return Ok(());
    };
    let image = spec.image.clone().unwrap_or_default();
    let policy = images::pull_policy(&image, spec.image_pull_policy.as_deref());
    let present = shared.cri.image_status(&image).await?;
    if images::needs_pull(policy, present.is_some()) {
        let auth = crate::pull::pull_credentials(shared, pod, &image).await;
        let t = std::time::Instant::now();
        match shared.cri.pull_image(&image, auth, None).await {
            Ok(_) => {
                shared.metrics.observe_pull(t.elapsed(), true);
                mem.pulls.remove(name);
                publish(
                    shared,
                    pod,
                    EventType::Normal,
                    "Pulled",
                    format!("Successfully pulled image {image} in {:?}", t.elapsed()),
                )
                .await;
            }
            Err(e) => {
                shared.metrics.observe_pull(t.elapsed(), false);
                let failures = mem
                    .pulls
                    .get(name)
                    .filter(|p| p.image == image)
                    .map_or(0, |p| p.failures)
                    + 1;
                let delay = backoff::delay(failures);
                let message = match &e {
                    Error::Cri { message, .. } => message.clone(),
                    e => e.to_string(),
                };
                warn!(container = name, %image, failures, error = %e, "image pull failed");
                publish(
                    shared,
                    pod,
                    EventType::Warning,
                    "Failed",
                    format!("Failed to pull image {image}: {message}"),
                )
                .await;
                if failures > 1 {
                    publish(
                        shared,
                        pod,
                        EventType::Normal,
                        "BackOff",
                        format!("Back-off pulling image {image}"),
                    )
                    .await;
                }
                mem.pulls.insert(
                    name.to_string(),
                    PullFailure {
                        image,
                        failures,
                        retry_at: now_nanos() + i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX),
                        message,
                        ..Default::default()
                    },
                );
                return Ok(());
            }
        }
    } else if present.is_none() && policy == PullPolicy::Never {
        mem.pulls.insert(
            name.to_string(),
            PullFailure {
                image: image.clone(),
                failures: 2,
                retry_at: now_nanos() + i64::try_from(backoff::MAX.as_nanos()).unwrap_or(i64::MAX),
                message: format!("image {image} is not present and the pull policy is Never"),
                ..Default::default()
            },
        );
        return Ok(());
    }
    let Some(sandbox) = obs.ready_sandbox() else {
        return Ok(());
    };
    let info = match present {
        Some(info) => Some(info),
        None => shared.cri.image_status(&image).await?,
    };
    let (uid, user) = info.as_ref().map_or((None, ""), |i| {
        (i.uid.as_ref().map(|u| u.value), i.username.as_str())
    });
    // Unknown image (the runtime reports none): checked as an image without a user, i.e. root.
    if let Err(message) = security::verify_run_as_non_root(pod, spec, uid, user) {
        config_failed(shared, pod, mem, name, &image, message).await;
        return Ok(());
    }
    let pod_ip = sandbox.ip.clone().unwrap_or_default();
    let Some(config) = crate::configure::configure(shared, pod, spec, attempt, &pod_ip, mem).await? else {
        return Ok(());
    };
    let sandbox_config = podspec::sandbox_config(pod, sandbox.attempt, &shared.log_root, &shared.facts);
    let id = shared
        .cri
        .create_container(&sandbox.id, config, sandbox_config)
        .await?;
    shared.cri.start_container(&id).await?;
    if mem.pulls.get(name).is_some_and(|p| p.kind == FailureKind::Config) {
        mem.pulls.remove(name);
    }
    shared.metrics.container_started();
    info!(container = name, id = %id, attempt, "container started");
    let note = if attempt == 0 {
        format!("Started container {name}")
    } else {
        format!("Started container {name} (restart {attempt})")
    };
    publish(shared, pod, EventType::Normal, "Started", note).await;
    hook_runner::post_start(shared, pod, name, &id, sandbox.ip.as_deref(), updates).await
}

/// Remembers and reports that container `name` cannot be configured (`CreateContainerConfigError`
/// with `message`, as the kubelet): it is retried with back-off, and an Event `Failed` says why.
/// `message` must not hold secret contents.
pub(crate) async fn config_failed(
    shared: &Shared,
    pod: &Pod,
    mem: &mut Memory,
    name: &str,
    image: &str,
    message: String,
) {
    let failures = mem
        .pulls
        .get(name)
        .filter(|p| p.kind == FailureKind::Config)
        .map_or(0, |p| p.failures)
        + 1;
    let delay = backoff::delay(failures);
    warn!(container = name, failures, %message, "container configuration failed");
    publish(
        shared,
        pod,
        EventType::Warning,
        "Failed",
        format!("Error: {message}"),
    )
    .await;
    mem.pulls.insert(
        name.to_string(),
        PullFailure {
            kind: FailureKind::Config,
            image: image.to_string(),
            failures,
            retry_at: now_nanos() + i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX),
            message,
        },
    );
}
