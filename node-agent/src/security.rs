//! The pod's and containers' security contexts as the kubelet 1.20 gives them to the runtime
//! (`pkg/kubelet/kuberuntime/security_context.go`): users and groups, capabilities,
//! `no_new_privs`, a read-only root, seccomp, masked `/proc` paths, namespaces; and the
//! `runAsNonRoot` check against the image's user. What cannot be honoured is refused earlier,
//! by [`crate::admission`]. Pure.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext};

use crate::cri::api::{
    Capability, Int64Value, LinuxContainerSecurityContext, LinuxSandboxSecurityContext, NamespaceMode,
    NamespaceOption, SecurityProfile, security_profile::ProfileType,
};

/// The paths the kubelet masks in every unprivileged container (`DefaultProcMount`).
pub const MASKED_PATHS: [&str; 9] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// The paths the kubelet makes read-only in every unprivileged container.
pub const READONLY_PATHS: [&str; 6] = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn pod_sc(pod: &Pod) -> Option<&PodSecurityContext> {
    pod.spec.as_ref()?.security_context.as_ref()
}

/// The effective user of `c`: its own `runAsUser`, else the pod's.
pub fn run_as_user(pod: &Pod, c: &Container) -> Option<i64> {
    c.security_context
        .as_ref()
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc(pod).and_then(|s| s.run_as_user))
}

fn run_as_group(pod: &Pod, c: &Container) -> Option<i64> {
    c.security_context
        .as_ref()
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc(pod).and_then(|s| s.run_as_group))
}

/// True when `c` (or the pod) asks for `runAsNonRoot`.
pub fn run_as_non_root(pod: &Pod, c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc(pod).and_then(|s| s.run_as_non_root))
        .unwrap_or(false)
}

fn privileged(c: &Container) -> bool {
    c.security_context.as_ref().and_then(|s| s.privileged) == Some(true)
}

/// The runtime's seccomp profile for a pod or container profile; unset is `Unconfined`, the
/// kubelet 1.20 default. `root` is the node's directory of `Localhost` profiles.
pub fn seccomp(profile: Option<&SeccompProfile>, root: &Path) -> SecurityProfile {
    let (profile_type, localhost_ref) = match profile
        .map(|p| (p.type_.as_str(), p.localhost_profile.as_deref()))
    {
        Some(("RuntimeDefault", _)) => (ProfileType::RuntimeDefault, String::new()),
        Some(("Localhost", Some(file))) => (ProfileType::Localhost, root.join(file).display().to_string()),
        _ => (ProfileType::Unconfined, String::new()),
    };
    SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    }
}

/// The pod's namespaces: its own network and IPC unless `hostNetwork`/`hostIPC`; PIDs per
/// container unless `shareProcessNamespace` (pod) or `hostPID` (node).
pub fn namespaces(pod: &Pod) -> NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| spec.and_then(f) == Some(true);
    let node_or = |host: bool, otherwise: NamespaceMode| if host { NamespaceMode::Node } else { otherwise };
    let pid = if flag(|s| s.host_pid) {
        NamespaceMode::Node
    } else if flag(|s| s.share_process_namespace) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    NamespaceOption {
        network: node_or(flag(|s| s.host_network), NamespaceMode::Pod) as i32,
        pid: pid as i32,
        ipc: node_or(flag(|s| s.host_ipc), NamespaceMode::Pod) as i32,
        ..Default::default()
    }
}

/// The pod's supplemental groups, with `fsGroup` added as the kubelet adds it.
fn supplemental_groups(pod: &Pod) -> Vec<i64> {
    let Some(sc) = pod_sc(pod) else {
        return vec![];
    };
    let mut groups: Vec<i64> = sc.supplemental_groups.clone().unwrap_or_default();
    if let Some(fs) = sc.fs_group.filter(|g| !groups.contains(g)) {
        groups.push(fs);
    }
    groups
}

/// The sandbox's security context.
pub fn sandbox(pod: &Pod, seccomp_root: &Path) -> LinuxSandboxSecurityContext {
    let sc = pod_sc(pod);
    let any_privileged = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .any(privileged);
    LinuxSandboxSecurityContext {
        namespace_options: Some(namespaces(pod)),
        run_as_user: sc.and_then(|s| s.run_as_user).map(|value| Int64Value { value }),
        run_as_group: sc.and_then(|s| s.run_as_group).map(|value| Int64Value { value }),
        supplemental_groups: supplemental_groups(pod),
        privileged: any_privileged,
        seccomp: Some(seccomp(sc.and_then(|s| s.seccomp_profile.as_ref()), seccomp_root)),
        ..Default::default()
    }
}

/// The security context of container `c`.
pub fn container(pod: &Pod, c: &Container, seccomp_root: &Path) -> LinuxContainerSecurityContext {
    let sc: Option<&SecurityContext> = c.security_context.as_ref();
    let privileged = privileged(c);
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let names = |v: Option<&Vec<String>>| v.cloned().unwrap_or_default();
    let profile = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod_sc(pod).and_then(|s| s.seccomp_profile.as_ref()));
    let (masked, readonly) = if privileged {
        (vec![], vec![])
    } else {
        (
            MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
        )
    };
    LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: names(caps.and_then(|c| c.add.as_ref())),
            drop_capabilities: names(caps.and_then(|c| c.drop.as_ref())),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespaces(pod)),
        run_as_user: run_as_user(pod, c).map(|value| Int64Value { value }),
        run_as_group: run_as_group(pod, c).map(|value| Int64Value { value }),
        readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
        supplemental_groups: supplemental_groups(pod),
        // The kubelet sets no_new_privs only when privilege escalation is explicitly off.
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        masked_paths: masked,
        readonly_paths: readonly,
        seccomp: Some(seccomp(profile, seccomp_root)),
        ..Default::default()
    }
}

/// `"name_namespace(uid)"`, as the kubelet's `format.Pod` names a pod in messages.
fn pod_label(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// The kubelet's `verifyRunAsNonRoot`: with `runAsNonRoot`, refuses a container that would run
/// as uid 0 (its own `runAsUser`, else the image's user), or whose image user is a name that
/// cannot be checked. `image_uid`/`image_user` are what the runtime's ImageStatus reports
/// (neither: the image runs as root).
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), String> {
    if !run_as_non_root(pod, c) {
        return Ok(());
    }
    let who = format!("(pod: {:?}, container: {})", pod_label(pod), c.name);
    match run_as_user(pod, c) {
        Some(0) => return Err(format!("container's runAsUser breaks non-root policy {who}")),
        Some(_) => return Ok(()),
        None => {}
    }
    // An image that names no user runs as root (the kubelet's `getImageUser`).
    let image_uid = image_uid.or(image_user.is_empty().then_some(0));
    match image_uid {
        Some(0) => Err(format!(
            "container has runAsNonRoot and image will run as root {who}"
        )),
        None if !image_user.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user}), cannot verify user is non-root {who}"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
