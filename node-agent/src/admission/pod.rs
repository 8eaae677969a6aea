//! The decisions about the PodSpec's own fields and the pod's security context.

use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, Sysctl};

use super::{NodePolicy, Review, Why, container, volumes};

/// Sysctls the kubelet 1.20 allows every pod (`SafeSysctlWhitelist`).
pub const SAFE_SYSCTLS: [&str; 4] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
];

/// The DNS policies the agent honours (`ClusterFirst` without a cluster DNS falls back to the
/// node's resolver, as the kubelet does, and says so in an Event).
pub const DNS_POLICIES: [&str; 4] = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];

pub(super) fn review_spec(spec: &PodSpec, policy: &NodePolicy, r: &mut Review) {
    let PodSpec {
        // Honoured: the agent's own job.
        containers,
        init_containers,
        ephemeral_containers,
        volumes,
        security_context,
        restart_policy: _,
        termination_grace_period_seconds: _,
        image_pull_secrets: _,
        service_account_name: _,
        service_account: _,
        automount_service_account_token: _,
        node_name: _,
        hostname: _,
        share_process_namespace: _,
        readiness_gates: _, // Ready waits for their conditions (crate::status)
        active_deadline_seconds: _,
        dns_config: _,           // merged into the sandbox's resolver (crate::dns)
        enable_service_links: _, // crate::env::service_vars
        subdomain: _,            // the pod's FQDN in its managed /etc/hosts
        // The scheduler's decisions, already made when the pod reaches the node.
        affinity: _,
        node_selector: _,
        tolerations: _,
        topology_spread_constraints: _,
        scheduler_name: _,
        scheduling_gates: _,
        priority: _,
        priority_class_name: _,
        preemption_policy: _,
        overhead: _,
        // Decided below.
        dns_policy,
        host_aliases,
        host_ipc,
        host_network,
        host_pid,
        host_users,
        os,
        resource_claims,
        resources,
        runtime_class_name,
        set_hostname_as_fqdn,
    } = spec;
    if let Some(p) = dns_policy.as_deref().filter(|p| !DNS_POLICIES.contains(p)) {
        r.refuse(
            "spec.dnsPolicy",
            Why::Unsupported,
            format!("unknown DNS policy {p:?}"),
        );
    }
    // hostAliases: honoured in the pod's managed /etc/hosts (crate::volumes::container),
    // which host-network pods do not get from the agent.
    if host_aliases.as_ref().is_some_and(|a| !a.is_empty()) && *host_network == Some(true) {
        r.refuse(
            "spec.hostAliases",
            Why::Unsupported,
            "the agent does not write /etc/hosts of host-network pods",
        );
    }
    for (set, field) in [
        (host_network, "spec.hostNetwork"),
        (host_pid, "spec.hostPID"),
        (host_ipc, "spec.hostIPC"),
    ] {
        if *set == Some(true) && !policy.allow_host_namespaces {
            r.refuse(
                field,
                Why::Forbidden,
                "this node does not allow the host's namespaces (berth-agent --allow-host-namespaces)",
            );
        }
    }
    if *host_users == Some(false) {
        r.refuse(
            "spec.hostUsers",
            Why::Unsupported,
            "user namespaces are not implemented",
        );
    }
    if let Some(name) = os.as_ref().map(|o| o.name.as_str()).filter(|n| *n != "linux") {
        r.refuse(
            "spec.os.name",
            Why::Unsupported,
            format!("this node runs linux, not {name}"),
        );
    }
    if resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        r.refuse(
            "spec.resourceClaims",
            Why::Unsupported,
            "dynamic resource allocation is not implemented",
        );
    }
    if resources.is_some() {
        r.refuse(
            "spec.resources",
            Why::Unsupported,
            "pod-level resources are not implemented",
        );
    }
    if runtime_class_name.as_ref().is_some_and(|n| !n.is_empty()) {
        r.refuse(
            "spec.runtimeClassName",
            Why::Unsupported,
            "this node has only the runtime's default handler",
        );
    }
    if *set_hostname_as_fqdn == Some(true) {
        r.refuse("spec.setHostnameAsFQDN", Why::Unsupported, "not implemented");
    }
    if let Some(sc) = security_context {
        review_pod_security(sc, *host_network == Some(true), policy, r);
    }
    for c in containers {
        container::review(c, &format!("spec.containers[{}]", c.name), policy, r);
    }
    for c in init_containers.iter().flatten() {
        // Honoured (crate::lifecycle::init_progress); their fields are decided as an app
        // container's.
        container::review(c, &format!("spec.initContainers[{}]", c.name), policy, r);
    }
    for c in ephemeral_containers.iter().flatten() {
        r.ignore(
            format!("spec.ephemeralContainers[{}]", c.name),
            "ephemeral containers are not run",
        );
    }
    volumes::review(volumes.as_deref().unwrap_or_default(), policy, r);
}

fn review_pod_security(sc: &PodSecurityContext, host_network: bool, policy: &NodePolicy, r: &mut Review) {
    let PodSecurityContext {
        // Honoured (crate::security).
        fs_group: _,
        fs_group_change_policy: _,
        run_as_group: _,
        run_as_non_root: _,
        run_as_user: _,
        supplemental_groups: _,
        // Decided below.
        app_armor_profile,
        se_linux_change_policy: _, // moot: seLinuxOptions are refused
        se_linux_options,
        seccomp_profile,
        supplemental_groups_policy,
        sysctls,
        windows_options,
    } = sc;
    let base = "spec.securityContext";
    container::review_app_armor(app_armor_profile.as_ref(), &format!("{base}.appArmorProfile"), r);
    if se_linux_options.is_some() {
        r.refuse(
            format!("{base}.seLinuxOptions"),
            Why::Unsupported,
            "SELinux is not enabled on this node",
        );
    }
    container::review_seccomp(seccomp_profile.as_ref(), &format!("{base}.seccompProfile"), r);
    if supplemental_groups_policy
        .as_deref()
        .is_some_and(|p| p != "Merge")
    {
        r.refuse(
            format!("{base}.supplementalGroupsPolicy"),
            Why::Unsupported,
            "only Merge is implemented",
        );
    }
    for Sysctl { name, .. } in sysctls.iter().flatten() {
        let field = format!("{base}.sysctls[{name}]");
        if let Err(detail) = sysctl_allowed(name, host_network, policy) {
            r.refuse(field, Why::Sysctl, detail);
        }
    }
    if windows_options.is_some() {
        r.ignore(format!("{base}.windowsOptions"), "Windows only");
    }
}

/// The kubelet's sysctl admission: the safe set or the node's allowed unsafe ones, and no
/// `net.*` with the host's network.
pub fn sysctl_allowed(name: &str, host_network: bool, policy: &NodePolicy) -> Result<(), String> {
    let allowed = SAFE_SYSCTLS.contains(&name)
        || policy
            .allowed_unsafe_sysctls
            .iter()
            .any(|a| match a.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => a == name,
            });
    if !allowed {
        return Err(format!("forbidden sysctl: {name:?} not allowlisted"));
    }
    if host_network && name.starts_with("net.") {
        return Err(format!(
            "forbidden sysctl: {name:?} not allowed with host net enabled"
        ));
    }
    Ok(())
}
