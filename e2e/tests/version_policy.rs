//! Version policies against the local cluster: a tag follows the newest tag of a repository in a semver
//! range, moves on a matching push (the registry's notification, not the schedule), stays on a push outside
//! the range, and an invalid policy is reported naming its field.

use std::time::Duration;

use berth_api::image::ImageStreamTag;
use berth_e2e::api::{
    TestNamespace, admin_client, copy_image, events_about, import_condition, kubectl_apply, unique, wait_tag,
};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::http::registry_digest;
use kube::api::{Api, Patch, PatchParams};

const TIMEOUT: Duration = Duration::from_secs(60);
const RANGE: &str = ">=1.0.0 <2.0.0";

fn chosen(t: &ImageStreamTag) -> Option<&str> {
    t.status.as_ref()?.chosen_tag.as_deref()
}

fn digest(t: &ImageStreamTag) -> Option<&str> {
    t.status.as_ref()?.digest.as_deref()
}

#[tokio::test]
async fn e2e_a_version_policy_follows_the_newest_matching_push_only() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "semver").await?;
    let registry = &cluster.registry;
    let repo = format!("berth/e2e-{}", unique());
    copy_image(registry, "berth/demo:v1", &format!("{repo}:v1.0.0"))?;
    copy_image(registry, "berth/demo:v1", &format!("{repo}:v1.1.0-rc.1"))?;
    copy_image(registry, "berth/demo:v2", &format!("{repo}:v2.0.0"))?;
    let v1 = registry_digest(registry, &repo, "v1.0.0").await?;

    let manifest = format!(
        "apiVersion: image.berth.dev/v1alpha1\nkind: ImageStreamTag\nmetadata: {{name: app.release}}\nspec:\n  stream: app\n  tag: release\n  from: {{kind: DockerImage, name: \"{registry}/{repo}\"}}\n  importPolicy:\n    insecure: true\n    versionPolicy:\n      semver: {{range: \"{RANGE}\"}}\n"
    );
    kubectl_apply(&cluster, &ns.name, &manifest).map_err(anyhow::Error::msg)?;
    let tags: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);

    // The highest release in range; the pre-release and 2.0.0 are passed over, and the message says why.
    let first = wait_tag(&tags, "app.release", "v1.0.0 chosen", TIMEOUT, |t| {
        chosen(t) == Some("v1.0.0") && digest(t) == Some(v1.as_str())
    })
    .await?;
    let (status, reason, message) = import_condition(&first).expect("a condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Imported"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "v1.0.0 is the highest of 1 tag in semver range \"{RANGE}\""
        )) && message.contains("1 pre-release"),
        "{message}"
    );

    // A push in range moves the tag at once, through the registry's notification.
    copy_image(registry, "berth/demo:v2", &format!("{repo}:v1.2.0"))?;
    let v12 = registry_digest(registry, &repo, "v1.2.0").await?;
    let moved = wait_tag(&tags, "app.release", "v1.2.0 chosen", TIMEOUT, |t| {
        chosen(t) == Some("v1.2.0") && digest(t) == Some(v12.as_str())
    })
    .await?;
    let history = &moved.status.as_ref().expect("status").history;
    let history_tags: Vec<Option<&str>> = history.iter().take(2).map(|e| e.tag.as_deref()).collect();
    assert_eq!(history_tags, [Some("v1.2.0"), Some("v1.0.0")], "{history:?}");
    let reasons: Vec<String> = events_about(&client, &ns.name, "app.release")
        .await?
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "TagUpdated"), "{reasons:?}");

    // Pushes outside the range change nothing: not the choice, not the digest, not even the object.
    let version = moved.metadata.resource_version.clone();
    for other in ["v3.0.0", "v1.3.0-rc.1", "latest"] {
        copy_image(registry, "berth/demo:v1", &format!("{repo}:{other}"))?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = tags.get("app.release").await?;
    assert_eq!(chosen(&after), Some("v1.2.0"));
    assert_eq!(digest(&after), Some(v12.as_str()));
    assert_eq!(
        after.metadata.resource_version, version,
        "a push outside the range rewrote the tag"
    );

    // An invalid range is reported naming the field, and the digest is kept.
    let patch =
        serde_json::json!({"spec": {"importPolicy": {"versionPolicy": {"semver": {"range": ">=1 <<2"}}}}});
    tags.patch("app.release", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let invalid = wait_tag(&tags, "app.release", "InvalidVersionPolicy", TIMEOUT, |t| {
        import_condition(t).is_some_and(|(_, reason, _)| reason == "InvalidVersionPolicy")
    })
    .await?;
    let (status, _, message) = import_condition(&invalid).expect("a condition");
    assert_eq!(status, "False");
    assert!(
        message.starts_with("importPolicy.versionPolicy.semver.range:"),
        "{message}"
    );
    assert_eq!(digest(&invalid), Some(v12.as_str()));
    Ok(())
}
