//! The resolver against a real distribution registry (Debian's `docker-registry`) on 127.0.0.1.
//! These tests fail when the binary is missing: run `hack/deps.sh`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_api::image::ImportMode;
use berth_controller::registry::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, ImageReference, MetadataRequest, Platform,
    RegistryCredentials, ResolveError, ResolveRequest, Resolved, Resolver, ResolverConfig,
};
use k8s_openapi::ByteString;
use support::registry::{LocalRegistry, OCI_INDEX, OCI_MANIFEST};

const PASSWORD: &str = "correct-horse-battery-staple";

fn resolver() -> Resolver {
    Resolver::new(ResolverConfig::default()).expect("resolver")
}

fn request(reference: String) -> ResolveRequest {
    // The local registry speaks plain HTTP.
    ResolveRequest {
        reference,
        insecure: true,
        ..Default::default()
    }
}

async fn resolve(resolver: &Resolver, request: ResolveRequest) -> Result<Resolved, ResolveError> {
    resolver.resolve(&request).await
}

#[tokio::test]
async fn resolves_a_tag_and_follows_it_when_it_moves() {
    let registry = LocalRegistry::start().await;
    let pusher = registry.pusher();
    let v1 = pusher
        .push_image("berth/app", Some("stable"), ("linux", "amd64"), "one")
        .await;
    let resolver = resolver();
    let reference = format!("{}/berth/app:stable", registry.host);

    let first = resolve(&resolver, request(reference.clone()))
        .await
        .expect("resolve");
    assert_eq!(first.digest, v1.digest);
    assert_eq!(
        first.pull_spec,
        format!("{}/berth/app@{}", registry.host, v1.digest)
    );
    assert_eq!(first.media_type.as_deref(), Some(OCI_MANIFEST));
    assert!(first.registry_latency > Duration::ZERO);

    let v2 = pusher
        .push_image("berth/app", Some("stable"), ("linux", "amd64"), "two")
        .await;
    assert_ne!(v1.digest, v2.digest);
    let second = resolve(&resolver, request(reference))
        .await
        .expect("resolve after the move");
    assert_eq!(second.digest, v2.digest);
    // HEAD answered digest and media type: one request, no GET.
    assert_eq!(second.requests, 1, "{second:?}");
}

#[tokio::test]
async fn missing_tags_and_repositories_are_not_found() {
    let registry = LocalRegistry::start().await;
    registry
        .pusher()
        .push_image("berth/app", Some("v1"), ("linux", "amd64"), "x")
        .await;
    let resolver = resolver();
    for reference in [
        format!("{}/berth/app:v404", registry.host),
        format!("{}/berth/nothing:v1", registry.host),
    ] {
        let e = resolve(&resolver, request(reference.clone()))
            .await
            .expect_err(&reference);
        assert_eq!(e.reason(), "NotFound", "{e}");
        assert!(e.to_string().contains(&reference), "{e}");
        assert!(!e.retryable());
    }
}

#[tokio::test]
async fn pinned_digests_are_checked_against_the_registry_unless_trusted() {
    let registry = LocalRegistry::start().await;
    let pusher = registry.pusher();
    let image = pusher
        .push_image("berth/app", Some("v1"), ("linux", "amd64"), "pinned")
        .await;
    let other = pusher
        .push_image("berth/other", Some("v1"), ("linux", "amd64"), "elsewhere")
        .await;
    let resolver = resolver();

    let pinned = format!("{}/berth/app@{}", registry.host, image.digest);
    let resolved = resolve(&resolver, request(pinned.clone()))
        .await
        .expect("pinned digest");
    assert_eq!(resolved.digest, image.digest);
    let tag_and_digest = format!("{}/berth/app:v1@{}", registry.host, image.digest);
    assert_eq!(
        resolve(&resolver, request(tag_and_digest))
            .await
            .expect("tag@digest")
            .digest,
        image.digest
    );

    // A digest that exists in another repository only: the registry serves nothing under it here.
    let wrong = format!("{}/berth/app@{}", registry.host, other.digest);
    assert_eq!(
        resolve(&resolver, request(wrong))
            .await
            .expect_err("wrong digest")
            .reason(),
        "NotFound"
    );

    // Trusted pinned digests need no registry at all: the registry is gone.
    drop(registry);
    let offline = ResolveRequest {
        trust_pinned: true,
        ..request(pinned)
    };
    let trusted = resolver.resolve(&offline).await.expect("trusted pinned digest");
    assert_eq!(
        (trusted.digest.as_str(), trusted.requests, trusted.media_type),
        (image.digest.as_str(), 0, None)
    );
    let tag = ResolveRequest {
        reference: "127.0.0.1:1/berth/app:v1".into(),
        trust_pinned: true,
        ..offline
    };
    let e = resolver
        .resolve(&tag)
        .await
        .expect_err("a tag still needs the registry");
    assert_eq!(e.reason(), "RegistryUnavailable", "{e}");
}

#[tokio::test]
async fn basic_auth_with_a_dockerconfigjson_pull_secret() {
    let registry = LocalRegistry::start_with_htpasswd("berth", PASSWORD).await;
    let image = registry
        .pusher()
        .push_image("team/app", Some("v1"), ("linux", "amd64"), "private")
        .await;
    let reference = format!("{}/team/app:v1", registry.host);
    let resolver = resolver();

    let auth = base64::engine::general_purpose::STANDARD.encode(format!("berth:{PASSWORD}"));
    let secret = format!(
        r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
        registry.host
    );
    let data = BTreeMap::from([(
        DOCKER_CONFIG_JSON_KEY.to_string(),
        ByteString(secret.into_bytes()),
    )]);
    let pull_secrets = RegistryCredentials::from_secret(DOCKER_CONFIG_JSON_TYPE, &data).expect("pull secret");
    let parsed = ImageReference::parse(&reference).unwrap();
    let credentials = pull_secrets
        .lookup(parsed.registry(), parsed.repository())
        .cloned();
    assert!(credentials.is_some(), "lookup by host:port");

    let with = ResolveRequest {
        credentials: credentials.clone(),
        ..request(reference.clone())
    };
    assert_eq!(
        resolve(&resolver, with.clone())
            .await
            .expect("with credentials")
            .digest,
        image.digest
    );
    // The resolver remembers that this registry wants Basic: the next resolve needs one request.
    assert_eq!(resolve(&resolver, with).await.expect("again").requests, 1);

    let e = resolve(&resolver, request(reference.clone()))
        .await
        .expect_err("without credentials");
    assert_eq!(e.reason(), "Unauthorized", "{e}");
    assert!(e.to_string().contains("add a pull secret"), "{e}");

    let wrong = ResolveRequest {
        credentials: Some(berth_controller::registry::Credentials::new(
            "berth",
            "not-the-password",
        )),
        ..request(reference)
    };
    let e = resolve(&resolver, wrong).await.expect_err("wrong password");
    assert_eq!(e.reason(), "Unauthorized", "{e}");
    assert!(e.to_string().contains("check that the pull secret"), "{e}");
    for text in [
        e.to_string(),
        format!("{e:?}"),
        format!("{credentials:?}"),
        format!("{pull_secrets:?}"),
    ] {
        assert!(
            !text.contains(PASSWORD) && !text.contains("not-the-password"),
            "secret leaked: {text}"
        );
    }
}

#[tokio::test]
async fn an_index_resolves_to_one_platform_or_stays_whole() {
    let registry = LocalRegistry::start().await;
    let pusher = registry.pusher();
    let amd64 = pusher
        .push_image("berth/multi", None, ("linux", "amd64"), "m")
        .await;
    let arm64 = pusher
        .push_image("berth/multi", None, ("linux", "arm64"), "m")
        .await;
    let index = pusher
        .push_index(
            "berth/multi",
            "v1",
            &[(("linux", "arm64"), &arm64), (("linux", "amd64"), &amd64)],
        )
        .await;
    let reference = format!("{}/berth/multi:v1", registry.host);

    let resolver = resolver();
    let legacy = resolve(&resolver, request(reference.clone()))
        .await
        .expect("legacy");
    assert_eq!(legacy.digest, amd64.digest, "default platform linux/amd64");
    assert_eq!(legacy.media_type.as_deref(), Some(OCI_MANIFEST));
    assert_eq!(
        legacy.pull_spec,
        format!("{}/berth/multi@{}", registry.host, amd64.digest)
    );

    let arm = Resolver::new(ResolverConfig {
        platform: "linux/arm64".parse().unwrap(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        resolve(&arm, request(reference.clone()))
            .await
            .expect("arm64")
            .digest,
        arm64.digest
    );

    let whole = ResolveRequest {
        import_mode: ImportMode::PreserveOriginal,
        ..request(reference.clone())
    };
    let preserved = resolve(&resolver, whole).await.expect("preserve original");
    assert_eq!(preserved.digest, index.digest);
    assert_eq!(preserved.media_type.as_deref(), Some(OCI_INDEX));
    assert_eq!(
        preserved.requests, 1,
        "HEAD is enough to keep an index (the scheme is known by now)"
    );

    let s390x: Platform = "linux/s390x".parse().unwrap();
    let other = Resolver::new(ResolverConfig {
        platform: s390x,
        ..Default::default()
    })
    .unwrap();
    let e = resolve(&other, request(reference))
        .await
        .expect_err("no such platform");
    assert_eq!(e.reason(), "UnsupportedPlatform", "{e}");
    assert!(e.to_string().contains("linux/arm64, linux/amd64"), "{e}");
}

#[tokio::test]
async fn plain_http_registries_need_insecure() {
    let registry = LocalRegistry::start().await;
    registry
        .pusher()
        .push_image("berth/app", Some("v1"), ("linux", "amd64"), "tls")
        .await;
    let secure = ResolveRequest {
        insecure: false,
        ..request(format!("{}/berth/app:v1", registry.host))
    };
    let e = resolve(&resolver(), secure)
        .await
        .expect_err("TLS to a plain HTTP registry");
    assert_eq!(e.reason(), "RegistryUnavailable", "{e}");
    assert!(e.retryable());
    assert!(e.to_string().contains("insecure"), "{e}");
}

/// Measures resolve latency against the local registry (run with `--nocapture` to see the figures).
#[tokio::test]
async fn resolve_latency_against_the_local_registry() {
    let registry = LocalRegistry::start().await;
    let pusher = registry.pusher();
    pusher
        .push_image("berth/app", Some("v1"), ("linux", "amd64"), "timing")
        .await;
    let amd64 = pusher
        .push_image("berth/multi", None, ("linux", "amd64"), "t")
        .await;
    let arm64 = pusher
        .push_image("berth/multi", None, ("linux", "arm64"), "t")
        .await;
    pusher
        .push_index(
            "berth/multi",
            "v1",
            &[(("linux", "arm64"), &arm64), (("linux", "amd64"), &amd64)],
        )
        .await;
    // Measure the registry, not Berth's own rate limit (10/s by default).
    let rate_limit = berth_controller::registry::RateLimit {
        per_second: 10_000.0,
        burst: 10_000,
    };
    let resolver = Resolver::new(ResolverConfig {
        rate_limit,
        ..Default::default()
    })
    .unwrap();
    for (name, repo) in [
        ("manifest tag (HEAD)", "berth/app:v1"),
        ("index tag, Legacy (HEAD + GET)", "berth/multi:v1"),
    ] {
        let request = request(format!("{}/{repo}", registry.host));
        resolver.resolve(&request).await.expect("warm-up");
        let mut samples = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            resolver.resolve(&request).await.expect("resolve");
            samples.push(started.elapsed());
        }
        samples.sort();
        let (median, p95) = (samples[samples.len() / 2], samples[samples.len() * 95 / 100]);
        eprintln!(
            "resolve latency, {name}: median {median:?}, p95 {p95:?} over {} resolves",
            samples.len()
        );
        assert!(median < Duration::from_millis(500), "{name}: median {median:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pushed_by_skopeo_from_an_umoci_layout() {
    let registry = LocalRegistry::start().await;
    let pushed = tokio::task::block_in_place(|| registry.push_busybox_with_skopeo("berth/busybox", "v1"));
    assert!(berth_api::validation::is_sha256_digest(&pushed), "{pushed:?}");
    let resolved = resolve(
        &resolver(),
        request(format!("{}/berth/busybox:v1", registry.host)),
    )
    .await
    .expect("resolve");
    assert_eq!(
        resolved.digest, pushed,
        "the resolver and skopeo agree on the digest"
    );
}

/// Metadata of `pull_spec` read from the local (plain HTTP) registry.
async fn metadata(resolver: &Resolver, pull_spec: String) -> berth_api::image::ImageMetadata {
    let request = MetadataRequest {
        pull_spec,
        insecure: true,
        credentials: None,
    };
    resolver.read_metadata(&request).await.expect("metadata")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_metadata_is_read_from_the_manifest_and_the_verified_config_blob() {
    let registry = LocalRegistry::start().await;
    let pusher = registry.pusher();
    let arm64 = pusher
        .push_image("berth/meta", Some("v1"), ("linux", "arm64"), "meta")
        .await;
    let resolver = resolver();
    let resolved = resolve(&resolver, request(format!("{}/berth/meta:v1", registry.host)))
        .await
        .expect("resolve");
    let meta = metadata(&resolver, resolved.pull_spec).await;
    assert_eq!(meta.digest, arm64.digest);
    assert_eq!(meta.media_type.as_deref(), Some(OCI_MANIFEST));
    assert_eq!(meta.platform.as_deref(), Some("linux/arm64"));
    assert_eq!(
        meta.labels,
        BTreeMap::from([("berth.test/marker".to_string(), "meta".to_string())])
    );
    // The pusher's config and layer, as `push_image` writes them: the blob read is the one pushed (its
    // sha256 is checked against the manifest's config digest before it is parsed).
    let config = r#"{"architecture":"arm64","os":"linux","config":{"Labels":{"berth.test/marker":"meta"}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = "layer of meta for linux/arm64";
    assert_eq!(meta.size, Some((config.len() + layer.len()) as i64));
    assert_eq!(meta.layers, Some(1));
    assert_eq!((meta.user, meta.created, meta.unreadable), (None, None, None));

    // An index kept whole: the platforms it offers.
    let amd64 = pusher
        .push_image("berth/meta", None, ("linux", "amd64"), "meta")
        .await;
    let index = pusher
        .push_index(
            "berth/meta",
            "multi",
            &[(("linux", "amd64"), &amd64), (("linux", "arm64"), &arm64)],
        )
        .await;
    let whole = metadata(
        &resolver,
        format!("{}/berth/meta@{}", registry.host, index.digest),
    )
    .await;
    assert_eq!(whole.media_type.as_deref(), Some(OCI_INDEX));
    assert_eq!(whole.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!((whole.size, whole.platform), (None, None));

    // An image built by umoci and pushed by skopeo: umoci writes `created` and the history.
    let pushed = tokio::task::block_in_place(|| registry.push_busybox_with_skopeo("berth/busybox", "v1"));
    let busybox = metadata(&resolver, format!("{}/berth/busybox@{pushed}", registry.host)).await;
    assert_eq!(busybox.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(busybox.layers, Some(1));
    assert!(
        busybox.size.is_some_and(|s| s > 500_000),
        "busybox is in it: {busybox:?}"
    );
    assert!(busybox.created.is_some(), "{busybox:?}");
}

#[tokio::test]
async fn tls_is_verified_against_extra_cas_unless_insecure() {
    let registry = LocalRegistry::start_with_tls().await;
    let image = registry
        .pusher()
        .push_image("berth/app", Some("v1"), ("linux", "amd64"), "tls")
        .await;
    let verified = ResolveRequest {
        reference: format!("{}/berth/app:v1", registry.host),
        ..Default::default()
    };

    let e = resolve(&resolver(), verified.clone())
        .await
        .expect_err("certificate from an unknown CA");
    assert_eq!(e.reason(), "RegistryUnavailable", "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");

    let ca_pem = registry.ca_pem.clone();
    let trusting = Resolver::new(ResolverConfig {
        extra_ca_pem: ca_pem,
        ..Default::default()
    })
    .expect("CA");
    let resolved = resolve(&trusting, verified.clone())
        .await
        .expect("verified TLS with the extra CA");
    assert_eq!(resolved.digest, image.digest);

    let insecure = ResolveRequest {
        insecure: true,
        ..verified
    };
    let resolved = resolve(&resolver(), insecure).await.expect("unverified TLS");
    assert_eq!(
        (resolved.digest, resolved.requests),
        (image.digest, 1),
        "HTTPS answered first"
    );

    let bad_ca = ResolverConfig {
        extra_ca_pem: Some(b"not a certificate".to_vec()),
        ..Default::default()
    };
    assert!(Resolver::new(bad_ca).is_err());
}

/// A version policy against the real registry: its tag list read behind Basic auth, the newest matching tag
/// chosen, and that tag resolved.
#[tokio::test]
async fn a_version_policy_lists_the_real_registrys_pages_and_resolves_the_chosen_tag() {
    use berth_api::version_policy::{SemverPolicy, VersionPolicy};
    use berth_controller::import::version_policy::{Listed, Policy};
    use berth_controller::registry::{Credentials, TagListLimits, TagListRequest};

    let registry = LocalRegistry::start_with_htpasswd("berth", PASSWORD).await;
    let pusher = registry.pusher();
    let mut pushed = Vec::new();
    for tag in [
        "latest",
        "v1.0.0",
        "v1.0.1",
        "v1.1.0-rc.1",
        "v1.1.0",
        "v1.2.0-rc.1",
        "v1.2.0",
        "v1.10.0",
        "v1.9.3",
        "v2.0.0",
        "1.4",
        "sha-3f2a9c1",
    ] {
        pushed.push((
            tag,
            pusher
                .push_image("team/app", Some(tag), ("linux", "amd64"), tag)
                .await,
        ));
    }
    let credentials = Some(Credentials::new("berth", PASSWORD));
    let resolver = Resolver::new(ResolverConfig {
        tag_list: TagListLimits {
            page_size: 5,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("resolver");
    let list = resolver
        .list_tags(&TagListRequest {
            repository: format!("{}/team/app", registry.host),
            insecure: true,
            credentials: credentials.clone(),
            fresher_than: None,
            ..Default::default()
        })
        .await
        .expect("listed");
    let mut expected: Vec<&str> = pushed.iter().map(|(t, _)| *t).collect();
    expected.sort();
    // Distribution 2.8 pages in its storage's order, not the lexical order the spec asks for: every tag
    // is there once all the same.
    let mut listed: Vec<&str> = list.tags.iter().map(String::as_str).collect();
    listed.sort();
    assert_eq!(listed, expected);
    // ... and in one page whatever `n` asks: distribution 2.8 does not page tag lists (3.0 does; the `Link`
    // chain is tested against a fake in `tests/registry_tags.rs`).
    assert_eq!((list.pages, list.truncated), (1, false));

    let policy = Policy::compile(&VersionPolicy {
        semver: Some(SemverPolicy {
            range: ">=1.0.0 <2.0.0".into(),
        }),
        ..Default::default()
    })
    .expect("valid");
    let choice = policy
        .choose(Listed {
            tags: &list.tags,
            truncated: list.truncated,
        })
        .expect("a match");
    assert_eq!(choice.tag, "v1.10.0", "{}", choice.why);

    let resolved = resolve(
        &resolver,
        ResolveRequest {
            credentials,
            ..request(format!("{}/team/app:{}", registry.host, choice.tag))
        },
    )
    .await
    .expect("resolved");
    let wanted = &pushed.iter().find(|(t, _)| *t == "v1.10.0").expect("pushed").1;
    assert_eq!(resolved.digest, wanted.digest);
}
