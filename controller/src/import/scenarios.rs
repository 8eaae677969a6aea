//! The import reconciler against a mocked API server that expects each request in order
//! ([`crate::testing::api_server`]) and a fake registry on 127.0.0.1 ([`crate::testing::fake_registry`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::image::ImageStreamTag;
use berth_api::version_policy::{SemverPolicy, VersionPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::reconcile::reconcile;
use crate::context::{FIELD_MANAGER, PUSH_RECHECK, Push};
use crate::testing::api_server::{self, Expect};
use crate::testing::fake_registry::{
    FakeRegistry, OCI_MANIFEST, answer, config_bytes, image_manifest_for, manifest_bytes_with, sha256,
};
use crate::testing::fixtures::{NS, TagFixture, digest, istag};
use crate::testing::{PACING, context};

const STATUS: &str = "/apis/image.berth.dev/v1alpha1/namespaces/ns/imagestreamtags/demo.v1/status";

/// Tag `demo:v1`, stored at generation 1, following `demo:v1` of `registry` over plain HTTP.
fn tag_of(registry: &FakeRegistry) -> ImageStreamTag {
    istag(NS, "demo", "v1")
        .stored("uid-1", 1)
        .follows_image(&format!("{}/berth/demo:v1", registry.host))
        .import_policy(true, false)
}

/// The status apply of an import, answered with the tag as stored with it (kept in `written`).
fn status_apply(tag: &ImageStreamTag, written: &Arc<Mutex<Option<ImageStreamTag>>>) -> Expect {
    let stored = serde_json::to_value(tag).expect("json");
    let written = written.clone();
    Expect::apply(STATUS, FIELD_MANAGER)
        .json("/apiVersion", json!("image.berth.dev/v1alpha1"))
        .json("/kind", json!("ImageStreamTag"))
        .absent("/spec")
        .absent("/metadata")
        .answer_with(move |sent| {
            let mut object = stored;
            object["status"] = sent["status"].clone();
            *written.lock().unwrap() = Some(serde_json::from_value(object.clone()).expect("a tag"));
            (http::StatusCode::OK, object)
        })
}

fn event(reason: &str, type_: &str) -> Expect {
    Expect::event(NS)
        .json("/reason", json!(reason))
        .json("/type", json!(type_))
        .json("/action", json!("Import"))
        .json("/regarding/kind", json!("ImageStreamTag"))
        .json("/regarding/name", json!("demo.v1"))
}

/// Reconciles `tag` for the import a registry push of `digest` asks for (as the webhook requests it).
async fn reconcile_push(
    tag: ImageStreamTag,
    digest: String,
    ctx: Arc<crate::context::Context>,
) -> crate::error::Result<Action> {
    ctx.request_push_import(
        ObjectRef::from_obj(&tag),
        Push {
            digest: Some(digest),
            ..Push::default()
        },
    );
    reconcile(Arc::new(tag), ctx).await
}

#[tokio::test]
async fn a_new_tag_is_imported_status_applied_once_under_the_field_manager_then_one_event() {
    let registry = FakeRegistry::serving(manifest_bytes_with('1')).await;
    let d1 = sha256(&manifest_bytes_with('1'));
    let tag = tag_of(&registry);
    let pull_spec = format!("{}/berth/demo@{d1}", registry.host);
    let written = Arc::default();
    let (client, server) = api_server::mock([
        status_apply(&tag, &written)
            .json("/status/digest", json!(d1))
            .json("/status/pullSpec", json!(pull_spec))
            .json("/status/observedGeneration", json!(1))
            .json("/status/history/0/digest", json!(d1))
            .absent("/status/history/1")
            .json("/status/conditions/0/type", json!("ImportSuccess"))
            .json("/status/conditions/0/status", json!("True"))
            .json("/status/conditions/0/reason", json!("Imported")),
        event("Imported", "Normal").json("/note", json!(format!("imported {pull_spec}"))),
    ]);
    let ctx = context(client, vec![tag.clone()], vec![]);
    let action = server.run(reconcile(Arc::new(tag), ctx)).await.expect("imported");
    // Not scheduled: nothing to do until the tag changes.
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn importing_the_same_digest_again_writes_nothing_and_says_nothing() {
    let registry = FakeRegistry::serving(manifest_bytes_with('1')).await;
    let d1 = sha256(&manifest_bytes_with('1'));
    let tag = tag_of(&registry);
    let written = Arc::default();
    let (client, server) = api_server::mock([
        status_apply(&tag, &written).json("/status/digest", json!(d1)),
        event("Imported", "Normal"),
    ]);
    let ctx = context(client, vec![tag.clone()], vec![]);
    reconcile(Arc::new(tag), ctx.clone()).await.expect("imported");
    let imported = written.lock().unwrap().clone().expect("the status written");
    let hits = registry.hits();

    // The registry reports a push of the digest the tag already has: the registry is asked, the answer is
    // the same, and nothing at all goes to the API server.
    let action = server
        .run(reconcile_push(imported, d1, ctx))
        .await
        .expect("checked");
    assert!(registry.hits() > hits, "the registry was asked again");
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn image_metadata_is_written_with_the_import_and_not_read_again_for_the_same_digest() {
    let config = config_bytes();
    let registry = FakeRegistry::serving_image(&config, config.clone()).await;
    let d = sha256(&image_manifest_for(&config));
    let tag = tag_of(&registry);
    let written = Arc::default();
    let (client, server) = api_server::mock([
        status_apply(&tag, &written)
            .json("/status/digest", json!(d))
            .json("/status/conditions/0/reason", json!("Imported"))
            .json("/status/image/digest", json!(d))
            .json("/status/image/platform", json!("linux/amd64"))
            .json("/status/image/created", json!("2026-01-02T03:04:05Z"))
            .json("/status/image/size", json!(1000 + config.len()))
            .json("/status/image/layers", json!(1))
            .json("/status/image/labels", json!({"app": "demo"}))
            .json("/status/image/user", json!("1001"))
            .json("/status/image/exposedPorts", json!(["8080/tcp"]))
            .absent("/status/image/unreadable"),
        event("Imported", "Normal"),
    ]);
    let ctx = context(client, vec![tag.clone()], vec![]);
    reconcile(Arc::new(tag), ctx.clone()).await.expect("imported");
    assert_eq!(
        registry.hits(),
        3,
        "HEAD of the tag, the manifest by digest, the config blob"
    );
    let imported = written.lock().unwrap().clone().expect("the status written");

    // A push of the same digest (a scheduled import is the same): one HEAD, no metadata request, no write.
    server
        .run(reconcile_push(imported, d, ctx))
        .await
        .expect("checked");
    assert_eq!(registry.hits(), 4, "only the HEAD");
}

#[tokio::test]
async fn metadata_that_cannot_be_read_does_not_fail_the_import_and_is_not_tried_again() {
    let config = config_bytes();
    // The registry serves other bytes than the config's digest names.
    let registry = FakeRegistry::serving_image(&config, b"{\"os\":\"evil\"}".to_vec()).await;
    let d = sha256(&image_manifest_for(&config));
    let tag = tag_of(&registry);
    let written = Arc::default();
    let (client, server) = api_server::mock([
        status_apply(&tag, &written)
            .json("/status/digest", json!(d))
            .json("/status/conditions/0/status", json!("True"))
            .json("/status/conditions/0/reason", json!("Imported"))
            .json("/status/image/digest", json!(d))
            .absent("/status/image/platform")
            .absent("/status/image/labels")
            .check("unreadable says why", |sent| {
                let why = sent["status"]["image"]["unreadable"].as_str().unwrap_or_default();
                (why.contains("digest mismatch") && why.contains("the sha256 of the config blob"))
                    .then_some(())
                    .ok_or(format!("unreadable is {why:?}"))
            }),
        event("Imported", "Normal"),
    ]);
    let ctx = context(client, vec![tag.clone()], vec![]);
    let action = reconcile(Arc::new(tag), ctx.clone()).await.expect("imported");
    assert_eq!(action, Action::await_change(), "a success: no retry");
    let imported = written.lock().unwrap().clone().expect("the status written");
    let hits = registry.hits();

    server
        .run(reconcile_push(imported, d, ctx))
        .await
        .expect("checked");
    assert_eq!(
        registry.hits(),
        hits + 1,
        "only the HEAD: not tried again for this digest"
    );
}

#[tokio::test]
async fn a_push_the_registry_does_not_show_yet_is_looked_for_again_shortly_without_a_write() {
    let registry = FakeRegistry::serving(manifest_bytes_with('1')).await;
    let d1 = sha256(&manifest_bytes_with('1'));
    let tag = tag_of(&registry);
    let written = Arc::default();
    let (client, server) = api_server::mock([
        status_apply(&tag, &written).json("/status/digest", json!(d1)),
        event("Imported", "Normal"),
    ]);
    let ctx = context(client, vec![tag.clone()], vec![]);
    reconcile(Arc::new(tag), ctx.clone()).await.expect("imported");
    let imported = written.lock().unwrap().clone().expect("the status written");

    // The registry notifies a push of another digest before its tag points at it.
    let key = ObjectRef::from_obj(&imported);
    let pushed = Push {
        digest: Some(digest('2')),
        ..Push::default()
    };
    ctx.request_push_import(key.clone(), pushed.clone());
    let action = server
        .run(reconcile(Arc::new(imported), ctx.clone()))
        .await
        .expect("checked");
    assert_eq!(action, Action::requeue(PUSH_RECHECK));
    // Looked for again, from now on: a tag list cached before this check is not reused.
    let again = ctx.take_push_request(&key).expect("asked again");
    assert!(again.received.is_some());
    assert_eq!(
        again,
        Push {
            attempts: 1,
            received: again.received,
            ..pushed
        }
    );
}

#[tokio::test]
async fn a_failure_keeps_the_image_reports_the_reason_once_and_backs_off() {
    let registry = FakeRegistry::empty().await;
    let d1 = digest('1');
    // Imported before; its spec now names a tag the registry does not have.
    let mut tag = tag_of(&registry).imported_from("reg/demo", &d1);
    tag.metadata.generation = Some(2);
    let written = Arc::default();
    let (client, server) = api_server::mock([
        status_apply(&tag, &written)
            .json("/status/digest", json!(d1))
            .json("/status/history/0/digest", json!(d1))
            .json("/status/observedGeneration", json!(2))
            .json("/status/conditions/0/status", json!("False"))
            .json("/status/conditions/0/reason", json!("NotFound")),
        event("ImportFailed", "Warning").check("a note naming the reason", |e| {
            let note = e["note"].as_str().unwrap_or_default();
            note.starts_with("NotFound: ")
                .then_some(())
                .ok_or(format!("note is {note:?}"))
        }),
    ]);
    let ctx = context(client, vec![tag.clone()], vec![]);
    let action = reconcile(Arc::new(tag), ctx.clone())
        .await
        .expect("failure recorded");
    assert_eq!(
        action,
        Action::requeue(PACING.retry_lasting),
        "NotFound is a lasting failure: the first retry after `retry_lasting`"
    );

    // Right after: the back-off holds; no registry request, no write, the same wait.
    let failed = written.lock().unwrap().clone().expect("the status written");
    let hits = registry.hits();
    let action = server
        .run(reconcile(Arc::new(failed), ctx))
        .await
        .expect("backing off");
    assert_eq!(registry.hits(), hits);
    assert!(
        action == Action::requeue(PACING.retry_lasting)
            || action == Action::requeue(PACING.retry_lasting - Duration::from_secs(1)),
        "{action:?}"
    );
}

#[tokio::test]
async fn an_alias_takes_its_targets_image_without_a_registry() {
    let d2 = digest('2');
    let mut target = istag(NS, "demo", "v2").stored("uid-2", 1).imported(&d2);
    // What the target recorded of its image comes along (the alias asks no registry for it).
    target.status.as_mut().expect("imported").image = Some(berth_api::image::ImageMetadata {
        digest: d2.clone(),
        platform: Some("linux/arm64".into()),
        ..Default::default()
    });
    let alias = istag(NS, "demo", "v1").stored("uid-1", 1).follows_tag("v2");
    let written = Arc::default();
    let (client, server) = api_server::mock([
        status_apply(&alias, &written)
            .json("/status/digest", json!(d2))
            .json("/status/image/digest", json!(d2))
            .json("/status/image/platform", json!("linux/arm64"))
            .json("/status/pullSpec", json!(format!("reg/demo@{d2}")))
            .json("/status/conditions/0/reason", json!("Imported")),
        event("Imported", "Normal"),
    ]);
    let ctx = context(client, vec![target, alias.clone()], vec![]);
    let action = server
        .run(reconcile(Arc::new(alias), ctx))
        .await
        .expect("followed");
    assert_eq!(action, Action::await_change());
}

/// A registry whose repository `berth/demo` lists `tags` (shared: a test pushes more) and serves a manifest
/// per tag (`v1.2.0` is `manifest_bytes_with('1')`, `v1.4.0` is `'4'`, any other `'9'`).
async fn versioned_registry(tags: Arc<Mutex<Vec<&'static str>>>) -> FakeRegistry {
    FakeRegistry::start(move |method, path, _| {
        if path.starts_with("/v2/berth/demo/tags/list") {
            let body = json!({"name": "berth/demo", "tags": *tags.lock().unwrap()}).to_string();
            return answer(200, &[("content-type", "application/json".into())], body);
        }
        let seed = match path.strip_prefix("/v2/berth/demo/manifests/") {
            Some("v1.2.0") => '1',
            Some("v1.4.0") => '4',
            _ => '9',
        };
        let body = if method == http::Method::HEAD {
            Vec::new()
        } else {
            manifest_bytes_with(seed)
        };
        answer(200, &[("content-type", OCI_MANIFEST.into())], body)
    })
    .await
}

/// Tag `demo:v1` following `berth/demo` of `registry` by a version policy.
fn versioned_tag(registry: &FakeRegistry, range: &str) -> ImageStreamTag {
    let mut tag = istag(NS, "demo", "v1")
        .stored("uid-1", 1)
        .follows_image(&format!("{}/berth/demo", registry.host))
        .import_policy(true, true);
    tag.spec.import_policy.as_mut().expect("set").version_policy = Some(VersionPolicy {
        semver: Some(SemverPolicy { range: range.into() }),
        ..Default::default()
    });
    tag
}

#[tokio::test]
async fn a_version_policy_follows_the_newest_matching_tag_and_moves_when_a_newer_one_is_pushed() {
    let tags = Arc::new(Mutex::new(vec![
        "latest",
        "v1.0.0",
        "v1.2.0",
        "v1.3.0-rc.1",
        "v2.0.0",
    ]));
    let registry = versioned_registry(tags.clone()).await;
    let (d1, d4) = (
        sha256(&manifest_bytes_with('1')),
        sha256(&manifest_bytes_with('4')),
    );
    let tag = versioned_tag(&registry, ">=1.0 <2");
    let written = Arc::default();
    let message = |expected: &'static str| {
        move |sent: &serde_json::Value| {
            let message = sent["status"]["conditions"][0]["message"]
                .as_str()
                .unwrap_or_default();
            message
                .contains(expected)
                .then_some(())
                .ok_or(format!("message is {message:?}"))
        }
    };
    let (client, server) = api_server::mock([
        status_apply(&tag, &written)
            .json("/status/digest", json!(d1))
            .json("/status/chosenTag", json!("v1.2.0"))
            .json("/status/history/0/tag", json!("v1.2.0"))
            .json("/status/conditions/0/reason", json!("Imported"))
            .check(
                "the message says what was chosen and why",
                message(
                    "/berth/demo:v1.2.0 (versionPolicy: v1.2.0 is the highest of 2 tags in semver range \
                     \">=1.0 <2\" (of 5 listed: 1 not a semantic version, 1 pre-release, 1 out of range)) \
                     resolved to sha256:",
                ),
            ),
        event("Imported", "Normal"),
        status_apply(&tag, &written)
            .json("/status/digest", json!(d4))
            .json("/status/chosenTag", json!("v1.4.0"))
            .json("/status/history/0/tag", json!("v1.4.0"))
            .json("/status/history/1/tag", json!("v1.2.0")),
        event("TagUpdated", "Normal"),
    ]);
    let ctx = context(client, vec![tag.clone()], vec![]);
    reconcile(Arc::new(tag), ctx.clone()).await.expect("imported");
    let imported = written.lock().unwrap().clone().expect("the status written");

    // v1.4.0 is pushed and reported: the listing made before the push is not reused, and the tag moves.
    tags.lock().unwrap().push("v1.4.0");
    ctx.request_push_import(
        ObjectRef::from_obj(&imported),
        Push {
            digest: Some(d4.clone()),
            attempts: 0,
            received: Some(std::time::Instant::now()),
        },
    );
    server
        .run(reconcile(Arc::new(imported), ctx))
        .await
        .expect("moved");
}

#[tokio::test]
async fn an_invalid_version_policy_fails_naming_the_field_without_contacting_the_registry() {
    let registry = versioned_registry(Arc::default()).await;
    let tag = versioned_tag(&registry, ">=1.2 <<2");
    let written = Arc::default();
    let (client, server) = api_server::mock([
        status_apply(&tag, &written)
            .json("/status/conditions/0/status", json!("False"))
            .json("/status/conditions/0/reason", json!("InvalidVersionPolicy"))
            .json(
                "/status/conditions/0/message",
                json!(
                    "importPolicy.versionPolicy.semver.range: \"<<2\": \"<<\" is not an operator (use =, >, >=, \
                     <, <=, ~ or ^)"
                ),
            )
            .absent("/status/chosenTag"),
        event("ImportFailed", "Warning"),
    ]);
    let ctx = context(client, vec![tag.clone()], vec![]);
    server
        .run(reconcile(Arc::new(tag), ctx))
        .await
        .expect("failure recorded");
    assert_eq!(registry.hits(), 0);
}

#[tokio::test]
async fn a_tag_deleted_while_its_import_waits_is_dropped_at_once_without_a_write() {
    // A registry that takes connections and never answers: the import waits for it (up to its timeout).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let tag = istag(NS, "demo", "v1")
        .stored("uid-1", 1)
        .follows_image(&format!("{host}/berth/demo:v1"))
        .import_policy(true, false);
    let (client, server) = api_server::mock([]);
    // The cache does not hold the tag: as after its deletion, when the watch delivers it.
    let ctx = context(client, vec![], vec![]);
    let importing = tokio::spawn(reconcile(Arc::new(tag.clone()), ctx.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!importing.is_finished(), "the import waits for the registry");
    let deleted = std::time::Instant::now();
    ctx.tag_seen(&tag);
    let action = importing.await.expect("joined").expect("dropped, not failed");
    assert!(
        deleted.elapsed() < Duration::from_millis(500),
        "{:?}",
        deleted.elapsed()
    );
    assert_eq!(action, Action::await_change());
    // No status write, no Event: the mocked API server saw nothing.
    server.run(async {}).await;
    let text = ctx.metrics.encode();
    assert!(text.contains(r#"result="TagDeleted"} 1"#), "{text}");
    drop(listener);
}

#[tokio::test]
async fn an_import_waiting_when_its_spec_changes_gives_way_to_the_new_spec() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let tag = istag(NS, "demo", "v1")
        .stored("uid-1", 1)
        .follows_image(&format!("{host}/berth/demo:v1"))
        .import_policy(true, false);
    let mut changed = tag.clone();
    changed.metadata.generation = Some(2);
    let (client, server) = api_server::mock([]);
    let ctx = context(client, vec![changed.clone()], vec![]);
    let importing = tokio::spawn(reconcile(Arc::new(tag), ctx.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    ctx.tag_seen(&changed);
    let action = importing.await.expect("joined").expect("given up, not failed");
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    server.run(async {}).await;
    assert!(ctx.metrics.encode().contains(r#"result="Superseded"} 1"#));
    drop(listener);
}
