//! Small in-process HTTP servers that play a registry for one case: they answer just enough of the
//! distribution protocol (or misbehave on purpose). Used by `tests/registry_misbehaving.rs` and, included by
//! `#[path]` from `src/testing/`, by the import reconciler's scenarios; it names only crates both can see.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use sha2::Digest as _;

/// The media type of the manifests served.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A fake server on 127.0.0.1, stopped when dropped; counts the requests it got.
pub struct FakeRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Requests answered.
    pub hits: Arc<AtomicUsize>,
    /// The server.
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRegistry {
    /// A server answering every request with `handler(method, path and query, headers)`.
    pub async fn start<F>(handler: F) -> Self
    where
        F: Fn(&Method, &str, &HeaderMap) -> Response + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let (handler, counter) = (Arc::new(handler), hits.clone());
        let app = axum::Router::new().fallback(move |request: Request| {
            let (handler, counter) = (handler.clone(), counter.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let path = request
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                handler(request.method(), &path, request.headers())
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { host, hits, task }
    }

    /// A registry holding `manifest` (an OCI image manifest) under every tag of every repository.
    pub async fn serving(manifest: Vec<u8>) -> Self {
        Self::start(move |method, _, _| {
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(manifest.clone())
            };
            answer(200, &[("content-type", OCI_MANIFEST.into())], body)
        })
        .await
    }

    /// A registry holding one image under every tag of every repository: the manifest of
    /// [`image_manifest_for`]`(config)` (HEAD says its digest and type), and `blob` for every blob asked for
    /// (the config's own bytes, or something else to misbehave).
    pub async fn serving_image(config: &[u8], blob: Vec<u8>) -> Self {
        let manifest = image_manifest_for(config);
        let digest = sha256(&manifest);
        Self::start(move |method, path, _| {
            if path.contains("/blobs/") {
                return answer(
                    200,
                    &[("content-type", "application/octet-stream".into())],
                    blob.clone(),
                );
            }
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(manifest.clone())
            };
            let headers = [
                ("content-type", OCI_MANIFEST.into()),
                ("docker-content-digest", digest.clone()),
            ];
            answer(200, &headers, body)
        })
        .await
    }

    /// A registry that knows no manifest: 404 `MANIFEST_UNKNOWN` to everything.
    pub async fn empty() -> Self {
        Self::start(|_, _, _| {
            answer(
                404,
                &[("content-type", "application/json".into())],
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
        })
        .await
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A response of `status` with `headers` and `body`.
pub fn answer(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(body.into()).expect("response")
}

/// `sha256:` and the hex of the hash of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A small OCI image manifest; `seed` makes it (and its digest) differ from another.
pub fn manifest_bytes_with(seed: char) -> Vec<u8> {
    let config = format!("sha256:{}", seed.to_string().repeat(64));
    format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#).into_bytes()
}

/// An OCI image manifest of `config` (its digest and length) and one 1,000-byte layer.
pub fn image_manifest_for(config: &[u8]) -> Vec<u8> {
    let layer = format!("sha256:{}", "a".repeat(64));
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":1000}}]}}"#,
        sha256(config),
        config.len()
    )
    .into_bytes()
}

/// A small config of a linux/amd64 image with a label, a user and a port.
pub fn config_bytes() -> Vec<u8> {
    br#"{"architecture":"amd64","os":"linux","created":"2026-01-02T03:04:05Z","config":{"User":"1001","ExposedPorts":{"8080/tcp":{}},"Labels":{"app":"demo"}},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec()
}

/// The manifest the misbehaving cases serve.
pub fn manifest_bytes() -> Vec<u8> {
    manifest_bytes_with('c')
}
