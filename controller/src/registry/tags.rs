//! Listing a repository's tags (`GET /v2/<name>/tags/list?n=<page>`, following `Link: <...>; rel="next"` as
//! the distribution spec says), for tags with a version policy.
//!
//! Bounded three ways, so that a repository of 10,000 tags or more costs a known number of requests: pages
//! are read through the same per-registry gate (rate limit and back-off), registry policy and
//! authentication as manifests; a listing stops at [`TagListLimits::max_tags`] tags or
//! [`TagListLimits::max_pages`] pages (each at most [`TagListLimits::max_page_bytes`]) and says so
//! ([`TagList::truncated`]); and a listing is kept for
//! [`TagListLimits::cache_ttl`] per registry, repository and credentials, so many tags following one
//! repository share it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::LINK;
use serde::Deserialize;
use tracing::{Instrument as _, debug, info_span, warn};

use super::credentials::Credentials;
use super::error::ResolveError;
use super::reference::ImageReference;
use super::resolve::Resolver;
use super::session::Session;
use super::transport::{BodyError, error_chain, read_limited};

/// How much of a repository's tag list is read, and for how long it is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagListLimits {
    /// Tags asked for per page (`n`). Default 1,000; registries may answer fewer (Docker Hub: 100).
    pub page_size: u32,
    /// No further page is asked for once this many tags are read (the rest are not seen). Default 10,000.
    pub max_tags: usize,
    /// The most pages read. Default 100 (10,000 tags at Docker Hub's 100 a page).
    pub max_pages: u32,
    /// The largest page body read. Default 4 MiB.
    pub max_page_bytes: u64,
    /// How long a listing is reused. Default 60 s.
    pub cache_ttl: Duration,
}

impl Default for TagListLimits {
    fn default() -> Self {
        Self {
            page_size: 1000,
            max_tags: 10_000,
            max_pages: 100,
            max_page_bytes: 4 << 20,
            cache_ttl: Duration::from_secs(60),
        }
    }
}

/// One repository to list.
#[derive(Debug, Clone, Default)]
pub struct TagListRequest {
    /// `registry/repository` (a tag or digest after it is ignored); Docker Hub when no registry is named.
    pub repository: String,
    /// Allow plain HTTP and unverified TLS (the tag's `importPolicy.insecure`).
    pub insecure: bool,
    /// Credentials for the registry, from the namespace's pull secrets.
    pub credentials: Option<Credentials>,
    /// A cached listing started before this instant is not reused (a push after it may be missing).
    pub fresher_than: Option<Instant>,
    /// Where its requests stand in the registry's queue.
    pub priority: super::admission::Priority,
}

/// A repository's tags as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagList {
    /// The tags, in the registry's order (the spec asks for lexical order; distribution 2.8 does not keep
    /// to it): at most `max_tags` plus the rest of the page that reached it.
    pub tags: Arc<[String]>,
    /// Whether the registry had more than was read (the tag or page cap was reached).
    pub truncated: bool,
    /// HTTP requests this call sent (0 when the listing came from the cache).
    pub requests: u32,
    /// Pages the listing read.
    pub pages: u32,
    /// When the listing started.
    pub listed_at: Instant,
}

/// Listings kept per registry host, repository and credentials. Bounded: cleared when full.
#[derive(Default)]
pub struct TagListCache {
    entries: Mutex<HashMap<CacheKey, TagList>>,
}

type CacheKey = (String, String, Option<Credentials>);

const CACHE_ENTRIES: usize = 1024;

impl TagListCache {
    fn get(&self, key: &CacheKey, ttl: Duration, fresher_than: Option<Instant>) -> Option<TagList> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let list = entries.get(key)?;
        let fresh = list.listed_at.elapsed() <= ttl && fresher_than.is_none_or(|t| list.listed_at >= t);
        fresh.then(|| TagList {
            requests: 0,
            ..list.clone()
        })
    }

    /// Keeps `list`; when full, expired listings go first, then all.
    fn put(&self, key: CacheKey, list: TagList, ttl: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_ENTRIES {
            entries.retain(|_, l| l.listed_at.elapsed() <= ttl);
            if entries.len() >= CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, list);
    }
}

/// The body of a tag list page.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Resolver {
    /// The tags of `request.repository`, from the cache when a listing is younger than the TTL (and than
    /// `fresher_than`), else listed page by page within the limits.
    pub async fn list_tags(&self, request: &TagListRequest) -> Result<TagList, ResolveError> {
        let reference = ImageReference::parse(&request.repository)?;
        // Before anything else: a registry the policy refuses is never contacted.
        self.policy().check(reference.registry(), request.insecure)?;
        let limits = self.tag_list_limits();
        let key = (
            reference.api_host().to_owned(),
            reference.repository().to_owned(),
            request.credentials.clone(),
        );
        if let Some(cached) = self.tag_lists().get(&key, limits.cache_ttl, request.fresher_than) {
            debug!(
                repository = reference.repository(),
                tags = cached.tags.len(),
                "tag list from the cache"
            );
            return Ok(cached);
        }
        let span = info_span!(
            "list_tags",
            registry = reference.registry(),
            repository = reference.repository()
        );
        let mut session = Session::new(
            self.session_context(),
            &reference,
            request.credentials.as_ref(),
            request.insecure,
        );
        session.target = format!("{}/{}", reference.registry(), reference.repository());
        session.priority = request.priority;
        let result = list(&mut session, &reference, &limits)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(list) => span.in_scope(|| {
                debug!(
                    tags = list.tags.len(),
                    pages = list.pages,
                    truncated = list.truncated,
                    "listed tags"
                )
            }),
            Err(e) => span.in_scope(|| warn!(reason = e.reason(), error = %e, "listing tags failed")),
        }
        let list = result?;
        self.tag_lists().put(key, list.clone(), limits.cache_ttl);
        Ok(list)
    }
}

/// Reads pages until the registry has no next page or a limit is reached.
async fn list(
    session: &mut Session<'_>,
    reference: &ImageReference,
    limits: &TagListLimits,
) -> Result<TagList, ResolveError> {
    let listed_at = Instant::now();
    let mut tags: Vec<String> = Vec::new();
    let mut pages = 0u32;
    let mut next = Some(format!(
        "{}/tags/list?n={}",
        reference.repository(),
        limits.page_size
    ));
    let mut truncated = false;
    while let Some(path) = next.take() {
        if pages >= limits.max_pages {
            truncated = true;
            break;
        }
        let response = session.send_path(Method::GET, &path, "application/json").await?;
        pages += 1;
        if !response.status().is_success() {
            return Err(session.status_error(response.status(), response.headers()));
        }
        let link = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(response, limits.max_page_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { .. } => invalid(
                    session,
                    format!("page {pages} is larger than {} bytes", limits.max_page_bytes),
                ),
                BodyError::Read(e) => {
                    session.unavailable(format!("reading the tag list failed: {}", error_chain(&e)), None)
                }
            })?;
        let page: Page = serde_json::from_slice(&body)
            .map_err(|e| invalid(session, format!("page {pages} is not a tag list ({e})")))?;
        tags.extend(page.tags.unwrap_or_default());
        next = match link.as_deref().map(|l| next_page(l, reference.api_host())) {
            Some(Ok(path)) => path,
            Some(Err(problem)) => return Err(invalid(session, problem)),
            None => None,
        };
        // What a page held is kept (its size is bounded by `max_page_bytes`): a registry that ignores `n`
        // (distribution 2.8) answers one page in no particular order, and dropping part of it would choose
        // from an arbitrary subset.
        if tags.len() >= limits.max_tags {
            truncated = next.is_some();
            break;
        }
    }
    Ok(TagList {
        tags: tags.into(),
        truncated,
        requests: session.requests,
        pages,
        listed_at,
    })
}

fn invalid(session: &Session<'_>, problem: String) -> ResolveError {
    ResolveError::InvalidTagList {
        target: session.target.clone(),
        problem,
    }
}

/// The path after `/v2/` of the `rel="next"` link of a `Link` header, if there is one. An absolute link
/// must stay on the registry's host: the registry policy allowed that host, not another.
pub fn next_page(link: &str, host: &str) -> Result<Option<String>, String> {
    for value in link.split(',') {
        let mut parts = value.split(';').map(str::trim);
        let Some(target) = parts
            .next()
            .and_then(|t| t.strip_prefix('<'))
            .and_then(|t| t.strip_suffix('>'))
        else {
            continue;
        };
        let next = parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("next")
            })
        });
        if !next {
            continue;
        }
        let path = match target.split_once("://") {
            Some((_, rest)) => {
                let (link_host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                if !link_host.eq_ignore_ascii_case(host) {
                    return Err(format!(
                        "the next page is on {link_host:?}, not on the registry's host {host:?}"
                    ));
                }
                path
            }
            None => target,
        };
        return match path.strip_prefix("/v2/") {
            Some(rest) if !rest.is_empty() => Ok(Some(rest.to_owned())),
            _ => Err(format!("the next page {target:?} is not under /v2/")),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn next_links_as_registries_write_them() {
        let host = "r.example:5000";
        assert_eq!(
            next_page(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#, host),
            Ok(Some("app/tags/list?last=b&n=2".into()))
        );
        assert_eq!(
            next_page(
                r#"<https://r.example:5000/v2/org/app/tags/list?n=100&last=v9>; rel=next"#,
                host
            ),
            Ok(Some("org/app/tags/list?n=100&last=v9".into()))
        );
        assert_eq!(
            next_page(
                r#"</v2/a/tags/list?last=z>; rel="prev", </v2/a/tags/list?last=b>; rel="next""#,
                host
            ),
            Ok(Some("a/tags/list?last=b".into()))
        );
        assert_eq!(
            next_page(r#"</v2/a/tags/list?last=z>; rel="prev""#, host),
            Ok(None)
        );
        let elsewhere = next_page(r#"<https://evil.example/v2/a/tags/list>; rel="next""#, host).unwrap_err();
        assert!(elsewhere.contains("evil.example"), "{elsewhere}");
        assert!(next_page(r#"</other/path>; rel="next""#, host).is_err());
    }
}
