//! Annotation triggers against the local cluster: plain Deployments, StatefulSets, DaemonSets and CronJobs with
//! `image.openshift.io/triggers` (or `image.berth.dev/triggers`) get the pull spec of the tag they follow, from
//! the berth-controller that `hack/up.sh` started, when the registry reports a push.

use std::time::{Duration, Instant};

use berth_api::image::ImageStreamTag;
use berth_e2e::api::{
    TestNamespace, admin_client, copy_image, events_about, kubectl_apply, unique, wait_for,
};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::http::registry_digest;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

/// How long a settled object is watched for writes that should not come.
const QUIET: Duration = Duration::from_secs(4);

/// One trigger on container `container` of a pod spec at `pod_spec`.
fn trigger(from: &str, pod_spec: &str, container: &str, paused: bool) -> Value {
    json!({
        "from": {"kind": "ImageStreamTag", "name": from},
        "fieldPath": format!("{pod_spec}.containers[?(@.name==\"{container}\")].image"),
        "paused": paused,
    })
}

fn pod_template(containers: &[(&str, &str)]) -> Value {
    json!({
        "metadata": {"labels": {"app": "t"}},
        "spec": {
            // Nothing runs: these tests are about the object, not its pods.
            "nodeSelector": {"berth.dev/e2e-none": "true"},
            "containers": containers.iter().map(|(n, i)| json!({"name": n, "image": i})).collect::<Vec<_>>(),
        },
    })
}

fn deployment(name: &str, annotation: &str, triggers: &str, containers: &[(&str, &str)]) -> String {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {annotation: triggers}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "t"}}, "template": pod_template(containers)},
    })
    .to_string()
}

fn tag_manifest(from: &str) -> String {
    json!({
        "apiVersion": "image.berth.dev/v1alpha1",
        "kind": "ImageStreamTag",
        "metadata": {"name": "app.live"},
        "spec": {"stream": "app", "tag": "live", "from": {"kind": "DockerImage", "name": from},
                 "importPolicy": {"insecure": true}},
    })
    .to_string()
}

/// A test repository with `berth/demo:v1` at `:live`, and the tag `app:live` that follows it, imported.
/// Returns the repository and the pull spec of v1.
async fn imported_tag(cluster: &LocalCluster, client: &Client, ns: &str) -> anyhow::Result<(String, String)> {
    let registry = &cluster.registry;
    let repo = format!("berth/e2e-trig-{}", unique());
    copy_image(registry, "berth/demo:v1", &format!("{repo}:live"))?;
    let v1 = registry_digest(registry, &repo, "live").await?;
    kubectl_apply(cluster, ns, &tag_manifest(&format!("{registry}/{repo}:live")))
        .map_err(anyhow::Error::msg)?;
    let pull_spec = format!("{registry}/{repo}@{v1}");
    wait_pull_spec(client, ns, &pull_spec).await?;
    Ok((repo, pull_spec))
}

async fn wait_pull_spec(client: &Client, ns: &str, pull_spec: &str) -> anyhow::Result<()> {
    let tags: Api<ImageStreamTag> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("app:live at {pull_spec}"), TIMEOUT, || async {
        let t = tags.get_opt("app.live").await?;
        let now = t.and_then(|t| t.status?.pull_spec);
        Ok(if now.as_deref() == Some(pull_spec) {
            Ok(())
        } else {
            Err(format!("pull spec {now:?}"))
        })
    })
    .await
}

/// Pushes `berth/demo:v2` to `repo:live`; returns when the push began and the new pull spec.
async fn push_v2(cluster: &LocalCluster, repo: &str) -> anyhow::Result<(Instant, String)> {
    let pushed = Instant::now();
    copy_image(&cluster.registry, "berth/demo:v2", &format!("{repo}:live"))?;
    let v2 = registry_digest(&cluster.registry, repo, "live").await?;
    Ok((pushed, format!("{}/{repo}@{v2}", cluster.registry)))
}

/// The image of container `name` in `object`'s pod spec at `pod_spec` (a JSON pointer).
fn image(object: &Value, pod_spec: &str, name: &str) -> Option<String> {
    object
        .pointer(&format!("{pod_spec}/containers"))?
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?["image"]
        .as_str()
        .map(str::to_owned)
}

/// Waits until container `container` of `name` runs `want`; returns the object then.
async fn wait_image(
    api: &Api<DynamicObject>,
    name: &str,
    pointer: &str,
    container: &str,
    want: &str,
) -> anyhow::Result<Value> {
    wait_for(&format!("{name}/{container} at {want}"), TIMEOUT, || async {
        let o = serde_json::to_value(api.get(name).await?)?;
        Ok(match image(&o, pointer, container) {
            Some(i) if i == want => Ok(o),
            other => Err(format!("image {other:?}")),
        })
    })
    .await
}

fn generation(object: &Value) -> i64 {
    object["metadata"]["generation"].as_i64().unwrap_or_default()
}

/// `(reason, note)` of the Events about `name`, once per time it happened.
async fn events_for(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    Ok(events_about(client, ns, name)
        .await?
        .into_iter()
        .flat_map(|e| std::iter::repeat_n((e.reason, e.note), e.count))
        .collect())
}

fn dynamic(client: &Client, ns: &str, group: &str, version: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

#[tokio::test]
async fn e2e_an_annotated_deployment_takes_a_pushed_digest_in_one_write() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "trig").await?;
    let (repo, v1) = imported_tag(&cluster, &client, &ns.name).await?;
    let spec = "spec.template.spec";
    let triggers = json!([trigger("app:live", spec, "web", false)]).to_string();
    let manifest = deployment(
        "web",
        "image.openshift.io/triggers",
        &triggers,
        &[
            ("web", "example.invalid/placeholder:1"),
            ("side", "example.invalid/side:1"),
        ],
    );
    kubectl_apply(&cluster, &ns.name, &manifest).map_err(anyhow::Error::msg)?;
    let api = dynamic(&client, &ns.name, "apps", "v1", "Deployment");
    let pointer = "/spec/template/spec";
    // A new object gets the tag's current pull spec at once.
    let first = wait_image(&api, "web", pointer, "web", &v1).await?;
    let before = generation(&first);

    let (pushed, v2) = push_v2(&cluster, &repo).await?;
    let moved = wait_image(&api, "web", pointer, "web", &v2).await?;
    let took = pushed.elapsed();
    eprintln!("push to the Deployment's new image: {took:?}");
    assert_eq!(generation(&moved), before + 1, "one write for one move");
    assert_eq!(
        image(&moved, pointer, "side").as_deref(),
        Some("example.invalid/side:1")
    );

    // Nothing more is written: not by resyncs, not by the Deployment's own status updates.
    tokio::time::sleep(QUIET).await;
    let settled: Deployment = Api::namespaced(client.clone(), &ns.name).get("web").await?;
    assert_eq!(
        settled.metadata.generation,
        Some(before + 1),
        "no write after the move"
    );
    let triggered: Vec<_> = events_for(&client, &ns.name, "web")
        .await?
        .into_iter()
        .filter(|(reason, _)| reason == "Triggered")
        .collect();
    assert_eq!(
        triggered.len(),
        2,
        "one Event per change (creation, push): {triggered:?}"
    );
    assert!(
        triggered.iter().any(|(_, note)| note.contains(&v2)),
        "{triggered:?}"
    );
    Ok(())
}

#[tokio::test]
async fn e2e_a_paused_trigger_holds_while_berths_key_wins() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "trig-paused").await?;
    let (repo, v1) = imported_tag(&cluster, &client, &ns.name).await?;
    let spec = "spec.template.spec";
    let paused = json!([trigger("app:live", spec, "web", true)]).to_string();
    let held = "example.invalid/held:1";
    let mut manifest: Value = serde_json::from_str(&deployment(
        "held",
        "image.berth.dev/triggers",
        &paused,
        &[("web", held)],
    ))?;
    // OpenShift's key would follow the tag, but Berth's is present and wins.
    manifest["metadata"]["annotations"]["image.openshift.io/triggers"] =
        json!([trigger("app:live", spec, "web", false)])
            .to_string()
            .into();
    kubectl_apply(&cluster, &ns.name, &manifest.to_string()).map_err(anyhow::Error::msg)?;
    let api = dynamic(&client, &ns.name, "apps", "v1", "Deployment");
    let pointer = "/spec/template/spec";

    let (_, v2) = push_v2(&cluster, &repo).await?;
    wait_pull_spec(&client, &ns.name, &v2).await?;
    tokio::time::sleep(QUIET).await;
    let o = serde_json::to_value(api.get("held").await?)?;
    assert_eq!(
        image(&o, pointer, "web").as_deref(),
        Some(held),
        "a paused trigger holds"
    );
    assert_eq!(generation(&o), 1, "nothing written");
    assert_ne!(v1, v2);
    Ok(())
}

#[tokio::test]
async fn e2e_statefulsets_daemonsets_and_cronjobs_follow_too() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "trig-kinds").await?;
    let (repo, v1) = imported_tag(&cluster, &client, &ns.name).await?;
    // Kubernetes 1.20 serves CronJob in batch/v1beta1 only.
    let batch_v1 = client
        .list_api_group_resources("batch/v1")
        .await?
        .resources
        .iter()
        .any(|r| r.name == "cronjobs");
    let cron_version = if batch_v1 { "v1" } else { "v1beta1" };

    let template = pod_template(&[("main", "example.invalid/x:1")]);
    let annotation = |pod_spec: &str| -> Value {
        json!({"image.openshift.io/triggers": json!([trigger("app:live", pod_spec, "main", false)]).to_string()})
    };
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "annotations": annotation("spec.template.spec")},
        "spec": {"replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "t"}}, "template": template},
    });
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "annotations": annotation("spec.template.spec")},
        "spec": {"selector": {"matchLabels": {"app": "t"}}, "template": template},
    });
    let mut job_template = template.clone();
    job_template["spec"]["restartPolicy"] = "Never".into();
    let cj = json!({
        "apiVersion": format!("batch/{cron_version}"), "kind": "CronJob",
        "metadata": {"name": "nightly", "annotations": annotation("spec.jobTemplate.spec.template.spec")},
        "spec": {"schedule": "0 3 * * *", "suspend": true, "jobTemplate": {"spec": {"template": job_template}}},
    });
    for manifest in [&sts, &ds, &cj] {
        kubectl_apply(&cluster, &ns.name, &manifest.to_string()).map_err(anyhow::Error::msg)?;
    }
    let objects = [
        (
            dynamic(&client, &ns.name, "apps", "v1", "StatefulSet"),
            "db",
            "/spec/template/spec",
        ),
        (
            dynamic(&client, &ns.name, "apps", "v1", "DaemonSet"),
            "agent",
            "/spec/template/spec",
        ),
        (
            dynamic(&client, &ns.name, "batch", cron_version, "CronJob"),
            "nightly",
            "/spec/jobTemplate/spec/template/spec",
        ),
    ];
    for (api, name, pointer) in &objects {
        wait_image(api, name, pointer, "main", &v1).await?;
    }
    let (pushed, v2) = push_v2(&cluster, &repo).await?;
    for (api, name, pointer) in &objects {
        wait_image(api, name, pointer, "main", &v2).await?;
        eprintln!("push to {name}'s new image: {:?}", pushed.elapsed());
    }
    Ok(())
}

#[tokio::test]
async fn e2e_a_malformed_annotation_is_reported_once_per_error() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "trig-bad").await?;
    let containers = [("web", "example.invalid/web:1")];
    let bad_path = json!([{"from": {"kind": "ImageStreamTag", "name": "app:live"},
                           "fieldPath": "spec.template.spec.containers[*].image"}])
    .to_string();
    kubectl_apply(
        &cluster,
        &ns.name,
        &deployment("bad", "image.openshift.io/triggers", &bad_path, &containers),
    )
    .map_err(anyhow::Error::msg)?;
    let invalid = |client: Client, ns: String| async move {
        Ok::<_, anyhow::Error>(
            events_for(&client, &ns, "bad")
                .await?
                .into_iter()
                .filter(|(reason, _)| reason == "InvalidTrigger")
                .map(|(_, note)| note)
                .collect::<Vec<_>>(),
        )
    };
    let first = wait_for("an InvalidTrigger Event", TIMEOUT, || async {
        let notes = invalid(client.clone(), ns.name.clone()).await?;
        Ok(if notes.is_empty() {
            Err("none yet".to_owned())
        } else {
            Ok(notes)
        })
    })
    .await?;
    assert!(
        first[0].contains("select the container by index or by name"),
        "{first:?}"
    );

    // A change of the object that leaves the same error reports nothing new.
    let mut relabelled: Value = serde_json::from_str(&deployment(
        "bad",
        "image.openshift.io/triggers",
        &bad_path,
        &containers,
    ))?;
    relabelled["metadata"]["labels"] = json!({"touched": "yes"});
    kubectl_apply(&cluster, &ns.name, &relabelled.to_string()).map_err(anyhow::Error::msg)?;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        invalid(client.clone(), ns.name.clone()).await?.len(),
        1,
        "once per error"
    );

    // Another error is another Event.
    let bad_json = "[{\"from\": ";
    kubectl_apply(
        &cluster,
        &ns.name,
        &deployment("bad", "image.openshift.io/triggers", bad_json, &containers),
    )
    .map_err(anyhow::Error::msg)?;
    let both = wait_for("a second InvalidTrigger Event", TIMEOUT, || async {
        let notes = invalid(client.clone(), ns.name.clone()).await?;
        Ok(if notes.len() >= 2 {
            Ok(notes)
        } else {
            Err(format!("{notes:?}"))
        })
    })
    .await?;
    assert!(
        both.iter().any(|n| n.contains("is not a JSON list of triggers")),
        "{both:?}"
    );
    Ok(())
}

#[tokio::test]
async fn e2e_several_quick_moves_end_in_one_write_of_the_last_digest() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "trig-quick").await?;
    // Pinned digests need no registry: the tag moves as fast as its spec is changed.
    let pinned = |c: char| format!("example.invalid/app@sha256:{}", c.to_string().repeat(64));
    let tag = |c: char| {
        json!({
            "apiVersion": "image.berth.dev/v1alpha1", "kind": "ImageStreamTag",
            "metadata": {"name": "app.live"},
            "spec": {"stream": "app", "tag": "live", "from": {"kind": "DockerImage", "name": pinned(c)}},
        })
    };
    kubectl_apply(&cluster, &ns.name, &tag('a').to_string()).map_err(anyhow::Error::msg)?;
    wait_pull_spec(&client, &ns.name, &pinned('a')).await?;
    let spec = "spec.template.spec";
    let triggers = json!([trigger("app:live", spec, "web", false)]).to_string();
    let manifest = deployment(
        "quick",
        "image.berth.dev/triggers",
        &triggers,
        &[("web", "example.invalid/placeholder:1")],
    );
    kubectl_apply(&cluster, &ns.name, &manifest).map_err(anyhow::Error::msg)?;
    let api = dynamic(&client, &ns.name, "apps", "v1", "Deployment");
    let pointer = "/spec/template/spec";
    let before = generation(&wait_image(&api, "quick", pointer, "web", &pinned('a')).await?);

    let tags: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    for c in ['b', 'c', 'd'] {
        let patch = json!({"spec": {"from": {"kind": "DockerImage", "name": pinned(c)}}});
        tags.patch(
            "app.live",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    }
    let moved = wait_image(&api, "quick", pointer, "web", &pinned('d')).await?;
    tokio::time::sleep(QUIET).await;
    let settled = serde_json::to_value(api.get("quick").await?)?;
    let history = tags.get("app.live").await?.status.map(|s| s.history.len());
    eprintln!("the tag's history holds {history:?} digests (a, then the moves seen)");
    assert_eq!(
        (generation(&moved), generation(&settled)),
        (before + 1, before + 1),
        "one write, of the last digest (the tag's history holds {history:?} digests)"
    );
    Ok(())
}
