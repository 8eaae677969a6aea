//! Image garbage collection by disk-usage thresholds, as the kubelet 1.20's image GC manager
//! (`pkg/kubelet/images/image_gc_manager.go`).
//!
//! Every `--image-gc-period` (5 minutes) the agent:
//! 1. lists the runtime's images (CRI `ListImages`), its containers in every state
//!    (`ListContainers`) and the pods bound to this node, and records for each image when it
//!    was first detected and when it was last seen in use ([`Records`]). Images present at the
//!    agent's first detection count as detected long ago, as the kubelet's;
//! 2. asks the runtime where its images live (`ImageFsInfo`) and reads that filesystem's
//!    capacity and available bytes (`statvfs` of the mountpoint the runtime reports);
//! 3. when usage (`100 - available * 100 / capacity`, as the kubelet) reaches
//!    `--image-gc-high-threshold` percent (85), removes images (`RemoveImage`) least recently
//!    used first, ties broken by first detection, until it freed enough to bring usage down to
//!    `--image-gc-low-threshold` (80) ([`plan::decide`]).
//!
//! Never removed: an image a container known to the runtime refers to (by image id, or a tag
//! or digest naming it), an image a pod bound to this node names in its spec (it may be about
//! to start), the pod sandbox ("pause") image (`--pod-infra-container-image`, else the one the
//! runtime reports in its verbose status), an image the runtime marks pinned, and an image
//! first detected less than `--image-gc-minimum-age` (2 minutes) ago. Without a known
//! sandbox image the agent removes nothing. A high threshold of 100 disables the collection.
//!
//! When a round cannot free enough, the agent publishes a Warning Event on its Node,
//! `FreeDiskSpaceFailed` ("failed to garbage collect required amount of images. Wanted to free
//! X bytes, but freed Y bytes"), and from the second failed round in a row also
//! `ImageGCFailed`, as the kubelet. Each removal is logged at info and counted in
//! `berth_agent_image_gc_removed_images_total` and `berth_agent_image_gc_freed_bytes_total`.

pub mod in_use;
pub mod plan;
pub mod records;
mod runner;

use std::time::Duration;

pub use in_use::{Users, in_use, refers_to};
pub use plan::{Decision, Disk, Keep, Plan, Removal};
pub use records::{ImageInfo, Record, Records};
pub use runner::{Gc, Round, StatFs, node_reference, statvfs};

/// The thresholds of the collection, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Usage percent at or above which images are removed; 100 disables the collection.
    pub high: u8,
    /// Usage percent the collection aims to bring the disk down to.
    pub low: u8,
    /// Images first detected less than this ago are never removed.
    pub min_age: Duration,
}

impl Policy {
    /// Checks the thresholds as the kubelet: each within 0..=100, the low one not above the
    /// high one. The error names the flags.
    pub fn new(high: u8, low: u8, min_age: Duration) -> Result<Self, String> {
        if high > 100 {
            return Err(format!(
                "--image-gc-high-threshold must be within 0..=100, got {high}"
            ));
        }
        if low > 100 {
            return Err(format!(
                "--image-gc-low-threshold must be within 0..=100, got {low}"
            ));
        }
        if low > high {
            return Err(format!(
                "--image-gc-low-threshold ({low}) must not be higher than --image-gc-high-threshold ({high})"
            ));
        }
        Ok(Policy { high, low, min_age })
    }

    /// False when the high threshold is 100: the collection never runs.
    pub fn enabled(&self) -> bool {
        self.high < 100
    }
}

/// The sandbox image the runtime reports in its verbose status: containerd 1.x's
/// `config.sandboxImage`, or containerd 2's `config.pinnedImages.sandbox`.
pub fn sandbox_image_from_info(info: &std::collections::HashMap<String, String>) -> Option<String> {
    let config: serde_json::Value = serde_json::from_str(info.get("config")?).ok()?;
    [
        config.get("sandboxImage"),
        config.get("pinnedImages").and_then(|p| p.get("sandbox")),
    ]
    .into_iter()
    .flatten()
    .filter_map(|v| v.as_str())
    .find(|s| !s.is_empty())
    .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn thresholds_are_checked_as_the_kubelet() {
        let age = Duration::from_secs(120);
        assert!(Policy::new(85, 80, age).is_ok());
        assert!(Policy::new(80, 80, age).is_ok());
        let e = Policy::new(80, 85, age).expect_err("low above high");
        assert!(e.contains("--image-gc-low-threshold (85)"), "{e}");
        assert!(Policy::new(101, 80, age).is_err());
        assert!(Policy::new(90, 101, age).is_err());
        assert!(Policy::new(85, 80, age).is_ok_and(|p| p.enabled()));
        assert!(
            Policy::new(100, 80, age).is_ok_and(|p| !p.enabled()),
            "100 disables"
        );
    }

    #[test]
    fn sandbox_image_from_containerd_status() {
        let one = HashMap::from([(
            "config".to_string(),
            r#"{"sandboxImage":"10.213.0.1:5000/berth/pause:1","other":1}"#.to_string(),
        )]);
        assert_eq!(
            sandbox_image_from_info(&one).as_deref(),
            Some("10.213.0.1:5000/berth/pause:1")
        );
        let two = HashMap::from([(
            "config".to_string(),
            r#"{"pinnedImages":{"sandbox":"registry.k8s.io/pause:3.10"}}"#.to_string(),
        )]);
        assert_eq!(
            sandbox_image_from_info(&two).as_deref(),
            Some("registry.k8s.io/pause:3.10")
        );
        assert_eq!(sandbox_image_from_info(&HashMap::new()), None);
        let bad = HashMap::from([("config".to_string(), "not json".to_string())]);
        assert_eq!(sandbox_image_from_info(&bad), None);
    }
}
