//! `kubectl berth rollback`: which history entry a tag goes back to, the pinned spec it gets, and how to undo.
//!
//! History is newest first and entry 0 is normally the image the tag points at now. By default the tag goes
//! to the newest entry with another digest; `--to N` picks entry N (as `history` numbers them), `--to DIGEST`
//! the entry with that digest (`sha256:` optional, a unique prefix of at least 7 hex digits is enough).
//!
//! The tag is pinned: `spec.from` becomes the entry's `REPO@sha256:...` (a `DockerImage`), which the controller
//! resolves without a registry, so no import, push or schedule moves it again. What it followed before is kept
//! in the annotation [`ROLLED_BACK_FROM`] (the first rollback's, when rolled back twice), and `tag` back to it
//! ends the pin.

use berth_api::image::{ImageStreamTagSpec, SourceKind, TagEvent, TagSource};

use crate::error::{Error, Result};

/// The annotation that records what a rolled-back tag followed before, as the JSON of its `spec.from` (the
/// controller names it in the tag's `ImportSuccess` message).
pub use berth_api::image::ROLLED_BACK_FROM_ANNOTATION as ROLLED_BACK_FROM;

/// What `--to` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The history entry N (0 is the newest).
    Index(usize),
    /// A digest or a unique prefix of one.
    Digest(String),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(n) = s.parse::<usize>() {
            return Ok(Target::Index(n));
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() >= 7 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Target::Digest(format!("sha256:{}", hex.to_ascii_lowercase())));
        }
        Err(format!(
            "{s:?} is neither a history entry number nor a digest (sha256:<hex>, at least 7 hex digits)"
        ))
    }
}

/// The entry to roll back to, with its number.
pub fn pick<'a>(
    label: &str,
    history: &'a [TagEvent],
    current: Option<&str>,
    to: Option<&Target>,
) -> Result<(usize, &'a TagEvent)> {
    let (index, entry) = match to {
        None => history
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, e)| Some(e.digest.as_str()) != current)
            .ok_or_else(|| {
                Error::refused(format!(
                    "{label} has no earlier image to roll back to (its history has {} entr{})",
                    history.len(),
                    if history.len() == 1 { "y" } else { "ies" }
                ))
            })?,
        Some(Target::Index(n)) => history.get(*n).map(|e| (*n, e)).ok_or_else(|| {
            Error::refused(format!(
                "{label} has no history entry {n}: its history has entries 0 to {}",
                history.len().saturating_sub(1)
            ))
        })?,
        Some(Target::Digest(prefix)) => {
            let mut found = history
                .iter()
                .enumerate()
                .filter(|(_, e)| e.digest.starts_with(prefix.as_str()));
            let first = found.next().ok_or_else(|| {
                Error::refused(format!("{label} has no history entry with digest {prefix}"))
            })?;
            if found.any(|(_, e)| e.digest != first.1.digest) {
                return Err(Error::refused(format!(
                    "{prefix} matches more than one digest in the history of {label}: give more digits"
                )));
            }
            first
        }
    };
    if Some(entry.digest.as_str()) == current {
        return Err(Error::refused(format!(
            "{label} already points at {} (history entry {index})",
            entry.digest
        )));
    }
    Ok((index, entry))
}

/// The pinned spec: the current spec with `from` at the entry's digest.
pub fn pinned_spec(current: &ImageStreamTagSpec, entry: &TagEvent) -> ImageStreamTagSpec {
    ImageStreamTagSpec {
        from: TagSource {
            kind: SourceKind::DockerImage,
            name: entry.pull_spec.clone(),
            namespace: None,
        },
        // A digest needs no schedule and no registry; `reference` would record it without a digest.
        reference: false,
        ..current.clone()
    }
}

/// The value of [`ROLLED_BACK_FROM`]: what the tag followed before its first rollback.
pub fn rolled_back_from(existing: Option<&str>, current_from: &TagSource) -> String {
    match existing.filter(|v| serde_json::from_str::<TagSource>(v).is_ok()) {
        Some(earlier) => earlier.to_owned(),
        None => serde_json::to_string(current_from).unwrap_or_default(),
    }
}

/// The command that makes the tag follow `previous` again.
pub fn undo_command(dest: &str, previous: &TagSource, insecure: bool, scheduled: bool) -> String {
    let name = match &previous.namespace {
        Some(ns) => format!("{ns}/{}", previous.name),
        None => previous.name.clone(),
    };
    match previous.kind {
        SourceKind::DockerImage => {
            let mut flags = String::new();
            if insecure {
                flags.push_str(" --insecure");
            }
            if scheduled {
                flags.push_str(" --scheduled");
            }
            format!("kubectl berth tag --source=docker{flags} {name} {dest}")
        }
        SourceKind::ImageStreamTag => format!("kubectl berth tag --alias {name} {dest}"),
        SourceKind::ImageStreamImage => format!("kubectl berth tag --source=isimage {name} {dest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn entry(c: char) -> TagEvent {
        TagEvent {
            created: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            digest: digest(c),
            pull_spec: format!("reg/x@{}", digest(c)),
            tag: None,
            generation: Some(1),
        }
    }

    #[test]
    fn the_default_is_the_previous_image() {
        let h = vec![entry('c'), entry('b'), entry('a')];
        let (i, e) = pick("app:live", &h, Some(&digest('c')), None).unwrap();
        assert_eq!((i, e.digest.clone()), (1, digest('b')));
        // Rolled back already: the current digest is an older entry; the default skips it.
        let (i, _) = pick("app:live", &h, Some(&digest('b')), None).unwrap();
        assert_eq!(i, 2);
    }

    #[test]
    fn by_number_and_by_digest() {
        let h = vec![entry('c'), entry('b'), entry('a')];
        let current = Some(digest('c'));
        let to: Target = "2".parse().unwrap();
        assert_eq!(pick("t", &h, current.as_deref(), Some(&to)).unwrap().0, 2);
        let to: Target = "bbbbbbb".parse().unwrap();
        assert_eq!(pick("t", &h, current.as_deref(), Some(&to)).unwrap().0, 1);
        let to: Target = digest('a').parse().unwrap();
        assert_eq!(pick("t", &h, current.as_deref(), Some(&to)).unwrap().0, 2);
        assert!("abc".parse::<Target>().is_err());
        assert!("sha256:xyzxyzxyz".parse::<Target>().is_err());
    }

    #[test]
    fn refusals_name_the_tag() {
        let h = vec![entry('c'), entry('b')];
        let current = Some(digest('c'));
        let e = pick("app:live", &h[..1], current.as_deref(), None).unwrap_err();
        assert!(e.to_string().contains("app:live has no earlier image"), "{e}");
        let e = pick("app:live", &h, current.as_deref(), Some(&Target::Index(5))).unwrap_err();
        assert!(e.to_string().contains("no history entry 5"), "{e}");
        let e = pick("app:live", &h, current.as_deref(), Some(&Target::Index(0))).unwrap_err();
        assert!(e.to_string().contains("already points at"), "{e}");
        let e = pick(
            "app:live",
            &h,
            current.as_deref(),
            Some(&"ddddddd".parse().unwrap()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no history entry with digest"), "{e}");
    }

    #[test]
    fn the_pin_and_its_undo() {
        let spec = ImageStreamTagSpec {
            stream: "app".into(),
            tag: "live".into(),
            from: TagSource {
                kind: SourceKind::DockerImage,
                name: "reg/x:live".into(),
                namespace: None,
            },
            ..Default::default()
        };
        let pinned = pinned_spec(&spec, &entry('b'));
        assert_eq!(pinned.from.name, format!("reg/x@{}", digest('b')));
        assert_eq!((pinned.stream.as_str(), pinned.tag.as_str()), ("app", "live"));
        let recorded = rolled_back_from(None, &spec.from);
        assert_eq!(serde_json::from_str::<TagSource>(&recorded).unwrap(), spec.from);
        // A second rollback keeps the first source.
        assert_eq!(rolled_back_from(Some(&recorded), &pinned.from), recorded);
        assert_eq!(
            undo_command("app:live", &spec.from, true, false),
            "kubectl berth tag --source=docker --insecure reg/x:live app:live"
        );
        let alias = TagSource {
            kind: SourceKind::ImageStreamTag,
            name: "app:v2".into(),
            namespace: Some("team".into()),
        };
        assert_eq!(
            undo_command("app:live", &alias, false, false),
            "kubectl berth tag --alias team/app:v2 app:live"
        );
    }
}
