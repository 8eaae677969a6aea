//! The pod worker's volumes and environment against [`FakeCri`](fake_cri::FakeCri) and a fake
//! API server that holds ConfigMaps, Secrets and Services: the container's CRI config carries
//! the env (configMapKeyRef, secretKeyRef, envFrom, service variables) and the mounts
//! (configMap and emptyDir volumes, /etc/hosts, the termination-message file) whose files are
//! on disk; an updated ConfigMap is rewritten in place; a missing ConfigMap in the env is
//! `CreateContainerConfigError` and in a volume a `FailedMount` that holds the sandbox back;
//! the termination message is read; a vanished pod's directory is removed; and no secret
//! value reaches an Event or a status.

mod fake_cri;
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_agent::cri::api::ContainerState;
use berth_agent::sync::{self};
use fake_cri::FakeCri;
use k8s_openapi::api::core::v1::Pod;
use support::{Harness, Objects, events, harness_with, last_status, until};

const RUNNING: i32 = ContainerState::ContainerRunning as i32;
/// "s3cr3t-value" in base64.
const SECRET_B64: &str = "czNjcjN0LXZhbHVl";
const SECRET: &str = "s3cr3t-value";

fn config_map(name: &str, data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data})
}

async fn harness() -> Harness {
    let objects: Objects = Arc::default();
    {
        let mut o = objects.lock().unwrap();
        let ns = "/api/v1/namespaces/default";
        o.insert(
            format!("{ns}/configmaps/app"),
            config_map("app", serde_json::json!({"mode": "fast", "app.conf": "v=1"})),
        );
        o.insert(
            format!("{ns}/secrets/db"),
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
                "data": {"password": SECRET_B64}}),
        );
        o.insert(
            format!("{ns}/services/kubernetes"),
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": "10.215.0.1", "ports": [{"name": "https", "port": 443}]}}),
        );
    }
    harness_with(objects, Some(Duration::from_millis(500))).await
}

fn pod(uid: &str, spec: serde_json::Value) -> Pod {
    let mut s = serde_json::json!({"nodeName": "node-1", "terminationGracePeriodSeconds": 1});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid}, "spec": s
    }))
    .expect("pod")
}

fn running(fake: &FakeCri, uid: &str) -> Option<berth_agent::cri::api::ContainerConfig> {
    let snap = fake.snapshot();
    let id = fake
        .containers_of(uid)
        .into_iter()
        .find(|(_, name, _, st)| name == "app" && *st == RUNNING)
        .map(|(id, ..)| id)?;
    snap.containers.get(&id).map(|c| c.config.clone())
}

fn app_spec() -> serde_json::Value {
    serde_json::json!({
        "volumes": [{"name": "cfg", "configMap": {"name": "app", "items": [{"key": "app.conf", "path": "conf/app.conf"}]}},
                    {"name": "scratch", "emptyDir": {}}],
        "hostAliases": [{"ip": "10.9.9.9", "hostnames": ["db.local"]}],
        "containers": [{"name": "app", "image": "registry.test/demo:v1",
            "terminationMessagePath": "/dev/termination-log",
            "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "CFG_"}],
            "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"},
                             {"name": "scratch", "mountPath": "/scratch", "subPath": "one"}]}]
    })
}

#[tokio::test]
async fn env_and_mounts_reach_the_container_and_updates_reach_the_files() {
    let h = harness().await;
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u1", app_spec())));
    until("container running", 10, || running(&h.fake, "u1").is_some()).await;
    let config = running(&h.fake, "u1").expect("config");
    let env: HashMap<&str, &str> = config
        .envs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect();
    assert_eq!(env["MODE"], "fast");
    assert_eq!(env["CFG_mode"], "fast");
    assert_eq!(env["PASSWORD"], SECRET);
    assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.215.0.1");
    assert_eq!(env["KUBERNETES_PORT_443_TCP"], "tcp://10.215.0.1:443");
    assert!(!env.contains_key("CFG_app.conf") || env["CFG_app.conf"] == "v=1");

    let mounts: HashMap<&str, (&str, bool)> = config
        .mounts
        .iter()
        .map(|m| (m.container_path.as_str(), (m.host_path.as_str(), m.readonly)))
        .collect();
    let pod_dir = h.root.join("pods/u1");
    let cfg_dir = pod_dir.join("volumes/kubernetes.io~configmap/cfg");
    assert_eq!(mounts["/etc/app"], (cfg_dir.to_str().unwrap(), true));
    assert!(
        mounts["/scratch"]
            .0
            .ends_with("kubernetes.io~empty-dir/scratch/one")
    );
    assert!(!mounts["/scratch"].1);
    assert!(mounts["/etc/hosts"].0.ends_with("pods/u1/etc-hosts"));
    assert!(
        mounts["/dev/termination-log"]
            .0
            .ends_with("pods/u1/containers/app/0")
    );
    assert_eq!(
        std::fs::read_to_string(cfg_dir.join("conf/app.conf")).unwrap(),
        "v=1"
    );
    let hosts = std::fs::read_to_string(pod_dir.join("etc-hosts")).unwrap();
    assert!(
        hosts.contains("\tweb\n") && hosts.contains("10.9.9.9\tdb.local\n"),
        "{hosts}"
    );

    // The ConfigMap changes: the file follows, in place, while the container runs.
    h.objects.lock().unwrap().insert(
        "/api/v1/namespaces/default/configmaps/app".into(),
        config_map("app", serde_json::json!({"mode": "slow", "app.conf": "v=2"})),
    );
    until("updated file", 10, || {
        std::fs::read_to_string(cfg_dir.join("conf/app.conf")).is_ok_and(|s| s == "v=2")
    })
    .await;

    // No secret value in any Event or status written.
    let seen = h.seen.lock().unwrap().clone();
    for (m, p, b) in &seen {
        if m != "GET" {
            assert!(!b.contains(SECRET), "{m} {p} carries the secret: {b}");
        }
    }
}

#[tokio::test]
async fn a_missing_config_map_in_the_env_is_create_container_config_error() {
    let h = harness().await;
    let spec = serde_json::json!({"containers": [{"name": "app", "image": "registry.test/demo:v1",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "x"}}}]}]});
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u2", spec)));
    until("CreateContainerConfigError", 10, || {
        last_status(&h.seen).is_some_and(|s| {
            s["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError"
        })
    })
    .await;
    let s = last_status(&h.seen).unwrap();
    assert_eq!(
        s["containerStatuses"][0]["state"]["waiting"]["message"],
        "configmap \"missing\" not found"
    );
    assert!(h.fake.containers_of("u2").is_empty());
    // Created: the container starts on the next retry (back-off 10 s).
    h.objects.lock().unwrap().insert(
        "/api/v1/namespaces/default/configmaps/missing".into(),
        config_map("missing", serde_json::json!({"x": "1"})),
    );
    until("container running after the ConfigMap appeared", 20, || {
        running(&h.fake, "u2").is_some()
    })
    .await;
}

#[tokio::test]
async fn a_missing_config_map_volume_holds_the_pod_back_with_failed_mount() {
    let h = harness().await;
    let spec = serde_json::json!({"volumes": [{"name": "cfg", "configMap": {"name": "missing"}}],
        "containers": [{"name": "app", "image": "registry.test/demo:v1",
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}]}]});
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u3", spec)));
    until("FailedMount event", 10, || {
        events(&h.seen).iter().any(|e| {
            e.contains("FailedMount")
                && e.contains(
                    r#"MountVolume.SetUp failed for volume \"cfg\" : configmap \"missing\" not found"#,
                )
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.fake.sandboxes_of("u3"),
        0,
        "no sandbox before the volumes are set up"
    );
    let s = last_status(&h.seen).expect("status");
    assert_eq!(
        s["containerStatuses"][0]["state"]["waiting"]["reason"],
        "ContainerCreating"
    );
}

#[tokio::test]
async fn a_tmpfs_volume_the_runtime_could_not_see_is_refused_with_a_reason() {
    // The test's root directory is not on a shared mount.
    let h = harness().await;
    let spec = serde_json::json!({"volumes": [{"name": "sec", "secret": {"secretName": "db"}}],
        "containers": [{"name": "app", "image": "registry.test/demo:v1",
            "volumeMounts": [{"name": "sec", "mountPath": "/s"}]}]});
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u4", spec)));
    until("FailedMount event", 10, || {
        events(&h.seen)
            .iter()
            .any(|e| e.contains("FailedMount") && e.contains("not on a shared mount"))
    })
    .await;
    assert_eq!(h.fake.sandboxes_of("u4"), 0);
    assert!(!events(&h.seen).iter().any(|e| e.contains(SECRET)));
}

#[tokio::test]
async fn a_disk_empty_dir_over_its_size_limit_evicts_the_pod() {
    let h = harness().await;
    let spec = serde_json::json!({"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "64Ki"}}],
        "containers": [{"name": "app", "image": "registry.test/demo:v1",
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}]});
    let _tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u6", spec)));
    until("container running", 10, || running(&h.fake, "u6").is_some()).await;
    let dir = h.root.join("pods/u6/volumes/kubernetes.io~empty-dir/scratch");
    std::fs::write(dir.join("big"), vec![7u8; 256 * 1024]).unwrap();
    until("evicted", 15, || {
        last_status(&h.seen).is_some_and(|s| s["phase"] == "Failed" && s["reason"] == "Evicted")
    })
    .await;
    let s = last_status(&h.seen).unwrap();
    assert_eq!(
        s["message"],
        "Usage of EmptyDir volume \"scratch\" exceeds the limit \"64Ki\". "
    );
    until("container stopped", 10, || running(&h.fake, "u6").is_none()).await;
    assert!(events(&h.seen).iter().any(|e| e.contains("Evicted")));
}

#[tokio::test]
async fn the_termination_message_is_read_and_the_pod_dir_removed_with_the_pod() {
    let h = harness().await;
    let mut spec = app_spec();
    spec["restartPolicy"] = "Never".into();
    let tx = sync::spawn_worker(h.shared.clone(), Arc::new(pod("u5", spec)));
    until("container running", 10, || running(&h.fake, "u5").is_some()).await;
    let id = h
        .fake
        .containers_of("u5")
        .into_iter()
        .find(|(_, n, ..)| n == "app")
        .map(|(id, ..)| id)
        .expect("container");
    std::fs::write(h.root.join("pods/u5/containers/app/0"), "all done\n").unwrap();
    h.fake.exit(&id, 3, 1, 0);
    until("terminated with the message", 10, || {
        last_status(&h.seen)
            .is_some_and(|s| s["containerStatuses"][0]["state"]["terminated"]["message"] == "all done\n")
    })
    .await;
    let pod_dir = h.root.join("pods/u5");
    assert!(pod_dir.exists());
    tx.send_replace(None);
    until("pod directory removed", 10, || !pod_dir.exists()).await;
}
