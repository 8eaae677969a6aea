//! A container's configuration beyond the pod spec's literal fields: its environment
//! ([`env`]: ConfigMaps, Secrets and Services read from the API server) and its mounts
//! ([`volumes::prepare_container`]). A missing object or key, or a mount that cannot be
//! made, is the container's `CreateContainerConfigError` (retried with back-off), never an
//! error of the worker.

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::runtime::events::EventType;

use crate::cri::api::ContainerConfig;
use crate::error::Result;
use crate::start::config_failed;
use crate::sync::{Memory, Shared, publish};
use crate::{env, podspec, volumes};

/// The CRI configuration of container `spec` (attempt `attempt`), or `None` when it cannot
/// be configured yet (reported as `CreateContainerConfigError`).
pub(crate) async fn configure(
    shared: &Shared,
    pod: &Pod,
    spec: &Container,
    attempt: u32,
    pod_ip: &str,
    mem: &mut Memory,
) -> Result<Option<ContainerConfig>> {
    let image = spec.image.clone().unwrap_or_default();
    let mut src = env::Sources {
        node_name: shared.facts.node_name.clone(),
        host_ip: shared.facts.host_ip.clone(),
        pod_ip: pod_ip.to_string(),
        allocatable: shared.volumes.allocatable,
        ..Default::default()
    };
    if let Err(e) = env::fetch(&shared.client, pod, spec, &mut src).await {
        // As the kubelet: the environment cannot be made, the container waits and retries.
        config_failed(shared, pod, mem, &spec.name, &image, e.to_string()).await;
        return Ok(None);
    }
    let built = match env::build(pod, spec, &src) {
        Ok(b) => b,
        Err(e) => {
            config_failed(shared, pod, mem, &spec.name, &image, e.to_string()).await;
            return Ok(None);
        }
    };
    for note in built.invalid {
        publish(
            shared,
            pod,
            EventType::Warning,
            "InvalidEnvironmentVariableNames",
            note,
        )
        .await;
    }
    let mounts = match volumes::prepare_container(&shared.volumes, pod, spec, attempt, &built.vars, pod_ip) {
        Ok(m) => m,
        Err(message) => {
            config_failed(shared, pod, mem, &spec.name, &image, message).await;
            return Ok(None);
        }
    };
    let mut config = podspec::container_config(pod, spec, attempt, &shared.facts, built.vars);
    config.mounts = mounts;
    Ok(Some(config))
}
