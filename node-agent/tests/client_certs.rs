//! The HTTPS server of :10250 with `--client-ca`: a client certificate of that CA gets in,
//! no certificate or one of another CA is refused in the handshake. In-process, with the
//! test PKI in `tests/fixtures/tls/` (throw-away keys made with openssl for these tests only,
//! valid for 100 years: `ca.crt` signed `server.crt` (127.0.0.1) and `client.crt`,
//! `other-ca.crt` signed `stranger.crt`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use berth_agent::cri::CriClient;
use berth_agent::metrics::Metrics;
use berth_agent::server::{self, AppState};
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

/// Serves the agent's router on 127.0.0.1 with client certificates required; returns the port.
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
    let app = server::router(AppState {
        cri: CriClient::from_channel("unix:///nowhere", channel),
        pods: Arc::new(RwLock::new(HashMap::new())),
        metrics: Metrics::new(),
    });
    tokio::spawn(server::serve_tls(listener, tls, app));
    port
}

/// GET /healthz as a client presenting `identity` (cert and key fixture names), trusting the
/// test CA; returns the response or the error.
async fn get_healthz(port: u16, identity: Option<(&str, &str)>) -> Result<String, String> {
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
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(out)
}

#[tokio::test]
async fn a_client_certificate_of_the_client_ca_is_required() {
    let port = serve().await;
    let ok = get_healthz(port, Some(("client.crt", "client.key")))
        .await
        .expect("the CA's client gets in");
    assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok"), "{ok}");

    // TLS 1.3: the server's refusal may arrive after the client's handshake completes, so it
    // shows on the first read at the latest; no response is ever served.
    let none = get_healthz(port, None).await;
    assert!(
        none.as_ref().is_err_and(|e| e.contains("CertificateRequired")),
        "served without a client certificate: {none:?}"
    );
    let stranger = get_healthz(port, Some(("stranger.crt", "stranger.key"))).await;
    assert!(
        stranger.as_ref().is_err_and(|e| e.contains("UnknownCA")),
        "served a client of another CA: {stranger:?}"
    );
}
