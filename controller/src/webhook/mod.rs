//! Registry push notifications: a push of `REPO:TAG` re-imports the tags that follow exactly that repository
//! and tag (or that repository with a version policy that admits the tag), seconds after the push. Every format below is mapped to the same list of pushes (registry host,
//! repository path, tag, and the digest when the sender names one), matched against the tag cache by
//! [`matching_tags`] and handed to the importer in the same way.
//!
//! All endpoints take `POST` on the webhook address (`--webhook-addr`, port 8085 in `manifests/`) and share
//! one secret, the webhook token (`--webhook-token-file`). The path names the sender's format:
//!
//! | path | sender | authentication | what a push maps to |
//! |---|---|---|---|
//! | `/registry/notifications` | CNCF distribution (`registry:2`), `notifications.endpoints` | `Authorization: Bearer <token>` | every `push` event with a tag: `request.host` + `target.repository`, `target.tag`, `target.digest` (no `request.host`: any registry) |
//! | `/registry/notifications/dockerhub/<token>` | Docker Hub repository webhook | the token in the path (Docker Hub can neither sign nor send headers) | `docker.io/` + `repository.repo_name`, `push_data.tag` |
//! | `/registry/notifications/quay/<token>` | Quay / Red Hat Quay "Repository Push" notification (webhook) | the token in the path (Quay cannot sign) | `docker_url`, each of `updated_tags` |
//! | `/registry/notifications/harbor` | Harbor webhook policy: 1.x `pushImage`, 2.x `PUSH_ARTIFACT` (payload format Default) or `harbor.artifact.pushed` (CloudEvents) | the policy's auth header: `Authorization: Bearer <token>` or `Authorization: <token>` | each resource: `resource_url` without its tag, `tag`, `digest` |
//! | `/registry/notifications/github` | GitHub webhook (repository or organisation), events `package` and `registry_package` of container packages (ghcr.io) | `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, the token as the webhook's secret | `package_version.package_url` without its tag, lower-cased (else `ghcr.io/<owner>/<name>`), `container_metadata.tag.name`, `container_metadata.tag.digest` |
//! | `/registry/notifications/acr` | Azure Container Registry webhook, action `push` | the custom header `Authorization: Bearer <token>` | `request.host` + `target.repository`, `target.tag`, `target.digest` |
//! | `/registry/notifications/gitlab` | GitLab's container registry notifications (`registry['notifications']` in `gitlab.rb`; the distribution envelope) | `X-Gitlab-Token: <token>` among the endpoint's `headers` | as `/registry/notifications` |
//! | `/registry/notifications/generic` | anything that can sign: `{"repository": "host/path", "tag": "v1", "digest": "sha256:..."}` (`digest` optional) | `X-Berth-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the token>` | `repository`, `tag`, `digest` |
//!
//! Answers: `200 {"matched":N}` (N tags re-imported; events that are not pushes, a pull, a delete, a scan, a
//! GitHub `ping`, are acknowledged and match nothing); `400` with what is wrong with the body; `401` for a
//! missing or wrong secret or signature; `408` when the body is not received within 10 s; `413` for a body over
//! 1 MiB; `429` (with `Retry-After: 1`) past the request rate; `503` past the connection cap.
//!
//! Hardening: an empty or whitespace-only token is refused at start (`config`), and a blank secret never
//! authenticates anything. Secrets in headers and paths are checked before the body is read, compared in time
//! independent of their content (both sides are hashed with SHA-256 and the digests compared); for the HMAC
//! forms the signature header's shape is checked first, the body is read (at most 1 MiB, Content-Length
//! checked before reading), the signature verified in constant time (`ring::hmac::verify`), and only then is
//! the body parsed. At most 64 connections are served at once (the next ones get 503 and are closed) and at
//! most 20 requests per second, in bursts of up to 50, are taken over all senders: see [`Limits`]. Secrets are
//! never logged: the logs name the format and the outcome, never the path, the headers or the token.

mod acr;
mod auth;
mod distribution;
mod dockerhub;
mod generic;
mod github;
mod harbor;
mod limits;
mod quay;
mod receive;

use std::sync::Arc;

use axum::Router;
use berth_api::image::{ImageStreamTag, SourceKind};
use berth_api::validation::is_sha256_digest;
use kube::runtime::reflector::{ObjectRef, Store};

pub use auth::{BlankToken, check_token, sign};
pub use distribution::{Envelope, RegistryEvent, Request, Target};
pub use limits::{Connection, ConnectionLimit, Limits};
pub use receive::Format;

use crate::import::source::Source;
use crate::import::version_policy::{self, Policy};
use crate::metrics::{Metrics, ResultLabels};
use crate::registry::ImageReference;

/// The path the CNCF distribution registry posts to; the other formats post under it (see the module).
pub const PATH: &str = "/registry/notifications";

/// Notifications larger than this are refused (413): the registry batches a few events per envelope.
pub const MAX_BODY: usize = 1 << 20;

/// One push a notification reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The registry host as references name it (`docker.io` for Docker Hub); `None` when the sender does not
    /// say (a distribution event without `request.host`), and then a tag of any registry matches.
    pub registry: Option<String>,
    /// The repository path, `berth/demo`.
    pub repository: String,
    /// The tag pushed.
    pub tag: String,
    /// The digest pushed, when the sender names one.
    pub digest: Option<String>,
}

impl Pushed {
    /// A push of `host/path:tag`, checked and normalised as an image reference (`docker.io/library/x` for
    /// Docker Hub's one-word names). A digest that is not `sha256:` + 64 hex digits is dropped: it is only a
    /// hint for the importer.
    pub fn parse(repository: &str, tag: &str, digest: Option<&str>) -> Result<Self, String> {
        if repository.contains('@') {
            return Err(format!("repository {repository:?} has a digest; name it without"));
        }
        let reference = ImageReference::parse(&format!("{repository}:{tag}")).map_err(|e| e.to_string())?;
        Ok(Self {
            registry: Some(reference.registry().to_owned()),
            repository: reference.repository().to_owned(),
            tag: reference.tag().unwrap_or(tag).to_owned(),
            digest: digest.filter(|d| is_sha256_digest(d)).map(str::to_owned),
        })
    }
}

/// `host/path` of a reference that may end in `:tag` or `@digest` (Harbor's `resource_url`, GitHub's
/// `package_url`).
fn without_tag(reference: &str) -> &str {
    let name = reference.split_once('@').map_or(reference, |(name, _)| name);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => &name[..last_slash + i],
        None => name,
    }
}

/// The tags that follow a pushed `REPO:TAG`, with the digest pushed (the last push of a tag wins). A tag with
/// a version policy follows its repository's tags that the policy admits (a push of `v1.4.0` re-imports a
/// tag following `^1.2`; a push of `v2.0.0` or `latest` does not).
pub fn matching_tags(
    pushes: &[Pushed],
    tags: &[Arc<ImageStreamTag>],
) -> Vec<(ObjectRef<ImageStreamTag>, Option<String>)> {
    tags.iter()
        .filter(|t| t.spec.from.kind == SourceKind::DockerImage)
        .filter_map(|t| {
            let (reference, policy) = match version_policy::source(t) {
                Some(Source::Versions { repository, policy }) => {
                    (repository, Some(Policy::compile(&policy).ok()?))
                }
                Some(_) => return None,
                None => (ImageReference::parse(&t.spec.from.name).ok()?, None),
            };
            let push = pushes.iter().rev().find(|p| {
                p.repository == reference.repository()
                    && match &policy {
                        Some(policy) => policy.admits(&p.tag),
                        None => reference.tag() == Some(p.tag.as_str()),
                    }
                    && p.registry.as_deref().is_none_or(|h| h == reference.registry())
            })?;
            Some((ObjectRef::from_obj(t.as_ref()), push.digest.clone()))
        })
        .collect()
}

/// What the webhook needs.
#[derive(Clone)]
pub struct Webhook {
    /// The shared secret (already trimmed; a blank one authenticates nothing).
    pub token: Arc<str>,
    /// The tag cache.
    pub tags: Store<ImageStreamTag>,
    /// Called with every tag a push asks to import, and the digest pushed.
    pub on_push: Arc<dyn Fn(ObjectRef<ImageStreamTag>, Option<String>) + Send + Sync>,
    /// Metrics.
    pub metrics: Metrics,
}

impl Webhook {
    /// What `run` serves: every endpoint with the default [`Limits`], behind the connection cap.
    pub fn router(self) -> ConnectionLimit {
        self.router_with(Limits::default())
    }

    /// Every endpoint with `limits`, behind the connection cap.
    pub fn router_with(self, limits: Limits) -> ConnectionLimit {
        let metrics = self.metrics.clone();
        ConnectionLimit::new(self.routes_with(limits.clone()), limits.max_connections, metrics)
    }

    /// Every endpoint with `limits`, without the connection cap (for in-process tests).
    pub fn routes_with(self, limits: Limits) -> Router {
        receive::routes(self, limits)
    }

    fn count(&self, result: &str) {
        self.metrics
            .notifications
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests;
