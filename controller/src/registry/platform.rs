//! Choosing one platform's manifest from an image index (OCI) or manifest list (Docker).
//!
//! The index types come from `oci-client`. Its own resolvers (`linux_amd64_resolver`, …) are fixed
//! functions without variants, and report "no match" as a bare `None`; Berth needs a configurable platform,
//! arm variants, and the list of what the index offers for the error message, hence this small selector.

use std::fmt;
use std::str::FromStr;

use oci_client::manifest::ImageIndexEntry;

/// An OS, architecture and optional variant, written `linux/amd64` or `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// GOOS-style operating system, e.g. `linux`.
    pub os: String,
    /// GOARCH-style architecture, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v7` for arm, `v8` for arm64.
    pub variant: Option<String>,
}

impl Default for Platform {
    /// `linux/amd64`.
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A platform string that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform {0:?} is not os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8")]
pub struct InvalidPlatform(String);

impl FromStr for Platform {
    type Err = InvalidPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if [os, arch].iter().all(valid) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if [os, arch, variant].iter().all(valid) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(InvalidPlatform(s.to_string())),
        }
    }
}

impl Platform {
    /// The platform an index entry is for, if it says.
    pub fn of(entry: &ImageIndexEntry) -> Option<Self> {
        let p = entry.platform.as_ref()?;
        Some(Self {
            os: p.os.to_string(),
            architecture: p.architecture.to_string(),
            variant: p.variant.clone(),
        })
    }

    /// The variant, with arm64's implied `v8` made explicit.
    fn normalised_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            (_, v) => v,
        }
    }

    /// Whether an entry for `candidate` can run here: same OS and architecture, and the same variant
    /// when this platform names one.
    pub fn accepts(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && (self.variant.is_none() || self.normalised_variant() == candidate.normalised_variant())
    }

    /// The first entry of `entries` this platform accepts.
    pub fn select<'a>(&self, entries: &'a [ImageIndexEntry]) -> Option<&'a ImageIndexEntry> {
        entries
            .iter()
            .find(|e| Platform::of(e).is_some_and(|p| self.accepts(&p)))
    }
}

/// The platforms an index offers, for messages (`unknown/unknown` attestation entries left out).
pub fn offered(entries: &[ImageIndexEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(Platform::of)
        .filter(|p| p.os != "unknown")
        .map(|p| p.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: &str, digest: &str) -> ImageIndexEntry {
        let json = match platform.split('/').collect::<Vec<_>>().as_slice() {
            [os, arch] => format!(r#"{{"os":"{os}","architecture":"{arch}"}}"#),
            [os, arch, v] => format!(r#"{{"os":"{os}","architecture":"{arch}","variant":"{v}"}}"#),
            _ => unreachable!(),
        };
        serde_json::from_str(&format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":1,
                "platform":{json}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(Platform::default().to_string(), "linux/amd64");
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "arm64", Some("v8"))
        );
        assert_eq!(p.to_string(), "linux/arm64/v8");
        for bad in ["", "linux", "linux/", "/amd64", "linux/amd64/v1/x", "linux amd64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn selection_with_variants() {
        let entries = [
            entry("unknown/unknown", "sha256:att"),
            entry("linux/arm/v6", "sha256:armv6"),
            entry("linux/arm/v7", "sha256:armv7"),
            entry("linux/arm64", "sha256:arm64"),
            entry("linux/amd64", "sha256:amd64"),
        ];
        let pick = |p: &str| {
            p.parse::<Platform>()
                .unwrap()
                .select(&entries)
                .map(|e| e.digest.as_str())
        };
        assert_eq!(pick("linux/amd64"), Some("sha256:amd64"));
        assert_eq!(pick("linux/arm/v7"), Some("sha256:armv7"));
        assert_eq!(pick("linux/arm"), Some("sha256:armv6"));
        assert_eq!(pick("linux/arm64/v8"), Some("sha256:arm64"));
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(pick("windows/amd64"), None);
        assert_eq!(
            offered(&entries),
            ["linux/arm/v6", "linux/arm/v7", "linux/arm64", "linux/amd64"]
        );
    }
}
