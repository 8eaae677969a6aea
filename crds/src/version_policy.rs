//! Version policies: a tag that follows the newest tag of a repository that a policy admits, in the shape of
//! Flux's ImagePolicy (`semver.range`, `numerical.order`, `alphabetical.order`, `filterTags.pattern` and
//! `.extract`), with `exclude` as Argo CD Image Updater's and Keel's ignore lists. Set under a tag's
//! `importPolicy.versionPolicy`; the tag's `from.name` then names a repository without a tag.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::compat::null_as_default;

/// Which tag of the repository in `from.name` this tag follows: the newest tag the policy admits, listed from
/// the registry on every import. Set exactly one of `semver`, `numerical` or `alphabetical`; `filterTags` and
/// `exclude` narrow the tags first. The chosen tag and why are shown in `status.chosenTag` and in the
/// `ImportSuccess` message; a policy that does not parse fails the import with reason `InvalidVersionPolicy`,
/// and a repository without a matching tag with `NoMatchingTag`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionPolicy {
    /// The highest semantic version within a range. A leading `v` (`v1.2.3`) is ignored, and a partial
    /// version (`1.2`, `1`) reads as `1.2.0`, `1.0.0`. Pre-releases (`1.3.0-rc.1`) are chosen only when the
    /// range names one (`>=1.3.0-0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemverPolicy>,

    /// The highest number: the tag (or `filterTags.extract`) read as numbers separated by `.`, `-` or `_`,
    /// compared one by one (`2024.01.15`, `24.04`, `2023-10-01`, `1700000000`, `1.10` above `1.9`). A
    /// leading `v` is ignored; tags of anything else are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<OrderPolicy>,

    /// The last tag (or `filterTags.extract`) in alphabetical order (byte order): for sortable names such as
    /// `RELEASE.2024-01-15T10-00-00Z` or `main-20240115-1200`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<OrderPolicy>,

    /// Only tags matching a regular expression are considered, ordered by what it extracts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<TagFilter>,

    /// Tags matching any of these regular expressions (searched anywhere in the tag, `^...$` to match all of
    /// it) are never chosen, e.g. `-rc`, `^latest$`, `-debug$`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 32), extend("nullable" = true))]
    pub exclude: Vec<String>,
}

/// A semantic version range.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SemverPolicy {
    /// The range, as Masterminds/semver (Flux, Helm) writes it: comparators separated by spaces or commas
    /// must all hold (`>=1.2.0 <2.0.0`, `>=1.2, <2`), `||` separates alternatives (`~1.2 || ^2`), `1.2 - 1.4`
    /// is a hyphen range; `=`, `>`, `>=`, `<`, `<=`, `~1.2` (same minor), `^1.2` (same major), `1.x`, `1.2.*`,
    /// `*`; a bare version is exact (`1.2.3`) or a wildcard when partial (`1.2` is `1.2.x`). `!=` is not
    /// supported: use `exclude`.
    #[schemars(length(min = 1, max = 256))]
    pub range: String,
}

/// An order for `numerical` and `alphabetical`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct OrderPolicy {
    /// `asc` (the default): the last in ascending order, the highest, is chosen; `desc`: the lowest is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<SortOrder>,
}

/// `asc` (the default): the last in ascending order, the highest, is chosen; `desc`: the lowest is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Ascending order, the last (highest) is chosen.
    #[default]
    Asc,
    /// Descending order, the last (lowest) is chosen.
    Desc,
}

/// A regular expression that tags must match, and what it extracts for ordering.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TagFilter {
    /// A regular expression (Rust `regex` syntax: RE2-like, no look-around) searched in each tag; tags
    /// without a match are skipped. Anchor it (`^...$`) to match the whole tag. Named groups are written
    /// `(?P<name>...)` or `(?<name>...)`.
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: String,

    /// What the policy orders by instead of the whole tag: a template of the pattern's groups, `$name`,
    /// `${name}` or `$1` (e.g. `$ts` for `^main-[a-f0-9]+-(?P<ts>[0-9]+)$`). Default: the whole tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub extract: Option<String>,
}
