//! The HTTPS server of :10250 with `--client-ca`: a client certificate of that CA names the
//! user whose requests are authorised, one of another CA is refused in the handshake, no
//! certificate and no token is 401, and what the reviewer denies is 403. In-process (the API
//! server's reviews answered by `FakeReviewer`), with the
//! test PKI in `tests/fixtures/tls/` (throw-away keys made with openssl for these tests only,
//! valid for 100 years: `ca.crt` signed `server.crt` (127.0.0.1) and `client.crt`,
//! `other-ca.crt` signed `stranger.crt`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use berth_agent::access::attributes::Attributes;
use berth_agent::access::review::Reviewer;
use berth_agent::access::{Access, AuthorizationMode, User};
use berth_agent::cri::CriClient;
use berth_agent::metrics::Metrics;
use berth_agent::server::{self, AppState};
use futures::future::BoxFuture;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn certs(name: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(fixture(name))
        .expect("fixture")
        .collect::<Result<_, _>>()
        .expect("certificates")
}

/// A fake API server: token `t0ken` is user `robot`; `client` and `robot` may `get
/// nodes/proxy` of node `n1`, nothing else is allowed.
struct FakeReviewer;

impl Reviewer for FakeReviewer {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<User>, String>> {
        Box::pin(async move {
            Ok((token == "t0ken").then(|| User {
                name: "robot".into(),
                groups: vec![],
            }))
        })
    }

    fn authorize<'a>(
        &'a self,
        user: &'a User,
        node: &'a str,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            Ok(["client", "robot"].contains(&user.name.as_str())
                && node == "n1"
                && (attrs.verb, attrs.subresource) == ("get", "proxy"))
        })
    }
}

/// Serves the agent's router on 127.0.0.1 with the client CA; returns the port.
async fn serve() -> u16 {
    let tls = server::tls_config(
        &fixture("server.crt"),
        &fixture("server.key"),
        Some(&fixture("ca.crt")),
    )
    .expect("TLS config");
    let listener = server::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    let app = server::router(
        AppState {
            cri: CriClient::from_channel("unix:///nowhere", channel),
            pods: Arc::new(RwLock::new(HashMap::new())),
            metrics: Metrics::new(),
        },
        Access::checked("n1", AuthorizationMode::Webhook, Arc::new(FakeReviewer)),
    );
    tokio::spawn(server::serve_tls(listener, tls, app));
    port
}

/// GET /healthz as a client presenting `identity` (cert and key fixture names), trusting the
/// test CA; returns the response or the error.
async fn get_healthz(port: u16, identity: Option<(&str, &str)>) -> Result<String, String> {
    send(port, identity, "GET /healthz HTTP/1.1\r\n").await
}

/// Sends `head` (request line and any headers, each ending in CRLF) as a client presenting
/// `identity`; returns the response or the error.
async fn send(port: u16, identity: Option<(&str, &str)>, head: &str) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("ca.crt") {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_file(fixture(key)).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(certs(cert), key)
                .map_err(|e| e.to_string())?
        }
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(format!("{head}Host: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(out)
}

#[tokio::test]
async fn a_client_certificate_of_the_client_ca_names_the_user() {
    let port = serve().await;
    let ok = get_healthz(port, Some(("client.crt", "client.key")))
        .await
        .expect("the CA's client gets in");
    assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok"), "{ok}");

    // The same user, a verb the reviewer does not allow: the kubelet's 403.
    let exec = send(
        port,
        Some(("client.crt", "client.key")),
        "POST /exec/ns/p/c?command=ls&output=1 HTTP/1.1\r\n",
    )
    .await
    .expect("served");
    assert!(exec.starts_with("HTTP/1.1 403"), "{exec}");
    assert!(
        exec.ends_with("Forbidden (user=client, verb=create, resource=nodes, subresource=proxy)"),
        "{exec}"
    );

    // TLS 1.3: the server's refusal may arrive after the client's handshake completes, so it
    // shows on the first read at the latest; no response is ever served.
    let stranger = get_healthz(port, Some(("stranger.crt", "stranger.key"))).await;
    assert!(
        stranger.as_ref().is_err_and(|e| e.contains("UnknownCA")),
        "served a client of another CA: {stranger:?}"
    );
}

#[tokio::test]
async fn without_a_certificate_a_token_is_needed() {
    let port = serve().await;
    let none = get_healthz(port, None).await.expect("answered");
    assert!(
        none.starts_with("HTTP/1.1 401"),
        "served without a certificate or token: {none}"
    );
    let bad = send(
        port,
        None,
        "GET /healthz HTTP/1.1\r\nAuthorization: Bearer nope\r\n",
    )
    .await
    .expect("answered");
    assert!(bad.starts_with("HTTP/1.1 401"), "{bad}");
    let good = send(
        port,
        None,
        "GET /healthz HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n",
    )
    .await
    .expect("answered");
    assert!(good.starts_with("HTTP/1.1 200"), "{good}");
}
