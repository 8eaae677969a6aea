//! Reading image metadata (manifest and config blob) from fake registries on 127.0.0.1 (named fake: they
//! answer just enough of the protocol), including ones that serve a config that does not match its digest
//! or is too large: metadata is refused, with a reason that says it is not worth trying again.

use std::time::Duration;

use berth_controller::registry::{
    MAX_CONFIG_BYTES, MetadataError, MetadataRequest, ResolveError, ResolveRequest, Resolver, ResolverConfig,
};

#[path = "support/fake_registry.rs"]
mod fake_registry;
use fake_registry::{FakeRegistry, config_bytes, image_manifest_for, sha256};

fn resolver() -> Resolver {
    Resolver::new(ResolverConfig {
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .expect("resolver")
}

/// Resolves `app:v1` of `registry`, then reads its metadata; the requests each took.
async fn resolve_and_read(
    registry: &FakeRegistry,
) -> (
    String,
    Result<berth_api::image::ImageMetadata, MetadataError>,
    usize,
) {
    let resolver = resolver();
    let resolved = resolver
        .resolve(&ResolveRequest {
            reference: format!("{}/team/app:v1", registry.host),
            insecure: true,
            ..Default::default()
        })
        .await
        .expect("the digest resolves whatever the config");
    let before = registry.hits();
    let read = resolver
        .read_metadata(&MetadataRequest {
            pull_spec: resolved.pull_spec,
            insecure: true,
            credentials: None,
        })
        .await;
    (resolved.digest, read, registry.hits() - before)
}

#[tokio::test]
async fn metadata_of_an_image_is_read_with_two_requests() {
    let config = config_bytes();
    let registry = FakeRegistry::serving_image(&config, config.clone()).await;
    let (digest, read, requests) = resolve_and_read(&registry).await;
    let meta = read.expect("read");
    assert_eq!(digest, sha256(&image_manifest_for(&config)));
    assert_eq!(meta.digest, digest);
    assert_eq!(meta.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(meta.user.as_deref(), Some("1001"));
    assert_eq!(meta.exposed_ports, ["8080/tcp"]);
    assert_eq!(meta.labels.get("app").map(String::as_str), Some("demo"));
    assert_eq!(meta.size, Some(1000 + config.len() as i64));
    assert_eq!(meta.layers, Some(1));
    assert_eq!(requests, 2, "the manifest by digest and the config blob");
}

#[tokio::test]
async fn a_config_blob_that_does_not_match_its_digest_is_refused() {
    let config = config_bytes();
    let mut tampered = config.clone();
    tampered[20] ^= 1;
    let registry = FakeRegistry::serving_image(&config, tampered.clone()).await;
    let (_, read, _) = resolve_and_read(&registry).await;
    let e = read.expect_err("a mismatch");
    assert!(
        matches!(&e, MetadataError::Registry(ResolveError::DigestMismatch { what, actual, .. })
            if what == "the sha256 of the config blob" && *actual == sha256(&tampered)),
        "{e:?}"
    );
    assert!(!e.transient(), "not worth trying again");
    assert!(e.to_string().contains(&sha256(&config)), "{e}");
}

#[tokio::test]
async fn an_oversized_config_is_not_read() {
    // The manifest announces more than the limit: the blob is not even asked for.
    let huge = vec![b' '; MAX_CONFIG_BYTES as usize + 1];
    let registry = FakeRegistry::serving_image(&huge, huge.clone()).await;
    let (_, read, requests) = resolve_and_read(&registry).await;
    let e = read.expect_err("too large");
    assert!(
        matches!(e, MetadataError::ConfigTooLarge { size: Some(s), .. } if s == MAX_CONFIG_BYTES + 1),
        "{e:?}"
    );
    assert_eq!(requests, 1, "only the manifest");
    assert!(!e.transient());

    // The manifest announces a small config but the registry sends more: reading stops at the limit.
    let config = config_bytes();
    let registry = FakeRegistry::serving_image(&config, vec![b'x'; 3 << 20]).await;
    let (_, read, _) = resolve_and_read(&registry).await;
    assert!(
        matches!(read, Err(MetadataError::ConfigTooLarge { .. })),
        "{read:?}"
    );
}

#[tokio::test]
async fn a_registry_that_fails_on_the_blob_is_transient() {
    let config = config_bytes();
    let manifest = image_manifest_for(&config);
    let registry = FakeRegistry::start(move |_, path, _| {
        if path.contains("/blobs/") {
            fake_registry::answer(503, &[], "down")
        } else {
            fake_registry::answer(
                200,
                &[("content-type", fake_registry::OCI_MANIFEST.into())],
                manifest.clone(),
            )
        }
    })
    .await;
    let (_, read, _) = resolve_and_read(&registry).await;
    let e = read.expect_err("unavailable");
    assert!(e.transient(), "{e:?}");
}
