//! The reconcile against a mocked API server that expects each request in order
//! ([`crate::testing::api_server`]): a change is one strategic merge patch of exactly the changed container
//! under a resourceVersion precondition and the controller's field manager, then one Event; a resync sends
//! nothing; a malformed annotation is one Warning, once.

use std::sync::{Arc, Mutex};

use kube::Client;
use kube::api::DynamicObject;
use serde_json::json;

use super::*;
use crate::testing::api_server::{self, Expect};
use crate::testing::fixtures::{NS, TagFixture, istag};
use crate::triggers::annotation::OPENSHIFT_TRIGGERS;

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/ns/deployments/web";

/// Tag `app:live`, at version 5, pulled as `pull_spec`.
fn tag(pull_spec: &str) -> ImageStreamTag {
    let mut t = istag(NS, "app", "live").pulled(pull_spec);
    t.metadata.resource_version = Some("5".into());
    t
}

fn context(client: Client, tags: &[ImageStreamTag]) -> Arc<KindContext> {
    Arc::new(KindContext {
        kind: TargetKind::Deployment,
        resource: TargetKind::Deployment.api_resource("v1"),
        shared: Arc::new(Triggers {
            ctx: crate::testing::context(client, tags.to_vec(), vec![]),
            index: Mutex::default(),
            reported: Mutex::default(),
        }),
    })
}

fn deployment(annotation: &str, web_image: &str) -> Arc<DynamicObject> {
    let mut o = DynamicObject::new("web", &TargetKind::Deployment.api_resource("v1"))
        .within("ns")
        .data(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": web_image}, {"name": "side", "image": "side:1"}]}}}}));
    o.metadata.resource_version = Some("41".into());
    o.metadata.annotations = Some([(OPENSHIFT_TRIGGERS.to_owned(), annotation.to_owned())].into());
    Arc::new(o)
}

const FOLLOWS: &str = r#"[{"from":{"kind":"ImageStreamTag","name":"app:live"},"fieldPath":"spec.template.spec.containers[?(@.name=\"web\")].image"}]"#;

/// A Warning about the Deployment with `reason`.
fn warning(reason: &str) -> Expect {
    Expect::event(NS)
        .json("/reason", json!(reason))
        .json("/type", json!("Warning"))
        .json("/regarding/kind", json!("Deployment"))
        .json("/regarding/name", json!("web"))
}

#[tokio::test]
async fn a_moved_tag_is_one_patch_of_one_container_then_one_event() {
    let (client, server) = api_server::mock([
        Expect::strategic(DEPLOYMENT, FIELD_MANAGER).check("exactly the changed container", |body| {
            let expected = json!({"metadata": {"resourceVersion": "41"}, "spec": {"template": {"spec": {
                "containers": [{"name": "web", "image": "reg/app@sha256:2"}]}}}});
            (*body == expected).then_some(()).ok_or(format!("body is {body}"))
        }),
        Expect::event(NS)
            .json("/reason", json!("Triggered"))
            .json("/type", json!("Normal"))
            .json("/regarding/name", json!("web"))
            .json("/regarding/resourceVersion", json!("41"))
            .json("/related/name", json!("app.live")),
    ]);
    let cx = context(client, &[tag("reg/app@sha256:2")]);
    let action = server
        .run(reconcile(deployment(FOLLOWS, "reg/app@sha256:1"), cx))
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_conflict_decides_again_shortly_and_says_nothing() {
    let (client, server) =
        api_server::mock([Expect::strategic(DEPLOYMENT, FIELD_MANAGER).answer_status(409, "Conflict")]);
    let cx = context(client, &[tag("reg/app@sha256:2")]);
    let action = server
        .run(reconcile(deployment(FOLLOWS, "reg/app@sha256:1"), cx))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_millis(500)));
}

#[tokio::test]
async fn a_resync_with_nothing_to_change_sends_nothing() {
    let (client, server) = api_server::mock([]);
    let cx = context(client, &[tag("reg/app@sha256:2")]);
    let objects = [
        deployment(FOLLOWS, "reg/app@sha256:2"),
        // A tag that is not there (yet) changes nothing either.
        deployment(&FOLLOWS.replace("app:live", "app:other"), "x"),
        deployment(&FOLLOWS.replace("}]", r#","paused":true}]"#), "x"),
    ];
    // Results are looked at after the server's verdict, which says more than an error does.
    let results = server
        .run(futures::future::join_all(
            objects.map(|o| reconcile(o, cx.clone())),
        ))
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn a_malformed_annotation_is_one_warning_per_distinct_error() {
    let (client, server) = api_server::mock([
        warning("InvalidTrigger").check("a note saying what is wrong", |e| {
            let note = e["note"].as_str().unwrap_or_default();
            note.contains("is not a JSON list")
                .then_some(())
                .ok_or(format!("note is {note:?}"))
        }),
        warning("InvalidTrigger").json("/regarding/resourceVersion", json!("42")),
    ]);
    let cx = context(client, &[tag("reg/app@sha256:2")]);
    // Another annotation is another version of the object: a new Event, not a repeat of the first.
    let mut changed = (*deployment("[]]", "x")).clone();
    changed.metadata.resource_version = Some("42".into());
    let results = server
        .run(async {
            let mut results = Vec::new();
            for object in [
                deployment("[{", "x"),
                deployment("[{", "x"),
                deployment("[{", "x"),
                Arc::new(changed),
            ] {
                results.push(reconcile(object, cx.clone()).await);
            }
            results
        })
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}
