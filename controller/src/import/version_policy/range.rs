//! Semantic versions as image tags write them, and ranges as Masterminds/semver (Flux, Helm, Argo CD Image
//! Updater) writes them, read with the `semver` crate.
//!
//! The `semver` crate reads Cargo's ranges: comma-separated comparators, a bare version meaning `^`, and
//! pre-releases matched only on the same `major.minor.patch` as a comparator that names one. Users of image
//! automation write Masterminds' ranges: comparators separated by spaces, `||` alternatives, `1.2 - 1.4`
//! hyphen ranges, a bare version meaning itself, and any pre-release admitted once the range names one
//! (`>=1.0.0-0`). [`Range::parse`] translates the one into the other, and [`Range::matches`] applies
//! Masterminds' pre-release rule.
//!
//! One difference stays, on purpose: a partial upper bound excludes the pre-releases of that version (`<2` is
//! below `2.0.0-0`, as in Cargo), where Masterminds admits `2.0.0-rc.1` to `>=1.2.0-0 <2`. Whoever writes
//! `<2` means "not 2".

use semver::{BuildMetadata, Comparator, Op, Prerelease, Version, VersionReq};

/// A parsed range: any alternative may hold.
#[derive(Debug, Clone)]
pub struct Range {
    alternatives: Vec<VersionReq>,
    /// Whether a comparator names a pre-release: then pre-releases are admitted wherever they fall in range.
    allows_pre: bool,
}

const OPERATORS: [&str; 8] = ["=", ">", ">=", "<", "<=", "~", "^", "=="];

impl Range {
    /// Reads a Masterminds-style range; the error says which part is wrong and why.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the range is empty; write e.g. \">=1.2.0 <2.0.0\" or \"^1.2\"".into());
        }
        let alternatives = text
            .split("||")
            .map(|alternative| {
                let comparators = comparators(alternative)?;
                VersionReq::parse(&comparators.join(", "))
                    .map_err(|e| format!("{:?} does not parse: {e}", alternative.trim()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let allows_pre = alternatives
            .iter()
            .flat_map(|r| &r.comparators)
            .any(|c| !c.pre.is_empty());
        Ok(Self {
            alternatives,
            allows_pre,
        })
    }

    /// Whether `version` is in range. A pre-release is in range only when the range names a pre-release
    /// (anywhere, as in Masterminds) and it satisfies every comparator of an alternative by plain ordering.
    pub fn matches(&self, version: &Version) -> bool {
        if version.pre.is_empty() || !self.allows_pre {
            return self.alternatives.iter().any(|r| r.matches(version));
        }
        // The `semver` crate admits a pre-release only beside a comparator naming the same major.minor.patch
        // with a pre-release. `>=X.Y.Z-0` is such a comparator, and holds for every pre-release of X.Y.Z
        // (`0` is the lowest pre-release identifier), so adding it leaves plain ordering to decide.
        let floor = Comparator {
            op: Op::GreaterEq,
            major: version.major,
            minor: Some(version.minor),
            patch: Some(version.patch),
            pre: Prerelease::new("0").expect("0 is a pre-release"),
        };
        self.alternatives.iter().any(|r| {
            let mut with_floor = r.clone();
            with_floor.comparators.push(floor.clone());
            with_floor.matches(version)
        })
    }
}

/// The comparators of one alternative, in the `semver` crate's syntax.
fn comparators(alternative: &str) -> Result<Vec<String>, String> {
    let mut words: Vec<&str> = alternative
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    words.reverse();
    let mut out = Vec::new();
    while let Some(word) = words.pop() {
        // `>= 1.2`: an operator apart from its version.
        let word = if OPERATORS.contains(&word) {
            let version = words
                .pop()
                .ok_or_else(|| format!("{word:?} at the end of {:?} has no version", alternative.trim()))?;
            format!("{word}{version}")
        } else {
            word.to_owned()
        };
        // `1.2 - 1.4`: a hyphen range.
        if words.last() == Some(&"-") {
            words.pop();
            let upper = words
                .pop()
                .ok_or_else(|| format!("the hyphen range {word:?} - has no upper bound"))?;
            out.push(comparator(&format!(">={word}"))?);
            out.push(comparator(&format!("<={upper}"))?);
            continue;
        }
        out.push(comparator(&word)?);
    }
    // `*` may not stand beside other comparators in the `semver` crate; it adds nothing to them.
    let wildcard = |c: &String| matches!(c.as_str(), "*" | "x" | "X");
    if out.len() > 1 {
        out.retain(|c| !wildcard(c));
    }
    if out.is_empty() {
        out.push("*".into());
    }
    Ok(out)
}

/// One comparator: the operator kept (`==` read as `=`), a `v` before the version dropped, and a bare
/// version made exact (`=`), as Masterminds reads it (the `semver` crate would read it as `^`).
fn comparator(word: &str) -> Result<String, String> {
    let split = word
        .find(|c: char| !matches!(c, '=' | '<' | '>' | '~' | '^' | '!'))
        .unwrap_or(word.len());
    let (op, version) = word.split_at(split);
    let version = version.strip_prefix(['v', 'V']).unwrap_or(version);
    let op = match op {
        "" if matches!(version, "*" | "x" | "X") => "",
        "" | "=" | "==" => "=",
        "!=" => {
            return Err(format!(
                "{word:?}: \"!=\" is not supported; list the tags to skip in importPolicy.versionPolicy.exclude"
            ));
        }
        "~>" => "~",
        op if OPERATORS.contains(&op) => op,
        op => {
            return Err(format!(
                "{word:?}: {op:?} is not an operator (use =, >, >=, <, <=, ~ or ^)"
            ));
        }
    };
    if version.is_empty() {
        return Err(format!("{word:?} has no version"));
    }
    Ok(format!("{op}{version}"))
}

/// A tag read as a semantic version, as Masterminds' non-strict reading does: a leading `v` dropped, missing
/// minor and patch read as 0 (`1.2` is 1.2.0), leading zeros dropped (`2024.01.15` is 2024.1.15). `None`
/// for anything else (`latest`, `1.2.3.4`, `sha-abc123`).
pub fn parse_version(tag: &str) -> Option<Version> {
    let text = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    let core_end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(core_end);
    let mut numbers = [0u64; 3];
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    for (slot, part) in numbers.iter_mut().zip(&parts) {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    let (pre, build) = match rest.split_once('+') {
        Some((pre, build)) => (pre, build),
        None => (rest, ""),
    };
    let pre = match pre.strip_prefix('-') {
        Some(pre) if !pre.is_empty() => Prerelease::new(pre).ok()?,
        None if pre.is_empty() => Prerelease::EMPTY,
        _ => return None,
    };
    let build = if rest.contains('+') {
        BuildMetadata::new(build).ok().filter(|b| !b.is_empty())?
    } else {
        BuildMetadata::EMPTY
    };
    Some(Version {
        major: numbers[0],
        minor: numbers[1],
        patch: numbers[2],
        pre,
        build,
    })
}
