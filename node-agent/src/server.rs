//! The agent's HTTP endpoints. On the kubelet port (HTTPS, every request authenticated and
//! authorised by [`crate::access`]): container logs (`/containerLogs/{ns}/{pod}/{container}`
//! with `follow`, `tailLines`, `previous`, as the API server proxies `kubectl logs`),
//! `kubectl exec`/`attach`/`port-forward` ([`crate::streaming`]), `/healthz` and `/metrics`.
//! On a local plain-HTTP address: `/healthz` and `/metrics` only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, middleware};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info_span, warn};

use crate::access::{self, Access, Peer};

use crate::cri::CriClient;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::pods::{self, PodIndex};

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    /// The runtime.
    pub cri: CriClient,
    /// The pods of this node.
    pub pods: PodIndex,
    /// Metrics.
    pub metrics: Metrics,
}

/// The most connections the kubelet port serves at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a client may take over the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The router of the kubelet port: every endpoint, each request checked by `access` first.
pub fn router(state: AppState, access: Access) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{*rest}", any(crate::streaming::handle))
        .route("/attach/{*rest}", any(crate::streaming::handle))
        .route("/portForward/{*rest}", any(crate::streaming::handle))
        .with_state(state)
        .layer(middleware::from_fn_with_state(access, access::guard))
}

/// The router of the local plain-HTTP address: health and metrics, nothing about pods.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// One line of a CRI log file: `TIMESTAMP STREAM TAG CONTENT`, tag `F` (full) or `P`
/// (partial, no newline). Returns the content and whether a newline ends it.
pub fn parse_cri_line(line: &str) -> Option<(&str, bool)> {
    let mut parts = line.splitn(4, ' ');
    let (_ts, _stream, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let content = parts.next().unwrap_or("");
    Some((content, tag != "P"))
}

/// The user-visible text of CRI log lines, keeping only the last `tail` lines if asked.
pub fn render(text: &str, tail: Option<usize>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut partial = String::new();
    for line in text.lines() {
        if let Some((content, full)) = parse_cri_line(line) {
            partial.push_str(content);
            if full {
                out.push(std::mem::take(&mut partial));
            }
        }
    }
    if !partial.is_empty() {
        out.push(partial);
    }
    let skip = tail.map_or(0, |t| out.len().saturating_sub(t));
    out.iter().skip(skip).map(|l| format!("{l}\n")).collect()
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, msg).into_response()
}

async fn container_logs(
    State(state): State<AppState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let follow = q.get("follow").is_some_and(|v| v == "true" || v == "1");
    let previous = q.get("previous").is_some_and(|v| v == "true" || v == "1");
    let tail = q.get("tailLines").and_then(|v| v.parse::<usize>().ok());
    let Some(p) = pods::find(&state.pods, &namespace, &pod) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not on this node"),
        );
    };
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let mut found = match pods::containers_named(&state.cri, &uid, &container).await {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    found.sort_by_key(|c| std::cmp::Reverse(c.metadata.as_ref().map_or(0, |m| m.attempt)));
    let Some(c) = found.get(usize::from(previous)) else {
        let which = if previous { "previous " } else { "" };
        return error(
            StatusCode::NOT_FOUND,
            format!("no {which}container {container} in pod {namespace}/{pod}"),
        );
    };
    let status = match state.cri.container_status(&c.id).await {
        Ok(Some(s)) => s,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("container {container} is gone")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let path = status.log_path.clone();
    let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
    let head = render(&text, tail);
    if !follow {
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], head).into_response();
    }
    let stream = follow_stream(state.cri.clone(), c.id.clone(), path, text.len(), head);
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Streams `head`, then whatever is appended to the log at `path` after `offset`, until the
/// container stops running and the file is drained.
fn follow_stream(
    cri: CriClient,
    id: String,
    path: String,
    offset: usize,
    head: String,
) -> impl futures::Stream<Item = std::result::Result<String, std::io::Error>> {
    futures::stream::unfold(
        (Some(head), offset, String::new(), false),
        move |(head, offset, pending, done)| {
            let (cri, id, path) = (cri.clone(), id.clone(), path.clone());
            async move {
                if let Some(h) = head {
                    return Some((Ok(h), (None, offset, pending, false)));
                }
                if done {
                    return None;
                }
                loop {
                    let text = tokio::fs::read_to_string(Path::new(&path))
                        .await
                        .unwrap_or_default();
                    if text.len() > offset {
                        let mut chunk = pending.clone();
                        chunk.push_str(&text[offset..]);
                        // Only whole lines; keep a trailing fragment for next time.
                        let cut = chunk.rfind('\n').map_or(0, |i| i + 1);
                        let (whole, rest) = chunk.split_at(cut);
                        if !whole.is_empty() {
                            let out = render(whole, None);
                            return Some((Ok(out), (None, text.len(), rest.to_string(), false)));
                        }
                    }
                    let running = matches!(cri.container_status(&id).await, Ok(Some(s)) if s.state == 1);
                    if !running {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        },
    )
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<std::result::Result<_, _>>())
        .map_err(|e| Error::Tls(format!("reading {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Loads the TLS server configuration from PEM files. With `client_ca`, a client certificate
/// must be signed by one of its CAs (the API server presents its kubelet client certificate);
/// a client without one may still connect and authenticate with a bearer token
/// ([`crate::access`] refuses it otherwise). Without `client_ca` no certificate is asked for.
pub fn tls_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<rustls::ServerConfig> {
    let certs = read_certs(cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("reading key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca, "client CA bundle")? {
                roots
                    .add(c)
                    .map_err(|e| Error::Tls(format!("client CA bundle {}: {e}", ca.display())))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| Error::Tls(format!("client CA bundle {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map(|mut c| {
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            c
        })
        .map_err(|e| Error::Tls(format!("certificate and key do not fit: {e}")))
}

/// Binds `addr` (a clear error when it is taken).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Io {
        what: "listening on",
        path: addr.to_string(),
        source,
    })
}

/// Serves `router` over TLS on `listener` forever, at most [`MAX_CONNECTIONS`] at once; each
/// request carries the user of the connection's client certificate ([`Peer`]).
pub async fn serve_tls(listener: TcpListener, tls: rustls::ServerConfig, router: Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(
            async move {
                let _slot = slot;
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    // Clients with a certificate of another CA end here (refused in the handshake).
                    Ok(Err(e)) => return debug!(error = %e, "TLS handshake failed"),
                    Err(_) => return debug!("TLS handshake timed out"),
                };
                let user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| access::identity::from_certificate(c.as_ref()));
                let service = TowerToHyperService::new(router.layer(Extension(Peer(user))));
                if let Err(e) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await
                {
                    debug!(error = %e, "connection ended with an error");
                }
            }
            .instrument(info_span!("https", %peer)),
        );
    }
}

/// Serves `router` over plain HTTP on `listener` forever.
pub async fn serve_plain(listener: TcpListener, router: Router) {
    if let Err(e) = axum::serve(listener, router).await {
        warn!(error = %e, "health server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cri_log_lines() {
        let text = "2024-01-01T00:00:00Z stdout F one\n\
                    2024-01-01T00:00:01Z stderr P par\n\
                    2024-01-01T00:00:01Z stderr F tial\n\
                    2024-01-01T00:00:02Z stdout F three\n";
        assert_eq!(render(text, None), "one\npartial\nthree\n");
        assert_eq!(render(text, Some(1)), "three\n");
        assert_eq!(render(text, Some(10)), "one\npartial\nthree\n");
        assert_eq!(render(text, Some(0)), "");
    }

    #[test]
    fn unreadable_or_empty_client_ca_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("berth-agent-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let e = read_certs(&empty, "client CA bundle").expect_err("empty bundle");
        assert!(e.to_string().contains("holds no certificate"), "{e}");
        let e = read_certs(&dir.join("missing.pem"), "client CA bundle").expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
