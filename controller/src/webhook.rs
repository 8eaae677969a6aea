//! The registry's push notifications (the distribution notification envelope): a push of `REPO:TAG`
//! re-imports the tags that follow exactly that repository and tag, seconds after the push.
//!
//! The registry must send the shared secret as `Authorization: Bearer <token>`; anything else gets a 4xx and
//! changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use berth_api::image::{ImageStreamTag, SourceKind};
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Deserialize;
use tracing::{info, warn};

use crate::metrics::{Metrics, ResultLabels};
use crate::registry::ImageReference;

/// The path the registry posts to.
pub const PATH: &str = "/registry/notifications";

/// Notifications larger than this are refused (413): the registry batches a few events per envelope.
pub const MAX_BODY: usize = 1 << 20;

/// The distribution notification envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// The events, in order.
    pub events: Vec<RegistryEvent>,
}

/// One event of the envelope (only the fields Berth reads).
#[derive(Debug, Deserialize)]
pub struct RegistryEvent {
    /// `push`, `pull`, `delete`, ...
    pub action: String,
    /// What was pushed.
    pub target: Target,
    /// The request that did it.
    #[serde(default)]
    pub request: Option<Request>,
}

/// The object of an event.
#[derive(Debug, Deserialize)]
pub struct Target {
    /// The repository, `berth/demo`.
    pub repository: String,
    /// The tag, for a manifest pushed by tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// The digest of what was pushed.
    #[serde(default)]
    pub digest: Option<String>,
}

/// The request of an event.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// The registry's host as the pusher addressed it, `10.213.0.1:5000`.
    #[serde(default)]
    pub host: Option<String>,
}

/// The tags that follow a pushed `REPO:TAG` of the envelope's events, with the digest pushed.
pub fn matching_tags(
    envelope: &Envelope,
    tags: &[Arc<ImageStreamTag>],
) -> Vec<(ObjectRef<ImageStreamTag>, Option<String>)> {
    let pushes: Vec<_> = envelope
        .events
        .iter()
        .filter(|e| e.action == "push")
        .filter_map(|e| {
            let host = e
                .request
                .as_ref()
                .and_then(|r| r.host.as_deref())
                .filter(|h| !h.is_empty());
            Some((
                host,
                e.target.repository.as_str(),
                e.target.tag.as_deref()?,
                e.target.digest.clone(),
            ))
        })
        .collect();
    tags.iter()
        .filter(|t| t.spec.from.kind == SourceKind::DockerImage)
        .filter_map(|t| {
            let reference = ImageReference::parse(&t.spec.from.name).ok()?;
            // The last push of the tag in the envelope wins.
            let (.., digest) = pushes.iter().rev().find(|(host, repository, tag, _)| {
                reference.repository() == *repository
                    && reference.tag() == Some(*tag)
                    && host.is_none_or(|h| h == reference.registry())
            })?;
            Some((ObjectRef::from_obj(t.as_ref()), digest.clone()))
        })
        .collect()
}

/// What the webhook needs.
#[derive(Clone)]
pub struct Webhook {
    /// The shared secret.
    pub token: Arc<str>,
    /// The tag cache.
    pub tags: Store<ImageStreamTag>,
    /// Called with every tag a push asks to import, and the digest pushed.
    pub on_push: Arc<dyn Fn(ObjectRef<ImageStreamTag>, Option<String>) + Send + Sync>,
    /// Metrics.
    pub metrics: Metrics,
}

impl Webhook {
    /// The router serving [`PATH`].
    pub fn router(self) -> Router {
        Router::new()
            .route(PATH, post(notify))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }

    fn count(&self, result: &str) {
        self.metrics
            .notifications
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}

async fn notify(State(hook): State<Webhook>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), hook.token.as_bytes())) {
        hook.count("unauthorized");
        warn!("refused a registry notification without the shared secret");
        return (
            StatusCode::UNAUTHORIZED,
            "a Bearer token with the shared secret is required\n".into(),
        );
    }
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            hook.count("malformed");
            return (
                StatusCode::BAD_REQUEST,
                format!("not a registry notification envelope: {e}\n"),
            );
        }
    };
    let matched = matching_tags(&envelope, &hook.tags.state());
    hook.count("accepted");
    info!(
        events = envelope.events.len(),
        matched = matched.len(),
        "registry notification"
    );
    let count = matched.len();
    for (tag, digest) in matched {
        (hook.on_push)(tag, digest);
    }
    (StatusCode::OK, format!("{{\"matched\":{count}}}\n"))
}

/// Compares secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use berth_api::image::{ImageStreamTagSpec, TagSource};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use tower::ServiceExt;

    fn tag(name: &str, from: &str) -> ImageStreamTag {
        let mut t = ImageStreamTag::new(
            name,
            ImageStreamTagSpec {
                stream: "demo".into(),
                tag: name.into(),
                from: TagSource {
                    kind: SourceKind::DockerImage,
                    name: from.into(),
                    namespace: None,
                },
                ..Default::default()
            },
        );
        t.metadata.namespace = Some("ns".into());
        t
    }

    fn envelope(host: &str, repository: &str, tag: &str) -> String {
        serde_json::json!({"events": [
            {"action": "push", "target": {"mediaType": "application/octet-stream", "repository": repository, "digest": "sha256:00"}},
            {"action": "push", "target": {"repository": repository, "tag": tag, "digest": "sha256:11"}, "request": {"host": host}},
            {"action": "pull", "target": {"repository": "other", "tag": "v9"}}
        ]})
        .to_string()
    }

    fn tags() -> Vec<Arc<ImageStreamTag>> {
        vec![
            Arc::new(tag("a", "10.213.0.1:5000/berth/demo:v2")),
            Arc::new(tag("b", "10.213.0.1:5000/berth/demo:v1")),
            Arc::new(tag("c", "other.example/berth/demo:v2")),
            Arc::new(tag("d", "10.213.0.1:5000/berth/other:v2")),
        ]
    }

    #[test]
    fn only_tags_following_the_pushed_repository_and_tag_match() {
        let e: Envelope = serde_json::from_str(&envelope("10.213.0.1:5000", "berth/demo", "v2")).unwrap();
        let matched: Vec<_> = matching_tags(&e, &tags())
            .into_iter()
            .map(|(r, d)| (r.name, d))
            .collect();
        assert_eq!(matched, vec![("a".to_owned(), Some("sha256:11".to_owned()))]);
    }

    fn webhook() -> (Router, Arc<Mutex<Vec<String>>>) {
        let mut writer = Writer::<ImageStreamTag>::default();
        let store = writer.as_reader();
        writer.apply_watcher_event(&Event::InitDone);
        for t in tags() {
            writer.apply_watcher_event(&Event::Apply((*t).clone()));
        }
        drop(writer);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let hook = Webhook {
            token: "s3cret".into(),
            tags: store,
            on_push: Arc::new(move |r, _| sink.lock().unwrap().push(r.name)),
            metrics: Metrics::default(),
        };
        (hook.router(), seen)
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
}
