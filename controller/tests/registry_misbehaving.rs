//! The resolver against small in-process HTTP servers that misbehave on purpose (rate limits, outages,
//! wrong digests, huge or broken manifests) or play a token service. They are not registries: each
//! answers just enough of the protocol for one case.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Method;
use berth_controller::registry::{Credentials, ResolveError, ResolveRequest, Resolver, ResolverConfig};

#[path = "support/fake_registry.rs"]
mod fake_registry;
use fake_registry::{FakeRegistry as MisbehavingRegistry, OCI_MANIFEST, answer, manifest_bytes, sha256};

fn resolver() -> Resolver {
    Resolver::new(ResolverConfig {
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .expect("resolver")
}

async fn resolve(
    resolver: &Resolver,
    server: &MisbehavingRegistry,
    reference: &str,
) -> Result<String, ResolveError> {
    let request = ResolveRequest {
        reference: format!("{}/{reference}", server.host),
        insecure: true,
        ..Default::default()
    };
    resolver.resolve(&request).await.map(|r| r.digest)
}

#[tokio::test]
async fn too_many_requests_is_rate_limited_with_retry_after_and_backs_off() {
    let server =
        MisbehavingRegistry::start(|_, _, _| answer(429, &[("retry-after", "7".into())], "slow down")).await;
    let resolver = resolver();
    let e = resolve(&resolver, &server, "app:v1").await.expect_err("429");
    assert_eq!(e.reason(), "RateLimited", "{e}");
    assert!(e.retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert!(
        e.to_string().contains("retry in 7s") && e.to_string().contains("/app:v1"),
        "{e}"
    );
    let hits = server.hits();

    // While the back-off holds, the resolver does not call the registry at all.
    let e = resolve(&resolver, &server, "app:v2")
        .await
        .expect_err("during back-off");
    assert_eq!(e.reason(), "RateLimited", "{e}");
    assert!(
        e.retry_after()
            .is_some_and(|d| d <= Duration::from_secs(7) && d > Duration::from_secs(5)),
        "{e:?}"
    );
    assert_eq!(server.hits(), hits, "no request during back-off");
}

#[tokio::test]
async fn retry_after_as_an_http_date() {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90);
    let date = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&at)
        .expect("date");
    let server =
        MisbehavingRegistry::start(move |_, _, _| answer(503, &[("retry-after", date.clone())], "")).await;
    let e = resolve(&resolver(), &server, "app:v1").await.expect_err("503");
    assert_eq!(e.reason(), "RegistryUnavailable", "{e}");
    let after = e.retry_after().expect("retry-after");
    assert!(
        after > Duration::from_secs(85) && after <= Duration::from_secs(90),
        "{after:?}"
    );
}

#[tokio::test]
async fn service_unavailable_and_unreachable_registries() {
    let server = MisbehavingRegistry::start(|_, _, _| answer(503, &[], "down for maintenance")).await;
    let e = resolve(&resolver(), &server, "app:v1").await.expect_err("503");
    assert_eq!(
        (e.reason(), e.retryable(), e.retry_after()),
        ("RegistryUnavailable", true, None),
        "{e}"
    );
    assert!(e.to_string().contains("503"), "{e}");

    let closed = MisbehavingRegistry {
        host: "127.0.0.1:1".into(),
        hits: Arc::default(),
        task: tokio::spawn(async {}),
    };
    let e = resolve(&resolver(), &closed, "app:v1")
        .await
        .expect_err("connection refused");
    assert_eq!(e.reason(), "RegistryUnavailable", "{e}");
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // Accepts connections (the kernel does) and never answers.
    let host = listener.local_addr().unwrap().to_string();
    let fast = Resolver::new(ResolverConfig {
        timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .unwrap();
    let request = ResolveRequest {
        reference: format!("{host}/app:v1"),
        insecure: true,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let e = fast.resolve(&request).await.expect_err("timeout");
    assert_eq!(e.reason(), "RegistryUnavailable", "{e}");
    assert!(e.to_string().contains("no answer within 0.3s"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn a_wrong_digest_header_on_get_is_a_mismatch() {
    let body = manifest_bytes();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let server = MisbehavingRegistry::start(move |method, _, _| {
        if method == Method::HEAD {
            // No digest on HEAD: the resolver has to GET and hash.
            answer(200, &[("content-type", OCI_MANIFEST.into())], Body::empty())
        } else {
            answer(
                200,
                &[
                    ("content-type", OCI_MANIFEST.into()),
                    ("docker-content-digest", wrong.clone()),
                ],
                body.clone(),
            )
        }
    })
    .await;
    let e = resolve(&resolver(), &server, "app:v1")
        .await
        .expect_err("mismatch");
    assert_eq!(e.reason(), "DigestMismatch", "{e}");
    assert!(
        e.to_string().contains(&"0".repeat(64)) && e.to_string().contains(&sha256(&manifest_bytes())),
        "{e}"
    );
}

#[tokio::test]
async fn without_any_digest_header_the_body_is_hashed() {
    let body = manifest_bytes();
    let expected = sha256(&body);
    let server = MisbehavingRegistry::start(move |method, _, _| {
        let content = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(body.clone())
        };
        answer(200, &[("content-type", OCI_MANIFEST.into())], content)
    })
    .await;
    assert_eq!(
        resolve(&resolver(), &server, "app:v1").await.expect("hashed"),
        expected
    );
    // And a pinned reference must match what the registry serves.
    let pinned = format!("app@sha256:{}", "1".repeat(64));
    let e = resolve(&resolver(), &server, &pinned)
        .await
        .expect_err("pinned mismatch");
    assert_eq!(e.reason(), "DigestMismatch", "{e}");
}

#[tokio::test]
async fn a_proxy_that_refuses_head_gets_a_get() {
    let body = manifest_bytes();
    let expected = sha256(&body);
    let server = MisbehavingRegistry::start(move |method, _, _| match *method {
        Method::HEAD => answer(405, &[("content-length", "0".into())], Body::empty()),
        _ => answer(200, &[("content-type", OCI_MANIFEST.into())], body.clone()),
    })
    .await;
    assert_eq!(
        resolve(&resolver(), &server, "app:v1")
            .await
            .expect("GET after 405"),
        expected
    );
}

#[tokio::test]
async fn huge_manifests_are_refused_without_reading_them() {
    // Announced on HEAD: refused before any GET.
    let server = MisbehavingRegistry::start(|_, _, _| {
        answer(
            200,
            &[
                ("content-type", OCI_MANIFEST.into()),
                ("content-length", "104857600".into()),
            ],
            Body::empty(),
        )
    })
    .await;
    let e = resolve(&resolver(), &server, "app:v1")
        .await
        .expect_err("too large");
    assert_eq!(e.reason(), "ManifestTooLarge", "{e}");
    assert!(e.to_string().contains("104857600 bytes announced"), "{e}");
    assert_eq!(server.hits(), 1, "HEAD only");

    // Not announced: an endless chunked body, of which the resolver reads only a little past 4 MiB.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let server = MisbehavingRegistry::start(move |method, _, _| {
        if method == Method::HEAD {
            return answer(200, &[("content-type", OCI_MANIFEST.into())], Body::empty());
        }
        let counter = counter.clone();
        let chunks = futures::stream::repeat_with(move || {
            counter.fetch_add(64 * 1024, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 * 1024]))
        });
        answer(
            200,
            &[("content-type", OCI_MANIFEST.into())],
            Body::from_stream(chunks),
        )
    })
    .await;
    let e = resolve(&resolver(), &server, "app:v1")
        .await
        .expect_err("endless");
    assert_eq!(e.reason(), "ManifestTooLarge", "{e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < 16 * 1024 * 1024,
        "the server produced {sent} bytes: the resolver kept reading"
    );
}

#[tokio::test]
async fn malformed_manifests_are_invalid() {
    for (body, problem) in [
        (&b"{\"schemaVersion\": 2, \"config\": "[..], "not a JSON manifest"),
        (
            br#"{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[]}"#,
            "schema 1",
        ),
        (
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":"no"}"#,
            "not a JSON",
        ),
    ] {
        let server = MisbehavingRegistry::start(move |method, _, _| {
            let content = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(body)
            };
            answer(200, &[("content-type", OCI_MANIFEST.into())], content)
        })
        .await;
        let e = resolve(&resolver(), &server, "app:v1")
            .await
            .expect_err("malformed");
        assert_eq!(e.reason(), "InvalidManifest", "{e}");
        assert!(e.to_string().contains(problem), "{e}");
    }
}

/// A token service and a registry that wants its tokens, in one fake server.
async fn fake_token_registry(
    user: &'static str,
    password: &'static str,
) -> (MisbehavingRegistry, Arc<std::sync::Mutex<Vec<String>>>) {
    let token_requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = token_requests.clone();
    let body = manifest_bytes();
    let realm = Arc::new(std::sync::OnceLock::<String>::new());
    let realm_in = realm.clone();
    let server = MisbehavingRegistry::start(move |method, path, headers| {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let challenge = format!(
            r#"Bearer realm="{}",service="fake-registry""#,
            realm_in.get().expect("realm")
        );
        if path.starts_with("/token") {
            seen.lock().unwrap().push(path.to_string());
            let basic = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{user}:{password}"),
            );
            return if authorization == format!("Basic {basic}") {
                answer(
                    200,
                    &[("content-type", "application/json".into())],
                    r#"{"token":"tok-123","expires_in":300}"#,
                )
            } else {
                answer(401, &[], r#"{"details":"bad credentials"}"#)
            };
        }
        if authorization != "Bearer tok-123" {
            return answer(401, &[("www-authenticate", challenge)], "");
        }
        let headers = [
            ("content-type", OCI_MANIFEST.to_string()),
            ("docker-content-digest", sha256(&body)),
        ];
        answer(
            200,
            &headers,
            if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(body.clone())
            },
        )
    })
    .await;
    realm
        .set(format!("http://{}/token", server.host))
        .expect("realm once");
    (server, token_requests)
}

#[tokio::test]
async fn bearer_token_challenges_on_the_registry_s_own_host_get_the_pull_secret() {
    let (server, token_requests) = fake_token_registry("robot", "token-secret").await;
    let resolver = resolver();
    let request = ResolveRequest {
        reference: format!("{}/team/app:v1", server.host),
        insecure: true,
        credentials: Some(Credentials::new("robot", "token-secret")),
        ..Default::default()
    };
    let first = resolver.resolve(&request).await.expect("with a token");
    assert_eq!(first.digest, sha256(&manifest_bytes()));
    let scopes = token_requests.lock().unwrap().clone();
    assert!(
        scopes
            .iter()
            .any(|p| p.contains("scope=repository%3Ateam%2Fapp%3Apull")),
        "{scopes:?}"
    );
    assert!(
        scopes.iter().all(|p| p.contains("service=fake-registry")),
        "{scopes:?}"
    );
    // The token is reused: one request.
    assert_eq!(
        resolver.resolve(&request).await.expect("cached token").requests,
        1
    );

    let wrong = ResolveRequest {
        credentials: Some(Credentials::new("robot", "wrong-secret")),
        ..request.clone()
    };
    let e = resolver.resolve(&wrong).await.expect_err("refused");
    assert_eq!(e.reason(), "Unauthorized", "{e}");
    assert!(e.to_string().contains("token service refused"), "{e}");
    assert!(!e.to_string().contains("wrong-secret") && !format!("{e:?}").contains("wrong-secret"));
}

#[derive(Default)]
struct CountingObserver(std::sync::Mutex<Vec<(String, &'static str, u32)>>);

impl berth_controller::registry::ResolveObserver for CountingObserver {
    fn observe(&self, o: &berth_controller::registry::Observation<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((o.registry.to_string(), o.outcome, o.requests));
    }
}

#[tokio::test]
async fn the_observer_sees_every_outcome() {
    let body = manifest_bytes();
    let server = MisbehavingRegistry::start(move |_, path, _| {
        if path.ends_with("/missing") {
            return answer(404, &[], "");
        }
        answer(
            200,
            &[
                ("content-type", OCI_MANIFEST.into()),
                ("docker-content-digest", sha256(&body)),
            ],
            Body::empty(),
        )
    })
    .await;
    let observer = Arc::new(CountingObserver::default());
    let resolver = resolver().with_observer(observer.clone());
    resolve(&resolver, &server, "app:v1").await.expect("resolved");
    resolve(&resolver, &server, "app:missing")
        .await
        .expect_err("not found");
    resolve(&resolver, &server, "App:v1")
        .await
        .expect_err("invalid: never reaches the registry");
    let seen = observer.0.lock().unwrap().clone();
    let host = server.host.clone();
    // The first resolve tried HTTPS, then plain HTTP (insecure), and remembered it.
    assert_eq!(seen, [(host.clone(), "Resolved", 2), (host, "NotFound", 1)]);
}
