//! Every registry notification format, from its documented example payload (`tests/fixtures/webhooks/`):
//! the right secret or signature re-imports the tags that follow the pushed repository and tag; a wrong or
//! missing one is 401 and re-imports nothing; a malformed body is 400 and says what is wrong. Then the limits:
//! body size and time, request rate, connections at once, a blank token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use berth_controller::metrics::Metrics;
use berth_controller::webhook::{Format, Limits, Webhook, sign};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

#[path = "../src/testing/fixtures.rs"]
mod fixtures;
use fixtures::{NS, TagFixture, istag};

const TOKEN: &str = "5f0c2a1e9b7d4c3a8e6f1b2d0c9a7e5f";

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/webhooks/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A tag following what each fixture pushes, and decoys: another tag of a pushed repository, the same path
/// on another registry, Docker Hub's `library/hello-world` beside the distribution fixture's `hello-world`.
const TAGS: [(&str, &str); 13] = [
    ("distribution", "192.168.100.227:5000/hello-world:latest"),
    ("gitlab", "registry.gitlab.example.com/group/project/app:v1.2.0"),
    ("dockerhub", "svendowideit/testhook:latest"),
    ("quay", "quay.io/dgangaia/test:latest"),
    ("harbor-v1", "harbor.example.com/library/centos:7"),
    ("harbor-v2", "hub.harbor.com/test-webhook/debian:latest"),
    ("harbor-ce", "harbor.dev/library/busybox:v1.0"),
    ("github", "ghcr.io/codertocat/hello-world:v1"),
    ("acr", "myregistry.azurecr.io/hello-world:v1"),
    ("generic", "registry.example.com/team/app:v1"),
    ("decoy-tag", "quay.io/dgangaia/test:v2"),
    ("decoy-host", "other.example.com/team/app:v1"),
    ("decoy-hub", "docker.io/library/hello-world:latest"),
];

fn webhook(token: &str) -> (Webhook, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let hook = Webhook {
        token: token.into(),
        tags: fixtures::store(TAGS.map(|(name, from)| istag(NS, "s", name).named(name).follows_image(from))),
        on_push: Arc::new(move |r, digest| sink.lock().unwrap().push((r.name, digest))),
        metrics: Metrics::default(),
    };
    (hook, seen)
}

fn routes(limits: Limits) -> (Router, Seen) {
    let (hook, seen) = webhook(TOKEN);
    (hook.routes_with(limits), seen)
}

/// The path and headers with which a sender of `format` presents `secret` (none: presents nothing).
fn present(format: Format, secret: Option<&str>, body: &[u8]) -> (String, Vec<(&'static str, String)>) {
    let path = format.path();
    let Some(s) = secret else { return (path, vec![]) };
    match format {
        Format::Distribution | Format::Acr => (path, vec![("authorization", format!("Bearer {s}"))]),
        Format::Harbor => (path, vec![("authorization", s.to_owned())]),
        Format::DockerHub | Format::Quay => (format!("{path}/{}", s.replace(' ', "%20")), vec![]),
        Format::GitLab => (path, vec![("x-gitlab-token", s.to_owned())]),
        Format::GitHub => (path, vec![("x-hub-signature-256", sign(s, body))]),
        Format::Generic => (path, vec![("x-berth-signature", sign(s, body))]),
    }
}

async fn send(router: Router, path: &str, headers: &[(&str, String)], body: Body) -> (StatusCode, String) {
    let mut request = Request::post(path);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = router.oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// `Authorization: Bearer TOKEN`, how the distribution envelope is sent.
fn bearer() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {TOKEN}"))]
}

/// A body whose bytes never arrive.
fn pending() -> Body {
    Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>())
}

/// Posts `body` as `format` with `secret`, plus `extra` headers, under the default limits.
async fn post(
    format: Format,
    secret: Option<&str>,
    extra: &[(&'static str, &str)],
    body: &[u8],
) -> (StatusCode, String, Vec<(String, Option<String>)>) {
    let (router, seen) = routes(Limits::default());
    let (path, mut headers) = present(format, secret, body);
    headers.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let (status, text) = send(router, &path, &headers, Body::from(body.to_vec())).await;
    let seen = seen.lock().unwrap().clone();
    (status, text, seen)
}

/// One format's documented example: how it is sent (`extra` headers beside the secret), the (repository,
/// tag) list it parses to, the tags that follow it, and a malformed body with what its 400 must say.
struct Case {
    format: Format,
    fixture: &'static str,
    extra: &'static [(&'static str, &'static str)],
    pushed: &'static [(&'static str, &'static str)],
    followers: &'static [&'static str],
    malformed: &'static str,
    says: &'static str,
}

/// One format end to end: what the fixture maps to, who follows it, and the refusals (wrong, empty and
/// missing secret: 401 re-importing nothing; malformed: 400). Returns what the right secret re-imported.
async fn check(case: &Case) -> Vec<(String, Option<String>)> {
    let Case {
        format,
        fixture: name,
        extra,
        ..
    } = *case;
    let body = fixture(name);
    let mut headers = HeaderMap::new();
    for (k, v) in extra {
        headers.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    let pushes: Vec<_> = (format.parse(&headers, &body).unwrap().into_iter())
        .map(|p| {
            (
                format!("{}/{}", p.registry.unwrap_or_default(), p.repository),
                p.tag,
            )
        })
        .collect();
    let want: Vec<_> = case
        .pushed
        .iter()
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .collect();
    assert_eq!(pushes, want, "{name}");

    let (status, text, seen) = post(format, Some(TOKEN), extra, &body).await;
    assert_eq!(status, StatusCode::OK, "{name}: {text}");
    assert_eq!(text.trim(), format!("{{\"matched\":{}}}", case.followers.len()));
    let names: Vec<_> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, case.followers, "{name}");

    for secret in [Some("wrong"), Some(""), None] {
        let (status, text, refused) = post(format, secret, extra, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} with {secret:?}: {text}");
        assert!(!text.contains(TOKEN));
        assert!(refused.is_empty(), "{name} with {secret:?}");
    }

    let (status, text, refused) = post(format, Some(TOKEN), extra, case.malformed.as_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {text}");
    assert!(text.contains(case.says), "{name}: {text:?} lacks {:?}", case.says);
    assert!(refused.is_empty());
    seen
}

/// A test per format, each running `check` on its case.
macro_rules! formats {
    ($($test:ident => $case:expr;)*) => {$(
        #[tokio::test]
        async fn $test() {
            check(&$case).await;
        }
    )*};
}

formats! {
    distribution_envelope => Case {
        format: Format::Distribution,
        fixture: "distribution.json",
        extra: &[],
        pushed: &[("192.168.100.227:5000/hello-world", "latest")],
        followers: &["distribution"],
        malformed: r#"{"events": [{"action": 1}]}"#,
        says: "not a registry notification envelope: invalid type",
    };
    gitlab_container_registry => Case {
        format: Format::GitLab,
        fixture: "gitlab.json",
        extra: &[],
        pushed: &[("registry.gitlab.example.com/group/project/app", "v1.2.0")],
        followers: &["gitlab"],
        malformed: "not json",
        says: "not a GitLab container registry notification envelope: expected",
    };
    docker_hub => Case {
        format: Format::DockerHub,
        fixture: "dockerhub.json",
        extra: &[],
        pushed: &[("docker.io/svendowideit/testhook", "latest")],
        followers: &["dockerhub"],
        malformed: r#"{"push_data": {}, "repository": {"repo_name": "a/b"}}"#,
        says: "not a Docker Hub webhook payload: missing field `tag`",
    };
    quay => Case {
        format: Format::Quay,
        fixture: "quay.json",
        extra: &[],
        pushed: &[("quay.io/dgangaia/test", "latest")],
        followers: &["quay"],
        malformed: r#"{"docker_url": "quay.io/a/b"}"#,
        says: "not a Quay repository push notification: missing field `updated_tags`",
    };
    harbor_v1 => Case {
        format: Format::Harbor,
        fixture: "harbor-v1.json",
        extra: &[],
        pushed: &[("harbor.example.com/library/centos", "7")],
        followers: &["harbor-v1"],
        malformed: r#"{"type": "pushImage"}"#,
        says: "not a Harbor webhook payload: a pushImage event without event_data",
    };
    harbor_v2 => Case {
        format: Format::Harbor,
        fixture: "harbor-v2.json",
        extra: &[],
        pushed: &[("hub.harbor.com/test-webhook/debian", "latest")],
        followers: &["harbor-v2"],
        malformed: r#"{"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"tag": "v1"}]}}"#,
        says: "not a Harbor webhook payload: the resource of tag \"v1\" has no resource_url",
    };
    harbor_v2_cloudevents => Case {
        format: Format::Harbor,
        fixture: "harbor-v2-cloudevents.json",
        extra: &[],
        pushed: &[("harbor.dev/library/busybox", "v1.0")],
        followers: &["harbor-ce"],
        malformed: r#"{"specversion": "1.0"}"#,
        says: "not a Harbor webhook payload: missing field `type`",
    };
    github_package => Case {
        format: Format::GitHub,
        fixture: "github-package.json",
        extra: &[("x-github-event", "package")],
        pushed: &[("ghcr.io/codertocat/hello-world", "v1")],
        followers: &["github"],
        malformed: r#"{"action": "published"}"#,
        says: "not a GitHub package event: neither package nor registry_package",
    };
    github_registry_package => Case {
        format: Format::GitHub,
        fixture: "github-registry-package.json",
        extra: &[("x-github-event", "registry_package")],
        pushed: &[("ghcr.io/codertocat/hello-world", "v1")],
        followers: &["github"],
        malformed: r#"{"action": "published", "registry_package": {}}"#,
        says: "missing field `name`",
    };
    azure_container_registry => Case {
        format: Format::Acr,
        fixture: "acr.json",
        extra: &[],
        pushed: &[("myregistry.azurecr.io/hello-world", "v1")],
        followers: &["acr"],
        malformed: r#"{"action": "push", "target": {"repository": "hello-world", "tag": "v1"}}"#,
        says: "not an Azure Container Registry webhook event: a push without request.host",
    };
}

#[tokio::test]
async fn generic_signed_form() {
    let seen = check(&Case {
        format: Format::Generic,
        fixture: "generic.json",
        extra: &[],
        pushed: &[("registry.example.com/team/app", "v1")],
        followers: &["generic"],
        malformed: r#"{"repository": "registry.example.com/Team/App", "tag": "v1"}"#,
        says: "has upper-case letters",
    })
    .await;
    // The digest is handed to the importer.
    let digest = "sha256:2b8f1c7e4c0a3d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6";
    assert_eq!(seen, vec![("generic".to_owned(), Some(digest.to_owned()))]);
}

#[tokio::test]
async fn harbor_takes_a_bearer_header_and_ignores_what_is_not_a_push() {
    let body = fixture("harbor-v2.json");
    let (router, seen) = routes(Limits::default());
    let (status, _) = send(
        router,
        "/registry/notifications/harbor",
        &bearer(),
        Body::from(body),
    )
    .await;
    assert_eq!((status, seen.lock().unwrap().len()), (StatusCode::OK, 1));
    let pull = br#"{"type": "PULL_ARTIFACT", "event_data": {"resources": [{"tag": "latest"}]}}"#;
    let (status, text, seen) = post(Format::Harbor, Some(TOKEN), &[], pull).await;
    assert_eq!(
        (status, text.trim(), seen.len()),
        (StatusCode::OK, "{\"matched\":0}", 0)
    );
}

#[tokio::test]
async fn github_pings_and_foreign_signatures() {
    let ping = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
    let extra = [("x-github-event", "ping")];
    let (status, text, _) = post(Format::GitHub, Some(TOKEN), &extra, ping).await;
    assert_eq!((status, text.trim()), (StatusCode::OK, "{\"matched\":0}"));
    // A valid signature of another body.
    let (router, seen) = routes(Limits::default());
    let headers = [
        ("x-hub-signature-256", sign(TOKEN, ping)),
        ("x-github-event", "package".into()),
    ];
    let body = Body::from(fixture("github-package.json"));
    let (status, text) = send(router, "/registry/notifications/github", &headers, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(
        text.contains("X-Hub-Signature-256") || text.contains("x-hub-signature-256"),
        "{text}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bodies_over_the_cap_are_413_and_unauthenticated_ones_are_never_read() {
    let huge = format!("{{\"events\":[],\"pad\":\"{}\"}}", "x".repeat(1 << 20)).into_bytes();
    for format in [Format::Distribution, Format::Generic, Format::DockerHub] {
        let (status, text, seen) = post(format, Some(TOKEN), &[], &huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{format:?}: {text}");
        assert!(seen.is_empty());
        // No credentials: refused before the body is read. (A well-formed signature needs the body read,
        // with the cap, before it can be checked.)
        let (status, _, _) = post(format, None, &[], &huge).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{format:?}");
        if format != Format::Generic {
            let (status, _, _) = post(format, Some("wrong"), &[], &huge).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{format:?}");
        }
    }
    // A declared length over the cap is refused before anything is read.
    let (router, _) = routes(Limits::default());
    let [auth] = bearer();
    let headers = [auth, ("content-length", "2000000".into())];
    let (status, _) = send(router, "/registry/notifications", &headers, pending()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_body_that_never_arrives_is_408() {
    let limits = Limits {
        body_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let (router, seen) = routes(limits);
    let (status, _) = send(router, "/registry/notifications", &bearer(), pending()).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn requests_past_the_rate_are_429() {
    let limits = Limits {
        requests_per_second: 0.001,
        burst: 2,
        ..Limits::default()
    };
    let (router, _) = routes(limits);
    let body = fixture("distribution.json");
    let [(name, value)] = bearer();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let request = Request::post("/registry/notifications")
            .header(name, &value)
            .body(Body::from(body.clone()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        statuses.push((response.status(), response.headers().get("retry-after").cloned()));
    }
    assert_eq!(statuses[..2], [(StatusCode::OK, None), (StatusCode::OK, None)]);
    assert_eq!(
        statuses[2],
        (StatusCode::TOO_MANY_REQUESTS, Some(HeaderValue::from_static("1")))
    );
}

#[tokio::test]
async fn a_blank_token_authenticates_nothing() {
    for blank in ["", "  "] {
        let (hook, seen) = webhook(blank);
        let router = hook.routes_with(Limits::default());
        for format in Format::ALL {
            let body = fixture("distribution.json");
            let (path, headers) = present(format, Some(blank), &body);
            let (status, _) = send(router.clone(), &path, &headers, Body::from(body)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{format:?} with {blank:?}");
        }
        assert!(seen.lock().unwrap().is_empty());
    }
}

async fn raw_post(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "POST /registry/notifications HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn connections_past_the_cap_are_503() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let (hook, _) = webhook(TOKEN);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, hook.router_with(limits)).into_future());
    // One idle connection takes the only slot.
    let idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = raw_post(addr).await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let served = raw_post(addr).await;
    assert!(served.starts_with("HTTP/1.1 401"), "{served}");
    server.abort();
}

#[test]
fn a_blank_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, " \n").unwrap();
    let controller = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berth-controller"));
        cmd.env_clear().env("KUBECONFIG", "/nonexistent/kubeconfig");
        cmd
    };
    for cmd in [
        controller().env("BERTH_WEBHOOK_TOKEN", "  "),
        controller().env("BERTH_WEBHOOK_TOKEN", ""),
        controller().env("BERTH_WEBHOOK_TOKEN_FILE", &file),
    ] {
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("the webhook token is empty or only whitespace"),
            "{stderr}"
        );
    }
}
