//! A registry whose Bearer challenge names a token service (`realm`) on another host: the registry policy
//! decides whether that host is contacted and whether it gets the pull secret (`registry/token_realm.rs`).
//! 127.0.0.1 on another port is another host. The remote token service serves HTTPS (a test CA made with
//! `openssl`, as `support/registry.rs` does) and counts every connection it accepts.

mod support;

use std::io::Write as _;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Method;
use base64::Engine as _;
use berth_controller::registry::{
    Credentials, RegistryPolicy, ResolveError, ResolveRequest, Resolver, ResolverConfig,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[path = "support/fake_registry.rs"]
mod fake_registry;
use fake_registry::{FakeRegistry, OCI_MANIFEST, answer, manifest_bytes, sha256};

const USER: &str = "robot";
const PASSWORD: &str = "pull-secret-password";
const TOKEN: &str = "tok-remote";

/// What a token service saw: one entry per request, its path and query and its `Authorization` header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A token service on 127.0.0.1 over HTTPS, answering [`TOKEN`] to Basic `USER:PASSWORD` and 401 to
/// anything else. One request per connection; it runs on a thread until the test process ends.
struct TlsTokenService {
    host: String,
    connections: Arc<AtomicUsize>,
    seen: Seen,
    ca_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn expected_basic() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    format!("Basic {encoded}")
}

/// The request line's target and the `Authorization` header of an HTTP/1.1 request head.
fn read_head(stream: &mut impl std::io::Read) -> Option<(String, Option<String>)> {
    let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.lines().next()?.split(' ').nth(1)?.to_string();
    let authorization = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    Some((target, authorization))
}

impl TlsTokenService {
    fn start() -> Self {
        berth_controller::registry::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key, ca_pem) = support::registry::make_certificates(dir.path());
        let certs = CertificateDer::pem_file_iter(&cert)
            .expect("certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_file(&key).expect("key");
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Seen::default();
        let (counter, record) = (connections.clone(), seen.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let connection = rustls::ServerConnection::new(config.clone()).expect("tls");
                let mut tls = rustls::StreamOwned::new(connection, tcp);
                let Some((target, authorization)) = read_head(&mut tls) else {
                    continue;
                };
                let (status, body) = if authorization.as_deref() == Some(expected_basic().as_str()) {
                    ("200 OK", format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#))
                } else {
                    ("401 Unauthorized", r#"{"details":"bad credentials"}"#.to_string())
                };
                record.lock().unwrap().push((target, authorization));
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        Self {
            host,
            connections,
            seen,
            ca_pem,
            _dir: dir,
        }
    }
}

/// A plain HTTP registry that wants `Bearer <accepted>` and names `realm` in its challenge.
async fn registry_with_realm(realm: String, accepted: &'static str) -> FakeRegistry {
    let body = manifest_bytes();
    FakeRegistry::start(move |method, _, headers| {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if authorization != format!("Bearer {accepted}") {
            let challenge = format!(r#"Bearer realm="{realm}",service="fake-registry""#);
            return answer(401, &[("www-authenticate", challenge)], "");
        }
        let headers = [
            ("content-type", OCI_MANIFEST.to_string()),
            ("docker-content-digest", sha256(&body)),
        ];
        let content = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(body.clone())
        };
        answer(200, &headers, content)
    })
    .await
}

fn resolver(policy: &str, ca_pem: Option<Vec<u8>>) -> Resolver {
    Resolver::new(ResolverConfig {
        timeout: Duration::from_secs(2),
        policy: RegistryPolicy::parse(policy).expect("policy"),
        extra_ca_pem: ca_pem,
        ..Default::default()
    })
    .expect("resolver")
}

fn request(registry: &FakeRegistry, credentials: Option<Credentials>) -> ResolveRequest {
    ResolveRequest {
        reference: format!("{}/team/app:v1", registry.host),
        insecure: true,
        credentials,
        ..Default::default()
    }
}

fn secrets_absent(e: &ResolveError) {
    let (text, debug) = (e.to_string(), format!("{e:?}"));
    for secret in [PASSWORD, TOKEN, expected_basic().as_str()] {
        assert!(
            !text.contains(secret) && !debug.contains(secret),
            "{secret} in {debug}"
        );
    }
}

#[tokio::test]
async fn a_token_service_the_policy_does_not_allow_is_never_contacted() {
    let tokens = TlsTokenService::start();
    let registry = registry_with_realm(format!("https://{}/token", tokens.host), TOKEN).await;
    let policy = format!(
        "allowedRegistriesForImport: [{{domainName: \"{}\", insecure: true}}]",
        registry.host
    );
    let resolver = resolver(&policy, Some(tokens.ca_pem.clone()));
    let with_secret = Some(Credentials::new(USER, PASSWORD));
    let e = resolver
        .resolve(&request(&registry, with_secret))
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), "RegistryNotAllowed", "{e}");
    let wanted = format!(
        "the token service {} named by registry {} is not allowed by the registry policy; allow it in \
         allowedRegistriesForImport to send the pull secret there",
        tokens.host, registry.host
    );
    assert!(e.to_string().contains(&wanted), "{e}");
    assert!(!e.retryable());
    secrets_absent(&e);

    // Nor for an anonymous token: the policy decides which hosts the controller contacts at all.
    let e = resolver
        .resolve(&request(&registry, None))
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), "RegistryNotAllowed", "{e}");
    assert!(e.to_string().contains("to let Berth ask it for a token"), "{e}");

    assert!(registry.hits() >= 2, "the registry itself was asked");
    assert_eq!(
        tokens.connections.load(Ordering::SeqCst),
        0,
        "no connection to the token service"
    );
    assert!(
        tokens.seen.lock().unwrap().is_empty(),
        "no Authorization header reached it"
    );
}

#[tokio::test]
async fn a_token_service_the_policy_allows_gets_the_pull_secret() {
    let tokens = TlsTokenService::start();
    let registry = registry_with_realm(format!("https://{}/token", tokens.host), TOKEN).await;
    let policy = format!(
        "allowedRegistriesForImport: [{{domainName: \"{}\", insecure: true}}, {{domainName: \"{}\"}}]",
        registry.host, tokens.host
    );
    let resolver = resolver(&policy, Some(tokens.ca_pem.clone()));
    let resolved = resolver
        .resolve(&request(&registry, Some(Credentials::new(USER, PASSWORD))))
        .await
        .expect("imported with the remote token");
    assert_eq!(resolved.digest, sha256(&manifest_bytes()));
    let seen = tokens.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (target, authorization) = &seen[0];
    assert_eq!(authorization.as_deref(), Some(expected_basic().as_str()));
    assert_eq!(
        target,
        "/token?service=fake-registry&scope=repository%3Ateam%2Fapp%3Apull"
    );

    // Wrong credentials: the token service refuses, and the message says so without the secret.
    let e = resolver
        .resolve(&request(&registry, Some(Credentials::new(USER, "wrong"))))
        .await
        .expect_err("refused by the token service");
    assert_eq!(e.reason(), "Unauthorized", "{e}");
    assert!(e.to_string().contains("token service refused"), "{e}");
    secrets_absent(&e);
}

#[tokio::test]
async fn a_plain_http_token_service_on_another_host_never_gets_the_pull_secret() {
    let seen = Seen::default();
    let record = seen.clone();
    // Hands out an anonymous token to anyone, and records what it was sent.
    let tokens = FakeRegistry::start(move |_, path, headers| {
        let authorization = headers
            .get("authorization")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        record.lock().unwrap().push((path.to_string(), authorization));
        answer(
            200,
            &[("content-type", "application/json".into())],
            r#"{"token":"tok-anonymous"}"#,
        )
    })
    .await;
    // The registry wants a token only the pull secret buys.
    let registry = registry_with_realm(format!("http://{}/token", tokens.host), TOKEN).await;
    // No policy: every host may be contacted, yet plain HTTP on another host gets no credentials.
    let resolver = resolver("{}", None);
    let e = resolver
        .resolve(&request(&registry, Some(Credentials::new(USER, PASSWORD))))
        .await
        .expect_err("the anonymous token does not open the repository");
    assert_eq!(e.reason(), "Unauthorized", "{e}");
    let text = e.to_string();
    assert!(
        text.contains("the pull secret was not sent")
            && text.contains(&tokens.host)
            && text.contains("plain HTTP"),
        "{e}"
    );
    secrets_absent(&e);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the token service was asked anonymously");
    assert!(
        seen.iter().all(|(_, authorization)| authorization.is_none()),
        "{seen:?}"
    );
}
