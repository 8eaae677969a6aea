//! Image metadata (`status.image` of a tag): the manifest and config JSON of an image read into
//! [`ImageMetadata`], bounded so that a hostile image cannot bloat a status. Pure: the requests that fetch
//! them are in `fetch.rs`.
//!
//! Both Docker schema 2 (`application/vnd.docker.container.image.v1+json`) and OCI
//! (`application/vnd.oci.image.config.v1+json`) configs have the same shape for what is read here:
//! `created`, `architecture`, `os`, `variant`, and `config.User`, `config.ExposedPorts`, `config.Labels`
//! (each may be missing or `null`).

mod fetch;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};

use berth_api::image_metadata::{
    ImageMetadata, MAX_EXPOSED_PORTS, MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS, MAX_PLATFORMS,
    MAX_TEXT_BYTES, display_size,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use oci_client::manifest::OciImageIndex;
use serde::Deserialize;
use serde::de::IgnoredAny;

pub use fetch::{MAX_CONFIG_BYTES, MetadataError, MetadataRequest};

use super::platform;

/// A content descriptor of a manifest (config or layer).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// `sha256:...` of the blob.
    pub digest: String,
    /// Its size in bytes, as the manifest says.
    pub size: i64,
}

/// What an image manifest says about its blobs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageManifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub layers: Vec<Descriptor>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Descriptor>, D::Error> {
    Ok(Option::<Vec<Descriptor>>::deserialize(d)?.unwrap_or_default())
}

/// Reads an image manifest (not an index) for its config and layers.
pub fn parse_manifest(body: &[u8]) -> Result<ImageManifest, String> {
    let manifest: ImageManifest =
        serde_json::from_slice(body).map_err(|e| format!("the manifest does not parse ({e})"))?;
    if !berth_api::validation::is_sha256_digest(&manifest.config.digest) {
        return Err(format!(
            "the manifest's config digest {:?} is not a sha256 digest",
            cut(&manifest.config.digest, 80).0
        ));
    }
    if manifest.config.size < 0 || manifest.layers.iter().any(|l| l.size < 0) {
        return Err("the manifest gives a negative blob size".into());
    }
    Ok(manifest)
}

#[derive(Deserialize, Default)]
struct Config {
    created: Option<String>,
    architecture: Option<String>,
    os: Option<String>,
    variant: Option<String>,
    config: Option<RunConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, IgnoredAny>>,
    labels: Option<BTreeMap<String, serde_json::Value>>,
}

/// The metadata of the image manifest `digest` (of `media_type`), from its parsed manifest and the bytes of
/// its config blob (already checked against the manifest's config digest).
pub fn describe_image(
    digest: &str,
    media_type: &str,
    manifest: &ImageManifest,
    config: &[u8],
) -> Result<ImageMetadata, String> {
    let parsed: Config =
        serde_json::from_slice(config).map_err(|e| format!("the config blob does not parse ({e})"))?;
    let run = parsed.config.unwrap_or_default();
    let mut notes = Vec::new();
    let mut text = |value: Option<String>, what: &str| {
        value.filter(|v| !v.is_empty()).map(|v| {
            let (kept, was_cut) = cut(&v, MAX_TEXT_BYTES);
            if was_cut {
                notes.push(format!("{what} cut to {MAX_TEXT_BYTES} bytes"));
            }
            kept
        })
    };
    let architecture = text(parsed.architecture, "architecture");
    let os = text(parsed.os, "os");
    let variant = text(parsed.variant, "variant");
    let user = text(run.user, "user");
    let platform = match (&os, &architecture) {
        (Some(os), Some(arch)) => Some(match &variant {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        }),
        _ => None,
    };
    let size = image_size(manifest, config.len());
    let (labels, label_notes) = bound_labels(run.labels.unwrap_or_default());
    notes.extend(label_notes);
    let ports: Vec<String> = run.exposed_ports.unwrap_or_default().into_keys().collect();
    let exposed_ports = bound_list(ports, MAX_EXPOSED_PORTS, "exposed ports", &mut notes);
    Ok(ImageMetadata {
        digest: digest.to_owned(),
        media_type: Some(cut(media_type, MAX_TEXT_BYTES).0),
        created: parsed.created.as_deref().and_then(created),
        architecture,
        os,
        variant,
        platform,
        size: Some(size),
        display_size: Some(display_size(size)),
        layers: Some(u32::try_from(manifest.layers.len()).unwrap_or(u32::MAX)),
        labels,
        user,
        exposed_ports,
        platforms: Vec::new(),
        truncated: (!notes.is_empty()).then(|| notes.join("; ")),
        unreadable: None,
    })
}

/// The metadata of an index kept whole: its media type and the platforms it offers.
pub fn describe_index(digest: &str, media_type: &str, body: &[u8]) -> Result<ImageMetadata, String> {
    let index: OciImageIndex =
        serde_json::from_slice(body).map_err(|e| format!("the index does not parse ({e})"))?;
    let mut notes = Vec::new();
    let offered = platform::offered(&index.manifests)
        .into_iter()
        .map(|p| cut(&p, MAX_TEXT_BYTES).0)
        .collect();
    let platforms = bound_list(offered, MAX_PLATFORMS, "platforms", &mut notes);
    Ok(ImageMetadata {
        digest: digest.to_owned(),
        media_type: Some(cut(media_type, MAX_TEXT_BYTES).0),
        platforms,
        truncated: (!notes.is_empty()).then(|| notes.join("; ")),
        ..ImageMetadata::default()
    })
}

/// OpenShift's `dockerImageMetadata.Size`: the config's bytes and each distinct layer once (a layer with the
/// config's digest is not counted again).
pub fn image_size(manifest: &ImageManifest, config_bytes: usize) -> i64 {
    let mut seen = HashSet::from([manifest.config.digest.as_str()]);
    let layers: i64 = manifest
        .layers
        .iter()
        .filter(|l| seen.insert(l.digest.as_str()))
        .map(|l| l.size)
        .fold(0i64, i64::saturating_add);
    layers.saturating_add(i64::try_from(config_bytes).unwrap_or(i64::MAX))
}

/// A config's `created`: RFC 3339; Go's zero time (`0001-01-01T00:00:00Z`, what some builders write) and
/// what does not parse are left out.
fn created(value: &str) -> Option<Time> {
    let at: jiff::Timestamp = value.parse().ok()?;
    (at.as_second() > jiff::Timestamp::from_second(-62_135_596_800).ok()?.as_second()).then_some(Time(at))
}

/// At most [`MAX_LABELS`] labels (the first in key order), keys over [`MAX_LABEL_KEY_BYTES`] and values
/// that are not strings left out, values cut at [`MAX_LABEL_VALUE_BYTES`]; and what was done, said.
fn bound_labels(labels: BTreeMap<String, serde_json::Value>) -> (BTreeMap<String, String>, Vec<String>) {
    let total = labels.len();
    let mut kept = BTreeMap::new();
    let mut cut_values = 0usize;
    for (key, value) in labels {
        let serde_json::Value::String(value) = value else {
            continue;
        };
        if key.is_empty() || key.len() > MAX_LABEL_KEY_BYTES {
            continue;
        }
        if kept.len() == MAX_LABELS {
            continue;
        }
        let (value, was_cut) = cut(&value, MAX_LABEL_VALUE_BYTES);
        cut_values += usize::from(was_cut);
        kept.insert(key, value);
    }
    let mut notes = Vec::new();
    let left_out = total - kept.len();
    if left_out > 0 {
        notes.push(format!(
            "{left_out} of {total} labels left out (at most {MAX_LABELS} kept, keys up to {MAX_LABEL_KEY_BYTES} \
             bytes, string values only)"
        ));
    }
    if cut_values > 0 {
        notes.push(format!(
            "{cut_values} label values cut to {MAX_LABEL_VALUE_BYTES} bytes"
        ));
    }
    (kept, notes)
}

/// The first `max` of `items` (each cut to [`MAX_TEXT_BYTES`]), noting what was left out.
fn bound_list(items: Vec<String>, max: usize, what: &str, notes: &mut Vec<String>) -> Vec<String> {
    let total = items.len();
    if total > max {
        notes.push(format!("{} of {total} {what} left out", total - max));
    }
    items
        .into_iter()
        .take(max)
        .map(|i| cut(&i, MAX_TEXT_BYTES).0)
        .collect()
}

/// `value` cut to at most `max` bytes at a character boundary, ending with `...` when cut; and whether it
/// was.
fn cut(value: &str, max: usize) -> (String, bool) {
    if value.len() <= max {
        return (value.to_owned(), false);
    }
    let mut end = max.saturating_sub(3);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}...", &value[..end]), true)
}
