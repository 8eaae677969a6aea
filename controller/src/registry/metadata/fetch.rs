//! Reading an image's metadata from its registry: the manifest by digest, then its config blob
//! (`GET /v2/<name>/blobs/<digest>`), both verified against their digests, through the same session as a
//! resolve (registry policy, per-registry rate limit and back-off, authentication, redirects as the
//! transport follows them for blobs).

use berth_api::image_metadata::ImageMetadata;
use reqwest::Method;
use tracing::{Instrument as _, debug, info_span};

use super::{describe_image, describe_index, parse_manifest};
use crate::registry::credentials::Credentials;
use crate::registry::error::ResolveError;
use crate::registry::manifest::{self, sha256_digest};
use crate::registry::reference::ImageReference;
use crate::registry::resolve::Resolver;
use crate::registry::session::Session;
use crate::registry::transport::{BodyError, error_chain, read_limited};

/// The largest config blob read: 1 MiB. Real configs are a few KiB (their history and labels); anything
/// much larger is not worth a status.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// `Accept` of a config blob request (registries serve blobs as stored; this names what is expected).
const CONFIG_ACCEPT: &str =
    "application/vnd.oci.image.config.v1+json, application/vnd.docker.container.image.v1+json, */*";

/// The image to describe.
#[derive(Debug, Clone, Default)]
pub struct MetadataRequest {
    /// `registry/repository@sha256:...`, as a resolve returned it.
    pub pull_spec: String,
    /// Allow plain HTTP and unverified TLS (the tag's `importPolicy.insecure`).
    pub insecure: bool,
    /// Credentials for the registry, from the namespace's pull secrets.
    pub credentials: Option<Credentials>,
}

/// Why an image's metadata could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The registry did not answer as it should (unavailable, rate limiting, not found, a digest mismatch of
    /// the manifest or config, ...).
    #[error(transparent)]
    Registry(#[from] ResolveError),

    /// The config blob is larger than [`MAX_CONFIG_BYTES`], so it was not read.
    #[error(
        "the config blob {config} of {target} is larger than {limit} bytes{}; its metadata is not read",
        size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
    )]
    ConfigTooLarge {
        /// `registry/repository@sha256:...`.
        target: String,
        /// The config's digest.
        config: String,
        /// The limit in bytes.
        limit: u64,
        /// The size the manifest or the registry announced, when known.
        size: Option<u64>,
    },

    /// The manifest or config is not what an image's should be.
    #[error("the metadata of {target} is not usable: {problem}")]
    Invalid {
        /// `registry/repository@sha256:...`.
        target: String,
        /// What is wrong.
        problem: String,
    },
}

impl MetadataError {
    /// Whether another try may work (the registry is unavailable or rate limiting): then nothing is
    /// recorded and the next import tries again; otherwise the failure is recorded for the digest.
    pub fn transient(&self) -> bool {
        matches!(self, Self::Registry(e) if e.retryable())
    }
}

impl Resolver {
    /// Reads the metadata of the image `request.pull_spec` names by digest: its manifest (GET by digest,
    /// verified), and for an image manifest its config blob (at most [`MAX_CONFIG_BYTES`], its bytes
    /// checked against the manifest's config digest); for an index, the platforms it offers. Two requests
    /// (one for an index), after the ones that resolved the digest.
    pub async fn read_metadata(&self, request: &MetadataRequest) -> Result<ImageMetadata, MetadataError> {
        let reference = ImageReference::parse(&request.pull_spec).map_err(ResolveError::from)?;
        self.policy().check(reference.registry(), request.insecure)?;
        let Some(digest) = reference.digest() else {
            return Err(MetadataError::Invalid {
                target: reference.to_string(),
                problem: "the pull spec names no digest".into(),
            });
        };
        let span = info_span!(
            "image_metadata",
            registry = reference.registry(),
            repository = reference.repository(),
            digest,
        );
        let mut session = Session::new(
            self.session_context(),
            &reference,
            request.credentials.as_ref(),
            request.insecure,
        );
        let result = read(&mut session, &reference, digest, self.max_config_bytes())
            .instrument(span.clone())
            .await;
        span.in_scope(|| debug!(requests = session.requests, ok = result.is_ok(), "image metadata"));
        result
    }
}

async fn read(
    session: &mut Session<'_>,
    reference: &ImageReference,
    digest: &str,
    limit: u64,
) -> Result<ImageMetadata, MetadataError> {
    let fetched = session.fetch(digest, Some(digest)).await?;
    let target = session.target.clone();
    let invalid = |problem: String| MetadataError::Invalid {
        target: target.clone(),
        problem,
    };
    if manifest::is_index(&fetched.media_type) {
        return describe_index(digest, &fetched.media_type, &fetched.body).map_err(invalid);
    }
    let image = parse_manifest(&fetched.body).map_err(invalid)?;
    let config = &image.config.digest;
    let too_large = |size: Option<u64>| MetadataError::ConfigTooLarge {
        target: target.clone(),
        config: config.clone(),
        limit,
        size,
    };
    let announced = u64::try_from(image.config.size).unwrap_or(0);
    if announced > limit {
        return Err(too_large(Some(announced)));
    }
    let path = format!("{}/blobs/{config}", reference.repository());
    let response = session.send_path(Method::GET, &path, CONFIG_ACCEPT).await?;
    if !response.status().is_success() {
        return Err(session.status_error(response.status(), response.headers()).into());
    }
    let body = match read_limited(response, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { announced }) => return Err(too_large(announced)),
        Err(BodyError::Read(e)) => {
            return Err(session
                .unavailable(
                    format!("reading the config blob failed: {}", error_chain(&e)),
                    None,
                )
                .into());
        }
    };
    let actual = sha256_digest(&body);
    if actual != *config {
        return Err(ResolveError::DigestMismatch {
            target: session.target.clone(),
            what: "the sha256 of the config blob".into(),
            expected: config.clone(),
            actual,
        }
        .into());
    }
    describe_image(digest, &fetched.media_type, &image, &body).map_err(invalid)
}
