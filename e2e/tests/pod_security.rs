//! End-to-end: a Berth node runs a pod with the isolation it asked for, checked from inside
//! the container (its user and groups, capabilities, `no_new_privs`, seccomp, a read-only
//! root, the memory and CPU cgroup limits, the OOM score), beside a pod that asked for
//! nothing; and it refuses what it cannot honour, naming the field, as the kubelet refuses.
//!
//! Run: `cargo test -p berth-e2e --test pod_security -- --test-threads=1`

use std::collections::HashMap;
use std::time::Duration;

use anyhow::ensure;
use berth_e2e::api::{events_about, wait_for};
use berth_e2e::k8s::{admin_client, create_pod, first_state, log_report, phase, setup, wait_pod};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);

/// What the container reports about itself, one `key=value` per line, then `done`.
const REPORT: &str = r#"
echo "id=$(id)"
for k in CapEff NoNewPrivs Seccomp; do echo "$k=$(grep "^$k:" /proc/self/status | tr -d ' \t' | cut -d: -f2)"; done
echo "memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
echo "quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us)"
echo "shares=$(cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu,cpuacct/cpu.shares)"
echo "oom=$(cat /proc/self/oom_score_adj)"
if touch /written 2>/dev/null; then echo root=writable; else echo root=readonly; fi
if cat /proc/kcore >/dev/null 2>&1 && [ -s /proc/kcore ]; then echo kcore=visible; else echo kcore=masked; fi
echo done
sleep 3600
"#;

fn pod(
    name: &str,
    node: &str,
    image: &str,
    pod_sc: Value,
    sc: Value,
    resources: Value,
) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "restartPolicy": "Never", "automountServiceAccountToken": false,
                 "enableServiceLinks": false, "terminationGracePeriodSeconds": 1,
                 "securityContext": pod_sc,
                 "containers": [{"name": "app", "image": image, "command": ["sh", "-c", REPORT],
                                 "securityContext": sc, "resources": resources}]}
    }))?)
}

/// The report of pod `name`'s container ([`log_report`]).
async fn report(api: &Api<Pod>, name: &str) -> anyhow::Result<HashMap<String, String>> {
    log_report(api, name, "app", TIMEOUT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_pod_runs_with_the_isolation_it_asked_for() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-secctx").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let node = &cluster.nodes[0].name;
    let strict = pod(
        "strict",
        node,
        &image,
        json!({"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000],
               "seccompProfile": {"type": "RuntimeDefault"}}),
        json!({"runAsNonRoot": true, "allowPrivilegeEscalation": false,
               "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}),
        json!({"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}}),
    )?;
    let plain = pod("plain", node, &image, json!({}), json!({}), json!({}))?;
    create_pod(&api, &strict).await?;
    create_pod(&api, &plain).await?;
    let s = report(&api, "strict").await?;
    let p = report(&api, "plain").await?;
    eprintln!("strict: {s:?}\nplain: {p:?}");

    ensure!(s["id"].starts_with("uid=1000 gid=3000"), "strict id: {}", s["id"]);
    ensure!(
        s["id"].contains("4000"),
        "supplementalGroups missing: {}",
        s["id"]
    );
    ensure!(p["id"].starts_with("uid=0"), "plain id: {}", p["id"]);
    ensure!(s["CapEff"] == "0000000000000000", "strict CapEff {}", s["CapEff"]);
    ensure!(p["CapEff"] != "0000000000000000", "plain CapEff {}", p["CapEff"]);
    ensure!(
        s["NoNewPrivs"] == "1" && p["NoNewPrivs"] == "0",
        "NoNewPrivs {} / {}",
        s["NoNewPrivs"],
        p["NoNewPrivs"]
    );
    ensure!(
        s["Seccomp"] == "2" && p["Seccomp"] == "0",
        "Seccomp {} / {}",
        s["Seccomp"],
        p["Seccomp"]
    );
    ensure!(
        s["memory"] == (64u64 << 20).to_string(),
        "strict memory limit {}",
        s["memory"]
    );
    ensure!(
        p["memory"].parse::<u64>()? > 1 << 40,
        "plain memory limit {}",
        p["memory"]
    );
    ensure!(s["quota"] == "50000", "strict CFS quota {}", s["quota"]);
    ensure!(p["quota"] == "-1", "plain CFS quota {}", p["quota"]);
    ensure!(
        s["shares"] == "102" && p["shares"] == "2",
        "shares {} / {}",
        s["shares"],
        p["shares"]
    );
    let oom: i64 = s["oom"].parse()?;
    ensure!((3..1000).contains(&oom), "Burstable OOM score {oom}");
    ensure!(p["oom"] == "1000", "BestEffort OOM score {}", p["oom"]);
    ensure!(
        s["root"] == "readonly" && p["root"] == "writable",
        "root {} / {}",
        s["root"],
        p["root"]
    );
    ensure!(
        s["kcore"] == "masked" && p["kcore"] == "masked",
        "/proc/kcore {} / {}",
        s["kcore"],
        p["kcore"]
    );

    let strict = api.get("strict").await?;
    let qos = strict.status.and_then(|s| s.qos_class).unwrap_or_default();
    ensure!(qos == "Burstable", "qosClass {qos}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_what_the_node_cannot_honour_is_refused_by_name() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-refuse").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let node = &cluster.nodes[0].name;
    let cases = [
        (
            "selinux",
            json!({}),
            json!({"seLinuxOptions": {"level": "s0:c123,c456"}}),
            "Unsupported",
            "spec.containers[app].securityContext.seLinuxOptions",
        ),
        (
            "privileged",
            json!({}),
            json!({"privileged": true}),
            "Forbidden",
            "spec.containers[app].securityContext.privileged",
        ),
        (
            "sysctl",
            json!({"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]}),
            json!({}),
            "SysctlForbidden",
            "spec.securityContext.sysctls[kernel.msgmax]",
        ),
    ];
    for (name, pod_sc, sc, _, _) in &cases {
        create_pod(
            &api,
            &pod(name, node, &image, pod_sc.clone(), sc.clone(), json!({}))?,
        )
        .await?;
    }
    let client = admin_client(&cluster).await?;
    for (name, _, _, reason, field) in cases {
        let (got_reason, message) = wait_pod(&api, name, TIMEOUT, |p| {
            let s = p.status.as_ref()?;
            (phase(p) == Some("Failed")).then(|| {
                (
                    s.reason.clone().unwrap_or_default(),
                    s.message.clone().unwrap_or_default(),
                )
            })
        })
        .await?;
        ensure!(
            got_reason == reason,
            "{name}: reason {got_reason}, message {message}"
        );
        ensure!(
            message.contains(field),
            "{name}: the message does not name {field}: {message}"
        );
        let p = api.get(name).await?;
        let ran = p
            .status
            .and_then(|s| s.container_statuses)
            .into_iter()
            .flatten()
            .any(|c| c.container_id.is_some());
        ensure!(!ran, "{name}: a container was created for a refused pod");
        let events = wait_for(&format!("the {reason} Event of {name}"), TIMEOUT, || async {
            let seen = events_about(&client, &ns.name, name).await?;
            Ok(
                if seen.iter().any(|e| e.reason == reason && e.note.contains(field)) {
                    Ok(seen)
                } else {
                    Err(format!("{seen:?}"))
                },
            )
        })
        .await?;
        ensure!(
            events
                .iter()
                .all(|e| e.type_ != "Normal" || e.reason != "Started"),
            "{events:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_run_as_non_root_with_a_root_image_waits_with_the_kubelets_message() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-nonroot").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let p = pod(
        "rooty",
        &cluster.nodes[0].name,
        &image,
        json!({}),
        json!({"runAsNonRoot": true}),
        json!({}),
    )?;
    create_pod(&api, &p).await?;
    let message = wait_pod(&api, "rooty", TIMEOUT, |p| {
        let w = first_state(p)?.waiting.clone()?;
        (w.reason.as_deref() == Some("CreateContainerConfigError")).then(|| w.message.unwrap_or_default())
    })
    .await?;
    ensure!(
        message.starts_with("container has runAsNonRoot and image will run as root"),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_container_over_its_memory_limit_is_oom_killed_as_the_kubelet_reports_it() -> anyhow::Result<()>
{
    let Some((cluster, ns)) = setup("e2e-oom").await? else {
        return Ok(());
    };
    let api = ns.pods();
    let image = format!("{}/berth/demo:v1", cluster.registry);
    // 64 MiB of 'a' in a shell variable, under a 16 MiB limit.
    let hog: Pod = serde_json::from_value(json!({
        "metadata": {"name": "hog"},
        "spec": {"nodeName": cluster.nodes[0].name, "restartPolicy": "Never",
                 "automountServiceAccountToken": false, "enableServiceLinks": false,
                 "containers": [{"name": "app", "image": image,
                                 "command": ["sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo ${#x}"],
                                 "resources": {"limits": {"memory": "16Mi"}}}]}
    }))?;
    create_pod(&api, &hog).await?;
    let reason = wait_pod(&api, "hog", TIMEOUT, |p| {
        let t = first_state(p)?.terminated.clone()?;
        Some(t.reason.unwrap_or_default())
    })
    .await?;
    ensure!(reason == "OOMKilled", "terminated with reason {reason}");
    Ok(())
}
