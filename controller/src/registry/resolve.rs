//! The resolver: a reference and options in, a verified digest (or a classified error) out.

use std::sync::Arc;
use std::time::Duration;

use berth_api::image::ImportMode;
use oci_client::manifest::OciImageIndex;
use reqwest::Method;
use tracing::{Instrument as _, debug, field, info_span, warn};

use super::admission::{Priority, WindowConfig};
use super::credentials::Credentials;
use super::error::ResolveError;
use super::gate::RegistryGate;
use super::manifest::{self, MAX_MANIFEST_BYTES};
use super::metadata::MAX_CONFIG_BYTES;
use super::platform::{self, Platform};
use super::policy::RegistryPolicy;
use super::ratelimit::{BackoffPolicy, RateLimit};
use super::reference::ImageReference;
use super::session::{AuthCache, Context, Session, content_type, digest_header};
use super::slots::LoadObserver;
use super::tags::{TagListCache, TagListLimits};
use super::transport::{Transport, TransportError, content_length};

/// Settings shared by all resolves.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// The platform picked from an index in [`ImportMode::Legacy`]. Default `linux/amd64`.
    pub platform: Platform,
    /// Bound on connecting and on each request, whole body included. Default 10 s.
    pub timeout: Duration,
    /// The largest manifest read. Default 4 MiB, the distribution spec's limit.
    pub max_manifest_bytes: u64,
    /// The largest config blob read for image metadata. Default 1 MiB ([`MAX_CONFIG_BYTES`]).
    pub max_config_bytes: u64,
    /// Requests per second per registry host.
    pub rate_limit: RateLimit,
    /// Requests at once per registry host: the adaptive window and its bounds (see `admission.rs`).
    pub concurrency: WindowConfig,
    /// Back-off after 429 and 5xx.
    pub backoff: BackoffPolicy,
    /// How long a resolve may wait for a rate-limit token before giving up with `RateLimited`. Default 2 s.
    pub max_rate_wait: Duration,
    /// How long a Bearer token is reused before asking for a new one (it is also renewed on any 401).
    pub token_ttl: Duration,
    /// PEM certificates trusted for registries in addition to the platform's roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// `User-Agent` of every request.
    pub user_agent: &'static str,
    /// Which registries may be imported from (default: every one).
    pub policy: RegistryPolicy,
    /// How much of a tag list is read for a version policy, and how long it is reused.
    pub tag_list: TagListLimits,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            platform: Platform::default(),
            timeout: Duration::from_secs(10),
            max_manifest_bytes: MAX_MANIFEST_BYTES,
            max_config_bytes: MAX_CONFIG_BYTES,
            rate_limit: RateLimit::default(),
            concurrency: WindowConfig::default(),
            backoff: BackoffPolicy::default(),
            max_rate_wait: Duration::from_secs(2),
            token_ttl: Duration::from_secs(60),
            extra_ca_pem: None,
            user_agent: concat!("berth-controller/", env!("CARGO_PKG_VERSION")),
            policy: RegistryPolicy::default(),
            tag_list: TagListLimits::default(),
        }
    }
}

/// One reference to resolve.
#[derive(Debug, Clone, Default)]
pub struct ResolveRequest {
    /// `registry/repository:tag` or `…@sha256:…`; Docker Hub when no registry is named.
    pub reference: String,
    /// Allow plain HTTP and unverified TLS for this registry (the tag's `importPolicy.insecure`).
    pub insecure: bool,
    /// What an index resolves to: one platform's manifest (`Legacy`) or the index itself.
    pub import_mode: ImportMode,
    /// Credentials for the registry, from the namespace's pull secrets
    /// ([`RegistryCredentials::lookup`](super::RegistryCredentials::lookup)).
    pub credentials: Option<Credentials>,
    /// Return a pinned digest as it is, without asking the registry: the tag's `reference: true`, or a
    /// caller without network. A tag (not pinned) still needs the registry.
    pub trust_pinned: bool,
    /// Where its requests stand in the registry's queue: why the import runs.
    pub priority: Priority,
}

/// A resolved reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `sha256:…` of the manifest (or of the index, with `PreserveOriginal`).
    pub digest: String,
    /// `registry/repository@sha256:…`.
    pub pull_spec: String,
    /// The manifest's media type; `None` when the registry was not asked (`trust_pinned`).
    pub media_type: Option<String>,
    /// Time spent waiting for the registry (zero when it was not asked).
    pub registry_latency: Duration,
    /// HTTP requests sent.
    pub requests: u32,
}

/// What one resolve cost and how it ended, for metrics (e.g. a Prometheus histogram by registry and
/// outcome).
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The registry as in the reference (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub registry: &'a str,
    /// `Resolved`, or the error's [`reason`](ResolveError::reason).
    pub outcome: &'static str,
    /// Time spent waiting for the registry.
    pub latency: Duration,
    /// HTTP requests sent.
    pub requests: u32,
}

/// Receives an [`Observation`] after every resolve that reached the registry (or tried to).
pub trait ResolveObserver: Send + Sync {
    /// Called once per resolve; must not block.
    fn observe(&self, observation: &Observation<'_>);
}

/// Resolves references against registries. Cheap to share (`Arc`); holds connection pools, tokens, and
/// per-registry rate-limit and back-off state.
pub struct Resolver {
    config: ResolverConfig,
    transport: Transport,
    gate: RegistryGate,
    auth_cache: AuthCache,
    tag_lists: TagListCache,
    observer: Option<Arc<dyn ResolveObserver>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver with these settings. Fails only if `extra_ca_pem` is not valid PEM or the TLS stack
    /// cannot be set up.
    pub fn new(config: ResolverConfig) -> Result<Self, TransportError> {
        let transport = Transport::new(config.extra_ca_pem.as_deref(), config.timeout, config.user_agent)?;
        let gate = RegistryGate::new(config.rate_limit, config.backoff, config.max_rate_wait)
            .with_registry_limits(config.concurrency, config.policy.clone());
        Ok(Self {
            config,
            transport,
            gate,
            auth_cache: AuthCache::default(),
            tag_lists: TagListCache::default(),
            observer: None,
        })
    }

    /// The registry policy every resolve is checked against.
    pub fn policy(&self) -> &RegistryPolicy {
        &self.config.policy
    }

    /// The limits of tag listings.
    pub fn tag_list_limits(&self) -> TagListLimits {
        self.config.tag_list
    }

    /// The largest config blob read for image metadata.
    pub(super) fn max_config_bytes(&self) -> u64 {
        self.config.max_config_bytes
    }

    pub(super) fn tag_lists(&self) -> &TagListCache {
        &self.tag_lists
    }

    /// What a session of this resolver needs.
    pub(super) fn session_context(&self) -> Context<'_> {
        Context {
            transport: &self.transport,
            gate: &self.gate,
            auth_cache: &self.auth_cache,
            policy: &self.config.policy,
            timeout: self.config.timeout,
            token_ttl: self.config.token_ttl,
            max_manifest_bytes: self.config.max_manifest_bytes,
        }
    }

    /// Reports every change of a registry's load (requests in flight, window, queue) to `observer`.
    pub fn with_load_observer(self, observer: Arc<dyn LoadObserver>) -> Self {
        self.gate.slots().observe(observer);
        self
    }

    /// Reports every resolve to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn ResolveObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Resolves `request.reference` to a verified digest.
    ///
    /// HEAD first (with `Accept` for OCI and Docker manifests and indexes); GET only when the HEAD does not
    /// give both a digest and a media type, or to read an index whose platform must be chosen. A pinned
    /// digest must match what the registry serves; bodies are hashed and checked against
    /// `Docker-Content-Digest`.
    pub async fn resolve(&self, request: &ResolveRequest) -> Result<Resolved, ResolveError> {
        let reference = ImageReference::parse(&request.reference)?;
        // Before anything else: a registry the policy refuses is never contacted.
        self.config.policy.check(reference.registry(), request.insecure)?;
        if request.trust_pinned
            && let Some(digest) = reference.digest()
        {
            return Ok(Resolved {
                digest: digest.to_string(),
                pull_spec: reference.pull_spec(digest),
                media_type: None,
                registry_latency: Duration::ZERO,
                requests: 0,
            });
        }
        let span = info_span!(
            "resolve",
            registry = reference.registry(),
            repository = reference.repository(),
            reference = reference.manifest_reference(),
            import_mode = ?request.import_mode,
            outcome = field::Empty,
            digest = field::Empty,
            latency_ms = field::Empty,
        );
        let mut session = Session::new(
            self.session_context(),
            &reference,
            request.credentials.as_ref(),
            request.insecure,
        );
        session.priority = request.priority;
        let result = self
            .run(&mut session, &reference, request.import_mode)
            .instrument(span.clone())
            .await;

        let outcome = result.as_ref().map_or_else(ResolveError::reason, |_| "Resolved");
        span.record("outcome", outcome);
        span.record("latency_ms", session.latency.as_millis() as u64);
        match &result {
            Ok((digest, _)) => {
                span.record("digest", digest.as_str());
                span.in_scope(|| debug!(requests = session.requests, "resolved"));
            }
            Err(e) => span.in_scope(|| warn!(reason = e.reason(), error = %e, "resolve failed")),
        }
        if let Some(observer) = &self.observer {
            observer.observe(&Observation {
                registry: reference.registry(),
                outcome,
                latency: session.latency,
                requests: session.requests,
            });
        }
        result.map(|(digest, media_type)| Resolved {
            pull_spec: reference.pull_spec(&digest),
            digest,
            media_type: Some(media_type),
            registry_latency: session.latency,
            requests: session.requests,
        })
    }

    /// The protocol steps; returns the digest and media type.
    async fn run(
        &self,
        session: &mut Session<'_>,
        reference: &ImageReference,
        import_mode: ImportMode,
    ) -> Result<(String, String), ResolveError> {
        let manifest_ref = reference.manifest_reference();
        let head = session.send(Method::HEAD, manifest_ref).await?;
        // Some proxies do not allow HEAD: then the GET below tells everything.
        let head_allowed = head.status() != reqwest::StatusCode::METHOD_NOT_ALLOWED;
        if head_allowed && !head.status().is_success() {
            return Err(session.status_error(head.status(), head.headers()));
        }
        if let Some(size) =
            content_length(head.headers()).filter(|&s| head_allowed && s > self.config.max_manifest_bytes)
        {
            return Err(ResolveError::ManifestTooLarge {
                target: session.target.clone(),
                limit: self.config.max_manifest_bytes,
                size: Some(size),
            });
        }
        let head_digest = digest_header(head.headers()).filter(|_| head_allowed);
        let head_type = content_type(head.headers()).filter(|t| head_allowed && manifest::is_known(t));
        drop(head);

        let (digest, media_type, mut body) = match (head_digest, head_type) {
            (Some(digest), Some(media_type)) => (digest, media_type, None),
            // The registry did not say enough: read the manifest and hash it.
            _ => {
                let fetched = session.fetch(manifest_ref, None).await?;
                (fetched.digest, fetched.media_type, Some(fetched.body))
            }
        };
        if let Some(pinned) = reference.digest()
            && pinned != digest
        {
            return Err(ResolveError::DigestMismatch {
                target: session.target.clone(),
                what: "the digest the registry serves for this reference".into(),
                expected: pinned.into(),
                actual: digest,
            });
        }
        if !manifest::is_index(&media_type) || import_mode == ImportMode::PreserveOriginal {
            return Ok((digest, media_type));
        }

        // Legacy mode and an index: choose one platform. Read the index by digest, so its bytes are checked
        // against the digest just resolved.
        let body = match body.take() {
            Some(body) => body,
            None => session.fetch(&digest, Some(&digest)).await?.body,
        };
        let index: OciImageIndex =
            serde_json::from_slice(&body).map_err(|e| ResolveError::InvalidManifest {
                target: session.target.clone(),
                problem: format!("the index does not parse ({e})"),
            })?;
        let wanted = &self.config.platform;
        let Some(entry) = wanted.select(&index.manifests) else {
            return Err(ResolveError::UnsupportedPlatform {
                target: session.target.clone(),
                wanted: wanted.to_string(),
                available: platform::offered(&index.manifests),
            });
        };
        if !berth_api::validation::is_sha256_digest(&entry.digest) || manifest::is_index(&entry.media_type) {
            return Err(ResolveError::InvalidManifest {
                target: session.target.clone(),
                problem: format!(
                    "the index entry for {wanted} is {} with digest {:?}; Berth expects an image manifest with a \
                     sha256 digest",
                    entry.media_type, entry.digest
                ),
            });
        }
        debug!(index = %digest, manifest = %entry.digest, platform = %wanted, "chose the platform's manifest");
        Ok((entry.digest.clone(), entry.media_type.clone()))
    }
}
