use super::*;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1"}, "spec": spec
    }))
    .expect("pod")
}

#[test]
fn hosts_file_with_aliases() {
    let p = pod(serde_json::json!({"containers": [],
        "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["db", "db.local"]}]}));
    let h = hosts_file(&p, "10.214.1.7");
    assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
    assert!(h.contains("\n10.214.1.7\tweb\n"));
    assert!(h.ends_with("\n# Entries added by HostAliases.\n10.0.0.9\tdb\tdb.local\n"));
    let sub = pod(serde_json::json!({"containers": [], "hostname": "h", "subdomain": "s"}));
    assert!(hosts_file(&sub, "1.2.3.4").contains("1.2.3.4\th.s.shop.svc.cluster.local\th\n"));
}

#[test]
fn sub_paths_are_checked_and_expanded() {
    let m = |j: serde_json::Value| -> VolumeMount { serde_json::from_value(j).expect("mount") };
    let env = vec![KeyValue {
        key: "POD".into(),
        value: "web-1".into(),
    }];
    let plain = m(serde_json::json!({"name": "v", "mountPath": "/d", "subPath": "a/b"}));
    assert_eq!(sub_path(&plain, &env).unwrap().as_deref(), Some("a/b"));
    let expr = m(serde_json::json!({"name": "v", "mountPath": "/d", "subPathExpr": "logs/$(POD)"}));
    assert_eq!(sub_path(&expr, &env).unwrap().as_deref(), Some("logs/web-1"));
    let undefined = m(serde_json::json!({"name": "v", "mountPath": "/d", "subPathExpr": "$(NOPE)"}));
    assert!(sub_path(&undefined, &env).is_err());
    for bad in ["/abs", "../up", "a/../../b"] {
        let b = m(serde_json::json!({"name": "v", "mountPath": "/d", "subPath": bad}));
        assert!(sub_path(&b, &env).is_err(), "{bad}");
    }
}

#[test]
fn mounts_of_a_container() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    let p = pod(serde_json::json!({
        "volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "scratch", "emptyDir": {}}],
        "containers": [{"name": "app", "terminationMessagePath": "/dev/termination-log", "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "scratch", "mountPath": "/cache", "subPath": "c1", "mountPropagation": "HostToContainer"},
            {"name": "scratch", "mountPath": "/ro", "readOnly": true}
        ]}]
    }));
    let resolved = resolve(&p, root, false);
    let scratch = root.join("pods/u1/volumes/kubernetes.io~empty-dir/scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let c = &p.spec.as_ref().unwrap().containers[0];
    let hosts = root.join("pods/u1/etc-hosts");
    let term = root.join("pods/u1/containers/app/0");
    let ms = mounts(c, &resolved, &[], Some(&hosts), Some(&term)).unwrap();
    let view: Vec<(&str, bool, i32)> = ms
        .iter()
        .map(|m| (m.container_path.as_str(), m.readonly, m.propagation))
        .collect();
    assert_eq!(
        view,
        vec![
            ("/etc/app", true, MountPropagation::PropagationPrivate as i32),
            (
                "/cache",
                false,
                MountPropagation::PropagationHostToContainer as i32
            ),
            ("/ro", true, MountPropagation::PropagationPrivate as i32),
            ("/etc/hosts", false, 0),
            ("/dev/termination-log", false, 0),
        ]
    );
    assert!(scratch.join("c1").is_dir());
    assert!(ms[1].host_path.ends_with("scratch/c1"));
    assert!(ms[0].host_path.ends_with("kubernetes.io~configmap/cfg"));

    // A symlink out of the volume is refused.
    std::os::unix::fs::symlink("/etc", scratch.join("out")).unwrap();
    assert!(resolve_sub_path(&scratch, "out").is_err());

    // Bidirectional: privileged containers only.
    let bi = pod(serde_json::json!({"volumes": [{"name": "s", "emptyDir": {}}],
        "containers": [{"name": "app", "volumeMounts": [{"name": "s", "mountPath": "/s", "mountPropagation": "Bidirectional"}]}]}));
    let r = resolve(&bi, root, false);
    let err = mounts(&bi.spec.as_ref().unwrap().containers[0], &r, &[], None, None).unwrap_err();
    assert!(err.contains("privileged"), "{err}");

    // A volume the node does not provide cannot be mounted.
    let pvc = pod(
        serde_json::json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "x"}}],
        "containers": [{"name": "app", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}]}),
    );
    let r = resolve(&pvc, root, false);
    assert!(mounts(&pvc.spec.as_ref().unwrap().containers[0], &r, &[], None, None).is_err());
}
