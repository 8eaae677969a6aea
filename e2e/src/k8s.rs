//! Pod helpers for the agent's end-to-end tests: throw-away namespaces with their pods API
//! (removed on drop through the API, kept with `BERTH_E2E_KEEP=1` as [`crate::api`]'s),
//! creating pods while a new namespace's service account is not ready, and waiting for pod
//! conditions. The client is [`crate::api::admin_client`], re-exported here.

use std::time::{Duration, Instant};

use anyhow::bail;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ContainerState, Pod};

use crate::cluster::LocalCluster;
use kube::api::{Api, LogParams, PostParams};

pub use crate::api::{TestNamespace, admin_client};

/// Polls pod `name` until `check` returns `Some`, or fails after `timeout` with the last
/// status seen.
pub async fn wait_pod<T>(
    api: &Api<Pod>,
    name: &str,
    timeout: Duration,
    mut check: impl FnMut(&Pod) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(pod) = api.get_opt(name).await? {
            if let Some(v) = check(&pod) {
                return Ok(v);
            }
            last = Some(pod.status);
        }
        if Instant::now() > deadline {
            bail!("pod {name}: condition not met within {timeout:?}; last status: {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state of the pod's first container.
pub fn first_state(pod: &Pod) -> Option<&ContainerState> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()
}

/// The waiting reason of the pod's first container.
pub fn waiting_reason(pod: &Pod) -> Option<String> {
    first_state(pod)?.waiting.as_ref()?.reason.clone()
}

/// What `container` of pod `name` reports about itself in its log: one `key=value` per line,
/// then a line `done` (the last value of a key wins). Waits up to `timeout` for `done`.
pub async fn log_report(
    api: &Api<Pod>,
    name: &str,
    container: &str,
    timeout: Duration,
) -> anyhow::Result<HashMap<String, String>> {
    crate::api::wait_for(&format!("the report of {name}/{container}"), timeout, || async {
        let lp = LogParams {
            container: Some(container.to_string()),
            ..Default::default()
        };
        let text = api.logs(name, &lp).await.unwrap_or_default();
        Ok(if text.lines().any(|l| l == "done") {
            Ok(text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect())
        } else {
            Err(format!("log so far: {text:?}"))
        })
    })
    .await
}

/// The phase of the pod.
pub fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Creates `pod`, retrying while a new namespace's service account is not ready yet.
pub async fn create_pod(api: &Api<Pod>, pod: &Pod) -> anyhow::Result<Pod> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match api.create(&PostParams::default(), pod).await {
            Ok(p) => return Ok(p),
            Err(kube::Error::Api(e)) if e.code == 500 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The local cluster and a fresh namespace for one scenario; `None` only when `BERTH_E2E=skip`.
pub async fn setup(prefix: &str) -> anyhow::Result<Option<(LocalCluster, TestNamespace)>> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(None);
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    Ok(Some((cluster, ns)))
}
