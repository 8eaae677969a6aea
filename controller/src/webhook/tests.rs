//! The distribution envelope end to end through the router (the other formats: `tests/webhooks.rs`).

use std::sync::Mutex;

use super::*;
use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode, header};
use tower::ServiceExt;

use crate::testing::fixtures::{NS, TagFixture, istag, store};

/// Tag `name` of stream `s`, named `name`, following the image `from`.
fn tag(name: &str, from: &str) -> ImageStreamTag {
    istag(NS, "s", name).named(name).follows_image(from)
}

fn envelope(host: &str, repository: &str, tag: &str) -> String {
    serde_json::json!({"events": [
        {"action": "push", "target": {"mediaType": "application/octet-stream", "repository": repository, "digest": "sha256:00"}},
        {"action": "push", "target": {"repository": repository, "tag": tag, "digest": "sha256:11"}, "request": {"host": host}},
        {"action": "pull", "target": {"repository": "other", "tag": "v9"}}
    ]})
    .to_string()
}

fn tags() -> Vec<ImageStreamTag> {
    vec![
        tag("a", "10.213.0.1:5000/berth/demo:v2"),
        tag("b", "10.213.0.1:5000/berth/demo:v1"),
        tag("c", "other.example/berth/demo:v2"),
        tag("d", "10.213.0.1:5000/berth/other:v2"),
    ]
}

#[test]
fn only_tags_following_the_pushed_repository_and_tag_match() {
    let e: Envelope = serde_json::from_str(&envelope("10.213.0.1:5000", "berth/demo", "v2")).unwrap();
    let matched: Vec<_> = matching_tags(&e.pushes(), &store(tags()).state())
        .into_iter()
        .map(|(r, d)| (r.name, d))
        .collect();
    assert_eq!(matched, vec![("a".to_owned(), Some("sha256:11".to_owned()))]);
}

#[test]
fn a_tag_with_a_version_policy_follows_the_pushes_its_policy_admits() {
    let mut policy_tag = tag("p", "10.213.0.1:5000/berth/demo").import_policy(true, false);
    policy_tag
        .spec
        .import_policy
        .as_mut()
        .expect("set")
        .version_policy = Some(berth_api::version_policy::VersionPolicy {
        semver: Some(berth_api::version_policy::SemverPolicy {
            range: ">=1.2 <2".into(),
        }),
        exclude: vec!["-debug$".into()],
        ..Default::default()
    });
    let tags = store(vec![policy_tag, tag("a", "10.213.0.1:5000/berth/demo:v2")]);
    let matched = |pushed_tag: &str| -> Vec<String> {
        let e: Envelope =
            serde_json::from_str(&envelope("10.213.0.1:5000", "berth/demo", pushed_tag)).unwrap();
        matching_tags(&e.pushes(), &tags.state())
            .into_iter()
            .map(|(r, _)| r.name)
            .collect()
    };
    assert_eq!(matched("v1.4.0"), vec!["p".to_owned()]);
    assert_eq!(matched("1.2"), vec!["p".to_owned()]);
    for no in ["v2.0.0", "v1.4.0-rc.1", "latest", "v1.4.0-debug"] {
        assert!(matched(no).is_empty(), "{no}");
    }
    assert_eq!(
        matched("v2"),
        vec!["a".to_owned()],
        "a tag without a policy as before"
    );
}

fn webhook() -> (Router, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let hook = Webhook {
        token: "s3cret".into(),
        tags: store(tags()),
        on_push: Arc::new(move |r, _| sink.lock().unwrap().push(r.name)),
        metrics: Metrics::default(),
    };
    (hook.routes_with(Limits::default()), seen)
}

async fn post(router: Router, auth: Option<&str>, body: String) -> StatusCode {
    let mut req = HttpRequest::post(PATH);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    router
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn an_authenticated_push_imports_the_following_tags() {
    let (router, seen) = webhook();
    let status = post(
        router,
        Some("Bearer s3cret"),
        envelope("10.213.0.1:5000", "berth/demo", "v2"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(*seen.lock().unwrap(), vec!["a".to_owned()]);
}

#[tokio::test]
async fn unauthenticated_malformed_and_huge_payloads_change_nothing() {
    for (auth, body, want) in [
        (
            None,
            envelope("10.213.0.1:5000", "berth/demo", "v2"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("Bearer wrong"),
            envelope("10.213.0.1:5000", "berth/demo", "v2"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("Basic s3cret"),
            envelope("10.213.0.1:5000", "berth/demo", "v2"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("Bearer s3cret"),
            "{\"events\": [{\"action\": 1}]}".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("Bearer s3cret"),
            "not json".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("Bearer s3cret"),
            format!("{{\"events\":[],\"pad\":\"{}\"}}", "x".repeat(MAX_BODY)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let (router, seen) = webhook();
        assert_eq!(post(router, auth, body).await, want, "{auth:?}");
        assert!(seen.lock().unwrap().is_empty());
    }
}
