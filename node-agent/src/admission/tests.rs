use super::*;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    ResourceRequirements, SELinuxOptions, SecurityContext, Sysctl, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn pod(c: Container) -> Pod {
    Pod {
        spec: Some(PodSpec {
            containers: vec![c],
            enable_service_links: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn app(sc: Option<SecurityContext>) -> Container {
    Container {
        name: "app".into(),
        image: Some("r/app:1".into()),
        security_context: sc,
        ..Default::default()
    }
}

fn refused(p: &Pod, policy: &NodePolicy) -> Vec<String> {
    review(p, policy).refused.into_iter().map(|f| f.field).collect()
}

#[test]
fn the_pod_of_the_issue_runs_with_everything_it_asked_for() {
    let mut c = app(Some(SecurityContext {
        run_as_user: Some(1000),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".into()]),
        }),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        ..Default::default()
    }));
    c.resources = Some(ResourceRequirements {
        limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
        ..Default::default()
    });
    let r = review(&pod(c), &NodePolicy::default());
    assert_eq!(r, Review::default(), "nothing refused, nothing ignored");
}

#[test]
fn what_cannot_be_honoured_is_refused_by_name() {
    let p = pod(app(Some(SecurityContext {
        se_linux_options: Some(SELinuxOptions::default()),
        proc_mount: Some("Unmasked".into()),
        ..Default::default()
    })));
    let r = review(&p, &NodePolicy::default());
    let rejection = r.rejection().expect("refused");
    assert_eq!(rejection.reason, "Unsupported");
    assert!(
        rejection.message.starts_with(
            "Pod was rejected: berth-agent cannot honour spec.containers[app].securityContext.procMount"
        ),
        "{}",
        rejection.message
    );
    assert!(
        rejection
            .message
            .contains("spec.containers[app].securityContext.seLinuxOptions (SELinux")
    );
}

#[test]
fn privilege_and_host_namespaces_need_the_nodes_permission() {
    let mut p = pod(app(Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    })));
    p.spec.as_mut().unwrap().host_network = Some(true);
    let closed = NodePolicy::default();
    assert_eq!(
        refused(&p, &closed),
        vec![
            "spec.hostNetwork",
            "spec.containers[app].securityContext.privileged"
        ]
    );
    assert_eq!(review(&p, &closed).rejection().unwrap().reason, "Forbidden");
    let open = NodePolicy {
        allow_privileged: true,
        allow_host_namespaces: true,
        ..Default::default()
    };
    assert!(refused(&p, &open).is_empty());
}

#[test]
fn sysctls_outside_the_safe_set_are_forbidden() {
    let mut p = pod(app(None));
    p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
        sysctls: Some(vec![
            Sysctl {
                name: "net.ipv4.ip_local_port_range".into(),
                value: "1024 65000".into(),
            },
            Sysctl {
                name: "kernel.msgmax".into(),
                value: "1".into(),
            },
        ]),
        ..Default::default()
    });
    let r = review(&p, &NodePolicy::default());
    assert_eq!(r.refused.len(), 1);
    let rejection = r.rejection().unwrap();
    assert_eq!(rejection.reason, "SysctlForbidden");
    assert!(
        rejection
            .message
            .contains(r#"forbidden sysctl: "kernel.msgmax" not allowlisted"#)
    );
    let kernel = NodePolicy {
        allowed_unsafe_sysctls: vec!["kernel.msg*".into()],
        ..Default::default()
    };
    assert!(refused(&p, &kernel).is_empty());
}

#[test]
fn storage_is_refused_and_the_token_volume_is_mounted() {
    let mut p = pod(app(None));
    let token: Volume = serde_json::from_value(serde_json::json!({"name": "kube-api-access-x1", "projected": {
        "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}))
    .unwrap();
    p.spec.as_mut().unwrap().volumes = Some(vec![
        token,
        Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data".into(),
                read_only: None,
            }),
            ..Default::default()
        },
    ]);
    let r = review(&p, &NodePolicy::default());
    assert!(r.ignored_fields().is_empty());
    assert_eq!(refused(&p, &NodePolicy::default()), vec!["spec.volumes[data]"]);
}

#[test]
fn volumes_mounts_and_env_sources_the_agent_honours() {
    let c: Container = serde_json::from_value(serde_json::json!({"name": "app", "image": "r/x:1",
        "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "C_"}, {"secretRef": {"name": "s"}}],
        "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "a"}}},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "b"}}},
                {"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}],
        "terminationMessagePath": "/tmp/msg", "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/c", "subPath": "x"},
                         {"name": "mem", "mountPath": "/m", "mountPropagation": "HostToContainer"}]}))
    .unwrap();
    let mut p = pod(c);
    p.spec.as_mut().unwrap().volumes = Some(
        serde_json::from_value(serde_json::json!([
            {"name": "cfg", "configMap": {"name": "c"}},
            {"name": "sec", "secret": {"secretName": "s"}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            {"name": "disk", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "dapi", "downwardAPI": {"items": [{"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
        ]))
        .unwrap(),
    );
    p.spec.as_mut().unwrap().enable_service_links = Some(true);
    let r = review(&p, &NodePolicy::default());
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    assert!(r.ignored.is_empty(), "{:?}", r.ignored);
}

#[test]
fn volume_decisions_that_refuse() {
    let mut c = app(None);
    c.volume_mounts = Some(
        serde_json::from_value(
            serde_json::json!([{"name": "disk", "mountPath": "/d", "mountPropagation": "Bidirectional"}]),
        )
        .unwrap(),
    );
    let mut p = pod(c);
    p.spec.as_mut().unwrap().volumes = Some(
        serde_json::from_value(serde_json::json!([
            {"name": "disk", "emptyDir": {"medium": "HugePages"}},
            {"name": "host", "hostPath": {"path": "/var/data", "type": "Directory"}}
        ]))
        .unwrap(),
    );
    let mut got = refused(&p, &NodePolicy::default());
    got.sort();
    assert_eq!(
        got,
        vec![
            "spec.containers[app].volumeMounts[disk].mountPropagation",
            "spec.volumes[disk].emptyDir",
            "spec.volumes[host].hostPath",
        ]
    );
    let allow = NodePolicy {
        allow_host_path: true,
        ..Default::default()
    };
    assert!(!refused(&p, &allow).contains(&"spec.volumes[host].hostPath".to_string()));
}

#[test]
fn limits_the_node_cannot_enforce_are_refused() {
    let mut c = app(None);
    c.resources = Some(ResourceRequirements {
        limits: Some(
            [
                ("cpu".to_string(), Quantity("1".into())),
                ("ephemeral-storage".to_string(), Quantity("1Gi".into())),
            ]
            .into(),
        ),
        ..Default::default()
    });
    assert_eq!(
        refused(&pod(c), &NodePolicy::default()),
        vec!["spec.containers[app].resources.limits[ephemeral-storage]"]
    );
}

#[test]
fn http_and_https_probes_run_and_grpc_is_refused() {
    use k8s_openapi::api::core::v1::{GRPCAction, HTTPGetAction, Probe};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let http = |scheme: &str| Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(8443),
            scheme: Some(scheme.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    for scheme in ["HTTP", "HTTPS"] {
        let mut c = app(None);
        c.readiness_probe = Some(http(scheme));
        assert!(refused(&pod(c), &NodePolicy::default()).is_empty(), "{scheme}");
    }
    let mut c = app(None);
    c.liveness_probe = Some(Probe {
        grpc: Some(GRPCAction {
            port: 9000,
            service: None,
        }),
        ..Default::default()
    });
    assert_eq!(
        refused(&pod(c), &NodePolicy::default()),
        ["spec.containers[app].livenessProbe.grpc"]
    );
}
