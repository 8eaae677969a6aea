//! How tags map to object names, and how `STREAM:TAG` references are read.
//!
//! A tag may hold characters an object name may not (upper case, `_`), and a tag name may be up to 128
//! characters. The conventional ImageStreamTag object name is `STREAM.TAG` when that is a valid object name;
//! otherwise `STREAM.` followed by the tag lowered and cleaned, and 8 hex digits of the tag's SHA-256 so that
//! `Latest` and `latest` never collide. The controller never parses object names: it reads `spec.stream` and
//! `spec.tag`, so a hand-written ImageStreamTag may have any name.

use sha2::{Digest, Sha256};

use crate::validation::{is_dns_subdomain, is_oci_tag};

/// The conventional object name of the ImageStreamTag for `tag` of `stream`.
pub fn image_stream_tag_name(stream: &str, tag: &str) -> String {
    let plain = format!("{stream}.{tag}");
    if is_dns_subdomain(&plain) {
        return plain;
    }
    let cleaned: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let hash = hex::encode(&Sha256::digest(tag.as_bytes())[..4]);
    // 253 characters at most: stream, '.', cleaned tag, '-', 8 hex digits.
    let room = 253usize.saturating_sub(stream.len() + 1 + 1 + hash.len());
    let cleaned = cleaned.trim_matches('-');
    let cleaned = &cleaned[..cleaned.len().min(room)];
    if cleaned.is_empty() {
        format!("{stream}.{hash}")
    } else {
        format!("{stream}.{cleaned}-{hash}")
    }
}

/// A reference to a tag of a stream: `STREAM:TAG`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamTagRef {
    /// The stream's name.
    pub stream: String,
    /// The tag.
    pub tag: String,
}

/// Why a `STREAM:TAG` reference could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamTagRefError {
    /// No colon.
    #[error("{0:?} is not of the form STREAM:TAG")]
    MissingTag(String),
    /// The stream part is not an object name.
    #[error("{0:?} is not a valid image stream name (lowercase letters, digits, '-' and '.')")]
    InvalidStream(String),
    /// The tag part is not an OCI tag.
    #[error("{0:?} is not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")]
    InvalidTag(String),
}

impl std::str::FromStr for StreamTagRef {
    type Err = StreamTagRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (stream, tag) = s
            .split_once(':')
            .ok_or_else(|| StreamTagRefError::MissingTag(s.to_owned()))?;
        if !is_dns_subdomain(stream) {
            return Err(StreamTagRefError::InvalidStream(stream.to_owned()));
        }
        if !is_oci_tag(tag) {
            return Err(StreamTagRefError::InvalidTag(tag.to_owned()));
        }
        Ok(Self {
            stream: stream.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

impl std::fmt::Display for StreamTagRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.stream, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tags_keep_their_name() {
        assert_eq!(image_stream_tag_name("web", "v1.2"), "web.v1.2");
        assert_eq!(image_stream_tag_name("web", "latest"), "web.latest");
    }

    #[test]
    fn wide_tags_get_a_cleaned_name_with_a_hash() {
        let upper = image_stream_tag_name("web", "Latest");
        let lower = image_stream_tag_name("web", "latest");
        assert_ne!(upper, lower);
        assert!(upper.starts_with("web.latest-"), "{upper}");
        assert!(is_dns_subdomain(&upper));
        for tag in ["_", "__init__", "a_b", "X.", &"Z".repeat(128)] {
            let name = image_stream_tag_name(&"s".repeat(200), tag);
            assert!(is_dns_subdomain(&name), "{tag} -> {name}");
        }
    }

    #[test]
    fn stream_tag_refs() {
        let r: StreamTagRef = "web:v1".parse().unwrap();
        assert_eq!((r.stream.as_str(), r.tag.as_str()), ("web", "v1"));
        assert_eq!(r.to_string(), "web:v1");
        assert!(matches!(
            "web".parse::<StreamTagRef>(),
            Err(StreamTagRefError::MissingTag(_))
        ));
        assert!(matches!(
            "Web:v1".parse::<StreamTagRef>(),
            Err(StreamTagRefError::InvalidStream(_))
        ));
        assert!(matches!(
            "web:v 1".parse::<StreamTagRef>(),
            Err(StreamTagRefError::InvalidTag(_))
        ));
    }
}
