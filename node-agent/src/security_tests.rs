use super::*;
use k8s_openapi::api::core::v1::{Capabilities, PodSpec};

fn pod(pod_sc: Option<PodSecurityContext>, sc: Option<SecurityContext>) -> Pod {
    Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            security_context: pod_sc,
            containers: vec![Container {
                name: "app".into(),
                security_context: sc,
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn first(p: &Pod) -> &Container {
    &p.spec.as_ref().unwrap().containers[0]
}

const ROOT: &str = "/var/lib/berth/seccomp";

#[test]
fn an_unset_context_is_the_kubelets_default() {
    let p = pod(None, None);
    let c = container(&p, first(&p), Path::new(ROOT));
    assert_eq!(c.run_as_user, None);
    assert!(!c.privileged && !c.no_new_privs && !c.readonly_rootfs);
    assert_eq!(c.masked_paths.len(), 9, "masked /proc paths as the kubelet");
    assert!(c.readonly_paths.contains(&"/proc/sys".to_string()));
    assert_eq!(c.seccomp.unwrap().profile_type, ProfileType::Unconfined as i32);
    let ns = c.namespace_options.unwrap();
    assert_eq!(ns.pid, NamespaceMode::Container as i32);
    assert_eq!(ns.network, NamespaceMode::Pod as i32);
}

#[test]
fn the_container_context_overrides_the_pods() {
    let p = pod(
        Some(PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: Some(vec![4000]),
            fs_group: Some(2000),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        Some(SecurityContext {
            run_as_user: Some(1001),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_BIND_SERVICE".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        }),
    );
    let c = container(&p, first(&p), Path::new(ROOT));
    assert_eq!(c.run_as_user.unwrap().value, 1001);
    assert_eq!(c.run_as_group.unwrap().value, 3000);
    assert_eq!(
        c.supplemental_groups,
        vec![4000, 2000],
        "fsGroup joins the supplemental groups"
    );
    assert!(c.no_new_privs && c.readonly_rootfs);
    let caps = c.capabilities.unwrap();
    assert_eq!(caps.drop_capabilities, vec!["ALL"]);
    assert_eq!(caps.add_capabilities, vec!["NET_BIND_SERVICE"]);
    assert_eq!(
        c.seccomp.unwrap().profile_type,
        ProfileType::RuntimeDefault as i32
    );
    let s = sandbox(&p, Path::new(ROOT));
    assert_eq!(s.run_as_user.unwrap().value, 1000);
    assert!(!s.privileged);
}

#[test]
fn localhost_profiles_live_under_the_nodes_root() {
    let profile = SeccompProfile {
        type_: "Localhost".into(),
        localhost_profile: Some("audit.json".into()),
    };
    let s = seccomp(Some(&profile), Path::new(ROOT));
    assert_eq!(s.profile_type, ProfileType::Localhost as i32);
    assert_eq!(s.localhost_ref, "/var/lib/berth/seccomp/audit.json");
}

#[test]
fn privileged_containers_have_nothing_masked_and_a_privileged_sandbox() {
    let p = pod(
        None,
        Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }),
    );
    let c = container(&p, first(&p), Path::new(ROOT));
    assert!(c.privileged && c.masked_paths.is_empty() && c.readonly_paths.is_empty());
    assert!(sandbox(&p, Path::new(ROOT)).privileged);
}

#[test]
fn host_and_shared_namespaces() {
    let mut p = pod(None, None);
    let spec = p.spec.as_mut().unwrap();
    spec.share_process_namespace = Some(true);
    spec.host_ipc = Some(true);
    let ns = namespaces(&p);
    assert_eq!(ns.pid, NamespaceMode::Pod as i32);
    assert_eq!(ns.ipc, NamespaceMode::Node as i32);
    p.spec.as_mut().unwrap().host_pid = Some(true);
    assert_eq!(namespaces(&p).pid, NamespaceMode::Node as i32);
}

#[test]
fn run_as_non_root_is_checked_against_the_image_user() {
    let non_root = |user: Option<i64>| {
        pod(
            None,
            Some(SecurityContext {
                run_as_non_root: Some(true),
                run_as_user: user,
                ..Default::default()
            }),
        )
    };
    let p = non_root(None);
    let err = verify_run_as_non_root(&p, first(&p), Some(0), "").unwrap_err();
    assert_eq!(
        err,
        "container has runAsNonRoot and image will run as root (pod: \"web_shop(u-1)\", container: app)"
    );
    assert!(verify_run_as_non_root(&p, first(&p), Some(1234), "").is_ok());
    assert!(
        verify_run_as_non_root(&p, first(&p), None, "").is_err(),
        "an image without a user runs as root"
    );
    let err = verify_run_as_non_root(&p, first(&p), None, "nobody").unwrap_err();
    assert!(err.contains("non-numeric user (nobody)"), "{err}");
    let p = non_root(Some(0));
    let err = verify_run_as_non_root(&p, first(&p), Some(1234), "").unwrap_err();
    assert!(
        err.starts_with("container's runAsUser breaks non-root policy"),
        "{err}"
    );
    let p = non_root(Some(1000));
    assert!(
        verify_run_as_non_root(&p, first(&p), Some(0), "").is_ok(),
        "runAsUser wins over the image"
    );
    let p = pod(None, None);
    assert!(
        verify_run_as_non_root(&p, first(&p), Some(0), "").is_ok(),
        "not asked"
    );
}
