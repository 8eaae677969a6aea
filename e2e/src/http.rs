//! A minimal plain-HTTP/1.1 client for tests (pod endpoints, the local registry): one
//! request per connection, `Connection: close`, no TLS, no chunked decoding beyond the basics.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status code, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header name (lower case) and value, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy).
    pub body: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` to `addr` (`host:port`) with extra headers; waits at most `timeout`.
pub async fn request(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<Response> {
    tokio::time::timeout(timeout, request_inner(method, addr, path, headers))
        .await
        .with_context(|| format!("{method} http://{addr}{path}: no answer within {timeout:?}"))?
}

async fn request_inner(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Response> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw).with_context(|| format!("{method} http://{addr}{path}"))
}

/// Parses a raw HTTP/1.x response.
pub fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed response ({} bytes)", raw.len());
    };
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `GET http://addr/path`.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<Response> {
    request("GET", addr, path, &[], timeout).await
}

/// The manifest digest the registry at `registry` reports for `repo:tag`
/// (`HEAD /v2/<repo>/manifests/<tag>`, header `Docker-Content-Digest`).
pub async fn registry_digest(registry: &str, repo: &str, tag: &str) -> anyhow::Result<String> {
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.list.v2+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    let path = format!("/v2/{repo}/manifests/{tag}");
    let resp = request(
        "HEAD",
        registry,
        &path,
        &[("Accept", accept)],
        Duration::from_secs(10),
    )
    .await?;
    if resp.status != 200 {
        bail!("HEAD http://{registry}{path}: status {}", resp.status);
    }
    let digest = resp
        .header("docker-content-digest")
        .with_context(|| format!("HEAD http://{registry}{path}: no Docker-Content-Digest"))?;
    if !digest.starts_with("sha256:") || digest.len() != 71 {
        bail!("HEAD http://{registry}{path}: odd digest {digest:?}");
    }
    Ok(digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:ab\r\n\r\nhello").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Docker-Content-Digest"), Some("sha256:ab"));
        assert_eq!(r.body, "hello");
    }
}
