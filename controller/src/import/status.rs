//! What an import does to a tag's status: pure functions of the old status and the outcome.
//!
//! Nothing here talks to a cluster or a registry, so every rule (history only on a move, newest first,
//! bounded; conditions that keep their transition time; Events only on transitions; no write when nothing
//! changed) is tested directly.

use berth_api::image::{IMPORT_SUCCESS, ImageMetadata, ImageStreamTagStatus, TagEvent};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::conditions;

/// The `ImportSuccess` reason of a tag that resolved.
pub const REASON_IMPORTED: &str = "Imported";

/// What asking for the tag's image gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The tag points at `digest`, pulled as `pull_spec` (`REPO@sha256:...`).
    Resolved {
        /// `sha256:<64 hex>`.
        digest: String,
        /// `REPO@sha256:...`.
        pull_spec: String,
        /// What was resolved, for the condition's message (`registry/repo:tag`, `stream:tag`).
        source: String,
        /// The tag a version policy chose, for `status.chosenTag` and the history.
        chosen_tag: Option<String>,
        /// The image's metadata as the followed tag or stream already records it (aliases and stream
        /// images), if it does.
        image: Option<Box<ImageMetadata>>,
    },
    /// Recorded as given, without contacting a registry (`reference: true` on a tag without a digest).
    Recorded {
        /// The reference as given.
        pull_spec: String,
    },
    /// The import failed; history and the current digest stay as they were.
    Failed {
        /// A PascalCase reason, used verbatim as the condition's reason.
        reason: String,
        /// What went wrong and what to do, for a person. Never holds a credential.
        message: String,
    },
}

/// The Event an import publishes: only on a transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportEvent {
    /// The tag got its first digest.
    Imported {
        /// The new pull spec.
        pull_spec: String,
    },
    /// The tag moved from one digest to another.
    TagUpdated {
        /// The previous digest.
        from: String,
        /// The new pull spec.
        to: String,
    },
    /// Importing started failing, or failed for another reason than before.
    ImportFailed {
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
}

/// The status an import leads to, and whether anything is to be written or said.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The new status (equal to the old one when nothing changed).
    pub status: ImageStreamTagStatus,
    /// Whether `status` differs from the old status: only then is it written.
    pub changed: bool,
    /// The Event to publish, if this import is a transition.
    pub event: Option<ImportEvent>,
}

/// What the import of one tag answered, with what it answers to.
#[derive(Clone, Debug)]
pub struct Import<'a> {
    /// The object's `metadata.generation`.
    pub generation: Option<i64>,
    /// The value of the import-request annotation that this import answers.
    pub import_request: Option<&'a str>,
    /// The stream's history limit.
    pub history_limit: usize,
    /// Now.
    pub now: Time,
    /// The result.
    pub outcome: Outcome,
    /// The image metadata read in this import for the resolved digest (see [`wants_metadata`]), if any.
    pub image: Option<ImageMetadata>,
}

/// Whether an import that resolved `digest` should read the image's metadata: only when the status has none
/// for that digest (a new digest, or one imported before metadata was read), so an import that finds the
/// same digest again asks the registry nothing more. Metadata that could not be read is recorded as such
/// (`unreadable`) and counts as read.
pub fn wants_metadata(current: Option<&ImageStreamTagStatus>, digest: &str) -> bool {
    current
        .and_then(|s| s.image.as_ref())
        .is_none_or(|image| image.digest != digest)
}

/// The status after `import`, starting from `current`.
pub fn decide(current: Option<&ImageStreamTagStatus>, import: Import<'_>) -> Decision {
    let old = current.cloned().unwrap_or_default();
    let mut status = old.clone();
    status.observed_generation = import.generation;
    status.observed_import_request = import.import_request.map(str::to_owned);
    let mut event = None;

    let condition = match &import.outcome {
        Outcome::Resolved {
            digest,
            pull_spec,
            source,
            chosen_tag,
            image: known,
        } => {
            if old.digest.as_deref() != Some(digest.as_str()) {
                event = Some(match &old.digest {
                    None => ImportEvent::Imported {
                        pull_spec: pull_spec.clone(),
                    },
                    Some(previous) => ImportEvent::TagUpdated {
                        from: previous.clone(),
                        to: pull_spec.clone(),
                    },
                });
                status.history.insert(
                    0,
                    TagEvent {
                        created: import.now.clone(),
                        digest: digest.clone(),
                        pull_spec: pull_spec.clone(),
                        tag: chosen_tag.clone(),
                        generation: import.generation,
                    },
                );
            }
            // Metadata describes one digest (it names it): what was read now, else what the followed tag
            // records. Until either is there for a new digest, the metadata of the old one stays, never dropped:
            // a status apply that left out `image` made the 1.20 API server's server-side apply keep a remnant
            // (`image: {labels: null}`, no `digest`) and refuse the whole status.
            status.image = import
                .image
                .clone()
                .or_else(|| known.as_deref().cloned())
                .filter(|m| m.digest == *digest)
                .or_else(|| old.image.clone());
            status.chosen_tag = chosen_tag.clone();
            status.history.truncate(import.history_limit.max(1));
            status.digest = Some(digest.clone());
            status.short_digest = Some(short_digest(digest));
            status.pull_spec = Some(pull_spec.clone());
            condition("True", REASON_IMPORTED, format!("{source} resolved to {digest}"))
        }
        Outcome::Recorded { pull_spec } => {
            status.pull_spec = Some(pull_spec.clone());
            condition(
                "True",
                "Recorded",
                format!("recorded {pull_spec} as given, without importing"),
            )
        }
        Outcome::Failed { reason, message } => {
            condition("False", reason, lasting_message(&old, &import, reason, message))
        }
    };
    let previous = conditions::find(&old.conditions, IMPORT_SUCCESS);
    if let (Outcome::Failed { reason, message }, true) =
        (&import.outcome, conditions::is_transition(previous, &condition))
    {
        event = Some(ImportEvent::ImportFailed {
            reason: reason.clone(),
            message: message.clone(),
        });
    }
    conditions::set(&mut status.conditions, condition, import.generation, &import.now);

    let changed = status != old;
    if changed {
        status.last_import_time = Some(import.now);
    }
    Decision {
        status,
        changed,
        event,
    }
}

/// The message of a failure: while the same failure lasts (same reason, same generation) the first message
/// stays. Messages carry details that vary from one attempt to the next (the back-off's countdown, whether
/// this attempt reached the registry or was held back because another tag's attempt failed); rewriting the
/// status for them on every retry would be writes with no news, for every tag of a registry that is down.
fn lasting_message(old: &ImageStreamTagStatus, import: &Import<'_>, reason: &str, message: &str) -> String {
    match conditions::find(&old.conditions, IMPORT_SUCCESS) {
        Some(p)
            if p.status == "False" && p.reason == reason && p.observed_generation == import.generation =>
        {
            p.message.clone()
        }
        _ => message.to_owned(),
    }
}

/// The first 12 hex digits of a digest.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.chars().take(12).collect()
}

fn condition(status: &str, reason: &str, message: String) -> Condition {
    conditions::new(IMPORT_SUCCESS, status, reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap())
    }

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:x}").repeat(64))
    }

    fn resolved(n: u8) -> Outcome {
        Outcome::Resolved {
            digest: digest(n),
            pull_spec: format!("reg/demo@{}", digest(n)),
            source: "reg/demo:v1".into(),
            chosen_tag: None,
            image: None,
        }
    }

    fn import(outcome: Outcome, at: i64) -> Import<'static> {
        Import {
            generation: Some(1),
            import_request: None,
            history_limit: 3,
            now: t(at),
            outcome,
            image: None,
        }
    }

    fn metadata(n: u8) -> ImageMetadata {
        ImageMetadata {
            digest: digest(n),
            platform: Some("linux/amd64".into()),
            ..ImageMetadata::default()
        }
    }

    #[test]
    fn metadata_is_recorded_once_per_digest_and_follows_the_digest() {
        assert!(wants_metadata(None, &digest(1)));
        let mut first = import(resolved(1), 0);
        first.image = Some(metadata(1));
        let d = decide(None, first);
        assert_eq!(d.status.image, Some(metadata(1)));
        assert!(!wants_metadata(Some(&d.status), &digest(1)), "read once");

        // The same digest again, without reading: kept, nothing to write.
        let again = decide(Some(&d.status), import(resolved(1), 10));
        assert!(!again.changed);
        assert_eq!(again.status.image, Some(metadata(1)));

        // A failure keeps it.
        let failed = decide(Some(&d.status), import(failed("NotFound", "gone"), 20));
        assert_eq!(failed.status.image, Some(metadata(1)));

        // A move without metadata (it could not be read now) keeps what describes the old digest, which names
        // it, and asks again at the next import.
        assert!(wants_metadata(Some(&d.status), &digest(2)));
        let moved = decide(Some(&d.status), import(resolved(2), 30));
        assert_eq!(moved.status.image, Some(metadata(1)));
        assert!(wants_metadata(Some(&moved.status), &digest(2)));

        // Metadata of another digest than the one resolved is never recorded.
        let mut stray = import(resolved(2), 40);
        stray.image = Some(metadata(3));
        assert_eq!(decide(Some(&moved.status), stray).status.image, Some(metadata(1)));

        // An alias takes what its target records of the digest (and nothing of another).
        let alias = |image: Option<ImageMetadata>| Outcome::Resolved {
            digest: digest(2),
            pull_spec: format!("reg/demo@{}", digest(2)),
            source: "demo:v2".into(),
            chosen_tag: None,
            image: image.map(Box::new),
        };
        let d = decide(Some(&moved.status), import(alias(Some(metadata(2))), 45));
        assert_eq!(d.status.image, Some(metadata(2)));
        let d = decide(Some(&moved.status), import(alias(Some(metadata(3))), 45));
        assert_eq!(d.status.image, Some(metadata(1)));

        // An unreadable image counts as read: not tried again for that digest.
        let mut unreadable = import(resolved(2), 50);
        unreadable.image = Some(ImageMetadata::unreadable(&digest(2), "too large".into()));
        let d = decide(Some(&moved.status), unreadable);
        assert!(d.changed);
        assert!(!wants_metadata(Some(&d.status), &digest(2)));
    }

    fn failed(reason: &str, message: &str) -> Outcome {
        Outcome::Failed {
            reason: reason.into(),
            message: message.into(),
        }
    }

    #[test]
    fn first_import_records_history_and_says_imported() {
        let d = decide(None, import(resolved(1), 0));
        assert!(d.changed);
        assert_eq!(d.status.digest, Some(digest(1)));
        assert_eq!(d.status.short_digest.as_deref(), Some("111111111111"));
        assert_eq!(d.status.history.len(), 1);
        assert!(matches!(d.event, Some(ImportEvent::Imported { .. })));
        let c = &d.status.conditions[0];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Imported"));
    }

    #[test]
    fn idle_reimports_change_nothing_and_say_nothing() {
        let first = decide(None, import(resolved(1), 0)).status;
        let mut current = first.clone();
        for i in 1..1000 {
            let d = decide(Some(&current), import(resolved(1), i));
            assert!(!d.changed, "import {i} changed the status");
            assert_eq!(d.event, None);
            current = d.status;
        }
        assert_eq!(current, first);
    }

    #[test]
    fn a_move_adds_history_newest_first_within_the_limit() {
        let mut status = decide(None, import(resolved(1), 0)).status;
        for n in 2..=5u8 {
            let d = decide(Some(&status), import(resolved(n), i64::from(n)));
            assert!(matches!(&d.event, Some(ImportEvent::TagUpdated { from, .. }) if *from == digest(n - 1)));
            status = d.status;
        }
        let digests: Vec<_> = status.history.iter().map(|h| h.digest.clone()).collect();
        assert_eq!(digests, vec![digest(5), digest(4), digest(3)]);
        assert_eq!(status.history[0].created, t(5));
    }

    #[test]
    fn a_failure_keeps_the_digest_and_history_and_speaks_once() {
        let good = decide(None, import(resolved(1), 0)).status;
        let d = decide(
            Some(&good),
            import(failed("RegistryUnavailable", "connection refused"), 10),
        );
        assert!(d.changed);
        assert_eq!(d.status.digest, good.digest);
        assert_eq!(d.status.history, good.history);
        assert!(
            matches!(&d.event, Some(ImportEvent::ImportFailed { reason, .. }) if reason == "RegistryUnavailable")
        );
        let c = &d.status.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.last_transition_time.clone()),
            ("False", t(10))
        );

        let again = decide(
            Some(&d.status),
            import(failed("RegistryUnavailable", "connection refused"), 20),
        );
        assert!(!again.changed);
        assert_eq!(again.event, None);

        let other = decide(Some(&d.status), import(failed("NotFound", "no tag v1"), 30));
        assert!(matches!(other.event, Some(ImportEvent::ImportFailed { .. })));

        let back = decide(Some(&other.status), import(resolved(1), 40));
        assert!(back.changed);
        assert_eq!(back.event, None, "recovering to the same digest is no move");
        assert_eq!(back.status.conditions[0].status, "True");
        assert_eq!(back.status.history.len(), 1);
    }

    #[test]
    fn a_lasting_failure_keeps_its_first_message_and_is_not_rewritten() {
        let good = decide(None, import(resolved(1), 0)).status;
        let down = decide(
            Some(&good),
            import(
                failed(
                    "RegistryUnavailable",
                    "connection refused; Berth will retry with back-off",
                ),
                10,
            ),
        )
        .status;
        for (at, message) in [
            (
                20,
                "holding requests back after the registry failed; Berth will retry in 8s",
            ),
            (
                40,
                "holding requests back after the registry failed; Berth will retry in 16s",
            ),
            (70, "connection refused; Berth will retry with back-off"),
        ] {
            let d = decide(Some(&down), import(failed("RegistryUnavailable", message), at));
            assert!(!d.changed, "rewritten at {at} for a new message alone");
            assert_eq!(d.event, None);
            assert_eq!(d.status, down);
        }

        // A new spec gets the message of its own failure.
        let mut next = import(failed("RegistryUnavailable", "other.example is unavailable"), 80);
        next.generation = Some(2);
        let d = decide(Some(&down), next);
        assert!(d.changed);
        assert_eq!(d.status.conditions[0].message, "other.example is unavailable");
        assert_eq!(d.event, None, "the same failure goes on: no new Event");
    }

    #[test]
    fn a_new_generation_or_request_is_recorded() {
        let first = decide(None, import(resolved(1), 0)).status;
        let mut next = import(resolved(1), 5);
        next.generation = Some(2);
        next.import_request = Some("now");
        let d = decide(Some(&first), next);
        assert!(d.changed);
        assert_eq!(d.status.observed_generation, Some(2));
        assert_eq!(d.status.observed_import_request.as_deref(), Some("now"));
        assert_eq!(d.status.conditions[0].last_transition_time, t(0));
        assert_eq!(d.event, None);
    }

    #[test]
    fn recorded_references_have_no_digest() {
        let d = decide(
            None,
            import(
                Outcome::Recorded {
                    pull_spec: "reg/demo:v1".into(),
                },
                0,
            ),
        );
        assert_eq!(d.status.digest, None);
        assert_eq!(d.status.pull_spec.as_deref(), Some("reg/demo:v1"));
        assert_eq!(d.status.conditions[0].reason, "Recorded");
    }
}
