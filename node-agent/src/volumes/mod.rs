//! The volume manager: sets up each pod's volumes before its sandbox and containers start,
//! keeps ConfigMap, Secret, downward API and token contents current in running pods, and
//! removes everything with the pod. As the kubelet 1.20's `volumemanager` and volume
//! plugins, on the same layout:
//!
//! ```text
//! <root-dir>/pods/<uid>/
//!   volumes/kubernetes.io~empty-dir/<name>/     emptyDir (medium Memory: a tmpfs, size = sizeLimit)
//!   volumes/kubernetes.io~configmap/<name>/     configMap keys (on disk)
//!   volumes/kubernetes.io~secret/<name>/        secret keys (a tmpfs)
//!   volumes/kubernetes.io~downward-api/<name>/  downwardAPI items (a tmpfs)
//!   volumes/kubernetes.io~projected/<name>/     projected sources, service-account tokens (a tmpfs)
//!   etc-hosts                                   the pod's /etc/hosts (with hostAliases)
//!   containers/<container>/<attempt>            termination-message files
//! ```
//!
//! API-data volumes are written by [`atomic::write`] (`..data` swapped to a new timestamped
//! directory) so updates appear whole in running containers; they are re-read every
//! [`REFRESH`] and mounted read-only. Tokens come from the TokenRequest API, bound to the
//! pod, and are renewed at 80% of their life ([`token`]). hostPath volumes are only used when
//! the node allows them (`--allow-host-path`); every other type is refused (by
//! [`crate::admission`] first, and here again). A missing ConfigMap or Secret (not optional)
//! holds the pod in `ContainerCreating` with a `FailedMount` Event, retried with back-off.
//!
//! When the pod's runtime objects are removed, [`teardown`] unmounts every tmpfs below the
//! pod's directory and removes it; after an agent restart [`sweep`] does the same for the
//! directories of pods the API server no longer has. The root directory must be a shared
//! mount seen by the runtime (`hack/lib/berth.sh` makes it one before containerd starts) or
//! tmpfs volumes would look empty in containers.

pub mod atomic;
pub mod container;
pub mod host;
pub mod layout;
pub mod payload;
pub mod token;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Client;
use kube::api::Api;
use tracing::{debug, info, warn};

use crate::cri::api::{KeyValue, Mount};
use crate::downward::Allocatable;
use layout::Kind;

/// How often the contents of API-data volumes are re-read for a running pod.
pub const REFRESH: Duration = Duration::from_secs(60);
/// The longest wait between two set-up attempts of a pod whose volumes failed.
const MAX_RETRY: Duration = Duration::from_secs(120);

/// The node's volume settings.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The agent's root directory (`--root-dir`).
    pub root: PathBuf,
    /// `hostPath` volumes are allowed (`--allow-host-path`).
    pub allow_host_path: bool,
    /// Defaults of unset limits (downward API).
    pub allocatable: Allocatable,
    /// How often API-data volumes are re-read ([`REFRESH`] when `None`).
    pub refresh: Option<Duration>,
}

/// What a pod worker remembers of its pod's volumes.
#[derive(Debug, Default)]
pub struct PodVolumes {
    /// Every volume was set up once: later refresh failures do not hold containers back.
    mounted: bool,
    /// When to look again.
    next: Option<Instant>,
    /// Consecutive failed attempts.
    failures: u32,
    /// Tokens by [`payload::token_key`].
    tokens: HashMap<String, token::Token>,
    /// When disk-backed emptyDir usage was last measured.
    measured: Option<Instant>,
}

/// How often the usage of disk-backed emptyDirs with a `sizeLimit` is measured (the
/// kubelet's eviction manager housekeeping interval).
pub const MEASURE_EVERY: Duration = Duration::from_secs(10);

/// The eviction message when a disk-backed emptyDir of the pod uses more than its
/// `sizeLimit` (the kubelet's `Usage of EmptyDir volume "x" exceeds the limit "1Gi". `),
/// measured at most every [`MEASURE_EVERY`].
pub fn over_limit(settings: &Settings, pod: &Pod, state: &mut PodVolumes) -> Option<String> {
    let now = Instant::now();
    if state
        .measured
        .is_some_and(|m| now.duration_since(m) < MEASURE_EVERY)
    {
        return None;
    }
    state.measured = Some(now);
    let uid = layout::uid(pod)?;
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let kind = layout::kind(v, settings.allow_host_path);
        let Kind::EmptyDisk(Some(limit)) = kind else {
            continue;
        };
        let Some(dir) = layout::volume_path(&settings.root, uid, v, &kind) else {
            continue;
        };
        let used = host::usage(&dir);
        if used > u64::try_from(limit).unwrap_or(u64::MAX) {
            let text = v
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.as_ref())
                .map_or_else(|| limit.to_string(), |q| q.0.clone());
            info!(volume = %v.name, used, limit, "emptyDir over its sizeLimit: evicting the pod");
            return Some(format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {text:?}. ",
                v.name
            ));
        }
    }
    None
}

/// What [`sync`] found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Containers may start.
    pub ready: bool,
    /// `FailedMount` messages, one per failed volume.
    pub failures: Vec<String>,
    /// When to come back at the latest.
    pub retry_in: Option<Duration>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok())
}

/// The delay after `failures` failed attempts: 500 ms doubling to 2 min (the kubelet's).
fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(MAX_RETRY)
}

/// Reads the ConfigMaps and Secrets the pod's volumes name (`None`: not found).
async fn read_objects(client: &Client, pod: &Pod, inputs: &mut payload::Inputs) -> Result<(), String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let (cms, secrets) = payload::references(v);
        for name in cms {
            if let std::collections::hash_map::Entry::Vacant(e) = inputs.config_maps.entry(name) {
                let o = crate::env::get_opt(&cm_api, "configmap", e.key())
                    .await
                    .map_err(|e| e.to_string())?;
                e.insert(o);
            }
        }
        for name in secrets {
            if let std::collections::hash_map::Entry::Vacant(e) = inputs.secrets.entry(name) {
                let o = crate::env::get_opt(&secret_api, "secret", e.key())
                    .await
                    .map_err(|e| e.to_string())?;
                e.insert(o);
            }
        }
    }
    Ok(())
}

/// Gets (or renews) the tokens of the pod's projected volumes; a renewal that fails keeps
/// the previous token while it is valid.
async fn ensure_tokens(client: &Client, pod: &Pod, state: &mut PodVolumes, now: i64) -> Vec<String> {
    let mut errors = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        for t in payload::tokens(v) {
            let key = payload::token_key(t);
            if state.tokens.get(&key).is_some_and(|tok| tok.refresh_at > now) {
                continue;
            }
            match token::request(client, pod, t).await {
                Ok(tok) => {
                    debug!(volume = %v.name, refresh_at = tok.refresh_at, "service account token issued");
                    state.tokens.insert(key, tok);
                }
                Err(e) => {
                    warn!(volume = %v.name, error = %e, "requesting a service account token");
                    if !state.tokens.contains_key(&key) {
                        errors.push(format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name));
                    }
                }
            }
        }
    }
    errors
}

/// Mounts a tmpfs at `dir`, unless the runtime could not see it (the root directory is not
/// on a shared mount): then the volume fails rather than look empty in the container.
fn tmpfs(dir: &Path, size: Option<i64>) -> Result<(), String> {
    if !host::root_propagates(dir) {
        return Err(format!(
            "{} is not on a shared mount: a tmpfs there would not reach the container runtime \
             (make the agent's --root-dir a shared bind mount before the runtime starts)",
            dir.display()
        ));
    }
    host::ensure_tmpfs(dir, size)
}

/// Sets up one volume; its files when it has any.
fn set_up(
    dir: &Path,
    v: &k8s_openapi::api::core::v1::Volume,
    kind: &Kind,
    pod: &Pod,
    inputs: &payload::Inputs,
) -> Result<(), String> {
    let group = fs_group(pod);
    match kind {
        Kind::Refused(r) => Err(r.clone()),
        Kind::HostPath(p) => {
            let ty = v
                .host_path
                .as_ref()
                .and_then(|h| h.type_.as_deref())
                .unwrap_or("");
            host::check_host_path(p, ty)
        }
        Kind::EmptyDisk(_) | Kind::EmptyMemory(_) => {
            match kind {
                Kind::EmptyMemory(size) => tmpfs(dir, *size)?,
                _ => std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?,
            }
            host::empty_dir_ownership(dir, group)
        }
        k => {
            let files = payload::payload(pod, v, inputs)?.unwrap_or_default();
            if k.tmpfs() {
                tmpfs(dir, None)?;
            }
            if atomic::write(dir, &files, group)? {
                debug!(volume = %v.name, files = files.len(), "volume contents written");
            }
            Ok(())
        }
    }
}

/// Sets up or refreshes the pod's volumes when due.
pub async fn sync(client: &Client, settings: &Settings, pod: &Pod, state: &mut PodVolumes) -> Outcome {
    let now = Instant::now();
    let secs = now_secs();
    let tokens_due = state.tokens.values().any(|t| t.refresh_at <= secs);
    if state.mounted && !tokens_due && state.next.is_some_and(|n| n > now) {
        return Outcome {
            ready: true,
            retry_in: state.next.map(|n| n - now),
            ..Default::default()
        };
    }
    if !state.mounted && state.next.is_some_and(|n| n > now) {
        return Outcome {
            ready: false,
            retry_in: state.next.map(|n| n - now),
            ..Default::default()
        };
    }
    let Some(uid) = layout::uid(pod) else {
        return Outcome {
            failures: vec!["the pod's uid cannot name a directory".into()],
            ..Default::default()
        };
    };
    let mut failures = ensure_tokens(client, pod, state, secs).await;
    let mut inputs = payload::Inputs {
        allocatable: settings.allocatable,
        tokens: state
            .tokens
            .iter()
            .map(|(k, t)| (k.clone(), t.token.clone()))
            .collect(),
        ..Default::default()
    };
    if let Err(e) = read_objects(client, pod, &mut inputs).await {
        failures.push(format!("MountVolume.SetUp failed: {e}"));
    } else {
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let kind = layout::kind(v, settings.allow_host_path);
            let dir = layout::volume_path(&settings.root, uid, v, &kind).unwrap_or_default();
            if let Err(e) = set_up(&dir, v, &kind, pod, &inputs) {
                failures.push(format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name));
            }
        }
    }
    if failures.is_empty() {
        if !state.mounted {
            info!("volumes set up");
        }
        state.mounted = true;
        state.failures = 0;
        state.next = Some(now + settings.refresh.unwrap_or(REFRESH));
    } else {
        state.failures += 1;
        let wait = if state.mounted {
            settings.refresh.unwrap_or(REFRESH)
        } else {
            retry_delay(state.failures)
        };
        state.next = Some(now + wait);
    }
    let next_token = state.tokens.values().map(|t| t.refresh_at).min();
    let mut retry_in = state.next.map(|n| n - now);
    if let Some(at) = next_token {
        let d = Duration::from_secs(u64::try_from(at - secs).unwrap_or(0));
        retry_in = Some(retry_in.map_or(d, |r| r.min(d)));
    }
    Outcome {
        ready: state.mounted,
        failures,
        retry_in,
    }
}

/// The CRI mounts of container `c` (attempt `attempt`), writing the pod's `/etc/hosts` and
/// a fresh termination-message file first. An error is the container's
/// `CreateContainerConfigError`.
pub fn prepare_container(
    settings: &Settings,
    pod: &Pod,
    c: &Container,
    attempt: u32,
    env: &[KeyValue],
    pod_ip: &str,
) -> Result<Vec<Mount>, String> {
    let uid = layout::uid(pod).ok_or("the pod's uid cannot name a directory")?;
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let hosts = if !host_network && !pod_ip.is_empty() {
        let path = layout::etc_hosts(&settings.root, uid);
        let text = container::hosts_file(pod, pod_ip);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
            }
            std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Some(path)
    } else {
        None
    };
    let termination = if c
        .termination_message_path
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        let path = layout::termination_file(&settings.root, uid, &c.name, attempt);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        }
        std::fs::File::create(&path).map_err(|e| format!("error on creating termination-log file: {e}"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Some(path)
    } else {
        None
    };
    let resolved = container::resolve(pod, &settings.root, settings.allow_host_path);
    container::mounts(c, &resolved, env, hosts.as_deref(), termination.as_deref())
}

/// Unmounts and removes everything of pod `uid`.
pub fn teardown(settings: &Settings, uid: &str) {
    if !layout::valid_uid(uid) {
        return;
    }
    let dir = layout::pod_dir(&settings.root, uid);
    if !dir.exists() {
        return;
    }
    match host::remove_dir(&dir) {
        Ok(()) => info!(%uid, "pod volumes removed"),
        Err(e) => warn!(%uid, error = %e, "removing the pod's volumes"),
    }
}

/// Removes the directories of pods not in `keep` (after an agent restart).
pub fn sweep(settings: &Settings, keep: &HashSet<String>) {
    let Ok(rd) = std::fs::read_dir(layout::pods_dir(&settings.root)) else {
        return;
    };
    for e in rd.flatten() {
        let uid = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&uid) {
            info!(%uid, "removing the volumes of a pod the API server no longer has");
            teardown(settings, &uid);
        }
    }
}
