//! What the collection remembers of each image: when it was first detected and last seen in
//! use, as the kubelet's `imageRecords` (lost on restart; rebuilt from the runtime).

use std::collections::{HashMap, HashSet};

use crate::cri::api;

/// An image as the runtime lists it, in plain types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The runtime's image id (`sha256:...`).
    pub id: String,
    /// Its size in bytes.
    pub size: u64,
    /// The tags naming it (`registry/repo:tag`).
    pub tags: Vec<String>,
    /// The digests naming it (`registry/repo@sha256:...`).
    pub digests: Vec<String>,
    /// The runtime asks that it be kept.
    pub pinned: bool,
}

impl From<&api::Image> for ImageInfo {
    fn from(i: &api::Image) -> Self {
        ImageInfo {
            id: i.id.clone(),
            size: i.size,
            tags: i.repo_tags.clone(),
            digests: i.repo_digests.clone(),
            pinned: i.pinned,
        }
    }
}

/// When an image was first detected and last used, Unix nanoseconds (0: long ago, never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// First detection (0 for images present at the agent's first detection).
    pub first_detected: i64,
    /// The last detection that found it in use (0: never seen in use).
    pub last_used: i64,
}

/// The records of the images the runtime holds.
#[derive(Clone, Debug, Default)]
pub struct Records {
    by_id: HashMap<String, Record>,
    initialized: bool,
}

impl Records {
    /// Records a detection at `now`: new images are first detected now (at 0 on the first
    /// detection, "long ago", as the kubelet), images in `in_use` are last used now, and
    /// images the runtime no longer has are forgotten.
    pub fn detect(&mut self, images: &[ImageInfo], in_use: &HashSet<&str>, now: i64) {
        let detected = if self.initialized { now } else { 0 };
        self.initialized = true;
        for image in images {
            let r = self.by_id.entry(image.id.clone()).or_insert(Record {
                first_detected: detected,
                last_used: 0,
            });
            if in_use.contains(image.id.as_str()) {
                r.last_used = now;
            }
        }
        let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.by_id.retain(|id, _| present.contains(id.as_str()));
    }

    /// The record of image `id`.
    pub fn get(&self, id: &str) -> Option<Record> {
        self.by_id.get(id).copied()
    }

    /// Forgets a removed image.
    pub fn forget(&mut self, id: &str) {
        self.by_id.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            size: 1,
            tags: vec![],
            digests: vec![],
            pinned: false,
        }
    }

    #[test]
    fn first_detection_is_long_ago_then_now() {
        let mut r = Records::default();
        r.detect(&[image("a")], &HashSet::new(), 100);
        assert_eq!(r.get("a"), Some(Record::default()), "present at start: long ago");
        r.detect(&[image("a"), image("b")], &HashSet::from(["a"]), 200);
        assert_eq!(
            r.get("a"),
            Some(Record {
                first_detected: 0,
                last_used: 200
            })
        );
        assert_eq!(
            r.get("b"),
            Some(Record {
                first_detected: 200,
                last_used: 0
            })
        );
        r.detect(&[image("a"), image("b")], &HashSet::new(), 300);
        assert_eq!(
            r.get("a").map(|x| x.last_used),
            Some(200),
            "kept from its last use"
        );
    }

    #[test]
    fn images_gone_from_the_runtime_are_forgotten() {
        let mut r = Records::default();
        r.detect(&[image("a"), image("b")], &HashSet::new(), 1);
        r.detect(&[image("b")], &HashSet::new(), 2);
        assert_eq!(r.get("a"), None);
        r.forget("b");
        assert_eq!(r.get("b"), None);
    }
}
