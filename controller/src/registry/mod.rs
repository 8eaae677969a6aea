//! Resolving image references to digests against registries.
//!
//! # Using it (for the import reconciler)
//!
//! ```no_run
//! # async fn demo(secret_type: &str, secret_data: &std::collections::BTreeMap<String, k8s_openapi::ByteString>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use berth_controller::registry::{ImageReference, RegistryCredentials, ResolveRequest, Resolver, ResolverConfig};
//!
//! // Once, at start-up; share it (Arc) between reconciles: it holds connection pools, tokens, and the
//! // per-registry rate limits and back-off.
//! let resolver = Resolver::new(ResolverConfig::default())?;
//!
//! // Per reconcile: credentials from the namespace's pull secrets, looked up by registry.
//! let reference = ImageReference::parse("quay.io/org/app:v1")?; // InvalidReference before any I/O
//! let pull_secrets = RegistryCredentials::from_secret(secret_type, secret_data)?;
//! let credentials = pull_secrets.lookup(reference.registry(), reference.repository()).cloned();
//!
//! let request = ResolveRequest { reference: "quay.io/org/app:v1".into(), credentials, ..Default::default() };
//! match resolver.resolve(&request).await {
//!     Ok(resolved) => println!("{} {}", resolved.digest, resolved.pull_spec),
//!     // reason() is the condition reason, Display its message; retryable()/retry_after() pick the requeue.
//!     Err(e) => println!("{}: {e} (retry soon: {}, after {:?})", e.reason(), e.retryable(), e.retry_after()),
//! }
//! # Ok(()) }
//! ```
//!
//! - [`Resolver::resolve`] sends HEAD first and GET only when needed; verifies digests (pinned reference,
//!   `Docker-Content-Digest`, body hash); refuses manifests over 4 MiB without reading them; picks one
//!   platform from an index in `ImportMode::Legacy` ([`ResolverConfig::platform`], default linux/amd64) or
//!   keeps the index in `PreserveOriginal`. With `trust_pinned`, a pinned digest needs no network.
//! - [`ResolveError`] variants are the condition reasons (`NotFound`, `Unauthorized`, `RateLimited`,
//!   `InvalidReference`, `RegistryUnavailable`, `DigestMismatch`, `ManifestTooLarge`, `InvalidManifest`,
//!   `UnsupportedPlatform`, `InvalidTagList`).
//! - [`Resolver::read_metadata`] reads a resolved image's manifest and config blob (verified, at most
//!   [`MAX_CONFIG_BYTES`]) into the tag's `status.image`, through the same gate, policy and authentication.
//! - [`Resolver::list_tags`] lists a repository's tags for a version policy: paginated (`Link` headers),
//!   capped ([`TagListLimits`]), through the same gate, policy and authentication, cached for a minute.
//! - Metrics: [`Resolved::registry_latency`] and [`Resolved::requests`], and a [`ResolveObserver`] given to
//!   [`Resolver::with_observer`] sees registry, outcome and latency of every resolve, failures included.
//! - Admission: a concurrency window per registry that grows on fast answers and halves on 429/5xx, timeouts
//!   and rising latency ([`Window`], as a TCP sender), and a queue in which waiting requests go by
//!   [`Priority`] (set by the caller in [`ResolveRequest::priority`]); per-registry limits in the registry
//!   policy's `berth.registries` ([`RegistryTuning`]).
//! - Rate limits: a token bucket per registry host ([`RateLimit`]), and back-off after 429/5xx honouring
//!   `Retry-After` ([`BackoffPolicy`]); while back-off holds, resolves fail at once with `RateLimited` or
//!   `RegistryUnavailable` carrying the time left, so reconciles requeue instead of sleeping.
//! - Transport: TLS verified by default, extra CAs in [`ResolverConfig::extra_ca_pem`]; `insecure` requests
//!   try HTTPS without verification, then plain HTTP.
//!
//! # What comes from `oci-client` and what is written here
//! `oci-client` provides the reference grammar and Docker Hub defaults, and the image index types. The
//! requests themselves are sent here with `reqwest`, because the client's own calls read bodies whole, do
//! not return a HEAD's media type, and drop the headers of error answers (`Retry-After`); see
//! `transport.rs`. The Bearer token exchange is written here too, so that a token service (`realm`) the
//! registry policy does not allow never gets the pull secret, nor any request (`token_realm.rs`).

mod admission;
mod challenge;
mod credentials;
mod error;
mod gate;
mod manifest;
mod metadata;
mod platform;
mod policy;
mod ratelimit;
mod reference;
mod resolve;
mod session;
mod slots;
mod tags;
mod token_realm;
mod transport;

pub use admission::{Priority, Signal, Window, WindowConfig};
pub use credentials::{
    Credentials, CredentialsError, DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_KEY,
    DOCKERCFG_TYPE, RegistryCredentials,
};
pub use error::{InvalidReference, ResolveError};
pub use gate::{MAX_TOKEN_WAIT, RegistryGate, RegistryLimits};
pub use manifest::MAX_MANIFEST_BYTES;
pub use metadata::{MAX_CONFIG_BYTES, MetadataError, MetadataRequest};
pub use platform::{InvalidPlatform, Platform};
pub use policy::{BerthSettings, RegistryLocation, RegistryPolicy, RegistrySources, RegistryTuning};
pub use ratelimit::{Backoff, BackoffPolicy, RateLimit, RateLimiter, Refusal, Throttle, parse_retry_after};
pub use reference::ImageReference;
pub use resolve::{Observation, ResolveObserver, ResolveRequest, Resolved, Resolver, ResolverConfig};
pub use slots::{Load, LoadObserver, Permit, Slots};
pub use tags::{TagList, TagListLimits, TagListRequest, next_page};
pub use transport::{TransportError, install_crypto_provider};
