//! The ways resolving a reference can fail, classified for conditions and requeue decisions.
//!
//! Every message names what was asked for (`registry/repository:tag`) and says what a person can do about
//! it. Messages never contain credentials: nothing here ever holds a password, and causes taken from
//! lower layers (HTTP client, token service) are reduced to their kind before they reach a message.

use std::time::Duration;

/// A reference that cannot be parsed, with the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {problem}")]
pub struct InvalidReference {
    /// The reference as it was written.
    pub input: String,
    /// What is wrong with it and how it should look.
    pub problem: String,
}

/// Why a reference could not be resolved to a digest.
///
/// [`ResolveError::reason`] is meant to be used verbatim as a condition reason; `Display` is the condition
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The reference itself is malformed; nothing was sent to a registry.
    #[error(transparent)]
    InvalidReference(#[from] InvalidReference),

    /// The registry has no manifest for this tag or digest.
    #[error(
        "{target} was not found: the registry has no such repository, tag or digest; check the spelling, or \
         push the image first"
    )]
    NotFound {
        /// `registry/repository:tag` (or `@digest`).
        target: String,
    },

    /// The registry refused the request (401/403), or the token service refused the credentials.
    #[error(
        "{registry} refused access to {target} ({detail}): {}",
        if *with_credentials {
            "check that the pull secret's credentials for this registry are right and may pull this repository"
        } else {
            "add a pull secret (kubernetes.io/dockerconfigjson) with credentials for this registry"
        }
    )]
    Unauthorized {
        /// `registry/repository:tag`.
        target: String,
        /// The registry host.
        registry: String,
        /// Whether credentials were sent.
        with_credentials: bool,
        /// What answered what, without any secret (e.g. `HTTP 401`, `the token service refused`).
        detail: String,
    },

    /// The registry answered 429, or Berth's own per-registry limit or back-off holds requests back.
    #[error("{registry} is rate limiting requests for {target} ({detail}); Berth will retry {}", after(.retry_after))]
    RateLimited {
        /// `registry/repository:tag`.
        target: String,
        /// The registry host.
        registry: String,
        /// Who limited (`HTTP 429 from the registry`, `Berth's per-registry back-off`, ...).
        detail: String,
        /// How long to wait, from `Retry-After` or the back-off state.
        retry_after: Option<Duration>,
    },

    /// The registry could not be reached or answered 5xx, or the request timed out.
    #[error(
        "{registry} is unavailable while resolving {target} ({cause}); Berth will retry {}; if it persists, check \
         the registry address, the network, and TLS settings (`insecure` for plain HTTP or unverified TLS, or \
         add the registry's CA to the controller's CA bundle)",
        after(.retry_after)
    )]
    RegistryUnavailable {
        /// `registry/repository:tag`.
        target: String,
        /// The registry host.
        registry: String,
        /// The cause, flattened to one line (the error chain of the HTTP client, or the status).
        cause: String,
        /// How long to wait, when the registry said so (`Retry-After`) or back-off holds requests back.
        retry_after: Option<Duration>,
    },

    /// A digest did not match: the one pinned in the reference, the `Docker-Content-Digest` header, or the
    /// hash of the manifest bytes.
    #[error(
        "digest mismatch for {target}: {what} is {actual} but {expected} was expected; the registry or a proxy \
         in between returned different content: do not trust it, check the registry and the pinned digest"
    )]
    DigestMismatch {
        /// `registry/repository:tag`.
        target: String,
        /// Which two digests disagree.
        what: String,
        /// The digest that was required.
        expected: String,
        /// The digest that was found.
        actual: String,
    },

    /// The manifest is larger than the limit (4 MiB, the distribution spec's), so it was not read.
    #[error(
        "the manifest of {target} is larger than {limit} bytes{}; Berth does not read such manifests (the OCI \
         distribution spec allows registries to refuse them too): check that the reference names an image",
        size.map(|s| format!(" ({s} bytes announced)")).unwrap_or_default()
    )]
    ManifestTooLarge {
        /// `registry/repository:tag`.
        target: String,
        /// The limit in bytes.
        limit: u64,
        /// The size the registry announced, when it did.
        size: Option<u64>,
    },

    /// The manifest is not a schema 2 image manifest, index or manifest list that Berth understands.
    #[error("the manifest of {target} is not usable: {problem}")]
    InvalidManifest {
        /// `registry/repository:tag`.
        target: String,
        /// What is wrong with it.
        problem: String,
    },

    /// An image index has no manifest for the wanted platform.
    #[error(
        "{target} is a multi-platform image without {wanted} (it has: {}); use importMode PreserveOriginal to \
         keep the whole index, or import an image built for {wanted}",
        if available.is_empty() { "no platform-specific manifests".to_string() } else { available.join(", ") }
    )]
    UnsupportedPlatform {
        /// `registry/repository:tag`.
        target: String,
        /// The platform that was asked for, e.g. `linux/amd64`.
        wanted: String,
        /// The platforms the index offers.
        available: Vec<String>,
    },

    /// A repository's tag list (for a version policy) is not what the distribution spec describes.
    #[error("the tag list of {target} is not usable: {problem}")]
    InvalidTagList {
        /// `registry/repository`.
        target: String,
        /// What is wrong with it.
        problem: String,
    },

    /// The cluster's registry policy does not allow importing from this registry, or contacting the token
    /// service (`realm`) it names; nothing was sent to the host the policy refused.
    #[error("importing from {registry} is not allowed: {detail}")]
    RegistryNotAllowed {
        /// The registry, `host[:port]`.
        registry: String,
        /// Which rule refused it and what to change.
        detail: String,
    },
}

fn after(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("in {}s", d.as_secs_f64().ceil() as u64),
        None => "with back-off".to_string(),
    }
}

impl ResolveError {
    /// The condition reason: the variant name, PascalCase.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidReference(_) => "InvalidReference",
            Self::NotFound { .. } => "NotFound",
            Self::Unauthorized { .. } => "Unauthorized",
            Self::RateLimited { .. } => "RateLimited",
            Self::RegistryUnavailable { .. } => "RegistryUnavailable",
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::ManifestTooLarge { .. } => "ManifestTooLarge",
            Self::InvalidManifest { .. } => "InvalidManifest",
            Self::UnsupportedPlatform { .. } => "UnsupportedPlatform",
            Self::InvalidTagList { .. } => "InvalidTagList",
            Self::RegistryNotAllowed { .. } => "RegistryNotAllowed",
        }
    }

    /// Whether the failure is transient (rate limits, outages, timeouts): retry soon, after
    /// [`retry_after`](Self::retry_after) when it is known, else with the caller's back-off.
    ///
    /// The others will not change by retrying soon: they need a change of spec, secret or registry content.
    /// `NotFound` and `Unauthorized` may heal when someone pushes or fixes a secret, so a scheduled
    /// re-import (or the watch on the secret) is the right retry for them, not a hot loop.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::RegistryUnavailable { .. })
    }

    /// How long the registry asked to wait (`Retry-After`), or how long Berth's back-off still holds.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::RegistryUnavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_classification() {
        let limited = ResolveError::RateLimited {
            target: "r.example/app:v1".into(),
            registry: "r.example".into(),
            detail: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(limited.reason(), "RateLimited");
        assert!(limited.retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        assert!(limited.to_string().contains("retry in 7s"), "{limited}");

        let missing = ResolveError::NotFound {
            target: "r.example/app:v1".into(),
        };
        assert_eq!(missing.reason(), "NotFound");
        assert!(!missing.retryable());
        assert_eq!(missing.retry_after(), None);
        assert!(missing.to_string().contains("r.example/app:v1"));
    }

    #[test]
    fn unsupported_platform_lists_what_there_is() {
        let e = ResolveError::UnsupportedPlatform {
            target: "r.example/app:v1".into(),
            wanted: "linux/s390x".into(),
            available: vec!["linux/amd64".into(), "linux/arm64/v8".into()],
        };
        let msg = e.to_string();
        assert!(
            msg.contains("linux/s390x") && msg.contains("linux/amd64, linux/arm64/v8"),
            "{msg}"
        );
        assert!(msg.contains("PreserveOriginal"), "{msg}");
    }
}
