//! The decision of one round: whether the image filesystem is over the high threshold, how
//! many bytes to free to reach the low one, and which images to remove for it, least recently
//! used first (the kubelet's `GarbageCollect` and `freeSpace`). Pure.

use std::collections::HashMap;
use std::time::Duration;

use super::Policy;
use super::records::{ImageInfo, Records};

/// The image filesystem's size and free space, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Its capacity.
    pub capacity: u64,
    /// The bytes available to unprivileged users.
    pub available: u64,
}

impl Disk {
    /// Used percent as the kubelet computes it, `100 - available * 100 / capacity` (integer
    /// division: 14.5% free is 86% used); `None` for a zero capacity.
    pub fn usage_percent(&self) -> Option<u8> {
        if self.capacity == 0 {
            return None;
        }
        let available = u128::from(self.available.min(self.capacity));
        let free = available * 100 / u128::from(self.capacity);
        Some(100 - u8::try_from(free).unwrap_or(100))
    }

    /// The bytes to free for usage to come down to `low` percent.
    pub fn to_free(&self, low: u8) -> u64 {
        let target = u128::from(self.capacity) * u128::from(100 - low.min(100)) / 100;
        let available = u128::from(self.available.min(self.capacity));
        u64::try_from(target.saturating_sub(available)).unwrap_or(u64::MAX)
    }
}

/// Why an image stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// It is the pod sandbox ("pause") image.
    Sandbox,
    /// The runtime pins it.
    Pinned,
    /// A container the runtime knows (in any state) refers to it.
    Container,
    /// A pod bound to this node names it.
    Pod,
    /// It was first detected less than the minimum age ago.
    TooYoung,
}

/// An image to remove, and why it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The image id.
    pub id: String,
    /// Its tags, for the log.
    pub tags: Vec<String>,
    /// The bytes removing it frees.
    pub size: u64,
    /// When it was last seen in use (Unix ns, 0: never since the agent started).
    pub last_used: i64,
    /// When it was first detected (Unix ns, 0: before the agent started).
    pub first_detected: i64,
}

/// What one round over the high threshold does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The usage that triggered it, percent.
    pub usage_percent: u8,
    /// The bytes to free to reach the low threshold.
    pub to_free: u64,
    /// The images to remove, in order: least recently used first, until their sizes add up
    /// to `to_free`.
    pub removals: Vec<Removal>,
    /// The other removable images in the same order, for when a removal fails.
    pub reserve: Vec<Removal>,
    /// The images kept, and why.
    pub kept: Vec<(String, Keep)>,
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The high threshold is 100: no collection.
    Disabled,
    /// The runtime reports a filesystem of capacity 0 (the kubelet's `InvalidDiskCapacity`).
    InvalidCapacity,
    /// Usage is below the high threshold: nothing to do.
    Below {
        /// The usage, percent.
        usage_percent: u8,
    },
    /// Usage is at or above the high threshold: free space.
    Free(Plan),
}

/// Decides a round: `images` as listed, `keep` the images in use ([`super::in_use`]),
/// `records` their detection times (images without a record count as detected `now`).
pub fn decide(
    policy: &Policy,
    disk: Disk,
    images: &[ImageInfo],
    keep: &HashMap<String, Keep>,
    records: &Records,
    now: i64,
) -> Decision {
    if !policy.enabled() {
        return Decision::Disabled;
    }
    let Some(usage_percent) = disk.usage_percent() else {
        return Decision::InvalidCapacity;
    };
    if usage_percent < policy.high {
        return Decision::Below { usage_percent };
    }
    let to_free = disk.to_free(policy.low);
    let min_age = i64::try_from(policy.min_age.as_nanos()).unwrap_or(i64::MAX);
    let mut kept = Vec::new();
    let mut candidates = Vec::new();
    for image in images {
        if let Some(why) = keep.get(&image.id) {
            kept.push((image.id.clone(), *why));
            continue;
        }
        let record = records.get(&image.id).unwrap_or(super::Record {
            first_detected: now,
            last_used: 0,
        });
        if now.saturating_sub(record.first_detected) < min_age {
            kept.push((image.id.clone(), Keep::TooYoung));
            continue;
        }
        candidates.push(Removal {
            id: image.id.clone(),
            tags: image.tags.clone(),
            size: image.size,
            last_used: record.last_used,
            first_detected: record.first_detected,
        });
    }
    candidates
        .sort_by(|a, b| (a.last_used, a.first_detected, &a.id).cmp(&(b.last_used, b.first_detected, &b.id)));
    let mut freed = 0u64;
    let split = candidates
        .iter()
        .position(|c| {
            if freed >= to_free {
                return true;
            }
            freed = freed.saturating_add(c.size);
            false
        })
        .unwrap_or(candidates.len());
    let reserve = candidates.split_off(split);
    Decision::Free(Plan {
        usage_percent,
        to_free,
        removals: candidates,
        reserve,
        kept,
    })
}

/// The minimum age as a readable duration, for logs.
pub fn age(now: i64, since: i64) -> Duration {
    Duration::from_nanos(u64::try_from(now.saturating_sub(since)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const S: i64 = 1_000_000_000;
    const NOW: i64 = 10_000 * S;

    fn policy() -> Policy {
        Policy::new(85, 80, Duration::from_secs(120)).expect("valid")
    }

    fn image(id: &str, size: u64) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            size,
            tags: vec![format!("r.test/{id}:1")],
            digests: vec![],
            pinned: false,
        }
    }

    /// Records where `used` images were last used at the given seconds, all present at start.
    fn records(images: &[ImageInfo], used: &[(&str, i64)]) -> Records {
        let mut r = Records::default();
        r.detect(images, &HashSet::new(), S);
        for (id, at) in used {
            r.detect(images, &HashSet::from([*id]), at * S);
        }
        r
    }

    fn disk(used_percent: u64) -> Disk {
        Disk {
            capacity: 1000,
            available: 1000 - used_percent * 10,
        }
    }

    fn ids(removals: &[Removal]) -> Vec<&str> {
        removals.iter().map(|r| r.id.as_str()).collect()
    }

    fn plan(d: Decision) -> Plan {
        match d {
            Decision::Free(p) => p,
            other => panic!("expected a plan, got {other:?}"),
        }
    }

    #[test]
    fn usage_and_amount_as_the_kubelet() {
        let d = Disk {
            capacity: 1000,
            available: 145,
        };
        assert_eq!(d.usage_percent(), Some(86), "14.5% free rounds down");
        assert_eq!(d.to_free(80), 55);
        assert_eq!(disk(70).to_free(80), 0);
        let over = Disk {
            capacity: 100,
            available: 200,
        };
        assert_eq!(over.usage_percent(), Some(0), "available is capped at capacity");
        let zero = Disk {
            capacity: 0,
            available: 0,
        };
        assert_eq!(zero.usage_percent(), None);
    }

    #[test]
    fn nothing_to_do_below_the_high_threshold() {
        let imgs = [image("a", 100)];
        let r = records(&imgs, &[]);
        let d = decide(&policy(), disk(84), &imgs, &HashMap::new(), &r, NOW);
        assert_eq!(d, Decision::Below { usage_percent: 84 });
    }

    #[test]
    fn the_high_threshold_itself_triggers() {
        let imgs = [image("a", 100)];
        let r = records(&imgs, &[]);
        let p = plan(decide(&policy(), disk(85), &imgs, &HashMap::new(), &r, NOW));
        assert_eq!((p.usage_percent, p.to_free), (85, 50));
        assert_eq!(ids(&p.removals), ["a"]);
    }

    #[test]
    fn a_high_threshold_of_100_disables() {
        let imgs = [image("a", 100)];
        let r = records(&imgs, &[]);
        let off = Policy::new(100, 80, Duration::ZERO).expect("valid");
        assert_eq!(
            decide(&off, disk(100), &imgs, &HashMap::new(), &r, NOW),
            Decision::Disabled
        );
    }

    #[test]
    fn zero_capacity_is_invalid() {
        let zero = Disk {
            capacity: 0,
            available: 0,
        };
        let r = Records::default();
        assert_eq!(
            decide(&policy(), zero, &[], &HashMap::new(), &r, NOW),
            Decision::InvalidCapacity
        );
    }

    #[test]
    fn least_recently_used_first_then_first_detected() {
        let imgs = [image("c", 10), image("a", 10), image("b", 10), image("d", 10)];
        // a and d never used (a listed first alphabetically, same detection), b used at 50 s, c at 20 s.
        let r = records(&imgs, &[("c", 20), ("b", 50)]);
        let p = plan(decide(&policy(), disk(100), &imgs, &HashMap::new(), &r, NOW));
        assert_eq!(ids(&p.removals), ["a", "d", "c", "b"]);
        assert_eq!(p.removals[2].last_used, 20 * S);
        assert!(p.reserve.is_empty());
    }

    #[test]
    fn stops_once_enough_is_freed_for_the_low_threshold() {
        let imgs = [image("a", 30), image("b", 30), image("c", 30)];
        let r = records(&imgs, &[("b", 10), ("c", 20)]);
        // 90% used of 1000: 100 bytes to free down to 80%: a (30), b (30), c (30) is 90, not
        // enough; with a, b, c each 60 two suffice.
        let big = [image("a", 60), image("b", 60), image("c", 60)];
        let p = plan(decide(&policy(), disk(90), &big, &HashMap::new(), &r, NOW));
        assert_eq!(p.to_free, 100);
        assert_eq!(ids(&p.removals), ["a", "b"]);
        assert_eq!(ids(&p.reserve), ["c"]);
        let p = plan(decide(&policy(), disk(90), &imgs, &HashMap::new(), &r, NOW));
        assert_eq!(ids(&p.removals), ["a", "b", "c"], "all, and still short");
    }

    #[test]
    fn images_in_use_and_the_sandbox_image_stay() {
        let imgs = [
            image("pause", 10),
            image("web", 10),
            image("next", 10),
            image("old", 10),
        ];
        let r = records(&imgs, &[]);
        let keep = HashMap::from([
            ("pause".to_string(), Keep::Sandbox),
            ("web".to_string(), Keep::Container),
            ("next".to_string(), Keep::Pod),
        ]);
        let p = plan(decide(&policy(), disk(100), &imgs, &keep, &r, NOW));
        assert_eq!(ids(&p.removals), ["old"]);
        assert!(p.kept.contains(&("pause".to_string(), Keep::Sandbox)));
        assert!(p.kept.contains(&("web".to_string(), Keep::Container)));
        assert!(p.kept.contains(&("next".to_string(), Keep::Pod)));
    }

    #[test]
    fn images_younger_than_the_minimum_age_stay() {
        let imgs = [image("old", 10)];
        let mut r = records(&imgs, &[]);
        let all = [image("old", 10), image("new", 10), image("unrecorded", 10)];
        // "new" first detected 60 s before now: younger than 2 minutes.
        r.detect(&all[..2], &HashSet::new(), NOW - 60 * S);
        let p = plan(decide(&policy(), disk(100), &all, &HashMap::new(), &r, NOW));
        assert_eq!(ids(&p.removals), ["old"]);
        assert!(p.kept.contains(&("new".to_string(), Keep::TooYoung)));
        assert!(p.kept.contains(&("unrecorded".to_string(), Keep::TooYoung)));
        // Three minutes later it may go.
        let p = plan(decide(
            &policy(),
            disk(100),
            &all[..2],
            &HashMap::new(),
            &r,
            NOW + 60 * S,
        ));
        assert_eq!(ids(&p.removals), ["old", "new"]);
    }
}
