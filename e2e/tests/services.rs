//! Kubernetes' own controllers on Berth nodes: a plain Deployment (placed by kube-scheduler, rolled out by the
//! deployment controller) behind a ClusterIP Service (kube-proxy on every host), following a tag through
//! `image.openshift.io/triggers`. The Service answers from every host and from a pod, spread over every
//! replica; a push moves the tag and every replica then serves the new version through the Service.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use berth_e2e::api::{TestNamespace, admin_client, copy_image, kubectl_apply, unique, wait_for};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::http::registry_digest;
use berth_e2e::k8s::create_pod;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, LogParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);
const REPLICAS: usize = 3;

fn manifests(registry: &str, repo: &str) -> String {
    let tag = json!({
        "apiVersion": "image.berth.dev/v1alpha1", "kind": "ImageStreamTag",
        "metadata": {"name": "web.live"},
        "spec": {"stream": "web", "tag": "live", "from": {"kind": "DockerImage", "name": format!("{registry}/{repo}:live")},
                 "importPolicy": {"insecure": true}},
    });
    let triggers = json!([{"from": {"kind": "ImageStreamTag", "name": "web:live"},
                           "fieldPath": "spec.template.spec.containers[?(@.name==\"web\")].image"}]);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"image.openshift.io/triggers": triggers.to_string()}},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    // Berth's nodes keep kube-scheduler's pods off unless asked, as a tainted pool does.
                    "tolerations": [{"key": "berth.dev/agent", "operator": "Exists"}],
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "web", "image": format!("{registry}/berth/demo:v1"),
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                    }],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    });
    json!({"apiVersion": "v1", "kind": "List", "items": [tag, deployment, service]}).to_string()
}

/// The ready pods of the Deployment, by name, with the version their image serves.
async fn ready_pods(pods: &Api<Pod>) -> anyhow::Result<Vec<Pod>> {
    let list = pods.list(&ListParams::default().labels("app=web")).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect())
}

/// `count` answers of `http://IP/cgi-bin/whoami` from inside host `netns`, with curl.
fn ask_from_host(netns: &str, ip: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let mut answers = Vec::new();
    for _ in 0..count {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["--", "curl", "-fsS", "--max-time", "3"])
            .arg(format!("http://{ip}/cgi-bin/whoami"))
            .output()
            .context("running nsenter + curl")?;
        anyhow::ensure!(
            out.status.success(),
            "ClusterIP {ip} did not answer from host {netns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answers.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    Ok(answers)
}

/// The replicas (hostnames) among answers "VERSION HOSTNAME" that say `version`.
fn replicas_saying(answers: &[String], version: &str) -> BTreeSet<String> {
    answers
        .iter()
        .filter_map(|a| a.split_once(' '))
        .filter(|(v, _)| *v == version)
        .map(|(_, h)| h.to_owned())
        .collect()
}

/// Asks the Service from every host until each host has heard every replica say `version`.
async fn every_host_hears_every_replica(
    cluster: &LocalCluster,
    ip: &str,
    pods: &Api<Pod>,
    version: &str,
) -> anyhow::Result<()> {
    wait_for(
        &format!("every host hears all {REPLICAS} replicas say {version} through {ip}"),
        TIMEOUT,
        || async {
            let want: BTreeSet<String> = ready_pods(pods)
                .await?
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            if want.len() != REPLICAS {
                return Ok(Err(format!("{} ready pods", want.len())));
            }
            for node in &cluster.nodes {
                let heard = replicas_saying(&ask_from_host(&node.name, ip, 4 * REPLICAS)?, version);
                if heard != want {
                    return Ok(Err(format!(
                        "host {} heard {heard:?} saying {version}, ready pods {want:?}",
                        node.name
                    )));
                }
            }
            Ok(Ok(()))
        },
    )
    .await
}

#[tokio::test]
async fn e2e_a_deployment_behind_a_service_answers_from_every_host_and_follows_its_tag() -> anyhow::Result<()>
{
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "svc").await?;
    let registry = &cluster.registry;
    let repo = format!("berth/e2e-svc-{}", unique());
    copy_image(registry, "berth/demo:v1", &format!("{repo}:live"))?;
    kubectl_apply(&cluster, &ns.name, &manifests(registry, &repo)).map_err(anyhow::Error::msg)?;

    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let ip = services
        .get("web")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the Service has no ClusterIP")?;
    let pods = ns.pods();
    every_host_hears_every_replica(&cluster, &ip, &pods, "v1").await?;

    // From inside a pod on the last host: HTTP through the Service with busybox nc (Debian's static busybox
    // wget crashes in getaddrinfo, and the demo image has no `seq`: the rounds are spelled out).
    let rounds = (1..=6 * REPLICAS)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let client_pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {
            "nodeName": cluster.nodes.last().context("no hosts")?.name,
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": format!("{registry}/berth/demo:v1"),
                "command": ["sh", "-c", format!("for i in {rounds}; do printf 'GET /cgi-bin/whoami HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80 || echo failed; done")]}],
        },
    }))?;
    create_pod(&pods, &client_pod).await?;
    let answers = wait_for("the client pod's answers", TIMEOUT, || async {
        let p = pods.get("client").await?;
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Failed" {
            let logs = pods
                .logs("client", &LogParams::default())
                .await
                .unwrap_or_default();
            anyhow::bail!("the client pod failed: {logs}");
        }
        if phase != "Succeeded" {
            return Ok(Err(format!("client pod {phase}")));
        }
        Ok(Ok(pods.logs("client", &LogParams::default()).await?))
    })
    .await?;
    let lines: Vec<String> = answers.lines().map(str::to_owned).collect();
    let heard = replicas_saying(&lines, "v1");
    assert_eq!(
        heard.len(),
        REPLICAS,
        "a pod heard {heard:?} through the Service: {answers}"
    );

    // A push moves the tag; Berth patches the Deployment; the deployment controller rolls it out.
    copy_image(registry, "berth/demo:v2", &format!("{repo}:live"))?;
    let v2 = registry_digest(registry, &repo, "live").await?;
    eprintln!("pushed {repo}:live = {v2}");
    every_host_hears_every_replica(&cluster, &ip, &pods, "v2").await?;
    Ok(())
}

/// The Node keeps the well-known labels its agent registers (a 1.20 server once dropped them when the status
/// was applied under the same field manager), so kube-scheduler can place a pod by `kubernetes.io/hostname`.
#[tokio::test]
async fn e2e_kube_scheduler_places_a_pod_by_the_nodes_hostname_label() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "label").await?;
    let target = cluster
        .nodes
        .get(1)
        .or(cluster.nodes.first())
        .context("no hosts")?
        .name
        .clone();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "placed"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": target, "kubernetes.io/os": "linux", "berth.dev/agent": "true"},
            "tolerations": [{"key": "berth.dev/agent", "operator": "Exists"}],
            "containers": [{"name": "web", "image": format!("{}/berth/demo:v1", cluster.registry)}],
        },
    }))?;
    let pods = ns.pods();
    create_pod(&pods, &pod).await?;
    let node = wait_for(
        &format!("pod placed on {target} and running"),
        TIMEOUT,
        || async {
            let p = pods.get("placed").await?;
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            Ok(if node.is_some() && phase == "Running" {
                Ok(node)
            } else {
                Err(format!("node {node:?}, phase {phase}"))
            })
        },
    )
    .await?;
    assert_eq!(node.as_deref(), Some(target.as_str()));
    Ok(())
}
