//! Which tag of a repository a tag with `importPolicy.versionPolicy` follows: a pure function of the tags the
//! registry listed and the policy. [`Policy::compile`] checks the policy (ranges, regular expressions, the
//! extract template) and says which field is wrong; [`Policy::choose`] picks the tag and says why, or why
//! none; [`Policy::admits`] tells the webhook whether a pushed tag could be chosen.

mod range;
#[cfg(test)]
mod tests;

use berth_api::image::{ImageStreamTag, SourceKind};
use berth_api::validation::{is_oci_tag, is_registry_host};
use berth_api::version_policy::{SortOrder, VersionPolicy};
use regex::{Regex, RegexBuilder};
use semver::Version;

use super::source::Source;
use super::status::Outcome;
use crate::registry::ImageReference;

pub use range::{Range, parse_version};

/// The `ImportSuccess` reason of a policy that does not parse.
pub const REASON_INVALID: &str = "InvalidVersionPolicy";
/// The `ImportSuccess` reason when no listed tag is admitted.
pub const REASON_NO_MATCH: &str = "NoMatchingTag";

/// The largest compiled regular expression (bytes of the automaton), so a pattern cannot make the
/// controller build a huge one.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A policy that does not parse: the field (under `importPolicy.versionPolicy`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("importPolicy.versionPolicy{field}: {problem}")]
pub struct InvalidPolicy {
    /// `.semver.range`, `.filterTags.pattern`, `.exclude[2]`, ... (empty for the policy as a whole).
    pub field: String,
    /// What is wrong and how to write it.
    pub problem: String,
}

fn invalid(field: &str, problem: impl Into<String>) -> InvalidPolicy {
    InvalidPolicy {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// The source of a tag with a version policy: the repository to list, or why the tag cannot have one.
/// `None` without a policy, and for a `DockerImage` pinned by digest (`kubectl berth rollback` pins so): the
/// pin wins until it is removed.
pub fn source(tag: &ImageStreamTag) -> Option<Source> {
    let policy = tag.spec.import_policy.as_ref()?.version_policy.as_ref()?;
    let from = &tag.spec.from;
    let refuse = |message: String| {
        Some(Source::Known(Outcome::Failed {
            reason: REASON_INVALID.to_owned(),
            message,
        }))
    };
    if from.kind != SourceKind::DockerImage {
        return refuse(format!(
            "importPolicy.versionPolicy needs from.kind DockerImage naming a repository (quay.io/org/app), not \
             {:?}; remove the policy or point from at a repository",
            from.kind
        ));
    }
    if from.name.contains('@') {
        return None;
    }
    if tag.spec.reference {
        return refuse(
            "importPolicy.versionPolicy chooses a tag from the registry, which `reference: true` forbids \
             contacting; remove one of them"
                .to_owned(),
        );
    }
    let last = from.name.rsplit('/').next().unwrap_or_default();
    let first = from.name.split('/').next().unwrap_or_default();
    if last.contains(':') && !(first == last && is_registry_host(first)) {
        let repository = &from.name[..from.name.rfind(':').unwrap_or(from.name.len())];
        return refuse(format!(
            "from.name {:?} names a tag, but with importPolicy.versionPolicy the policy chooses the tag: write \
             the repository alone ({repository})",
            from.name
        ));
    }
    if let Err(e) = Policy::compile(policy) {
        return refuse(e.to_string());
    }
    Some(match ImageReference::parse(&from.name) {
        Ok(repository) => Source::Versions {
            repository,
            policy: policy.clone(),
        },
        Err(e) => Source::Known(Outcome::Failed {
            reason: "InvalidReference".to_owned(),
            message: e.to_string(),
        }),
    })
}

/// How candidates are ordered.
#[derive(Debug, Clone)]
enum Order {
    Semver(Range, String),
    Numerical(SortOrder),
    Alphabetical(SortOrder),
}

/// What a tag is ordered by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Semver(Version),
    /// Numbers without leading zeros, each ordered by length, then digits: any length, no overflow.
    Numbers(Vec<(usize, String)>),
    Text(String),
}

/// Why a listed tag is not a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    NotOciTag,
    Filtered,
    Excluded,
    NotAVersion,
    PreRelease,
    OutOfRange,
}

/// A compiled version policy.
#[derive(Debug, Clone)]
pub struct Policy {
    order: Order,
    filter: Option<(Regex, Option<String>)>,
    exclude: Vec<Regex>,
}

/// The tag a policy chose, and why, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The chosen tag.
    pub tag: String,
    /// One sentence: `1.4.2 is the highest of 37 tags in semver range ">=1.2 <2" (of 9,214 listed)`.
    pub why: String,
}

/// What a registry listed: its tags, and whether the listing stopped at its cap.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    /// The tags, in the registry's order.
    pub tags: &'a [String],
    /// Whether the registry had more tags than were read.
    pub truncated: bool,
}

impl Policy {
    /// Checks and compiles `spec`; the error names the field.
    pub fn compile(spec: &VersionPolicy) -> Result<Self, InvalidPolicy> {
        let order = match (&spec.semver, &spec.numerical, &spec.alphabetical) {
            (Some(semver), None, None) => Order::Semver(
                Range::parse(&semver.range).map_err(|e| invalid(".semver.range", e))?,
                semver.range.trim().to_owned(),
            ),
            (None, Some(n), None) => Order::Numerical(n.order.unwrap_or_default()),
            (None, None, Some(a)) => Order::Alphabetical(a.order.unwrap_or_default()),
            (None, None, None) => {
                return Err(invalid(
                    "",
                    "set one of semver (e.g. range: \">=1.2.0 <2.0.0\"), numerical or alphabetical",
                ));
            }
            _ => {
                return Err(invalid(
                    "",
                    "set only one of semver, numerical and alphabetical: each is an order of its own",
                ));
            }
        };
        let filter = match &spec.filter_tags {
            Some(f) => {
                let pattern = regex(".filterTags.pattern", &f.pattern)?;
                if let Some(extract) = &f.extract {
                    check_template(&pattern, extract)?;
                }
                Some((pattern, f.extract.clone().filter(|e| !e.is_empty())))
            }
            None => None,
        };
        let exclude = spec
            .exclude
            .iter()
            .enumerate()
            .map(|(i, p)| regex(&format!(".exclude[{i}]"), p))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            order,
            filter,
            exclude,
        })
    }

    /// Whether `tag` could be chosen (it passes the filters, reads as the order asks and is in range); the
    /// webhook imports a tag with a policy only for a push of such a tag.
    pub fn admits(&self, tag: &str) -> bool {
        self.key(tag).is_ok()
    }

    /// The tag to follow among `listed`, and why; or why none, as the `NoMatchingTag` message.
    pub fn choose(&self, listed: Listed<'_>) -> Result<Choice, String> {
        let mut skipped = [0usize; 6];
        let mut best: Option<(Key, &str)> = None;
        let mut candidates = 0usize;
        for tag in listed.tags {
            match self.key(tag) {
                Ok(key) => {
                    candidates += 1;
                    let better = best
                        .as_ref()
                        .is_none_or(|(k, t)| self.before((&key, tag), (k, t)));
                    if better {
                        best = Some((key, tag));
                    }
                }
                Err(skip) => skipped[skip as usize] += 1,
            }
        }
        let listed_note = format!("{} listed", count(listed.tags.len()));
        let mut skipped_note = skipped_note(&skipped, &self.order);
        if listed.truncated {
            skipped_note.push_str(
                "; the registry has more tags than one listing reads (by default 10,000 tags or 100 pages), \
                 and those were not considered",
            );
        }
        match best {
            Some((_, tag)) => Ok(Choice {
                tag: tag.to_owned(),
                why: format!(
                    "{tag} is the {} of {} {} {} (of {listed_note}{skipped_note})",
                    self.superlative(),
                    count(candidates),
                    if candidates == 1 { "tag" } else { "tags" },
                    self.describe(),
                ),
            }),
            None => Err(format!(
                "no tag is {}: none of {listed_note}{skipped_note}; push a matching tag or change \
                 importPolicy.versionPolicy",
                self.describe()
            )),
        }
    }

    /// The tag's key, or why it is no candidate.
    fn key(&self, tag: &str) -> Result<Key, Skip> {
        if !is_oci_tag(tag) {
            return Err(Skip::NotOciTag);
        }
        if self.exclude.iter().any(|r| r.is_match(tag)) {
            return Err(Skip::Excluded);
        }
        let value = match &self.filter {
            None => tag.to_owned(),
            Some((pattern, extract)) => {
                let captures = pattern.captures(tag).ok_or(Skip::Filtered)?;
                match extract {
                    None => tag.to_owned(),
                    Some(template) => {
                        let mut value = String::new();
                        captures.expand(template, &mut value);
                        value
                    }
                }
            }
        };
        match &self.order {
            Order::Semver(range, _) => {
                let version = parse_version(&value).ok_or(Skip::NotAVersion)?;
                if range.matches(&version) {
                    Ok(Key::Semver(version))
                } else if !version.pre.is_empty() && range.matches(&release_of(&version)) {
                    Err(Skip::PreRelease)
                } else {
                    Err(Skip::OutOfRange)
                }
            }
            Order::Numerical(_) => numbers(&value).map(Key::Numbers).ok_or(Skip::NotAVersion),
            Order::Alphabetical(_) if value.is_empty() => Err(Skip::NotAVersion),
            Order::Alphabetical(_) => Ok(Key::Text(value)),
        }
    }

    /// Whether `a` is chosen over `b` (the greatest key, or the least with `desc`); equal keys (`1.2` and
    /// `1.2.0`, `v1.2.3` and `1.2.3`) are told apart by the tag itself, so the choice never depends on the
    /// registry's order.
    fn before(&self, a: (&Key, &str), b: (&Key, &str)) -> bool {
        let by_key = match self.order {
            Order::Numerical(SortOrder::Desc) | Order::Alphabetical(SortOrder::Desc) => b.0.cmp(a.0),
            _ => a.0.cmp(b.0),
        };
        by_key.then_with(|| a.1.cmp(b.1)).is_gt()
    }

    fn superlative(&self) -> &'static str {
        match self.order {
            Order::Semver(..) => "highest",
            Order::Numerical(SortOrder::Asc) => "highest",
            Order::Numerical(SortOrder::Desc) => "lowest",
            Order::Alphabetical(SortOrder::Asc) => "last",
            Order::Alphabetical(SortOrder::Desc) => "first",
        }
    }

    /// What the policy admits, for messages.
    fn describe(&self) -> String {
        let order = match &self.order {
            Order::Semver(_, text) => format!("in semver range {text:?}"),
            Order::Numerical(_) => "read as numbers".to_owned(),
            Order::Alphabetical(_) => "in alphabetical order".to_owned(),
        };
        match &self.filter {
            Some((pattern, _)) => format!("{order} matching {:?}", pattern.as_str()),
            None => order,
        }
    }
}

/// The release a pre-release leads to (`1.3.0-rc.1` to `1.3.0`), to tell a skipped pre-release from a
/// version out of range.
fn release_of(version: &Version) -> Version {
    Version::new(version.major, version.minor, version.patch)
}

/// `2024.01.15`, `24.04`, `2023-10-01`, `v1.10` as numbers; `None` for anything else.
fn numbers(value: &str) -> Option<Vec<(usize, String)>> {
    let value = value.strip_prefix(['v', 'V']).unwrap_or(value);
    value
        .split(['.', '-', '_'])
        .map(|part| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())).then(|| {
                let digits = part.trim_start_matches('0');
                (digits.len(), digits.to_owned())
            })
        })
        .collect()
}

/// `, skipping 40 pre-releases and 3 excluded tags`, or nothing.
fn skipped_note(skipped: &[usize; 6], order: &Order) -> String {
    let label = |skip: Skip, n: usize| match (skip, order, n) {
        (Skip::NotOciTag, _, 1) => "invalid tag",
        (Skip::NotOciTag, _, _) => "invalid tags",
        (Skip::Filtered, _, _) => "not matching filterTags",
        (Skip::Excluded, _, _) => "excluded",
        (Skip::NotAVersion, Order::Semver(..), 1) => "not a semantic version",
        (Skip::NotAVersion, Order::Semver(..), _) => "not semantic versions",
        (Skip::NotAVersion, Order::Numerical(_), 1) => "not a number",
        (Skip::NotAVersion, Order::Numerical(_), _) => "not numbers",
        (Skip::NotAVersion, Order::Alphabetical(_), _) => "empty after extract",
        (Skip::PreRelease, _, 1) => "pre-release",
        (Skip::PreRelease, _, _) => "pre-releases",
        (Skip::OutOfRange, _, _) => "out of range",
    };
    let parts: Vec<String> = [
        Skip::NotOciTag,
        Skip::Filtered,
        Skip::Excluded,
        Skip::NotAVersion,
        Skip::PreRelease,
        Skip::OutOfRange,
    ]
    .into_iter()
    .filter(|&s| skipped[s as usize] > 0)
    .map(|s| format!("{} {}", count(skipped[s as usize]), label(s, skipped[s as usize])))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join(", "))
    }
}

/// `9,214`.
fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn regex(field: &str, pattern: &str) -> Result<Regex, InvalidPolicy> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            // The parser's message draws a caret under the problem over several lines: keep its last line.
            let text = e.to_string();
            let problem = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(text.lines().last().unwrap_or_default())
                .to_owned();
            invalid(
                field,
                format!("{pattern:?} is not a regular expression: {problem}"),
            )
        })
}

/// Every `$name`, `${name}` and `$1` of `template` must name a group of `pattern`.
fn check_template(pattern: &Regex, template: &str) -> Result<(), InvalidPolicy> {
    let names: Vec<&str> = pattern.capture_names().flatten().collect();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            match braced.split_once('}') {
                Some((name, after)) => (name, after),
                None => (braced, ""),
            }
        } else if let Some(after) = rest.strip_prefix('$') {
            ("", after)
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest.split_at(end)
        };
        rest = after;
        if name.is_empty() {
            continue;
        }
        let known = match name.parse::<usize>() {
            Ok(index) => index < pattern.captures_len(),
            Err(_) => names.contains(&name),
        };
        if !known {
            return Err(invalid(
                ".filterTags.extract",
                format!(
                    "{template:?} names the group {name:?}, which {:?} does not have (its named groups: {}); \
                     write $name or ${{name}} for a group (?P<name>...)",
                    pattern.as_str(),
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}
