//! One resolve's conversation with a registry: the per-registry gate, scheme fallback for insecure
//! registries, answering 401 challenges (Basic, and Bearer through a token service the registry policy
//! allows: `session/token.rs`), and turning HTTP answers into classified errors.

mod token;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tracing::debug;

use super::admission::{Priority, Signal};
use super::challenge::parse_challenge;
use super::credentials::Credentials;
use super::error::ResolveError;
use super::gate::RegistryGate;
use super::manifest::{self, ACCEPT};
use super::policy::RegistryPolicy;
use super::ratelimit::{Refusal, Throttle, parse_retry_after};
use super::reference::ImageReference;
use super::transport::{BodyError, Scheme, Transport, error_chain, read_limited};

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    Anonymous,
    /// HTTP Basic with the request's credentials.
    Basic,
    /// A token from the registry's token service.
    Bearer(String),
}

/// Remembered authentication per (host, repository, credentials), so that a registry that wants a token
/// or Basic gets it on the first request of the next resolve. Bounded: cleared when full.
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<AuthKey, (Auth, Instant)>>,
}

/// Registry host, repository, credentials.
type AuthKey = (String, String, Option<Credentials>);

const AUTH_CACHE_ENTRIES: usize = 4096;

impl AuthCache {
    fn get(&self, key: &AuthKey, token_ttl: Duration) -> Auth {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some((Auth::Bearer(_), at)) if at.elapsed() > token_ttl => Auth::Anonymous,
            Some((auth, _)) => auth.clone(),
            None => Auth::Anonymous,
        }
    }

    fn put(&self, key: AuthKey, auth: Auth) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= AUTH_CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (auth, Instant::now()));
    }
}

/// What a session needs from its resolver.
pub struct Context<'a> {
    pub transport: &'a Transport,
    pub gate: &'a RegistryGate,
    pub auth_cache: &'a AuthCache,
    /// Which token services (realms) may be asked for tokens and given credentials.
    pub policy: &'a RegistryPolicy,
    pub timeout: Duration,
    pub token_ttl: Duration,
    pub max_manifest_bytes: u64,
}

/// A manifest read with GET: its bytes, their digest and media type.
pub struct Fetched {
    pub digest: String,
    pub media_type: String,
    pub body: Vec<u8>,
}

/// The state of one resolve.
pub struct Session<'a> {
    ctx: Context<'a>,
    reference: &'a ImageReference,
    credentials: Option<&'a Credentials>,
    insecure: bool,
    auth: Auth,
    scheme: Scheme,
    /// Why the pull secret was not sent to the token service, when it was not: said in `Unauthorized`.
    withheld: Option<String>,
    /// `registry/repository:tag`, for messages.
    pub target: String,
    /// Time spent waiting for the registry (not for Berth's own rate limit).
    pub latency: Duration,
    /// HTTP requests sent (a token request counts as one).
    pub requests: u32,
    /// Where its requests stand in the registry's queue.
    pub priority: Priority,
}

impl<'a> Session<'a> {
    pub fn new(
        ctx: Context<'a>,
        reference: &'a ImageReference,
        credentials: Option<&'a Credentials>,
        insecure: bool,
    ) -> Self {
        let auth = ctx
            .auth_cache
            .get(&Self::cache_key(reference, credentials), ctx.token_ttl);
        let auth = if auth == Auth::Basic && credentials.is_none() {
            Auth::Anonymous
        } else {
            auth
        };
        Self {
            target: reference.to_string(),
            ctx,
            reference,
            credentials,
            insecure,
            auth,
            scheme: Scheme::Https,
            withheld: None,
            latency: Duration::ZERO,
            requests: 0,
            priority: Priority::default(),
        }
    }

    fn cache_key(reference: &ImageReference, credentials: Option<&Credentials>) -> AuthKey {
        (
            reference.api_host().to_string(),
            reference.repository().to_string(),
            credentials.cloned(),
        )
    }

    fn host(&self) -> &str {
        self.reference.api_host()
    }

    /// The registry as named in references: the key of its rate limit, back-off, window and settings.
    fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// HEAD or GET of `/v2/<repository>/manifests/<manifest_ref>`, answering one auth challenge. Errors are
    /// transport failures and refusals by the gate; HTTP error statuses are returned for the caller.
    pub async fn send(&mut self, method: Method, manifest_ref: &str) -> Result<Response, ResolveError> {
        let path = format!("{}/manifests/{manifest_ref}", self.reference.repository());
        self.send_path(method, &path, ACCEPT).await
    }

    /// `method` of `/v2/<path>` (`path` may carry a query) with `accept`, through the gate and answering one
    /// auth challenge, as [`send`](Self::send).
    pub async fn send_path(
        &mut self,
        method: Method,
        path: &str,
        accept: &str,
    ) -> Result<Response, ResolveError> {
        let mut challenged = false;
        loop {
            let response = self.send_once(&method, path, accept).await?;
            if response.status() == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                if self.answer_challenge(response.headers()).await? {
                    continue;
                }
            }
            return Ok(response);
        }
    }

    async fn send_once(
        &mut self,
        method: &Method,
        path: &str,
        accept: &str,
    ) -> Result<Response, ResolveError> {
        let host = self.host().to_string();
        let permit = self
            .ctx
            .gate
            .admit(self.registry(), self.priority)
            .await
            .map_err(|refusal| self.refused(refusal))?;
        let sent = Instant::now();
        let mut failures = Vec::new();
        for scheme in self.ctx.transport.schemes(&host, self.insecure) {
            let url = format!("{}://{host}/v2/{path}", scheme.as_str());
            let mut request = self
                .ctx
                .transport
                .http(scheme)
                .request(method.clone(), &url)
                .header(reqwest::header::ACCEPT, accept)
                .timeout(self.ctx.timeout);
            request = match (&self.auth, self.credentials) {
                (Auth::Bearer(token), _) => request.bearer_auth(token),
                (Auth::Basic, Some(c)) => request.basic_auth(c.username(), Some(c.password())),
                _ => request,
            };
            let started = Instant::now();
            let result = request.send().await;
            self.latency += started.elapsed();
            self.requests += 1;
            match result {
                Ok(response) => {
                    let status = response.status();
                    let overloaded = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let signal = if overloaded {
                        Signal::Overloaded
                    } else {
                        Signal::Answered
                    };
                    // This attempt's latency: a failed HTTPS try of an insecure registry is not the registry's.
                    permit.finish(signal, started.elapsed());
                    if self.insecure {
                        self.ctx.transport.remember(&host, Some(scheme));
                    }
                    self.scheme = scheme;
                    self.record(response.status(), response.headers());
                    debug!(%method, %url, status = response.status().as_u16(), "registry answered");
                    return Ok(response);
                }
                Err(e) => failures.push(format!("{}: {}", scheme.as_str(), describe(&e, self.ctx.timeout))),
            }
        }
        permit.finish(Signal::Overloaded, sent.elapsed());
        if self.insecure {
            self.ctx.transport.remember(&host, None);
        }
        self.ctx
            .gate
            .record_failure(self.registry(), Throttle::Unavailable, None);
        Err(self.unavailable(failures.join("; "), None))
    }

    /// Feeds the answer to the gate's back-off.
    fn record(&self, status: StatusCode, headers: &HeaderMap) {
        let host = self.registry();
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.ctx
                .gate
                .record_failure(host, Throttle::RateLimited, retry_after(headers));
        } else if status.is_server_error() {
            self.ctx
                .gate
                .record_failure(host, Throttle::Unavailable, retry_after(headers));
        } else {
            self.ctx.gate.record_success(host);
        }
    }

    /// Switches to the authentication a 401 asks for; `false` when there is nothing more to try.
    async fn answer_challenge(&mut self, headers: &HeaderMap) -> Result<bool, ResolveError> {
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let scheme = challenge
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let auth = match scheme.as_str() {
            "bearer" => {
                let challenge = parse_challenge(challenge).map_err(|problem| {
                    self.unauthorized(&format!(
                        "the registry's Bearer challenge is malformed: {problem}"
                    ))
                })?;
                Auth::Bearer(self.fetch_token(&challenge).await?)
            }
            "basic" if self.credentials.is_some() && self.auth != Auth::Basic => Auth::Basic,
            _ => return Ok(false),
        };
        debug!(challenge = %scheme, "answering the registry's authentication challenge");
        self.ctx
            .auth_cache
            .put(Self::cache_key(self.reference, self.credentials), auth.clone());
        self.auth = auth;
        Ok(true)
    }

    /// GET of a manifest, read up to the size limit and verified: the bytes must hash to the
    /// `Docker-Content-Digest` header when there is one, and to `expected` when given.
    pub async fn fetch(
        &mut self,
        manifest_ref: &str,
        expected: Option<&str>,
    ) -> Result<Fetched, ResolveError> {
        let response = self.send(Method::GET, manifest_ref).await?;
        if !response.status().is_success() {
            return Err(self.status_error(response.status(), response.headers()));
        }
        let header_digest = digest_header(response.headers());
        let content_type = content_type(response.headers());
        let started = Instant::now();
        let body = read_limited(response, self.ctx.max_manifest_bytes).await;
        self.latency += started.elapsed();
        let body = body.map_err(|e| match e {
            BodyError::TooLarge { announced } => ResolveError::ManifestTooLarge {
                target: self.target.clone(),
                limit: self.ctx.max_manifest_bytes,
                size: announced,
            },
            BodyError::Read(e) => self.unavailable(
                format!("reading the manifest failed: {}", describe(&e, self.ctx.timeout)),
                None,
            ),
        })?;
        let digest = manifest::sha256_digest(&body);
        for (what, wanted) in [
            (
                "the sha256 of the manifest bytes (header Docker-Content-Digest)",
                header_digest.as_deref(),
            ),
            ("the sha256 of the manifest fetched by digest", expected),
        ] {
            if let Some(wanted) = wanted
                && wanted != digest
            {
                return Err(ResolveError::DigestMismatch {
                    target: self.target.clone(),
                    what: what.into(),
                    expected: wanted.into(),
                    actual: digest,
                });
            }
        }
        let media_type = manifest::classify(&body, content_type.as_deref()).map_err(|problem| {
            ResolveError::InvalidManifest {
                target: self.target.clone(),
                problem,
            }
        })?;
        Ok(Fetched {
            digest,
            media_type,
            body,
        })
    }

    /// The classified error for an HTTP error status.
    pub fn status_error(&self, status: StatusCode, headers: &HeaderMap) -> ResolveError {
        match status {
            StatusCode::NOT_FOUND => ResolveError::NotFound {
                target: self.target.clone(),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.unauthorized(&format!("HTTP {status}")),
            StatusCode::TOO_MANY_REQUESTS => ResolveError::RateLimited {
                target: self.target.clone(),
                registry: self.reference.registry().into(),
                detail: "HTTP 429 from the registry".into(),
                retry_after: retry_after(headers),
            },
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                self.unavailable(format!("HTTP {status}"), retry_after(headers))
            }
            s => self.unavailable(format!("unexpected answer HTTP {s}"), None),
        }
    }

    fn refused(&self, refusal: Refusal) -> ResolveError {
        let registry = self.reference.registry().to_string();
        match refusal {
            Refusal::Backoff(Throttle::RateLimited, left) => ResolveError::RateLimited {
                target: self.target.clone(),
                registry,
                detail: "holding requests back after the registry's HTTP 429".into(),
                retry_after: Some(left),
            },
            Refusal::Backoff(Throttle::Unavailable, left) => self.unavailable(
                "holding requests back after the registry failed".into(),
                Some(left),
            ),
            Refusal::RateLimit(wait) => ResolveError::RateLimited {
                target: self.target.clone(),
                registry,
                detail: "Berth's own per-registry request limit".into(),
                retry_after: Some(wait),
            },
        }
    }

    pub fn unauthorized(&self, detail: &str) -> ResolveError {
        let detail = match &self.withheld {
            Some(why) => format!("{detail}; the pull secret was not sent: {why}"),
            None => detail.into(),
        };
        ResolveError::Unauthorized {
            target: self.target.clone(),
            registry: self.reference.registry().into(),
            with_credentials: self.credentials.is_some(),
            detail,
        }
    }

    pub fn unavailable(&self, cause: String, retry_after: Option<Duration>) -> ResolveError {
        ResolveError::RegistryUnavailable {
            target: self.target.clone(),
            registry: self.reference.registry().into(),
            cause,
            retry_after,
        }
    }
}

/// `Docker-Content-Digest`, when it is a sha256 digest. Other algorithms are ignored: Berth then hashes the
/// body with sha256 itself.
pub fn digest_header(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("docker-content-digest")?.to_str().ok()?.trim();
    berth_api::validation::is_sha256_digest(value).then(|| value.to_string())
}

/// The `Content-Type` media type.
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(reqwest::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(manifest::essence(value).to_string())
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?, jiff::Timestamp::now())
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {}s", timeout.as_secs_f64())
    } else {
        // The URL holds no secret: credentials travel in headers only.
        error_chain(e)
    }
}
