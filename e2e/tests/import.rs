//! Image import against the local cluster: the real API server, the real registry with its push
//! notifications, and the berth-controller that `hack/up.sh` started.

use std::time::{Duration, Instant};

use berth_api::image::{ImageStream, ImageStreamTag};
use berth_e2e::api::{
    TestNamespace, admin_client, copy_image, events_about, import_condition, kubectl_apply, unique, wait_for,
};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::http::registry_digest;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Client, ResourceExt};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until the tag `name` satisfies `ok`.
async fn wait_tag(
    api: &Api<ImageStreamTag>,
    name: &str,
    what: &str,
    ok: impl Fn(&ImageStreamTag) -> bool,
) -> anyhow::Result<ImageStreamTag> {
    berth_e2e::api::wait_tag(api, name, what, TIMEOUT, ok).await
}

fn tag_manifest(name: &str, stream: &str, tag: &str, from: &str) -> String {
    format!(
        "apiVersion: image.berth.dev/v1alpha1\nkind: ImageStreamTag\nmetadata: {{name: {name}}}\nspec:\n  stream: {stream}\n  tag: {tag}\n  from: {{kind: DockerImage, name: \"{from}\"}}\n  importPolicy: {{insecure: true}}\n"
    )
}

async fn events_for(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    Ok(events_about(client, ns, name)
        .await?
        .into_iter()
        .map(|e| (e.reason, e.note))
        .collect())
}

#[tokio::test]
async fn e2e_a_push_moves_the_tag_within_seconds_with_history() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "push").await?;
    let registry = &cluster.registry;
    let repo = format!("berth/e2e-{}", unique());
    copy_image(registry, "berth/demo:v1", &format!("{repo}:live"))?;
    let v1 = registry_digest(registry, &repo, "live").await?;

    let from = format!("{registry}/{repo}:live");
    kubectl_apply(
        &cluster,
        &ns.name,
        &tag_manifest("app.live", "app", "live", &from),
    )
    .map_err(anyhow::Error::msg)?;
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    let first = wait_tag(&api, "app.live", "imported at v1", |t| {
        t.status.as_ref().and_then(|s| s.digest.as_deref()) == Some(v1.as_str())
    })
    .await?;
    let status = first.status.clone().unwrap();
    assert_eq!(
        status.pull_spec.as_deref(),
        Some(format!("{registry}/{repo}@{v1}").as_str())
    );
    assert_eq!(status.history.len(), 1);
    assert_eq!(import_condition(&first).unwrap().1, "Imported");

    // Push version 2 to the same tag: the registry's notification re-imports it.
    let pushed = Instant::now();
    copy_image(registry, "berth/demo:v2", &format!("{repo}:live"))?;
    let push_took = pushed.elapsed();
    let v2 = registry_digest(registry, &repo, "live").await?;
    assert_ne!(v1, v2);
    let moved = wait_tag(&api, "app.live", "moved to v2", |t| {
        t.status.as_ref().and_then(|s| s.digest.as_deref()) == Some(v2.as_str())
    })
    .await?;
    eprintln!(
        "push of version 2 took {push_took:?}; the tag showed the new digest {:?} after the push began",
        pushed.elapsed()
    );
    let history: Vec<_> = moved
        .status
        .as_ref()
        .unwrap()
        .history
        .iter()
        .map(|h| h.digest.clone())
        .collect();
    assert_eq!(
        history,
        vec![v2.clone(), v1.clone()],
        "history is newest first, one entry per digest"
    );

    // Asking again with nothing new adds no history, and then nothing writes the object any more.
    let mut asked = moved.clone();
    asked.annotations_mut().insert(
        berth_api::image::IMPORT_REQUESTED_ANNOTATION.into(),
        "again".into(),
    );
    api.replace("app.live", &Default::default(), &asked).await?;
    let answered = wait_tag(&api, "app.live", "answered the import request", |t| {
        t.status
            .as_ref()
            .and_then(|s| s.observed_import_request.as_deref())
            == Some("again")
    })
    .await?;
    assert_eq!(answered.status.as_ref().unwrap().history.len(), 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = api.get("app.live").await?;
    assert_eq!(
        idle.resource_version(),
        answered.resource_version(),
        "an idle tag was written again"
    );

    let seen = events_about(&client, &ns.name, "app.live").await?;
    let reasons: Vec<_> = seen.iter().map(|e| e.reason.as_str()).collect();
    assert!(
        reasons.contains(&"Imported") && reasons.contains(&"TagUpdated"),
        "{reasons:?}"
    );
    // A repeated Event is one object with a series count: count occurrences, not objects.
    let occurrences: usize = seen.iter().map(|e| e.count).sum();
    assert_eq!(occurrences, 2, "one Event per transition, no more: {seen:?}");
    Ok(())
}

#[tokio::test]
async fn e2e_a_missing_image_is_reported_not_found() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "notfound").await?;
    let from = format!("{}/berth/demo:no-such-tag", cluster.registry);
    kubectl_apply(
        &cluster,
        &ns.name,
        &tag_manifest("app.missing", "app", "missing", &from),
    )
    .map_err(anyhow::Error::msg)?;
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    let tag = wait_tag(&api, "app.missing", "ImportSuccess=False", |t| {
        import_condition(t).is_some_and(|c| c.0 == "False")
    })
    .await?;
    let (_, reason, message) = import_condition(&tag).unwrap();
    assert_eq!(reason, "NotFound", "{message}");
    assert!(
        message.contains("no-such-tag"),
        "the message names what was missing: {message}"
    );
    assert!(tag.status.unwrap().digest.is_none());
    wait_for("an ImportFailed Event", TIMEOUT, || async {
        let events = events_for(&client, &ns.name, "app.missing").await?;
        Ok(if events.iter().any(|(r, _)| r == "ImportFailed") {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn e2e_inline_tags_aliases_loops_and_conflicts() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "stream").await?;
    let registry = &cluster.registry;
    let v1 = registry_digest(registry, "berth/demo", "v1").await?;
    let stream = |extra: &str| {
        format!(
            "apiVersion: image.berth.dev/v1alpha1\nkind: ImageStream\nmetadata: {{name: web}}\nspec:\n  tags:\n  - {{name: base, from: {{kind: DockerImage, name: \"{registry}/berth/demo:v1\"}}, importPolicy: {{insecure: true}}}}\n  - {{name: loop1, from: {{kind: ImageStreamTag, name: \"web:loop2\"}}}}\n  - {{name: loop2, from: {{kind: ImageStreamTag, name: loop1}}}}\n  - {{name: shared, from: {{kind: DockerImage, name: \"{registry}/berth/demo:v2\"}}}}\n{extra}"
        )
    };
    // A standalone tag `shared` of the same stream: the inline one must not fight it.
    kubectl_apply(
        &cluster,
        &ns.name,
        &tag_manifest("mine", "web", "shared", &format!("{registry}/berth/demo:v1")),
    )
    .map_err(anyhow::Error::msg)?;
    kubectl_apply(
        &cluster,
        &ns.name,
        &stream("  - {name: Alias_1, from: {kind: ImageStreamTag, name: \"web:base\"}}\n"),
    )
    .map_err(anyhow::Error::msg)?;

    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &ns.name);
    let has_digest = |d: &str| {
        let d = d.to_owned();
        move |t: &ImageStreamTag| t.status.as_ref().and_then(|s| s.digest.as_deref()) == Some(d.as_str())
    };
    wait_tag(&api, "web.base", "imported", has_digest(&v1)).await?;
    let alias_name = berth_api::names::image_stream_tag_name("web", "Alias_1");
    let alias = wait_tag(&api, &alias_name, "following web:base", has_digest(&v1)).await?;
    assert_eq!(alias.spec.tag, "Alias_1");
    assert_eq!(
        alias.owner_references()[0].name,
        "web",
        "inline tags are owned by their stream"
    );
    let looped = wait_tag(&api, "web.loop1", "reported as a loop", |t| {
        import_condition(t).is_some_and(|c| c.1 == "AliasLoop")
    })
    .await?;
    assert!(import_condition(&looped).unwrap().2.contains("web:loop2"));

    let streams: Api<ImageStream> = Api::namespaced(client.clone(), &ns.name);
    let conflicted = wait_for("stream web: TagConflict=True", TIMEOUT, || async {
        let s = streams.get("web").await?;
        let c = s
            .status
            .as_ref()
            .and_then(|st| st.conditions.iter().find(|c| c.type_ == "TagConflict").cloned());
        Ok(match c {
            Some(c) if c.status == "True" => Ok(c),
            other => Err(format!("{other:?}")),
        })
    })
    .await?;
    assert!(conflicted.message.contains("shared"), "{}", conflicted.message);
    let mine = api.get("mine").await?;
    assert_eq!(
        mine.spec.from.name,
        format!("{registry}/berth/demo:v1"),
        "the standalone tag was left alone"
    );
    assert!(mine.owner_references().is_empty());

    // Removing the inline tag from the stream removes its ImageStreamTag.
    kubectl_apply(&cluster, &ns.name, &stream("")).map_err(anyhow::Error::msg)?;
    wait_for(&format!("{alias_name} removed"), TIMEOUT, || async {
        Ok(match api.get_opt(&alias_name).await? {
            None => Ok(()),
            Some(t) => Err(format!(
                "still there, deletion {:?}",
                t.metadata.deletion_timestamp
            )),
        })
    })
    .await?;
    let summary = streams.get("web").await?.status.unwrap_or_default();
    assert!(
        summary.tag_count >= 4 && summary.resolved_tags >= 2,
        "{summary:?}"
    );
    Ok(())
}

#[tokio::test]
async fn e2e_the_api_server_refuses_bad_manifests_naming_the_field() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "schema").await?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/tests/fixtures/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let manifest = std::fs::read_to_string(&path)?;
        let field = manifest
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .expect("an expect line")
            .to_owned();
        // Sent as it is, so that the API server's own validation answers (kubectl would check first).
        let object: DynamicObject = serde_saphyr::from_str(&manifest)?;
        let types = object.types.clone().expect("apiVersion and kind");
        let (group, version) = types.api_version.split_once('/').expect("a group");
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &types.kind));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{}: {status:?}", path.display());
                // Older servers leave list indices out of the path (`spec.tags.importPolicy`).
                let named = status.message.contains(&field)
                    || without_indices(&status.message).contains(&without_indices(&field));
                assert!(
                    named,
                    "{}: the refusal does not name {field}: {}",
                    path.display(),
                    status.message
                );
                eprintln!(
                    "{}: {}",
                    path.file_name().unwrap().to_string_lossy(),
                    status.message
                );
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
        checked += 1;
    }
    assert!(
        checked >= 6,
        "only {checked} invalid manifests found in {}",
        dir.display()
    );
    Ok(())
}

/// `spec.tags[0].name` as `spec.tags.name`: only list indices (`[` digits `]`) go, so that a message that
/// lists several errors in brackets (`is invalid: [a: ..., b: ...]`) keeps them.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if close > 0 && after[..close].bytes().all(|b| b.is_ascii_digit()) => {
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn without_indices_drops_only_list_indices() {
    assert_eq!(without_indices("spec.tags[0].from.kind"), "spec.tags.from.kind");
    assert_eq!(
        without_indices("is invalid: [spec.tags.from.kind: x, spec.tags[12].name: y]"),
        "is invalid: [spec.tags.from.kind: x, spec.tags.name: y]"
    );
}
