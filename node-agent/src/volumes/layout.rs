//! Where a pod's volumes and files live under the agent's root directory, and what kind of
//! volume each of the pod's volumes is. Pure.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Volume};

/// The directory of every pod: `<root>/pods`.
pub fn pods_dir(root: &Path) -> PathBuf {
    root.join("pods")
}

/// The directory of one pod: `<root>/pods/<uid>`.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    pods_dir(root).join(uid)
}

/// A pod uid usable as a directory name (no separators, not `.`/`..`).
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid != "."
        && uid != ".."
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// What the agent does for one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory on disk; the pod is evicted when its usage exceeds this many bytes.
    EmptyDisk(Option<i64>),
    /// A tmpfs, of this size in bytes when the volume has a `sizeLimit`.
    EmptyMemory(Option<i64>),
    /// ConfigMap keys as files (on disk, as the kubelet's).
    ConfigMap,
    /// Secret keys as files (tmpfs).
    Secret,
    /// Downward API files (tmpfs).
    DownwardApi,
    /// Projected sources (tmpfs).
    Projected,
    /// A directory of the host, mounted as it is.
    HostPath(PathBuf),
    /// Not something the agent provides: the reason (admission refuses these first).
    Refused(String),
}

impl Kind {
    /// The plugin directory name, as the kubelet's (`kubernetes.io~secret`).
    pub fn plugin(&self) -> Option<&'static str> {
        Some(match self {
            Kind::EmptyDisk(_) | Kind::EmptyMemory(_) => "kubernetes.io~empty-dir",
            Kind::ConfigMap => "kubernetes.io~configmap",
            Kind::Secret => "kubernetes.io~secret",
            Kind::DownwardApi => "kubernetes.io~downward-api",
            Kind::Projected => "kubernetes.io~projected",
            Kind::HostPath(_) | Kind::Refused(_) => return None,
        })
    }

    /// True when the volume is a tmpfs of its own.
    pub fn tmpfs(&self) -> bool {
        matches!(
            self,
            Kind::EmptyMemory(_) | Kind::Secret | Kind::DownwardApi | Kind::Projected
        )
    }

    /// True for the API-data volumes the kubelet always mounts read-only.
    pub fn read_only(&self) -> bool {
        matches!(
            self,
            Kind::ConfigMap | Kind::Secret | Kind::DownwardApi | Kind::Projected
        )
    }
}

/// The kind of volume `v`; `allow_host_path` is the node's policy.
pub fn kind(v: &Volume, allow_host_path: bool) -> Kind {
    if let Some(e) = &v.empty_dir {
        let size = e.size_limit.as_ref().map(|q| crate::quantity::value(&q.0));
        return match (e.medium.as_deref().unwrap_or(""), size) {
            ("", None) => Kind::EmptyDisk(None),
            ("", Some(Some(n))) if n > 0 => Kind::EmptyDisk(Some(n)),
            ("Memory", None) => Kind::EmptyMemory(None),
            ("Memory", Some(Some(n))) if n > 0 => Kind::EmptyMemory(Some(n)),
            ("" | "Memory", Some(_)) => Kind::Refused("sizeLimit is not a positive quantity".into()),
            (m, _) => Kind::Refused(format!("emptyDir medium {m:?} is not supported")),
        };
    }
    if v.config_map.is_some() {
        return Kind::ConfigMap;
    }
    if v.secret.is_some() {
        return Kind::Secret;
    }
    if v.downward_api.is_some() {
        return Kind::DownwardApi;
    }
    if v.projected.is_some() {
        return Kind::Projected;
    }
    if let Some(h) = &v.host_path {
        if !allow_host_path {
            return Kind::Refused(
                "this node does not allow hostPath volumes (berth-agent --allow-host-path)".into(),
            );
        }
        let ty = h.type_.as_deref().unwrap_or("");
        if !matches!(
            ty,
            "" | "DirectoryOrCreate"
                | "Directory"
                | "FileOrCreate"
                | "File"
                | "Socket"
                | "CharDevice"
                | "BlockDevice"
        ) {
            return Kind::Refused(format!("unknown hostPath type {ty:?}"));
        }
        if !h.path.starts_with('/') {
            return Kind::Refused("the hostPath path must be absolute".into());
        }
        return Kind::HostPath(PathBuf::from(&h.path));
    }
    Kind::Refused(
        "this node attaches no storage (persistent volumes, CSI and network filesystems are not implemented)"
            .into(),
    )
}

/// The host directory of volume `v` of pod `uid` (hostPath: the host's path itself).
pub fn volume_path(root: &Path, uid: &str, v: &Volume, kind: &Kind) -> Option<PathBuf> {
    match kind {
        Kind::HostPath(p) => Some(p.clone()),
        k => Some(pod_dir(root, uid).join("volumes").join(k.plugin()?).join(&v.name)),
    }
}

/// The pod's managed `/etc/hosts`.
pub fn etc_hosts(root: &Path, uid: &str) -> PathBuf {
    pod_dir(root, uid).join("etc-hosts")
}

/// The termination-message file of attempt `attempt` of container `name`.
pub fn termination_file(root: &Path, uid: &str, name: &str, attempt: u32) -> PathBuf {
    pod_dir(root, uid)
        .join("containers")
        .join(name)
        .join(attempt.to_string())
}

/// The pod's uid when it can name a directory.
pub fn uid(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref().filter(|u| valid_uid(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(j: serde_json::Value) -> Volume {
        serde_json::from_value(j).expect("volume")
    }

    #[test]
    fn kinds_and_paths() {
        let root = Path::new("/r");
        let cases = [
            (
                serde_json::json!({"name": "a", "emptyDir": {}}),
                Kind::EmptyDisk(None),
            ),
            (
                serde_json::json!({"name": "a", "emptyDir": {"sizeLimit": "1Gi"}}),
                Kind::EmptyDisk(Some(1 << 30)),
            ),
            (
                serde_json::json!({"name": "a", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}),
                Kind::EmptyMemory(Some(1 << 20)),
            ),
            (
                serde_json::json!({"name": "a", "configMap": {"name": "c"}}),
                Kind::ConfigMap,
            ),
            (
                serde_json::json!({"name": "a", "secret": {"secretName": "s"}}),
                Kind::Secret,
            ),
            (
                serde_json::json!({"name": "a", "projected": {"sources": []}}),
                Kind::Projected,
            ),
            (
                serde_json::json!({"name": "a", "downwardAPI": {}}),
                Kind::DownwardApi,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(kind(&vol(v), false), want);
        }
        let zero = vol(serde_json::json!({"name": "a", "emptyDir": {"sizeLimit": "0"}}));
        assert!(matches!(kind(&zero, false), Kind::Refused(_)));
        let huge = vol(serde_json::json!({"name": "a", "emptyDir": {"medium": "HugePages"}}));
        assert!(matches!(kind(&huge, false), Kind::Refused(_)));
        let pvc = vol(serde_json::json!({"name": "a", "persistentVolumeClaim": {"claimName": "x"}}));
        assert!(matches!(kind(&pvc, true), Kind::Refused(_)));
        let host = vol(serde_json::json!({"name": "h", "hostPath": {"path": "/data", "type": "Directory"}}));
        assert!(matches!(kind(&host, false), Kind::Refused(_)));
        assert_eq!(kind(&host, true), Kind::HostPath("/data".into()));
        let s = vol(serde_json::json!({"name": "tok", "secret": {"secretName": "s"}}));
        assert_eq!(
            volume_path(root, "u1", &s, &Kind::Secret).unwrap(),
            Path::new("/r/pods/u1/volumes/kubernetes.io~secret/tok")
        );
        assert_eq!(
            volume_path(root, "u1", &host, &Kind::HostPath("/data".into())).unwrap(),
            Path::new("/data")
        );
        assert!(valid_uid("0b6c-11"));
        assert!(!valid_uid("../etc") && !valid_uid("") && !valid_uid(".."));
    }
}
