//! The stream reconciler against a mocked API server that expects each request in order
//! ([`crate::testing::api_server`]): inline tags become owned ImageStreamTags applied under the controller's
//! field manager, removed ones are deleted, a stream already in step writes nothing.

use std::sync::Arc;

use berth_api::image::{ImageStream, ImageStreamTag, STREAM_LABEL};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use serde_json::json;

use super::{plan_tags, reconcile, summarize};
use crate::context::FIELD_MANAGER;
use crate::testing::api_server::{self, Expect};
use crate::testing::context;
use crate::testing::fixtures::{NS, stream};

const TAGS: &str = "/apis/image.berth.dev/v1alpha1/namespaces/ns/imagestreamtags";
const STATUS: &str = "/apis/image.berth.dev/v1alpha1/namespaces/ns/imagestreams/demo/status";

/// The server-side apply of the owned tag `demo.TAG` following `from`.
fn tag_apply(tag: &str, from: &str) -> Expect {
    Expect::apply(format!("{TAGS}/demo.{tag}"), FIELD_MANAGER)
        .json("/kind", json!("ImageStreamTag"))
        .json("/metadata/name", json!(format!("demo.{tag}")))
        .json("/spec/stream", json!("demo"))
        .json("/spec/tag", json!(tag))
        .json("/spec/from", json!({"kind": "DockerImage", "name": from}))
        .json("/metadata/ownerReferences/0/kind", json!("ImageStream"))
        .json("/metadata/ownerReferences/0/uid", json!("demo-uid"))
        .json("/metadata/ownerReferences/0/controller", json!(true))
        .absent("/metadata/ownerReferences/1")
        .absent("/status")
        .check("labelled with its stream", |body| {
            let label = &body["metadata"]["labels"][STREAM_LABEL];
            (label == "demo")
                .then_some(())
                .ok_or(format!("the label is {label}"))
        })
}

/// The server-side apply of the stream's status, answered with the stream as stored with it.
fn status_apply(stream: &ImageStream) -> Expect {
    Expect::apply(STATUS, FIELD_MANAGER)
        .json("/kind", json!("ImageStream"))
        .absent("/spec")
        .answer_merged(serde_json::to_value(stream).expect("json"))
}

/// The owned tags `stream` materialises, as the cache holds them once applied.
fn materialised(stream: &ImageStream) -> Vec<ImageStreamTag> {
    plan_tags(stream, &[]).apply
}

#[tokio::test]
async fn inline_tags_are_applied_as_owned_tags_then_the_status() {
    let s = stream(NS, "demo", &[("v1", "reg/demo:v1"), ("v2", "reg/demo:v2")]);
    let (client, server) = api_server::mock([
        tag_apply("v1", "reg/demo:v1"),
        tag_apply("v2", "reg/demo:v2"),
        status_apply(&s)
            .json("/status/tagCount", json!(0))
            .json("/status/conditions/0/type", json!("TagConflict"))
            .json("/status/conditions/0/status", json!("False")),
    ]);
    let ctx = context(client, vec![], vec![s.clone()]);
    let action = server.run(reconcile(Arc::new(s), ctx)).await.expect("reconciled");
    // The tags' watch brings the stream back for its status.
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_stream_in_step_with_its_tags_writes_nothing() {
    let mut s = stream(NS, "demo", &[("v1", "reg/demo:v1")]);
    let tags = materialised(&s);
    let arcs: Vec<_> = tags.iter().cloned().map(Arc::new).collect();
    s.status = Some(summarize(&s, &arcs, &[], &Time(Default::default())));
    let (client, server) = api_server::mock([]);
    let ctx = context(client, tags, vec![s.clone()]);
    server.run(reconcile(Arc::new(s), ctx)).await.expect("reconciled");
}

#[tokio::test]
async fn a_tag_removed_from_the_stream_is_deleted() {
    let before = stream(NS, "demo", &[("v1", "reg/demo:v1"), ("v2", "reg/demo:v2")]);
    let tags = materialised(&before);
    let after = stream(NS, "demo", &[("v1", "reg/demo:v1")]);
    let (client, server) = api_server::mock([
        Expect::delete(format!("{TAGS}/demo.v2")),
        status_apply(&after).json("/status/tagCount", json!(2)),
    ]);
    let ctx = context(client, tags, vec![after.clone()]);
    server
        .run(reconcile(Arc::new(after), ctx))
        .await
        .expect("reconciled");
}

#[tokio::test]
async fn a_tag_defined_twice_is_reported_and_the_standalone_one_left_alone() {
    let s = stream(NS, "demo", &[("v1", "reg/demo:v1")]);
    let mut standalone = materialised(&s).remove(0);
    standalone.metadata.owner_references = None;
    standalone.spec.from.name = "other/demo:v1".into();
    let (client, server) = api_server::mock([status_apply(&s)
        .json("/status/conditions/0/type", json!("TagConflict"))
        .json("/status/conditions/0/status", json!("True"))
        .json("/status/conditions/0/reason", json!("DefinedTwice"))]);
    let ctx = context(client, vec![standalone], vec![s.clone()]);
    server.run(reconcile(Arc::new(s), ctx)).await.expect("reconciled");
}
