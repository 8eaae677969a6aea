//! A container's CRI mounts, as the kubelet's `makeMounts`: each `volumeMount` (read-only when
//! asked, and always for API-data volumes; `subPath` and `subPathExpr` resolved inside the
//! volume; propagation None or HostToContainer, Bidirectional only for privileged
//! containers), the kubelet-managed `/etc/hosts` (with `hostAliases`), and the
//! termination-message file.

use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};

use super::layout::{self, Kind};
use crate::cri::api::{KeyValue, Mount, MountPropagation};

/// `/etc/hosts` as the kubelet writes it (`managedHostsFileContent`).
pub fn hosts_file(pod: &Pod, pod_ip: &str) -> String {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| name.chars().take(63).collect());
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    match spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|d| !d.is_empty())
    {
        Some(sub) => s.push_str(&format!(
            "{pod_ip}\t{hostname}.{sub}.{ns}.svc.cluster.local\t{hostname}\n"
        )),
        None => s.push_str(&format!("{pod_ip}\t{hostname}\n")),
    }
    let aliases = spec
        .and_then(|s| s.host_aliases.as_ref())
        .filter(|a| !a.is_empty());
    if let Some(aliases) = aliases {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.clone().unwrap_or_default().join("\t");
            s.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    s
}

/// Checks a subPath as the kubelet: relative, no `..` element.
pub fn validate_sub_path(sub: &str) -> Result<(), String> {
    if sub.starts_with('/') {
        return Err(format!("error SubPath `{sub}` must not be an absolute path"));
    }
    if Path::new(sub).components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// The subPath of mount `m`, with `subPathExpr` expanded against the container's env.
pub fn sub_path(m: &VolumeMount, env: &[KeyValue]) -> Result<Option<String>, String> {
    if let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
        let expanded = crate::env::expand_with(expr, env);
        if expanded.contains("$(") {
            return Err(format!(
                "subPathExpr {expr:?}: a variable it names is not defined"
            ));
        }
        validate_sub_path(&expanded)?;
        return Ok(Some(expanded));
    }
    match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            validate_sub_path(s)?;
            Ok(Some(s.to_string()))
        }
        None => Ok(None),
    }
}

/// Resolves `sub` inside `volume` (created as a directory when missing), refusing a path
/// whose symlinks lead out of the volume.
pub fn resolve_sub_path(volume: &Path, sub: &str) -> Result<PathBuf, String> {
    let path = volume.join(sub);
    if std::fs::symlink_metadata(&path).is_err() {
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("failed to create subPath directory {sub:?}: {e}"))?;
    }
    let real = path.canonicalize().map_err(|e| format!("subPath {sub:?}: {e}"))?;
    let base = volume
        .canonicalize()
        .map_err(|e| format!("{}: {e}", volume.display()))?;
    if !real.starts_with(&base) {
        return Err(format!("subPath {sub:?} resolves outside of its volume"));
    }
    Ok(real)
}

fn propagation(m: &VolumeMount, privileged: bool) -> Result<MountPropagation, String> {
    Ok(match m.mount_propagation.as_deref() {
        None | Some("None") => MountPropagation::PropagationPrivate,
        Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
        Some("Bidirectional") if privileged => MountPropagation::PropagationBidirectional,
        Some("Bidirectional") => {
            return Err("Bidirectional mount propagation is available only to privileged containers".into());
        }
        Some(o) => return Err(format!("invalid mount propagation {o:?}")),
    })
}

/// Where each of the pod's volumes is on the host, and whether it is read-only by nature.
pub struct Resolved {
    /// Volume name, host path, kind.
    pub volumes: Vec<(String, PathBuf, Kind)>,
}

/// The CRI mounts of container `c`: its volume mounts, then `/etc/hosts` (at `hosts`, unless
/// a volume mounts there) and the termination-message file (`termination`).
pub fn mounts(
    c: &Container,
    resolved: &Resolved,
    env: &[KeyValue],
    hosts: Option<&Path>,
    termination: Option<&Path>,
) -> Result<Vec<Mount>, String> {
    let privileged = c
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    let mut out = Vec::new();
    let mut etc_hosts_mounted = false;
    for m in c.volume_mounts.iter().flatten() {
        let Some((_, path, kind)) = resolved.volumes.iter().find(|(n, _, _)| *n == m.name) else {
            return Err(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, c.name
            ));
        };
        let host = match sub_path(m, env)? {
            Some(sub) => resolve_sub_path(path, &sub)?,
            None => path.clone(),
        };
        etc_hosts_mounted |= m.mount_path == "/etc/hosts";
        out.push(Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false) || kind.read_only(),
            selinux_relabel: false,
            propagation: propagation(m, privileged)? as i32,
        });
    }
    if let Some(h) = hosts.filter(|_| !etc_hosts_mounted) {
        out.push(Mount {
            container_path: "/etc/hosts".into(),
            host_path: h.display().to_string(),
            ..Default::default()
        });
    }
    if let (Some(t), Some(path)) = (
        termination,
        c.termination_message_path.as_deref().filter(|p| !p.is_empty()),
    ) {
        out.push(Mount {
            container_path: path.to_string(),
            host_path: t.display().to_string(),
            ..Default::default()
        });
    }
    Ok(out)
}

/// The resolved volumes of `pod` under `root`.
pub fn resolve(pod: &Pod, root: &Path, allow_host_path: bool) -> Resolved {
    let uid = layout::uid(pod).unwrap_or("");
    let volumes = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let k = layout::kind(v, allow_host_path);
            layout::volume_path(root, uid, v, &k).map(|p| (v.name.clone(), p, k))
        })
        .collect();
    Resolved { volumes }
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;
