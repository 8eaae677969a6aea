//! The reconcile against a mocked API server that records every request: a change is one strategic merge
//! patch of exactly the changed container under a resourceVersion precondition, then one Event; a resync
//! sends nothing; a malformed annotation is one Warning, once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use berth_api::image::{ImageStreamTag, ImageStreamTagSpec, ImageStreamTagStatus};
use kube::Client;
use kube::api::DynamicObject;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};

use super::*;
use crate::import::schedule::Pacing;
use crate::metrics::Metrics;
use crate::registry::{Resolver, ResolverConfig};
use crate::triggers::annotation::OPENSHIFT_TRIGGERS;

/// `(method, path, content type, body)` of each request.
type Seen = Arc<Mutex<Vec<(String, String, String, Value)>>>;

/// A client whose server records every request and answers it with what it was sent.
fn mock() -> (Client, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let service = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(Body::new(body), usize::MAX)
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let content_type = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            record.lock().unwrap().push((
                parts.method.to_string(),
                parts.uri.path().to_owned(),
                content_type,
                body.clone(),
            ));
            // What was sent is what was stored.
            Ok::<_, std::convert::Infallible>(axum::http::Response::new(Body::from(bytes)))
        }
    });
    (Client::new(service, "default"), seen)
}

fn tag(pull_spec: &str) -> ImageStreamTag {
    let mut t = ImageStreamTag::new(
        "app.live",
        ImageStreamTagSpec {
            stream: "app".into(),
            tag: "live".into(),
            ..Default::default()
        },
    );
    t.metadata.namespace = Some("ns".into());
    t.metadata.resource_version = Some("5".into());
    t.status = Some(ImageStreamTagStatus {
        pull_spec: Some(pull_spec.into()),
        ..Default::default()
    });
    t
}

fn context(client: Client, tags: &[ImageStreamTag]) -> Arc<KindContext> {
    let (tag_store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for t in tags {
        writer.apply_watcher_event(&watcher::Event::InitApply(t.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let (streams, _) = reflector::store();
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: None,
    };
    let ctx = Context::new(
        client.clone(),
        tag_store,
        streams,
        Vec::new(),
        Resolver::new(ResolverConfig::default()).expect("a resolver"),
        Recorder::new(client, reporter),
        Pacing {
            interval: Duration::from_secs(60),
            retry: Duration::from_secs(1),
        },
        Metrics::default(),
    );
    Arc::new(KindContext {
        kind: TargetKind::Deployment,
        resource: TargetKind::Deployment.api_resource("v1"),
        shared: Arc::new(Triggers {
            ctx: Arc::new(ctx),
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

#[tokio::test]
async fn a_moved_tag_is_one_patch_of_one_container_then_one_event() {
    let (client, seen) = mock();
    let cx = context(client, &[tag("reg/app@sha256:2")]);
    reconcile(deployment(FOLLOWS, "reg/app@sha256:1"), cx.clone())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let (method, path, content_type, body) = &seen[0];
    assert_eq!(
        (method.as_str(), path.as_str(), content_type.as_str()),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/ns/deployments/web",
            "application/strategic-merge-patch+json"
        )
    );
    assert_eq!(
        body,
        &json!({"metadata": {"resourceVersion": "41"}, "spec": {"template": {"spec": {
            "containers": [{"name": "web", "image": "reg/app@sha256:2"}]}}}})
    );
    let (method, path, _, event) = &seen[1];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/apis/events.k8s.io/v1/namespaces/ns/events")
    );
    assert_eq!(event["reason"], "Triggered");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["related"]["name"], "app.live");
}

#[tokio::test]
async fn a_resync_with_nothing_to_change_sends_nothing() {
    let (client, seen) = mock();
    let cx = context(client, &[tag("reg/app@sha256:2")]);
    for object in [
        deployment(FOLLOWS, "reg/app@sha256:2"),
        // A tag that is not there (yet) changes nothing either.
        deployment(&FOLLOWS.replace("app:live", "app:other"), "x"),
        deployment(&FOLLOWS.replace("}]", r#","paused":true}]"#), "x"),
    ] {
        reconcile(object, cx.clone()).await.unwrap();
    }
    assert!(seen.lock().unwrap().is_empty(), "{:#?}", seen.lock().unwrap());
}

#[tokio::test]
async fn a_malformed_annotation_is_one_warning_per_distinct_error() {
    let (client, seen) = mock();
    let cx = context(client, &[tag("reg/app@sha256:2")]);
    for _ in 0..3 {
        reconcile(deployment("[{", "x"), cx.clone()).await.unwrap();
    }
    reconcile(deployment("[]]", "x"), cx.clone()).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let reasons: Vec<_> = seen
        .iter()
        .map(|(_, _, _, e)| (e["reason"].clone(), e["type"].clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (json!("InvalidTrigger"), json!("Warning")),
            (json!("InvalidTrigger"), json!("Warning"))
        ]
    );
    assert!(seen[0].3["note"].as_str().unwrap().contains("is not a JSON list"));
}
