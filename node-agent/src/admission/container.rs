//! The decisions about a container's fields (app and init containers alike).

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, EnvVarSource, Lifecycle, Pod, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, VolumeMount,
};

use super::{NodePolicy, Review, Why};

/// True for a downward-API `fieldRef` path the agent fills in ([`crate::downward::env_field`]).
pub fn field_ref_supported(path: &str) -> bool {
    crate::downward::env_field(&Pod::default(), "", "", "", path).is_some()
}

/// The `resourceFieldRef` resources the agent fills in ([`crate::downward::resource_field`]).
pub const RESOURCE_FIELDS: [&str; 6] = [
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

pub(super) fn review(c: &Container, base: &str, policy: &NodePolicy, r: &mut Review) {
    let Container {
        // Honoured.
        name: _,
        image: _,
        image_pull_policy: _,
        command: _,
        args: _,
        working_dir: _,
        ports: _,
        stdin: _,
        stdin_once: _,
        tty: _,
        // envFrom: crate::env (configMapRef, secretRef, prefix, optional; invalid keys are
        // skipped with an InvalidEnvironmentVariableNames Event, as the kubelet's).
        env_from: _,
        // terminationMessagePath: a file per container start mounted there, read into
        // state.terminated.message (crate::termination).
        termination_message_path: _,
        // Decided below.
        env,
        lifecycle,
        liveness_probe,
        readiness_probe,
        startup_probe,
        resize_policy: _, // moot: no in-place resize is offered (the 1.20 API server has none)
        resources,
        restart_policy,
        security_context,
        termination_message_policy,
        volume_devices,
        volume_mounts,
    } = c;
    for e in env.iter().flatten() {
        if let Some(from) = &e.value_from {
            review_env_source(from, &format!("{base}.env[{}].valueFrom", e.name), r);
        }
    }
    if let Some(Lifecycle {
        post_start,
        pre_stop,
        stop_signal,
    }) = lifecycle
    {
        // Honoured (crate::hooks): exec, httpGet and sleep handlers. A tcpSocket handler is
        // not one the kubelet runs (it fails as `invalid handler`): refused here instead.
        for (handler, name) in [(post_start, "postStart"), (pre_stop, "preStop")] {
            if handler.as_ref().is_some_and(|h| h.tcp_socket.is_some()) {
                r.refuse(
                    format!("{base}.lifecycle.{name}.tcpSocket"),
                    Why::Unsupported,
                    "a tcpSocket lifecycle hook is not run (only exec, httpGet and sleep)",
                );
            }
        }
        if stop_signal.is_some() {
            r.refuse(
                format!("{base}.lifecycle.stopSignal"),
                Why::Unsupported,
                "not implemented",
            );
        }
    }
    for (probe, name) in [
        (liveness_probe, "livenessProbe"),
        (readiness_probe, "readinessProbe"),
        (startup_probe, "startupProbe"),
    ] {
        if let Some(p) = probe {
            review_probe(p, &format!("{base}.{name}"), r);
        }
    }
    if let Some(res) = resources {
        review_resources(res, &format!("{base}.resources"), r);
    }
    if restart_policy.is_some() {
        r.refuse(
            format!("{base}.restartPolicy"),
            Why::Unsupported,
            "sidecar containers are not implemented",
        );
    }
    if let Some(sc) = security_context {
        review_security(sc, &format!("{base}.securityContext"), policy, r);
    }
    if let Some(p) = termination_message_policy
        .as_deref()
        .filter(|p| !matches!(*p, "File" | "FallbackToLogsOnError"))
    {
        r.refuse(
            format!("{base}.terminationMessagePolicy"),
            Why::Unsupported,
            format!("unknown policy {p:?}"),
        );
    }
    if volume_devices.as_ref().is_some_and(|v| !v.is_empty()) {
        r.refuse(
            format!("{base}.volumeDevices"),
            Why::Unsupported,
            "block devices are not implemented",
        );
    }
    let privileged = security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    for m in volume_mounts.iter().flatten() {
        review_mount(m, &format!("{base}.volumeMounts[{}]", m.name), privileged, r);
    }
}

fn review_env_source(from: &EnvVarSource, field: &str, r: &mut Review) {
    let EnvVarSource {
        // crate::env; a missing object or key is the container's CreateContainerConfigError
        // unless optional.
        config_map_key_ref: _,
        secret_key_ref: _,
        // Decided below.
        field_ref,
        resource_field_ref,
    } = from;
    if let Some(f) = field_ref.as_ref().filter(|f| !field_ref_supported(&f.field_path)) {
        r.refuse(
            format!("{field}.fieldRef"),
            Why::Unsupported,
            format!("the field {:?} is not filled in", f.field_path),
        );
    }
    if let Some(rf) = resource_field_ref
        .as_ref()
        .filter(|rf| !RESOURCE_FIELDS.contains(&rf.resource.as_str()))
    {
        r.refuse(
            format!("{field}.resourceFieldRef"),
            Why::Unsupported,
            format!("the resource {:?} is not filled in", rf.resource),
        );
    }
}

fn review_probe(p: &Probe, field: &str, r: &mut Review) {
    if p.grpc.is_some() {
        r.refuse(
            format!("{field}.grpc"),
            Why::Unsupported,
            "gRPC probes are not implemented",
        );
    }
    if let Some(scheme) = p
        .http_get
        .as_ref()
        .and_then(|h| h.scheme.as_deref())
        .filter(|s| !matches!(*s, "HTTP" | "HTTPS"))
    {
        r.refuse(
            format!("{field}.httpGet.scheme"),
            Why::Unsupported,
            format!("{scheme} probes are not implemented"),
        );
    }
    if p.termination_grace_period_seconds.is_some() {
        r.ignore(
            format!("{field}.terminationGracePeriodSeconds"),
            "the pod's grace period applies (never shorter than asked)",
        );
    }
}

/// Resources the agent enforces: CPU and memory limits, any request (the scheduler's).
fn review_resources(res: &ResourceRequirements, field: &str, r: &mut Review) {
    let ResourceRequirements {
        claims,
        limits,
        requests,
    } = res;
    if claims.as_ref().is_some_and(|c| !c.is_empty()) {
        r.refuse(
            format!("{field}.claims"),
            Why::Unsupported,
            "resource claims are not implemented",
        );
    }
    for name in limits.iter().flatten().map(|(k, _)| k) {
        if name != "cpu" && name != "memory" {
            r.refuse(
                format!("{field}.limits[{name}]"),
                Why::Unsupported,
                "only cpu and memory limits are enforced",
            );
        }
    }
    for name in requests.iter().flatten().map(|(k, _)| k) {
        if name.starts_with("hugepages-") || name.contains('/') {
            r.refuse(
                format!("{field}.requests[{name}]"),
                Why::Unsupported,
                "this node has no such resource",
            );
        }
    }
}

pub(super) fn review_app_armor(p: Option<&AppArmorProfile>, field: &str, r: &mut Review) {
    if let Some(p) = p.filter(|p| p.type_ != "Unconfined") {
        r.refuse(
            field,
            Why::Unsupported,
            format!("AppArmor is not enabled on this node ({} asked)", p.type_),
        );
    }
}

pub(super) fn review_seccomp(p: Option<&SeccompProfile>, field: &str, r: &mut Review) {
    let Some(p) = p else { return };
    match (p.type_.as_str(), p.localhost_profile.as_deref()) {
        ("RuntimeDefault" | "Unconfined", _) => {}
        ("Localhost", Some(file))
            if !file.is_empty() && !file.starts_with('/') && !file.split('/').any(|s| s == "..") => {}
        ("Localhost", _) => r.refuse(
            format!("{field}.localhostProfile"),
            Why::Unsupported,
            "a Localhost profile needs a relative path inside the node's seccomp directory",
        ),
        (other, _) => r.refuse(
            field,
            Why::Unsupported,
            format!("unknown seccomp profile type {other:?}"),
        ),
    }
}

fn review_security(sc: &SecurityContext, base: &str, policy: &NodePolicy, r: &mut Review) {
    let SecurityContext {
        // Honoured (crate::security).
        allow_privilege_escalation: _,
        capabilities: _,
        read_only_root_filesystem: _,
        run_as_group: _,
        run_as_non_root: _,
        run_as_user: _,
        // Decided below.
        app_armor_profile,
        privileged,
        proc_mount,
        se_linux_options,
        seccomp_profile,
        windows_options,
    } = sc;
    review_app_armor(app_armor_profile.as_ref(), &format!("{base}.appArmorProfile"), r);
    if *privileged == Some(true) && !policy.allow_privileged {
        r.refuse(
            format!("{base}.privileged"),
            Why::Forbidden,
            "this node does not allow privileged containers (berth-agent --allow-privileged)",
        );
    }
    if proc_mount.as_deref().is_some_and(|m| m != "Default") {
        r.refuse(
            format!("{base}.procMount"),
            Why::Unsupported,
            "only the Default /proc mount is implemented",
        );
    }
    if se_linux_options.is_some() {
        r.refuse(
            format!("{base}.seLinuxOptions"),
            Why::Unsupported,
            "SELinux is not enabled on this node",
        );
    }
    review_seccomp(seccomp_profile.as_ref(), &format!("{base}.seccompProfile"), r);
    if windows_options.is_some() {
        r.ignore(format!("{base}.windowsOptions"), "Windows only");
    }
}

fn review_mount(m: &VolumeMount, field: &str, privileged: bool, r: &mut Review) {
    let VolumeMount {
        // Honoured (crate::volumes::container): the path, read-only, subPath and subPathExpr
        // (resolved inside the volume).
        mount_path: _,
        name: _,
        read_only: _,
        sub_path: _,
        sub_path_expr: _,
        // Decided below.
        mount_propagation,
        recursive_read_only,
    } = m;
    match mount_propagation.as_deref() {
        None | Some("None" | "HostToContainer") => {}
        Some("Bidirectional") if privileged => {}
        Some("Bidirectional") => r.refuse(
            format!("{field}.mountPropagation"),
            Why::Forbidden,
            "Bidirectional mount propagation is available only to privileged containers",
        ),
        Some(o) => r.refuse(
            format!("{field}.mountPropagation"),
            Why::Unsupported,
            format!("unknown mount propagation {o:?}"),
        ),
    }
    if recursive_read_only.as_deref() == Some("Enabled") {
        r.refuse(
            format!("{field}.recursiveReadOnly"),
            Why::Unsupported,
            "recursive read-only mounts are not implemented",
        );
    }
}
