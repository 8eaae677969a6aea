//! Image garbage collection ([`berth_agent::image_gc`]) against [`FakeCri`](fake_cri::FakeCri):
//! the real collector over the real CRI client, with the image filesystem's capacity set by
//! the test and its usage the sum of the fake's image sizes. No containerd, no cluster.
//!
//! Scenarios: over the high threshold, unused images go least recently used first until usage
//! is down to the low one, while the pause image, an image a container uses, an image a pod
//! bound to the node names and an image too young stay; a shortfall is published as
//! `FreeDiskSpaceFailed`, twice in a row as `ImageGCFailed` too; an exited container still
//! protects its image; without a known pause image nothing is removed.

mod fake_cri;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use berth_agent::cri::api::{ContainerConfig, ContainerMetadata, ImageSpec, PodSandboxConfig};
use berth_agent::image_gc::{Disk, Gc, Policy, StatFs, node_reference};
use berth_agent::pods::PodIndex;
use fake_cri::FakeCri;
use k8s_openapi::api::core::v1::Pod;
use support::{Harness, events, harness};

const PAUSE: &str = "reg.test/berth/pause:1";
const OLD: &str = "reg.test/old:1";
const RECENT: &str = "reg.test/recent:1";
const WEB: &str = "reg.test/web:1";
const NEXT: &str = "reg.test/next:1";
const FRESH: &str = "reg.test/fresh:1";

/// A disk of `capacity` bytes (changed by the test) holding the fake's images and nothing else.
fn disk(fake: &FakeCri, capacity: &Arc<AtomicU64>) -> StatFs {
    let fake = fake.clone();
    let capacity = capacity.clone();
    Arc::new(move |path: &str| {
        assert_eq!(
            path,
            fake_cri::IMAGE_FS,
            "statfs of the mountpoint ImageFsInfo reports"
        );
        let capacity = capacity.load(Ordering::SeqCst);
        Ok(Disk {
            capacity,
            available: capacity.saturating_sub(fake.image_bytes()),
        })
    })
}

/// A pod bound to the node, not started yet, whose container runs `image`.
fn index_with_pod(image: &str) -> PodIndex {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "next", "namespace": "default", "uid": "uid-next"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": image}]}
    }))
    .expect("pod");
    Arc::new(RwLock::new(HashMap::from([(
        "uid-next".to_string(),
        Arc::new(pod),
    )])))
}

/// Creates (and starts) a container of `image` in a new sandbox through the agent's CRI client.
async fn container(h: &Harness, name: &str, image: &str) -> String {
    let cri = &h.shared.cri;
    let sandbox = PodSandboxConfig::default();
    let sb = cri.run_pod_sandbox(sandbox.clone()).await.expect("sandbox");
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = cri.create_container(&sb, config, sandbox).await.expect("create");
    cri.start_container(&id).await.expect("start");
    id
}

fn policy() -> Policy {
    Policy::new(85, 80, Duration::from_secs(60)).expect("valid")
}

fn removals(fake: &FakeCri) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter_map(|c| c.strip_prefix("RemoveImage ").map(str::to_string))
        .collect()
}

/// The Events posted (`reason note`), and their repetitions, which kube's recorder sends as a
/// PATCH of the first with a series count (`reason (series N)`).
fn reasons(h: &Harness) -> Vec<String> {
    let seen = h.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    seen.iter()
        .filter(|(m, p, _)| (m == "POST" || m == "PATCH") && p.contains("/events"))
        .filter_map(|(m, _, b)| Some((m, serde_json::from_str::<serde_json::Value>(b).ok()?)))
        .map(|(m, e)| {
            let reason = e["reason"].as_str().unwrap_or("");
            if m == "PATCH" {
                format!("{reason} (series {})", e["series"]["count"])
            } else {
                format!("{reason} {}", e["note"].as_str().unwrap_or(""))
            }
        })
        .collect()
}

#[tokio::test]
async fn over_the_high_threshold_unused_images_go_least_recently_used_first() {
    let h = harness().await;
    h.fake.set_sandbox_image(PAUSE);
    for (image, size) in [
        (PAUSE, 5_000),
        (OLD, 10_000),
        (RECENT, 10_000),
        (WEB, 25_000),
        (NEXT, 25_000),
    ] {
        h.fake.add_image(image, size);
    }
    let _web = container(&h, "web", WEB).await;
    let recent = container(&h, "recent", RECENT).await;
    let capacity = Arc::new(AtomicU64::new(1_000_000));
    let node = node_reference("node-1", None);
    let mut gc = Gc::new(
        &h.shared,
        index_with_pod(NEXT),
        node,
        policy(),
        None,
        disk(&h.fake, &capacity),
    );

    // 8% used: nothing to do; the images present now count as detected long ago, and those in
    // use (RECENT among them) as used now.
    let round = gc.tick().await.expect("round 1");
    assert_eq!(
        (round.usage_percent, round.wanted, round.removed.len()),
        (Some(8), 0, 0)
    );

    // RECENT's container goes; FRESH is pulled (first detected in the next round).
    h.shared.cri.remove_container(&recent).await.expect("remove");
    h.fake.add_image(FRESH, 10_000);

    // 85 000 of 100 000 bytes: at the high threshold; 5 000 bytes to free for 80%. OLD (never
    // used) goes first; FRESH was never used either but is too young; RECENT stays as the
    // first removal sufficed.
    capacity.store(100_000, Ordering::SeqCst);
    let round = gc.tick().await.expect("round 2");
    assert_eq!(
        (round.usage_percent, round.wanted, round.freed),
        (Some(85), 5_000, 10_000)
    );
    assert_eq!(round.removed, [FakeCri::image_id(OLD)]);
    assert!(reasons(&h).is_empty(), "{:?}", reasons(&h));

    // 75 000 of 80 000: 94%, 11 000 bytes to free; only RECENT may go (10 000): a shortfall.
    capacity.store(80_000, Ordering::SeqCst);
    let round = gc.tick().await.expect("round 3");
    assert_eq!((round.wanted, round.freed), (11_000, 10_000));
    assert_eq!(round.removed, [FakeCri::image_id(RECENT)]);
    let wanted = "failed to garbage collect required amount of images. Wanted to free 11000 bytes, but freed 10000 bytes";
    assert_eq!(reasons(&h), [format!("FreeDiskSpaceFailed {wanted}")]);

    // 65 000 of 70 000: 9 000 to free and nothing removable; a second failure in a row
    // (kube's recorder sends the repeated FreeDiskSpaceFailed as a series of the first).
    capacity.store(70_000, Ordering::SeqCst);
    let round = gc.tick().await.expect("round 4");
    assert_eq!((round.wanted, round.freed), (9_000, 0));
    let again =
        "failed to garbage collect required amount of images. Wanted to free 9000 bytes, but freed 0 bytes";
    assert_eq!(
        reasons(&h)[1..],
        [
            "FreeDiskSpaceFailed (series 2)".to_string(),
            format!("ImageGCFailed {again}")
        ]
    );
    let event: serde_json::Value = serde_json::from_str(&events(&h.seen)[1]).expect("event");
    assert_eq!(event["regarding"]["kind"], "Node");
    assert_eq!(event["regarding"]["name"], "node-1");
    assert_eq!(event["type"], "Warning");

    assert_eq!(
        removals(&h.fake),
        [FakeCri::image_id(OLD), FakeCri::image_id(RECENT)]
    );
    let mut left = h.fake.images();
    left.sort();
    assert_eq!(
        left,
        [PAUSE, FRESH, NEXT, WEB],
        "pause, in use, named by a pod, too young"
    );
    let metrics = h.shared.metrics.encode();
    assert!(
        metrics.contains("berth_agent_image_gc_removed_images_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_agent_image_gc_freed_bytes_total 20000"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_exited_container_and_the_configured_pause_image_protect_their_images() {
    let h = harness().await;
    let pause = "reg.test/other-pause:3.2";
    for image in [pause, OLD, WEB] {
        h.fake.add_image(image, 10_000);
    }
    let web = container(&h, "web", WEB).await;
    h.fake.exit(&web, 0, 1, 1);
    let capacity = Arc::new(AtomicU64::new(30_000));
    let node = node_reference("node-1", None);
    let index: PodIndex = Arc::default();
    let mut gc = Gc::new(
        &h.shared,
        index,
        node,
        policy(),
        Some(pause.into()),
        disk(&h.fake, &capacity),
    );
    let round = gc.tick().await.expect("round");
    assert_eq!(round.usage_percent, Some(100));
    assert_eq!(round.removed, [FakeCri::image_id(OLD)]);
    let mut left = h.fake.images();
    left.sort();
    assert_eq!(left, [pause, WEB]);
}

#[tokio::test]
async fn without_a_known_pause_image_nothing_is_removed() {
    let h = harness().await;
    h.fake.add_image(OLD, 10_000);
    let capacity = Arc::new(AtomicU64::new(10_000));
    let index: PodIndex = Arc::default();
    let node = node_reference("node-1", None);
    let mut gc = Gc::new(&h.shared, index, node, policy(), None, disk(&h.fake, &capacity));
    let round = gc.tick().await.expect("round");
    assert_eq!(round.removed.len(), 0);
    assert_eq!(h.fake.images(), [OLD]);
    assert!(removals(&h.fake).is_empty());
}
