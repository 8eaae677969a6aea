//! `image.berth.dev/v1alpha1`: ImageStream and ImageStreamTag.
//!
//! The shapes follow OpenShift's `image.openshift.io/v1` (TagReference, TagEvent, tag conditions), so YAML
//! written for OpenShift reads naturally here; only the `apiVersion` differs. Where OpenShift defaults a
//! field, its `null` and empty values are accepted too (see `compat.rs`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::compat::{defaulted_enum, empty_as_none, null_as_default};
pub use crate::image_metadata::ImageMetadata;
use crate::version_policy::VersionPolicy;

/// The API group of ImageStream and ImageStreamTag.
pub const GROUP: &str = "image.berth.dev";

/// The condition type that says whether a tag's last import worked.
pub const IMPORT_SUCCESS: &str = "ImportSuccess";

/// The annotation that asks for an import now when set to a new value; the registry webhook sets it too.
pub const IMPORT_REQUESTED_ANNOTATION: &str = "image.berth.dev/import-requested";

/// The annotation `kubectl berth rollback` sets on a tag it pins to an earlier digest: the JSON of the
/// `spec.from` the tag followed before (a [`TagSource`]). The controller names it in the `ImportSuccess` message;
/// `kubectl berth tag` back to a source removes it.
pub const ROLLED_BACK_FROM_ANNOTATION: &str = "image.berth.dev/rolled-back-from";

/// The label the controller puts on the ImageStreamTags it materialises from a stream's inline tags.
pub const STREAM_LABEL: &str = "image.berth.dev/stream";

/// The history kept per tag when the stream does not say.
pub const DEFAULT_HISTORY_LIMIT: u32 = 10;

/// The tags of a stream and how they are looked up. Inline `tags` are materialised by the controller as
/// ImageStreamTags owned by the stream.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "image.berth.dev",
    version = "v1alpha1",
    kind = "ImageStream",
    plural = "imagestreams",
    shortname = "is",
    category = "berth",
    namespaced,
    status = "ImageStreamStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A named set of image tags, each resolved to an immutable digest with its history.",
    printcolumn(name = "Tags", type_ = "integer", json_path = ".status.tagCount"),
    printcolumn(name = "Resolved", type_ = "integer", json_path = ".status.resolvedTags"),
    printcolumn(name = "Updated", type_ = "date", json_path = ".status.lastUpdated"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamSpec {
    /// How workloads in this namespace may refer to the stream's tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_policy: Option<ImageLookupPolicy>,

    /// Tags defined inline. Each becomes an ImageStreamTag owned by this stream; removing it here removes that
    /// ImageStreamTag. A tag may instead be its own ImageStreamTag object (not both).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 1000), extend("nullable" = true))]
    pub tags: Vec<TagReference>,

    /// How many earlier digests each tag of this stream keeps in its history (newest first). Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub history_limit: Option<u32>,
}

/// Whether the stream's tags may be named by their short name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ImageLookupPolicy {
    /// When true, a container in this namespace whose `image` is `STREAM:TAG` runs the tag's current digest.
    /// Default false.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schemars(extend("nullable" = true))]
    pub local: bool,
}

/// A tag of an ImageStream, in the shape of OpenShift's TagReference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagReference {
    /// The tag, as it appears in image references: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"))]
    pub name: String,

    /// Free-form annotations of the tag (OpenShift uses them for display names and descriptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,

    /// Where the tag's image comes from. Without it the tag is empty until set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<TagSource>,

    /// When true, the reference is recorded as given without contacting a registry.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    #[schemars(extend("nullable" = true))]
    pub reference: bool,

    /// Accepted for compatibility with OpenShift manifests, which write the generation the tag was last set
    /// at. Berth tracks generations on the ImageStreamTag object instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,

    /// How the tag is imported from its registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_policy: Option<TagImportPolicy>,

    /// How pods that use the tag refer to the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_policy: Option<TagReferencePolicy>,
}

/// The source of a tag's image.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TagSource {
    /// What `name` names: `DockerImage` (a registry reference, `REPO:TAG` or `REPO@sha256:...` for a pinned
    /// digest), `ImageStreamTag` (another tag, `STREAM:TAG`, followed as an alias) or `ImageStreamImage`
    /// (`STREAM@sha256:...`, a digest already known to a stream).
    pub kind: SourceKind,

    /// The reference, in the form `kind` asks for.
    #[schemars(regex(pattern = r"^\S+$"), length(min = 1, max = 512))]
    pub name: String,

    /// The namespace of the stream, for `ImageStreamTag` and `ImageStreamImage`. Defaults (also when empty) to
    /// the tag's own.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(regex(pattern = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$"))]
    pub namespace: Option<String>,
}

/// The kinds of source a tag can follow.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum SourceKind {
    /// A registry reference.
    #[default]
    DockerImage,
    /// Another tag of an image stream.
    ImageStreamTag,
    /// A digest of an image stream.
    ImageStreamImage,
}

/// How a tag is imported.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagImportPolicy {
    /// Re-import periodically (the controller's interval, 15 minutes by default) to notice a moved tag.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    #[schemars(extend("nullable" = true))]
    pub scheduled: bool,

    /// Allow plain HTTP or an unverified TLS certificate for this registry. Off unless set.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    #[schemars(extend("nullable" = true))]
    pub insecure: bool,

    /// For a multi-platform image index: `Legacy` resolves one platform's manifest (linux/amd64 unless the
    /// controller is configured otherwise); `PreserveOriginal` keeps the index digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_mode: Option<ImportMode>,

    /// Follow the newest tag of a repository that a policy admits (a semver range, or a numerical or
    /// alphabetical order, with filters and exclusions) instead of one tag: `from` is then a `DockerImage`
    /// naming a repository without a tag (`quay.io/org/app`). Tags are listed from the registry on each
    /// import (with `scheduled`, or on a push of a tag the policy admits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_policy: Option<VersionPolicy>,
}

/// What an image index resolves to. `""` reads as `Legacy`, as in OpenShift.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImportMode {
    /// One platform's manifest.
    #[default]
    Legacy,
    /// The index itself.
    PreserveOriginal,
}

defaulted_enum!(ImportMode {
    Legacy,
    PreserveOriginal
});

/// How pods refer to the tag's image.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TagReferencePolicy {
    /// `Source` (the default, also when empty) pulls from the registry the image came from; `Local` is accepted
    /// for OpenShift compatibility and currently behaves as `Source` (Berth runs no integrated registry).
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: ReferencePolicyType,
}

/// Where pods pull a tag's image from. `""` reads as `Source`, as in OpenShift.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReferencePolicyType {
    /// The source registry.
    #[default]
    Source,
    /// The cluster's registry (treated as `Source`).
    Local,
}

defaulted_enum!(ReferencePolicyType { Source, Local });

/// What the controller observed of a stream's tags.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamStatus {
    /// How many tags the stream has (inline and standalone).
    #[serde(default)]
    pub tag_count: u32,

    /// How many of them have a digest.
    #[serde(default)]
    pub resolved_tags: u32,

    /// When a tag of the stream last moved to another digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<Time>,

    /// One line per tag, sorted by tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagSummary>,

    /// Conditions of the stream, such as `TagConflict` when a tag is defined both inline and on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A tag in a stream's status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagSummary {
    /// The tag.
    pub tag: String,
    /// The tag's current pull spec, `REPO@sha256:...`, when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_spec: Option<String>,
    /// The reason of the tag's `ImportSuccess` condition when it is not `True`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// Which tag of which stream this is, and where its image comes from. The object's name need not equal the tag
/// (object names are lowercase DNS names, tags are wider): `stream` and `tag` are authoritative, and the
/// conventional name is `STREAM.TAG` (see the README).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "image.berth.dev",
    version = "v1alpha1",
    kind = "ImageStreamTag",
    plural = "imagestreamtags",
    shortname = "istag",
    category = "berth",
    namespaced,
    status = "ImageStreamTagStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "One tag of one image stream: where it comes from, the digest it resolved to, and its history.",
    printcolumn(name = "Stream", type_ = "string", json_path = ".spec.stream"),
    printcolumn(name = "Tag", type_ = "string", json_path = ".spec.tag"),
    printcolumn(name = "Digest", type_ = "string", json_path = ".status.shortDigest"),
    printcolumn(
        name = "Imported",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ImportSuccess\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ImportSuccess\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Chosen",
        type_ = "string",
        json_path = ".status.chosenTag",
        priority = 1
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".status.pullSpec",
        priority = 1
    ),
    printcolumn(
        name = "Platform",
        type_ = "string",
        json_path = ".status.image.platform",
        priority = 1
    ),
    printcolumn(
        name = "Size",
        type_ = "string",
        json_path = ".status.image.displaySize",
        priority = 1
    ),
    printcolumn(
        name = "Created",
        type_ = "date",
        json_path = ".status.image.created",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamTagSpec {
    /// The ImageStream this tag belongs to, in the same namespace.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub stream: String,

    /// The tag, as it appears in image references: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"))]
    pub tag: String,

    /// Free-form annotations of the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,

    /// Where the image comes from: a registry reference, another tag (an alias), or a pinned digest.
    pub from: TagSource,

    /// When true, the reference is recorded as given without contacting a registry.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    #[schemars(extend("nullable" = true))]
    pub reference: bool,

    /// How the tag is imported from its registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_policy: Option<TagImportPolicy>,

    /// How pods that use the tag refer to the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_policy: Option<TagReferencePolicy>,
}

/// What the controller resolved for a tag.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamTagStatus {
    /// The digest the tag resolves to now, `sha256:<64 hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[a-f0-9]{64}$"))]
    pub digest: Option<String>,

    /// The first 12 hex digits of `digest`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_digest: Option<String>,

    /// What a container runs for this tag: `REPO@sha256:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_spec: Option<String>,

    /// The tag of the repository that `importPolicy.versionPolicy` chose (the `ImportSuccess` message says
    /// why); absent without a version policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_tag: Option<String>,

    /// The `metadata.generation` of this object that the current status answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// When an import last changed this status. Imports that find nothing new write nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_import_time: Option<Time>,

    /// The value of the `image.berth.dev/import-requested` annotation that the last import answered. Setting
    /// the annotation to a new value (any string, a timestamp is conventional) asks for an import now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_import_request: Option<String>,

    /// What the current image is (platform, created, size, layers, labels, user, exposed ports), read from its
    /// manifest and config once per digest; absent until read, and when the registry could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageMetadata>,

    /// The digests the tag has pointed at, newest first, one entry per change, at most the stream's history
    /// limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<TagEvent>,

    /// `ImportSuccess`: whether the last import worked, with a reason (`Imported`, `NotFound`, `Unauthorized`,
    /// `RateLimited`, `InvalidReference`, `RegistryUnavailable`, `DigestMismatch`, ...) and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One digest a tag has pointed at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagEvent {
    /// When the tag moved to this digest.
    pub created: Time,
    /// The digest, `sha256:<64 hex>`.
    #[schemars(regex(pattern = r"^sha256:[a-f0-9]{64}$"))]
    pub digest: String,
    /// The pull spec, `REPO@sha256:...`.
    pub pull_spec: String,
    /// The tag a version policy had chosen, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The object generation that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

// The patterns above are literal because schemars' attributes need literals; these tests keep them in step
// with the named constants that the controller uses for the same checks.
#[cfg(test)]
mod tests {
    #[test]
    fn schema_patterns_match_the_validation_constants() {
        let crd = serde_json::to_string(&<super::ImageStreamTag as kube::CustomResourceExt>::crd()).unwrap();
        use crate::validation::{DNS_SUBDOMAIN, OCI_TAG, REFERENCE};
        for pattern in [OCI_TAG, DNS_SUBDOMAIN, REFERENCE] {
            let escaped = serde_json::to_string(pattern).unwrap();
            assert!(
                crd.contains(escaped.trim_matches('"')),
                "CRD lacks pattern {pattern}"
            );
        }
    }
}
