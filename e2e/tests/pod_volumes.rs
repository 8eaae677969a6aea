//! End-to-end: a Berth node gives a pod its volumes and environment as the kubelet does,
//! checked from inside the containers (they print what they see; the test reads their logs
//! through the API): ConfigMap and Secret volumes with modes, a projected service-account
//! token that the API server accepts (TokenReview, with its audience) beside the cluster CA
//! and the namespace, a downward API volume, an emptyDir shared by two containers and a
//! Memory one (a tmpfs), env from configMapKeyRef, secretKeyRef and envFrom and the service
//! variables; an updated ConfigMap appears in the running container's file; a missing
//! ConfigMap in the env is `CreateContainerConfigError` until it exists; a missing one in a
//! volume is `FailedMount`; no secret value reaches an Event; and the pod's directory is gone
//! from the host once the pod is deleted.
//!
//! Run: `cargo test -p berth-e2e --test pod_volumes -- --test-threads=1`

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use berth_e2e::api::{events_about, wait_for};
use berth_e2e::k8s::{admin_client, create_pod, log_report, setup, wait_pod, waiting_reason};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);
/// A ConfigMap update reaches a running pod within the agent's refresh period (60 s) and a
/// worker round.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(100);
const SECRET_VALUE: &str = "e2e-s3cr3t-value";

/// What the app container reports, one `key=value` per line, then `done`; then the config
/// file's content every 2 s.
const REPORT: &str = r#"
echo "greeting=$GREETING"
if [ "$PASSWORD" = "$EXPECTED_PASSWORD_HINT-value" ]; then echo pw_env=match; else echo pw_env=differs; fi
echo "cfg_prefixed=$CFG_greeting"
echo "kubernetes_host=$KUBERNETES_SERVICE_HOST"
echo "kubernetes_port=$KUBERNETES_SERVICE_PORT"
echo "conf=$(cat /etc/cfg/app.conf)"
echo "conf_mode=$(stat -L -c %a /etc/cfg/app.conf)"
if [ "$(cat /etc/sec/password)" = "$EXPECTED_PASSWORD_HINT-value" ]; then echo pw_file=match; else echo pw_file=differs; fi
echo "sec_mode=$(stat -L -c %a /etc/sec/password)"
echo "namespace=$(cat /var/run/secrets/tok/namespace)"
if grep -q 'BEGIN CERTIFICATE' /var/run/secrets/tok/ca.crt; then echo ca=pem; else echo ca=missing; fi
echo "token=$(cat /var/run/secrets/tok/token)"
echo "labels=$(cat /etc/podinfo/labels | tr '\n' ',')"
echo "mem_fs=$(grep ' /mem ' /proc/mounts | cut -d' ' -f3)"
echo "sec_fs=$(grep ' /etc/sec ' /proc/mounts | cut -d' ' -f3)"
if touch /etc/cfg/x 2>/dev/null; then echo cfg_ro=no; else echo cfg_ro=yes; fi
echo "hosts=$(grep -c vol-demo /etc/hosts)"
echo hello-from-app > /shared/msg
echo done
while true; do echo "conf=$(cat /etc/cfg/app.conf)"; sleep 2; done
"#;

/// The report of `container` in pod `name` ([`log_report`]).
async fn report(api: &Api<Pod>, name: &str, container: &str) -> anyhow::Result<HashMap<String, String>> {
    log_report(api, name, container, TIMEOUT).await
}

fn config_map(name: &str, conf: &str) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": {"greeting": "hello", "app.conf": conf}
    }))?)
}

fn app_pod(node: &str, image: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "vol-demo", "labels": {"app": "vol-demo"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "automountServiceAccountToken": false,
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app-config"}},
                {"name": "sec", "secret": {"secretName": "app-secret", "defaultMode": 0o400}},
                {"name": "tok", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "berth-e2e", "expirationSeconds": 600, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
                {"name": "podinfo", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "shared", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
            "containers": [
                {"name": "app", "image": image, "command": ["sh", "-c", REPORT],
                 "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}},
                         {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}},
                         {"name": "EXPECTED_PASSWORD_HINT", "value": "e2e-s3cr3t"}],
                 "envFrom": [{"configMapRef": {"name": "app-config"}, "prefix": "CFG_"}],
                 "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"},
                                  {"name": "sec", "mountPath": "/etc/sec"},
                                  {"name": "tok", "mountPath": "/var/run/secrets/tok"},
                                  {"name": "podinfo", "mountPath": "/etc/podinfo"},
                                  {"name": "shared", "mountPath": "/shared"},
                                  {"name": "mem", "mountPath": "/mem"}]},
                {"name": "reader", "image": image, "command": ["sh", "-c",
                    "until [ -s /data/msg ]; do sleep 0.2; done; echo \"shared=$(cat /data/msg)\"; echo done; sleep 3600"],
                 "volumeMounts": [{"name": "shared", "mountPath": "/data"}]}]}
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_volumes_and_environment_as_the_kubelet_gives_them() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-volumes").await? else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let node = &cluster.nodes[0].name;
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    cms.create(&PostParams::default(), &config_map("app-config", "v=1")?)
        .await?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "app-secret"}, "stringData": {"password": SECRET_VALUE}
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;
    // kube-controller-manager publishes the cluster CA into every namespace.
    wait_for("kube-root-ca.crt in the namespace", TIMEOUT, || async {
        Ok(cms
            .get_opt("kube-root-ca.crt")
            .await?
            .map(|_| ())
            .ok_or("not yet".to_string()))
    })
    .await?;

    let api = ns.pods();
    let created = create_pod(&api, &app_pod(node, &image)?).await?;
    let uid = created.metadata.uid.clone().context("pod uid")?;
    let mut r = report(&api, "vol-demo", "app").await?;
    // Kept out of every message below.
    let token = r.remove("token").unwrap_or_default();
    let want = [
        ("greeting", "hello"),
        ("pw_env", "match"),
        ("cfg_prefixed", "hello"),
        ("kubernetes_port", "443"),
        ("conf_mode", "644"),
        ("pw_file", "match"),
        ("sec_mode", "400"),
        ("namespace", ns.name.as_str()),
        ("ca", "pem"),
        ("labels", "app=\"vol-demo\""),
        ("mem_fs", "tmpfs"),
        ("sec_fs", "tmpfs"),
        ("cfg_ro", "yes"),
        ("hosts", "1"),
    ];
    for (k, v) in want {
        ensure!(
            r.get(k).map(String::as_str) == Some(v),
            "{k}: expected {v:?}, got {:?} (report {r:?})",
            r.get(k)
        );
    }
    ensure!(
        r.get("kubernetes_host").is_some_and(|h| h.starts_with("10.215.")),
        "KUBERNETES_SERVICE_HOST: {:?}",
        r.get("kubernetes_host")
    );
    let reader = report(&api, "vol-demo", "reader").await?;
    ensure!(
        reader.get("shared").map(String::as_str) == Some("hello-from-app"),
        "reader: {reader:?}"
    );

    // The token works against the API server, for its audience and as the pod's service account.
    ensure!(token.starts_with("ey"), "no token in the volume");
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token),
            audiences: Some(vec!["berth-e2e".into()]),
        },
        ..Default::default()
    };
    let answer = reviews.create(&PostParams::default(), &review).await?;
    let status = answer.status.context("TokenReview status")?;
    ensure!(
        status.authenticated == Some(true),
        "token not authenticated: {:?}",
        status.error
    );
    let user = status.user.and_then(|u| u.username).unwrap_or_default();
    ensure!(
        user == format!("system:serviceaccount:{}:default", ns.name),
        "token user {user}"
    );

    // An updated ConfigMap appears in the running container's file.
    cms.patch(
        "app-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"app.conf": "v=2"}})),
    )
    .await?;
    wait_for("the updated ConfigMap in the file", UPDATE_TIMEOUT, || async {
        let lp = LogParams {
            container: Some("app".into()),
            tail_lines: Some(3),
            ..Default::default()
        };
        let text = api.logs("vol-demo", &lp).await.unwrap_or_default();
        Ok(if text.contains("conf=v=2") {
            Ok(())
        } else {
            Err(text)
        })
    })
    .await?;

    // No secret value in the pod's Events or status.
    let events = events_about(&client, &ns.name, "vol-demo").await?;
    ensure!(
        !events.iter().any(|e| e.note.contains(SECRET_VALUE)),
        "a secret in an Event"
    );
    let live = api.get("vol-demo").await?;
    ensure!(
        !serde_json::to_string(&live.status)?.contains(SECRET_VALUE),
        "a secret in the status"
    );

    // Deleted: nothing of the pod is left on the host (tmpfs unmounted, directory removed).
    let pod_dir = cluster
        .state
        .join("nodes")
        .join(node)
        .join("agent/pods")
        .join(&uid);
    ensure!(
        pod_dir.exists(),
        "{} does not exist while the pod runs",
        pod_dir.display()
    );
    api.delete("vol-demo", &DeleteParams::default()).await?;
    wait_for("the pod gone", TIMEOUT, || async {
        Ok(api
            .get_opt("vol-demo")
            .await?
            .map_or(Ok(()), |_| Err("still there".into())))
    })
    .await?;
    wait_for(
        "the pod's directory removed from the host",
        Duration::from_secs(20),
        || async {
            Ok(if pod_dir.exists() {
                Err(pod_dir.display().to_string())
            } else {
                Ok(())
            })
        },
    )
    .await?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    ensure!(!mounts.contains(&uid), "a mount of the pod is left: {uid}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_missing_config_map_waits_as_the_kubelet_reports_it() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-volumes-missing").await? else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let node = &cluster.nodes[0].name;
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let api = ns.pods();
    let env_pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "env-missing"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": image, "command": ["sh", "-c", "echo \"x=$X\"; echo done; sleep 3600"],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}}]}]}
    }))?;
    create_pod(&api, &env_pod).await?;
    let message = wait_pod(&api, "env-missing", TIMEOUT, |p| {
        (waiting_reason(p).as_deref() == Some("CreateContainerConfigError")).then(|| {
            p.status.as_ref()?.container_statuses.as_ref()?[0]
                .state
                .as_ref()?
                .waiting
                .as_ref()?
                .message
                .clone()
        })?
    })
    .await?;
    ensure!(message == "configmap \"later\" not found", "message {message:?}");

    let vol_pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "vol-missing"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "automountServiceAccountToken": false,
            "volumes": [{"name": "cfg", "configMap": {"name": "never"}}],
            "containers": [{"name": "app", "image": image, "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}]}
    }))?;
    create_pod(&api, &vol_pod).await?;
    wait_for("FailedMount of vol-missing", TIMEOUT, || async {
        let events = events_about(&client, &ns.name, "vol-missing").await?;
        Ok(events
            .iter()
            .find(|e| e.reason == "FailedMount")
            .map(|e| e.note.clone())
            .ok_or(format!(
                "events: {:?}",
                events.iter().map(|e| &e.reason).collect::<Vec<_>>()
            )))
    })
    .await
    .and_then(|note| {
        ensure!(
            note == "MountVolume.SetUp failed for volume \"cfg\" : configmap \"never\" not found",
            "FailedMount note {note:?}"
        );
        Ok(())
    })?;
    let p = api.get("vol-missing").await?;
    ensure!(
        waiting_reason(&p).as_deref() == Some("ContainerCreating"),
        "vol-missing: {:?}",
        p.status
    );

    // The ConfigMap appears: the container starts on a retry.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let later: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "later"}, "data": {"x": "42"}}))?;
    cms.create(&PostParams::default(), &later).await?;
    let r = report(&api, "env-missing", "app").await?;
    ensure!(
        r.get("x").map(String::as_str) == Some("42"),
        "env-missing report {r:?}"
    );
    Ok(())
}
