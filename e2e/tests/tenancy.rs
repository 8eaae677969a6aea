//! Cross-namespace image references need a grant, with the real API server's RBAC deciding
//! (`controller/src/grants.rs`): an alias, a Workload's `imageFrom` and a trigger annotation in one namespace
//! naming a tag of another are refused (`Forbidden`, the grant to create named, no digest copied, the same
//! words whether the tag exists or not), resolve once the other namespace binds `berth-image-puller` to the
//! first's service accounts, and are refused again after the binding is deleted.

use std::time::Duration;

use berth_api::image::{IMPORT_REQUESTED_ANNOTATION, ImageStreamTag};
use berth_e2e::api::{
    TestNamespace, admin_client, copy_image, events_about, import_condition, kubectl_apply, unique, wait_for,
};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::http::registry_digest;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

fn alias(name: &str, tag: &str, from: &str, from_namespace: &str) -> String {
    json!({
        "apiVersion": "image.berth.dev/v1alpha1",
        "kind": "ImageStreamTag",
        "metadata": {"name": name},
        "spec": {"stream": "mine", "tag": tag,
                 "from": {"kind": "ImageStreamTag", "name": from, "namespace": from_namespace}},
    })
    .to_string()
}

/// The tag's `(status, reason, message)` and digest.
async fn tag_state(
    api: &Api<ImageStreamTag>,
    name: &str,
) -> anyhow::Result<(Option<(String, String, String)>, Option<String>)> {
    let t = api.get(name).await?;
    Ok((import_condition(&t), t.status.and_then(|s| s.digest)))
}

/// Asks for an import of `name` now (a new value of the import-requested annotation).
async fn request_import(api: &Api<ImageStreamTag>, name: &str) -> anyhow::Result<()> {
    let patch = json!({"metadata": {"annotations": {IMPORT_REQUESTED_ANNOTATION: unique()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Requests imports of `name` until its condition has `reason` (a grant's answer is kept for 10 s).
async fn wait_reason(
    api: &Api<ImageStreamTag>,
    name: &str,
    reason: &str,
) -> anyhow::Result<(String, Option<String>)> {
    wait_for(&format!("{name}: reason {reason}"), TIMEOUT, || async {
        let (condition, digest) = tag_state(api, name).await?;
        Ok(match condition {
            Some((_, r, message)) if r == reason => Ok((message, digest)),
            other => {
                request_import(api, name).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                Err(format!("condition {other:?}, digest {digest:?}"))
            }
        })
    })
    .await
}

async fn bind_puller(client: &Client, source: &str, consumer: &str) -> anyhow::Result<()> {
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("{consumer}-image-puller")),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "berth-image-puller".into(),
        },
        subjects: Some(vec![Subject {
            kind: "Group".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: format!("system:serviceaccounts:{consumer}"),
            namespace: None,
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), source)
        .create(&PostParams::default(), &binding)
        .await?;
    Ok(())
}

#[tokio::test]
async fn e2e_references_into_another_namespace_need_its_grant() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let owner = TestNamespace::create(&client, "owner").await?;
    let user = TestNamespace::create(&client, "user").await?;

    // team-b's tag, imported.
    let registry = &cluster.registry;
    let repo = format!("berth/e2e-tenancy-{}", unique());
    copy_image(registry, "berth/demo:v1", &format!("{repo}:v1"))?;
    let digest = registry_digest(registry, &repo, "v1").await?;
    let source = json!({
        "apiVersion": "image.berth.dev/v1alpha1", "kind": "ImageStreamTag", "metadata": {"name": "secret.v1"},
        "spec": {"stream": "secret", "tag": "v1", "importPolicy": {"insecure": true},
                 "from": {"kind": "DockerImage", "name": format!("{registry}/{repo}:v1")}},
    });
    kubectl_apply(&cluster, &owner.name, &source.to_string()).map_err(anyhow::Error::msg)?;
    let owner_tags: Api<ImageStreamTag> = Api::namespaced(client.clone(), &owner.name);
    wait_reason(&owner_tags, "secret.v1", "Imported").await?;

    // In the other namespace: an alias of it, an alias of a tag that does not exist, a Workload and a trigger.
    let tags: Api<ImageStreamTag> = Api::namespaced(client.clone(), &user.name);
    kubectl_apply(
        &cluster,
        &user.name,
        &alias("mine.v1", "v1", "secret:v1", &owner.name),
    )
    .map_err(anyhow::Error::msg)?;
    kubectl_apply(
        &cluster,
        &user.name,
        &alias("mine.v2", "v2", "secret:nothing", &owner.name),
    )
    .map_err(anyhow::Error::msg)?;
    let trigger = json!([{"from": {"kind": "ImageStreamTag", "name": "secret:v1", "namespace": owner.name},
                          "fieldPath": "spec.template.spec.containers[0].image"}]);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"image.openshift.io/triggers": trigger.to_string()}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "placeholder"}]}}},
    });
    kubectl_apply(&cluster, &user.name, &deployment.to_string()).map_err(anyhow::Error::msg)?;
    let workload = json!({
        "apiVersion": "apps.berth.dev/v1alpha1", "kind": "Workload", "metadata": {"name": "wl"},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "wl"}}, "spec": {"containers": [
            {"name": "app", "imageFrom": {"kind": "ImageStreamTag", "name": "secret:v1", "namespace": owner.name}}]}}},
    });
    kubectl_apply(&cluster, &user.name, &workload.to_string()).map_err(anyhow::Error::msg)?;

    // Refused: Forbidden, the grant named, no digest, and a missing tag reads the same as a present one.
    let (exists, copied) = wait_reason(&tags, "mine.v1", "Forbidden").await?;
    let (missing, _) = wait_reason(&tags, "mine.v2", "Forbidden").await?;
    assert_eq!(copied, None, "no digest copied from {}", owner.name);
    assert!(!exists.contains(&digest), "{exists}");
    assert!(
        exists.contains(&format!("--group=system:serviceaccounts:{}", user.name)),
        "{exists}"
    );
    assert_eq!(exists.replace("mine:v1", "mine:v2"), missing);
    wait_for("a Forbidden Event about the Deployment", TIMEOUT, || async {
        let events = events_about(&client, &user.name, "web").await?;
        Ok(match events.iter().find(|e| e.reason == "Forbidden") {
            Some(e) if e.note.contains("berth-image-puller") => Ok(()),
            _ => Err(format!("{events:?}")),
        })
    })
    .await?;
    let workloads: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &user.name,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apps.berth.dev",
            "v1alpha1",
            "Workload",
        )),
    );
    wait_for("the Workload's image refused", TIMEOUT, || async {
        let w = workloads.get("wl").await?;
        let status = w.data.get("status").cloned().unwrap_or_default().to_string();
        Ok(if status.contains("does not grant") {
            Ok(())
        } else {
            Err(status)
        })
    })
    .await?;
    // Its pods would only run the demo image: the refusal was what this Workload was for.
    workloads.delete("wl", &DeleteParams::default()).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &user.name);
    let image = |d: Deployment| {
        d.spec
            .and_then(|s| s.template.spec)
            .map(|s| s.containers[0].image.clone())
    };
    assert_eq!(
        image(deployments.get("web").await?),
        Some(Some("placeholder".into()))
    );

    // Granted: the alias takes the digest, a missing tag is now said to be missing, the trigger sets the image.
    bind_puller(&client, &owner.name, &user.name).await?;
    let (_, resolved) = wait_reason(&tags, "mine.v1", "Imported").await?;
    assert_eq!(resolved.as_deref(), Some(digest.as_str()));
    wait_reason(&tags, "mine.v2", "NotFound").await?;
    let pull_spec = format!("{registry}/{repo}@{digest}");
    wait_for("the trigger sets the image", TIMEOUT, || async {
        let now = image(deployments.get("web").await?).flatten();
        Ok(if now.as_deref() == Some(pull_spec.as_str()) {
            Ok(())
        } else {
            // Nothing moved in this namespace: touch the object so the trigger looks again.
            let touch = json!({"metadata": {"annotations": {"e2e/touch": unique()}}});
            deployments
                .patch("web", &PatchParams::default(), &Patch::Merge(&touch))
                .await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            Err(format!("image {now:?}"))
        })
    })
    .await?;

    // Revoked: the next resolution is refused again.
    Api::<RoleBinding>::namespaced(client.clone(), &owner.name)
        .delete(&format!("{}-image-puller", user.name), &DeleteParams::default())
        .await?;
    wait_reason(&tags, "mine.v1", "Forbidden").await?;
    Ok(())
}
