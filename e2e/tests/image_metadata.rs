//! Image metadata against the local cluster: a tag records what its image's config says (platform, size, layers,
//! labels, ports) once per digest, `kubectl berth describe` and `kubectl get -o wide` show it, an alias takes its
//! target's, and a push of the same digest writes nothing.

use std::process::Command;
use std::time::Duration;

use berth_api::image::ImageStreamTag;
use berth_e2e::api::{TestNamespace, admin_client, copy_image, kubectl_apply, unique, wait_tag};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::http::registry_digest;
use berth_e2e::plugin;
use kube::api::Api;

const TIMEOUT: Duration = Duration::from_secs(60);
const VERSION_LABEL: &str = "org.opencontainers.image.version";

/// Whether `t` describes `digest` with the demo image's config of `version` (`hack/lib/images.sh`).
fn describes(t: &ImageStreamTag, digest: &str, version: &str) -> bool {
    let image = t.status.as_ref().and_then(|s| s.image.as_ref());
    image.is_some_and(|i| {
        i.digest == digest && i.labels.get(VERSION_LABEL).map(String::as_str) == Some(version)
    })
}

#[tokio::test]
async fn e2e_a_tag_records_its_images_metadata_once_per_digest() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "meta").await?;
    let registry = &cluster.registry;
    let repo = format!("berth/e2e-{}", unique());
    copy_image(registry, "berth/demo:v1", &format!("{repo}:live"))?;
    let v1 = registry_digest(registry, &repo, "live").await?;
    let manifest = format!(
        "apiVersion: image.berth.dev/v1alpha1\nkind: ImageStreamTag\nmetadata: {{name: app.live}}\nspec:\n  stream: app\n  tag: live\n  from: {{kind: DockerImage, name: \"{registry}/{repo}:live\"}}\n  importPolicy: {{insecure: true}}\n---\napiVersion: image.berth.dev/v1alpha1\nkind: ImageStreamTag\nmetadata: {{name: app.latest}}\nspec:\n  stream: app\n  tag: latest\n  from: {{kind: ImageStreamTag, name: \"app:live\"}}\n"
    );
    kubectl_apply(&cluster, &ns.name, &manifest).map_err(anyhow::Error::msg)?;
    let tags: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);

    // What the demo image's config says (hack/lib/images.sh builds it with umoci).
    let live = wait_tag(&tags, "app.live", "metadata of v1", TIMEOUT, |t| {
        describes(t, &v1, "v1")
    })
    .await?;
    let image = live
        .status
        .as_ref()
        .and_then(|s| s.image.clone())
        .expect("metadata");
    assert_eq!(image.platform.as_deref(), Some("linux/amd64"), "{image:?}");
    assert_eq!(image.exposed_ports, ["8080/tcp"], "{image:?}");
    assert!(
        image.layers.unwrap_or(0) >= 1 && image.size.unwrap_or(0) > 0,
        "{image:?}"
    );
    assert!(image.user.is_none() && image.unreadable.is_none(), "{image:?}");

    // The alias takes its target's metadata, with no registry request of its own.
    let alias = wait_tag(&tags, "app.latest", "the alias's metadata", TIMEOUT, |t| {
        describes(t, &v1, "v1")
    })
    .await?;
    assert_eq!(alias.status.and_then(|s| s.image), Some(image));

    // A new digest: new metadata, through the registry's push notification.
    copy_image(registry, "berth/demo:v2", &format!("{repo}:live"))?;
    let v2 = registry_digest(registry, &repo, "live").await?;
    let moved = wait_tag(&tags, "app.live", "metadata of v2", TIMEOUT, |t| {
        describes(t, &v2, "v2")
    })
    .await?;

    // The same digest pushed again: imported, and nothing written (no second read of the config either, as the
    // import scenarios count).
    copy_image(registry, "berth/demo:v2", &format!("{repo}:live"))?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let again = tags.get("app.live").await?;
    assert_eq!(again.metadata.resource_version, moved.metadata.resource_version);

    // describe and -o wide show it.
    let described = plugin::ok(&cluster, &ns.name, &["describe", "app:live"]);
    for needle in ["linux/amd64", "8080/tcp", &format!("{VERSION_LABEL}=v2")] {
        assert!(
            described.contains(needle),
            "describe lacks {needle:?}:\n{described}"
        );
    }
    let wide = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["get", "istag", "app.live", "-o", "wide", "-n", &ns.name])
        .output()?;
    let wide = String::from_utf8_lossy(&wide.stdout);
    let header = wide.lines().next().unwrap_or_default();
    for column in ["PLATFORM", "SIZE", "CREATED"] {
        assert!(header.contains(column), "{column} missing:\n{wide}");
    }
    assert!(wide.contains("linux/amd64"), "{wide}");
    Ok(())
}
