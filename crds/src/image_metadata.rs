//! What a tag's image is, read once per digest from its manifest and config: `status.image` of an
//! ImageStreamTag, in the spirit of OpenShift's `Image.dockerImageMetadata` (shown by `oc describe isimage`).
//!
//! The values come from a registry, that is from whoever pushed the image: every string and list is bounded
//! ([`MAX_LABELS`], [`MAX_LABEL_KEY_BYTES`], [`MAX_LABEL_VALUE_BYTES`], ...), and what was cut is said in
//! [`ImageMetadata::truncated`], so a hostile image cannot bloat the tag's status.

use crate::compat::null_as_default;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most labels kept (the first in key order).
pub const MAX_LABELS: usize = 64;
/// Label keys longer than this are left out.
pub const MAX_LABEL_KEY_BYTES: usize = 253;
/// Label values longer than this are cut (at a character boundary) and end with `...`.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// The most exposed ports kept.
pub const MAX_EXPOSED_PORTS: usize = 32;
/// The most platforms of an index kept.
pub const MAX_PLATFORMS: usize = 32;
/// The longest short text kept (user, architecture, OS, variant, media type, each port and platform).
pub const MAX_TEXT_BYTES: usize = 256;

/// What the tag's current image is: its platform, creation time, size, layers, labels, user and ports, read
/// from the image's manifest and config blob when the tag moved to `digest` (never again for the same
/// digest).
///
/// For an index kept whole (`importMode: PreserveOriginal`) there is no single config: only `mediaType` and
/// `platforms` (what the index offers) are recorded; no size, layers, labels, user or ports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageMetadata {
    /// The digest this describes: the tag's `status.digest` when it was read.
    #[schemars(regex(pattern = r"^sha256:[a-f0-9]{64}$"))]
    pub digest: String,

    /// The manifest's media type (OCI or Docker schema 2 image manifest, OCI index or Docker manifest list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,

    /// When the image was built, as its config says (`created`); absent when the config does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,

    /// The CPU architecture the image is built for (`amd64`, `arm64`, ...), from its config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,

    /// The operating system the image is built for (`linux`, `windows`), from its config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,

    /// The CPU variant (`v7`, `v8`), from its config, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,

    /// `os/architecture[/variant]`, for `kubectl get -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,

    /// The image's size in bytes as OpenShift computes `dockerImageMetadata.Size`: the config blob's size
    /// plus the compressed size of each distinct layer, as the manifest lists them (what a pull downloads at
    /// most; layers shared with other images count fully).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,

    /// `size` for people (`2.9MiB`), for `kubectl get -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_size: Option<String>,

    /// How many layers the manifest lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<u32>,

    /// The image's labels (`config.Labels`), at most 64, long values cut (see `truncated`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub labels: BTreeMap<String, String>,

    /// The user the image runs as (`config.User`: a name or `UID[:GID]`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,

    /// The ports the image declares (`config.ExposedPorts`), as `PORT/PROTOCOL`, sorted, at most 32.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub exposed_ports: Vec<String>,

    /// For an index kept whole: the platforms it offers (`os/architecture[/variant]`, attestation entries
    /// left out), at most 32.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub platforms: Vec<String>,

    /// What was left out or cut to keep the status small, when anything was (`3 of 70 labels left out (at
    /// most 64 kept)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,

    /// Why the metadata could not be read for this digest (a config blob over the size limit or whose bytes
    /// do not match its digest, JSON that does not parse), when it could not; it is not tried again for this
    /// digest. A registry that is down or rate limiting leaves no `image` at all and the next import tries
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl ImageMetadata {
    /// Metadata of `digest` that could not be read, and why.
    pub fn unreadable(digest: &str, why: String) -> Self {
        Self {
            digest: digest.to_owned(),
            unreadable: Some(why),
            ..Self::default()
        }
    }
}

/// A byte count for people, in binary units (`512B`, `2.9KiB`, `130MiB`, `1.2GiB`), as `docker images` and
/// `oc describe` print sizes.
pub fn display_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(display_size(0), "0B");
        assert_eq!(display_size(1023), "1023B");
        assert_eq!(display_size(1024), "1.0KiB");
        assert_eq!(display_size(3_000_000), "2.9MiB");
        assert_eq!(display_size(136_000_000), "130MiB");
        assert_eq!(display_size(1_300_000_000), "1.2GiB");
    }
}
