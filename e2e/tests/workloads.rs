//! Workloads on the local cluster: pods scheduled across the three hosts by Berth, run by the agents,
//! rolled out when the tag they follow moves, held by a paused trigger, and refused honestly when the tag is
//! missing or no node fits.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_api::apps::Workload;
use berth_api::image::ImageStreamTag;
use berth_e2e::api::{
    LivePod, TestNamespace, admin_client, copy_image, events_about, kubectl_apply, unique, wait_for,
    workload_pods,
};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::http::{get, registry_digest};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

const TIMEOUT: Duration = Duration::from_secs(90);

fn tag_manifest(from: &str) -> String {
    format!(
        "apiVersion: image.berth.dev/v1alpha1\nkind: ImageStreamTag\nmetadata: {{name: app.live}}\nspec:\n  stream: app\n  tag: live\n  from: {{kind: DockerImage, name: \"{from}\"}}\n  importPolicy: {{insecure: true}}\n"
    )
}

fn workload_manifest(tag: &str, replicas: i32, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: apps.berth.dev/v1alpha1
kind: Workload
metadata: {{name: web}}
spec:
  replicas: {replicas}
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
{extra_spec}      containers:
      - name: web
        imageFrom: {{kind: ImageStreamTag, name: "{tag}"}}
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}}}
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"#
    )
}

/// Waits until the Workload runs `replicas` Ready pods on as many hosts, each answering `berth-demo VERSION`.
async fn wait_serving(pods: &Api<Pod>, replicas: usize, version: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("{replicas} Ready pods on {replicas} hosts answering {version}"),
        TIMEOUT,
        || async {
            let live = workload_pods(pods, "web").await?;
            let nodes: BTreeSet<_> = live.iter().map(|p| p.node.clone()).collect();
            if live.len() != replicas || nodes.len() != replicas || !live.iter().all(|p| p.ready) {
                return Ok(Err(format!("{live:?}")));
            }
            for LivePod { name, ip, .. } in &live {
                let body = get(&format!("{ip}:8080"), "/", Duration::from_secs(2))
                    .await
                    .map(|r| r.body)
                    .unwrap_or_default();
                if !body.contains(&format!("berth-demo {version}")) {
                    return Ok(Err(format!("{name} at {ip} answered {body:?}")));
                }
            }
            Ok(Ok(()))
        },
    )
    .await
}

async fn reasons(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<String>> {
    Ok(events_about(client, ns, name)
        .await?
        .into_iter()
        .map(|e| e.reason)
        .collect())
}

#[tokio::test]
async fn e2e_a_moved_tag_rolls_out_across_three_hosts_and_a_paused_trigger_holds() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "rollout").await?;
    let registry = &cluster.registry;
    let repo = format!("berth/e2e-wl-{}", unique());
    copy_image(registry, "berth/demo:v1", &format!("{repo}:live"))?;
    kubectl_apply(
        &cluster,
        &ns.name,
        &tag_manifest(&format!("{registry}/{repo}:live")),
    )
    .map_err(anyhow::Error::msg)?;
    kubectl_apply(&cluster, &ns.name, &workload_manifest("app:live", 3, "")).map_err(anyhow::Error::msg)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let started = Instant::now();
    wait_serving(&pods, 3, "v1").await?;
    eprintln!(
        "3 pods of version 1 served on 3 hosts {:?} after the Workload was applied",
        started.elapsed()
    );

    // Version 2 is pushed to the tag: the Workload rolls out, never below 3 Ready pods, never above 4 pods.
    let pushed = Instant::now();
    copy_image(registry, "berth/demo:v2", &format!("{repo}:live"))?;
    let v2 = registry_digest(registry, &repo, "live").await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch_bounds = {
        let (pods, stop) = (pods.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut fewest_ready, mut most_live) = (usize::MAX, 0usize);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(live) = workload_pods(&pods, "web").await {
                    fewest_ready = fewest_ready.min(live.iter().filter(|p| p.ready).count());
                    most_live = most_live.max(live.len());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (fewest_ready, most_live)
        })
    };
    wait_serving(&pods, 3, "v2").await?;
    let rollout = pushed.elapsed();
    eprintln!("push of version 2 to the last of 3 pods answering version 2: {rollout:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (fewest_ready, most_live) = watch_bounds.await?;
    eprintln!("during the rollout: at least {fewest_ready} Ready pods, at most {most_live} pods");
    assert!(
        fewest_ready >= 3,
        "maxUnavailable 0 but only {fewest_ready} pods were Ready"
    );
    assert!(most_live <= 4, "maxSurge 1 but {most_live} pods existed");
    let workloads: Api<Workload> = Api::namespaced(client.clone(), &ns.name);
    let status = wait_for("status of revision 2", TIMEOUT, || async {
        let s = workloads.get("web").await?.status.unwrap_or_default();
        Ok(
            if s.revision == 2 && s.updated_replicas == 3 && s.available_replicas == 3 {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            },
        )
    })
    .await?;
    assert!(status.images[0].image.ends_with(&v2), "{:?}", status.images);
    let wl_reasons = reasons(&client, &ns.name, "web").await?;
    for r in ["Triggered", "RolloutStarted", "RolloutComplete"] {
        assert!(wl_reasons.iter().any(|x| x == r), "no {r} Event: {wl_reasons:?}");
    }

    // Paused: moving the tag back to version 1 changes nothing; unpausing rolls it out.
    let pause = |paused: bool| serde_json::json!({"spec": {"imageChangeTrigger": {"paused": paused}}});
    workloads
        .patch("web", &PatchParams::default(), &Patch::Merge(&pause(true)))
        .await?;
    copy_image(registry, "berth/demo:v1", &format!("{repo}:live"))?;
    // The tag itself moves back (the push is imported); only then does "nothing changed" say anything.
    let v1 = registry_digest(registry, &repo, "live").await?;
    let tags: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    wait_for("app:live imported back at v1", TIMEOUT, || async {
        let digest = tags.get("app.live").await?.status.and_then(|s| s.digest);
        Ok(if digest.as_deref() == Some(v1.as_str()) {
            Ok(())
        } else {
            Err(format!("digest {digest:?}"))
        })
    })
    .await?;
    // A reconcile of the Workload follows every tag change; give it time to act if it were going to.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_serving(&pods, 3, "v2").await?;
    assert_eq!(
        workloads.get("web").await?.status.unwrap_or_default().revision,
        2,
        "a paused trigger held nothing back"
    );
    workloads
        .patch("web", &PatchParams::default(), &Patch::Merge(&pause(false)))
        .await?;
    wait_serving(&pods, 3, "v1").await?;
    Ok(())
}

#[tokio::test]
async fn e2e_a_workload_naming_a_missing_tag_says_so_and_runs_nothing() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "missing").await?;
    kubectl_apply(&cluster, &ns.name, &workload_manifest("nothing:here", 2, ""))
        .map_err(anyhow::Error::msg)?;
    let workloads: Api<Workload> = Api::namespaced(client.clone(), &ns.name);
    let condition = wait_for("Progressing=False ImageNotResolved", TIMEOUT, || async {
        let s = workloads.get("web").await?.status.unwrap_or_default();
        let c = s.conditions.iter().find(|c| c.type_ == "Progressing").cloned();
        Ok(match c {
            Some(c) if c.reason == "ImageNotResolved" => Ok(c),
            other => Err(format!("{other:?}")),
        })
    })
    .await?;
    assert!(
        condition.message.contains("nothing:here"),
        "{}",
        condition.message
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        workload_pods(&pods, "web").await?.is_empty(),
        "pods were created for an unresolvable image"
    );
    Ok(())
}

#[tokio::test]
async fn e2e_pods_that_fit_nowhere_are_reported_unschedulable() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "unsched").await?;
    let registry = &cluster.registry;
    kubectl_apply(
        &cluster,
        &ns.name,
        &tag_manifest(&format!("{registry}/berth/demo:v1")),
    )
    .map_err(anyhow::Error::msg)?;
    let selector = "      nodeSelector: {disktype: nvme-that-no-host-has}\n";
    kubectl_apply(&cluster, &ns.name, &workload_manifest("app:live", 1, selector))
        .map_err(anyhow::Error::msg)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let (name, message) = wait_for("PodScheduled=False", TIMEOUT, || async {
        let list = pods.list(&ListParams::default()).await?;
        for p in list {
            let conditions = p
                .status
                .clone()
                .unwrap_or_default()
                .conditions
                .unwrap_or_default();
            if let Some(c) = conditions
                .iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            {
                return Ok(Ok((p.name_any(), c.message.clone().unwrap_or_default())));
            }
        }
        Ok(Err("no pod with PodScheduled=False".to_owned()))
    })
    .await?;
    assert!(message.contains("didn't match node selector"), "{message}");
    wait_for("a FailedScheduling Event", TIMEOUT, || async {
        let pod_reasons = reasons(&client, &ns.name, &name).await?;
        Ok(if pod_reasons.iter().any(|r| r == "FailedScheduling") {
            Ok(())
        } else {
            Err(format!("{pod_reasons:?}"))
        })
    })
    .await?;
    Ok(())
}
