//! What Berth needs to know about a manifest's bytes: its digest, and whether it is an image manifest or an
//! index (or a Docker manifest list), checked without trusting the registry's word.

use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::Digest as _;

/// The largest manifest Berth reads: the distribution spec lets registries refuse manifests over 4 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The media types asked for, in `Accept`: OCI manifest and index, Docker schema 2 manifest and list.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                          application/vnd.docker.distribution.manifest.list.v2+json, \
                          application/vnd.docker.distribution.manifest.v2+json";

/// `sha256:` + hex of the SHA-256 of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Whether a media type names an index (OCI) or manifest list (Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_IMAGE_INDEX_MEDIA_TYPE || media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

/// Whether a media type is one of the four Berth resolves.
pub fn is_known(media_type: &str) -> bool {
    is_index(media_type) || media_type == OCI_IMAGE_MEDIA_TYPE || media_type == IMAGE_MANIFEST_MEDIA_TYPE
}

/// The media type of a `Content-Type` value, without parameters.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<Vec<IgnoredAny>>,
    config: Option<IgnoredAny>,
}

/// Checks that `body` is a schema 2 manifest or index and returns its media type: the `mediaType` field,
/// else the `Content-Type` if it is a known type, else what the fields say (OCI allows leaving it out).
pub fn classify(body: &[u8], content_type: Option<&str>) -> Result<String, String> {
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| format!("it is not a JSON manifest ({e})"))?;
    match probe.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(
                "it is a Docker schema 1 manifest, deprecated and not supported; push the image again \
                        with a current client"
                    .into(),
            );
        }
        other => return Err(format!("schemaVersion is {other:?}, expected 2")),
    }
    let media_type = match (
        probe.media_type,
        content_type.map(essence).filter(|t| is_known(t)),
    ) {
        (Some(declared), _) => declared,
        (None, Some(header)) => header.to_string(),
        (None, None) if probe.manifests.is_some() => OCI_IMAGE_INDEX_MEDIA_TYPE.to_string(),
        (None, None) => OCI_IMAGE_MEDIA_TYPE.to_string(),
    };
    if !is_known(&media_type) {
        return Err(format!(
            "media type {media_type:?} is not an image manifest, image index or manifest list"
        ));
    }
    if is_index(&media_type) && probe.manifests.is_none() {
        return Err(format!("it says {media_type} but has no \"manifests\""));
    }
    if !is_index(&media_type) && probe.config.is_none() {
        return Err(format!("it says {media_type} but has no \"config\""));
    }
    Ok(media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn classification() {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(classify(manifest, None).unwrap(), OCI_IMAGE_MEDIA_TYPE);
        let bare_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(classify(bare_index, None).unwrap(), OCI_IMAGE_INDEX_MEDIA_TYPE);
        let list = br#"{"schemaVersion":2,"manifests":[{}]}"#;
        assert_eq!(
            classify(
                list,
                Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8")
            )
            .unwrap(),
            IMAGE_MANIFEST_LIST_MEDIA_TYPE
        );
        for (bad, problem) in [
            (&b"{not json"[..], "not a JSON manifest"),
            (br#"{"schemaVersion":1,"fsLayers":[]}"#, "schema 1"),
            (
                br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}"#,
                "schemaVersion is None",
            ),
            (
                br#"{"schemaVersion":2,"mediaType":"text/html","config":{}}"#,
                "\"text/html\" is not",
            ),
            (
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
                "no \"manifests\"",
            ),
            (br#"{"schemaVersion":2,"layers":[]}"#, "no \"config\""),
        ] {
            let e = classify(bad, None).unwrap_err();
            assert!(e.contains(problem), "{e}");
        }
    }
}
