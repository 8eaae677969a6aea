//! The upgrade-aware proxy between the API server and the runtime's streaming server, as the
//! kubelet's (`apimachinery/pkg/util/proxy/upgradeaware.go`): the client's upgrade request
//! (SPDY or WebSocket) is replayed to the URL the runtime handed out; when the runtime switches
//! protocols, the client is switched too and bytes are copied both ways until either side
//! closes. The agent never reads the streams.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info_span, warn};

/// How long connecting to the runtime's streaming server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a refusal's body that is passed back.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Whether `headers` ask for a protocol upgrade (`Connection: Upgrade` and an `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
    });
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// Whether a request header goes on to the runtime: never the caller's credentials or the
/// identity headers of an authenticating proxy.
pub fn forwarded(name: &header::HeaderName) -> bool {
    let n = name.as_str();
    !(name == header::HOST
        || name == header::AUTHORIZATION
        || name == header::PROXY_AUTHORIZATION
        || name == header::COOKIE
        || n.starts_with("x-remote-")
        || n.starts_with("impersonate-"))
}

/// Where the runtime serves the stream: an `http://host:port/path` URL.
pub fn target(url: &str) -> Result<(String, String), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("the runtime's streaming URL {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        other => {
            return Err(format!(
                "the runtime's streaming URL uses {other:?}; the agent proxies plain http (containerd's enable_tls_streaming = false)"
            ));
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("the runtime's streaming URL {url:?} has no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok((format!("{}:{port}", authority.host()), path.to_string()))
}

fn refusal(status: StatusCode, msg: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(msg));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Proxies the upgrade request `req` ([`is_upgrade`], checked by the caller) to the runtime's streaming `url`.
pub async fn upgrade(mut req: Request<Body>, url: &str) -> Response<Body> {
    let (addr, path) = match target(url) {
        Ok(t) => t,
        Err(msg) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, msg),
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return refusal(
                StatusCode::BAD_GATEWAY,
                format!("connecting to the runtime's streaming server {addr}: {e}"),
            );
        }
        Err(_) => {
            return refusal(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the runtime's streaming server {addr} did not answer within {CONNECT_TIMEOUT:?}"),
            );
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(x) => x,
        Err(e) => {
            return refusal(
                StatusCode::BAD_GATEWAY,
                format!("runtime streaming server {addr}: {e}"),
            );
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "runtime streaming connection ended with an error");
        }
    });

    let mut backend = Request::builder().method(req.method().clone()).uri(path.as_str());
    for (name, value) in req.headers().iter().filter(|(n, _)| forwarded(n)) {
        backend = backend.header(name, value);
    }
    let backend = match backend.header(header::HOST, &addr).body(Body::empty()) {
        Ok(r) => r,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, format!("request headers: {e}")),
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = match sender.send_request(backend).await {
        Ok(r) => r,
        Err(e) => {
            return refusal(
                StatusCode::BAD_GATEWAY,
                format!("runtime streaming server {addr}: {e}"),
            );
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The runtime refused (an expired token, an unknown container): its answer, as it is.
        let status = resp.status();
        let body = axum::body::to_bytes(Body::new(resp.into_body()), MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        return refusal(status, String::from_utf8_lossy(&body).into_owned());
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut switched = Response::new(Body::empty());
    *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *switched.headers_mut() = resp.headers().clone();
    tokio::spawn(
        async move {
            let (client, runtime) = match tokio::join!(client_upgrade, backend_upgrade) {
                (Ok(c), Ok(r)) => (c, r),
                (Err(e), _) | (_, Err(e)) => return warn!(error = %e, "stream upgrade failed"),
            };
            let (mut client, mut runtime) = (TokioIo::new(client), TokioIo::new(runtime));
            match tokio::io::copy_bidirectional(&mut client, &mut runtime).await {
                Ok((up, down)) => debug!(up, down, "stream closed"),
                Err(e) => debug!(error = %e, "stream ended with an error"),
            }
        }
        .instrument(info_span!("stream", %addr)),
    );
    switched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade(&h));
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().expect("value"));
        assert!(!is_upgrade(&h));
        h.insert(header::UPGRADE, "SPDY/3.1".parse().expect("value"));
        assert!(is_upgrade(&h));
        h.insert(header::CONNECTION, "close".parse().expect("value"));
        assert!(!is_upgrade(&h));
    }

    #[test]
    fn credentials_never_reach_the_runtime() {
        for name in [
            "authorization",
            "host",
            "cookie",
            "x-remote-user",
            "impersonate-user",
            "proxy-authorization",
        ] {
            assert!(!forwarded(&header::HeaderName::from_static(name)), "{name}");
        }
        for name in [
            "upgrade",
            "connection",
            "x-stream-protocol-version",
            "sec-websocket-protocol",
        ] {
            assert!(forwarded(&header::HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(
            target("http://127.0.0.1:34567/exec/AbCd").expect("valid"),
            ("127.0.0.1:34567".to_string(), "/exec/AbCd".to_string())
        );
        assert!(
            target("https://127.0.0.1:1/exec/x")
                .expect_err("tls")
                .contains("enable_tls_streaming")
        );
        assert!(target("not a url").is_err());
    }
}
