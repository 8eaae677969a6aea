//! Listing a repository's tags for version policies, against a fake registry on 127.0.0.1 that pages its tag
//! list as the distribution spec says (`n`, `last`, `Link: <...>; rel="next"`): the chain followed, the caps,
//! the cache, and the answers that are refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use berth_controller::registry::{
    RegistryLocation, RegistryPolicy, RegistrySources, Resolver, ResolverConfig, TagListLimits,
    TagListRequest,
};

#[path = "support/fake_registry.rs"]
mod fake_registry;
use fake_registry::{FakeRegistry, answer};

/// `v0.0.0` ... in lexical order, as registries list them.
fn tag_names(count: usize) -> Arc<Vec<String>> {
    let mut tags: Vec<String> = (0..count)
        .map(|i| format!("v{}.{}.{}", i / 1000, (i / 10) % 100, i % 10))
        .collect();
    tags.sort();
    Arc::new(tags)
}

/// A fake registry whose repository `berth/app` has `tags`, served `n` at a time (at most `max_page`, as
/// Docker Hub caps pages at 100), with a relative `Link` to the next page.
async fn paging_registry(tags: Arc<Vec<String>>, max_page: usize) -> FakeRegistry {
    FakeRegistry::start(move |method, path, _| {
        let Some(query) = path.strip_prefix("/v2/berth/app/tags/list?") else {
            return answer(404, &[], r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#);
        };
        assert_eq!(method, Method::GET);
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        };
        // `usize::MAX`: `n` ignored, every tag in one page (as distribution 2.8 answers).
        let n = match max_page {
            usize::MAX => tags.len(),
            max => param("n").and_then(|n| n.parse().ok()).unwrap_or(100).min(max),
        };
        let start = match param("last") {
            Some(last) => tags.partition_point(|t| *t <= last),
            None => 0,
        };
        let page = &tags[start..(start + n).min(tags.len())];
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if start + n < tags.len() {
            let last = page.last().expect("a page");
            headers.push((
                "link",
                format!("</v2/berth/app/tags/list?last={last}&n={n}>; rel=\"next\""),
            ));
        }
        let body = serde_json::json!({"name": "berth/app", "tags": page}).to_string();
        answer(200, &headers, body)
    })
    .await
}

fn resolver(limits: TagListLimits) -> Resolver {
    Resolver::new(ResolverConfig {
        timeout: Duration::from_secs(5),
        tag_list: limits,
        ..Default::default()
    })
    .expect("resolver")
}

fn request(server: &FakeRegistry) -> TagListRequest {
    TagListRequest {
        repository: format!("{}/berth/app", server.host),
        insecure: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_link_chain_is_followed_to_its_end() {
    let tags = tag_names(2_500);
    let server = paging_registry(tags.clone(), 1000).await;
    let list = resolver(TagListLimits::default())
        .list_tags(&request(&server))
        .await
        .expect("listed");
    assert_eq!(&list.tags[..], &tags[..]);
    assert!(!list.truncated);
    assert_eq!((list.pages, server.hits()), (3, 3));
}

#[tokio::test]
async fn a_repository_of_more_tags_than_the_cap_costs_a_bounded_number_of_requests_and_says_so() {
    // 12,000 tags, 1,000 a page: the listing stops at 10,000 tags after 10 requests.
    let server = paging_registry(tag_names(12_000), 1000).await;
    let list = resolver(TagListLimits::default())
        .list_tags(&request(&server))
        .await
        .expect("listed");
    assert_eq!(list.tags.len(), 10_000);
    assert!(list.truncated);
    assert_eq!(server.hits(), 10);

    // A registry that pages 100 at a time, and a cap of 5 pages: 500 tags, 5 requests.
    let server = paging_registry(tag_names(9_214), 100).await;
    let limits = TagListLimits {
        max_pages: 5,
        ..Default::default()
    };
    let list = resolver(limits)
        .list_tags(&request(&server))
        .await
        .expect("listed");
    assert_eq!((list.tags.len(), list.pages, server.hits()), (500, 5, 5));
    assert!(list.truncated);

    // A registry that ignores `n` answers everything at once: what was read is kept, and it is the whole list.
    let server = paging_registry(tag_names(12_000), usize::MAX).await;
    let limits = TagListLimits {
        page_size: 100,
        ..Default::default()
    };
    let list = resolver(limits)
        .list_tags(&request(&server))
        .await
        .expect("listed");
    assert_eq!((list.tags.len(), list.pages, list.truncated), (12_000, 1, false));

    // Exactly at the cap with nothing after it is the whole list.
    let server = paging_registry(tag_names(2_000), 1000).await;
    let limits = TagListLimits {
        max_tags: 2_000,
        ..Default::default()
    };
    let list = resolver(limits)
        .list_tags(&request(&server))
        .await
        .expect("listed");
    assert_eq!(list.tags.len(), 2_000);
    assert!(!list.truncated);
}

#[tokio::test]
async fn many_tags_following_one_repository_share_one_listing_until_it_expires_or_a_push_is_newer() {
    let server = paging_registry(tag_names(1_500), 1000).await;
    let resolver = resolver(TagListLimits::default());
    let first = resolver.list_tags(&request(&server)).await.expect("listed");
    // Two pages (and a first HTTPS attempt that the plain-HTTP fake does not answer).
    assert_eq!(server.hits(), 2);
    assert!(first.requests >= 2, "{}", first.requests);
    for _ in 0..50 {
        let again = resolver.list_tags(&request(&server)).await.expect("cached");
        assert_eq!(again.requests, 0);
        assert_eq!(again.tags, first.tags);
    }
    assert_eq!(server.hits(), 2, "fifty more tags, no request");

    // A push reported after the listing started: listed again, and that listing is shared in turn.
    let pushed = TagListRequest {
        fresher_than: Some(Instant::now()),
        ..request(&server)
    };
    assert_eq!(resolver.list_tags(&pushed).await.expect("listed").requests, 2);
    assert_eq!(
        resolver
            .list_tags(&request(&server))
            .await
            .expect("cached")
            .requests,
        0
    );
    assert_eq!(server.hits(), 4);

    // Expired: listed again.
    let short = self::resolver(TagListLimits {
        cache_ttl: Duration::ZERO,
        ..Default::default()
    });
    short.list_tags(&request(&server)).await.expect("listed");
    tokio::time::sleep(Duration::from_millis(5)).await;
    short.list_tags(&request(&server)).await.expect("listed");
    assert_eq!(server.hits(), 8);
}

#[tokio::test]
async fn answers_that_are_not_tag_lists_are_refused_with_a_reason() {
    let resolver = resolver(TagListLimits::default());
    let server = paging_registry(tag_names(10), 1000).await;
    let missing = TagListRequest {
        repository: format!("{}/berth/nothing", server.host),
        ..request(&server)
    };
    let e = resolver.list_tags(&missing).await.expect_err("404");
    assert_eq!(e.reason(), "NotFound", "{e}");
    assert!(e.to_string().contains("/berth/nothing"), "{e}");

    let elsewhere = FakeRegistry::start(|_, _, _| {
        answer(
            200,
            &[(
                "link",
                "<https://evil.example/v2/berth/app/tags/list?last=a>; rel=\"next\"".into(),
            )],
            r#"{"name":"berth/app","tags":["a"]}"#,
        )
    })
    .await;
    let e = resolver
        .list_tags(&request(&elsewhere))
        .await
        .expect_err("another host");
    assert_eq!(e.reason(), "InvalidTagList", "{e}");
    assert!(e.to_string().contains("evil.example"), "{e}");

    let garbage = FakeRegistry::start(|_, _, _| answer(200, &[], "<html>not json</html>")).await;
    let e = resolver
        .list_tags(&request(&garbage))
        .await
        .expect_err("not json");
    assert_eq!(e.reason(), "InvalidTagList", "{e}");

    // `"tags": null` (an empty repository, as distribution answers) is no tag, not an error.
    let empty = FakeRegistry::start(|_, _, _| answer(200, &[], r#"{"name":"berth/app","tags":null}"#)).await;
    assert!(
        resolver
            .list_tags(&request(&empty))
            .await
            .expect("listed")
            .tags
            .is_empty()
    );
}

#[tokio::test]
async fn the_registry_policy_and_back_off_hold_for_listings_too() {
    let server = paging_registry(tag_names(10), 1000).await;
    let policy = RegistryPolicy {
        allowed_registries_for_import: Some(vec![RegistryLocation {
            domain_name: "quay.io".into(),
            insecure: false,
        }]),
        registry_sources: RegistrySources::default(),
        ..Default::default()
    };
    let refusing = Resolver::new(ResolverConfig {
        policy,
        ..Default::default()
    })
    .expect("resolver");
    let e = refusing.list_tags(&request(&server)).await.expect_err("refused");
    assert_eq!(e.reason(), "RegistryNotAllowed", "{e}");
    assert_eq!(server.hits(), 0, "never contacted");

    let limited = FakeRegistry::start(|_, _, _| answer(429, &[("retry-after", "30".into())], "")).await;
    let resolver = resolver(TagListLimits::default());
    let e = resolver.list_tags(&request(&limited)).await.expect_err("429");
    assert_eq!(e.reason(), "RateLimited", "{e}");
    let hits = limited.hits();
    let e = resolver
        .list_tags(&request(&limited))
        .await
        .expect_err("backing off");
    assert_eq!(e.reason(), "RateLimited", "{e}");
    assert_eq!(limited.hits(), hits, "no request while the back-off holds");
}
