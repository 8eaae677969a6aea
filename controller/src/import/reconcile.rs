//! The ImageStreamTag reconciler: a thin shell that asks the pure decisions what to do and does it.

use std::sync::Arc;
use std::time::Duration;

use berth_api::image::{IMPORT_REQUESTED_ANNOTATION, ImageMetadata, ImageStreamTag, ImportMode, SourceKind};
use berth_api::version_policy::VersionPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::schedule::{self, Plan};
use super::source::{self, Source};
use super::status::{self, Decision, ImportEvent, Outcome};
use super::version_policy::{self, Listed, Policy};
use crate::context::{Cancelled, Context, FIELD_MANAGER, PUSH_RECHECK, Push, TagSnapshot};
use crate::error::{Error, Result};
use crate::grants;
use crate::metrics::ImportLabels;
use crate::registry::{ImageReference, MetadataRequest, Priority, ResolveRequest, TagListRequest};

/// The controller's name in logs and metrics.
pub const CONTROLLER: &str = "import";

/// Imports `tag` when it is due, writes its status when it changed, and says when to look again.
#[instrument(skip_all, fields(tag = %tag.name_any(), namespace = tag.namespace().unwrap_or_default()))]
pub async fn reconcile(tag: Arc<ImageStreamTag>, ctx: Arc<Context>) -> Result<Action> {
    let object = ObjectRef::from_obj(tag.as_ref()).erase();
    let reconciles = &ctx.metrics.reconciles;
    reconciles
        .run(CONTROLLER, object, import_tag(tag, ctx.clone()))
        .await
}

/// After a failed reconcile: classified, counted, and tried again with back-off (see [`crate::error::retry`]).
pub fn error_policy(tag: Arc<ImageStreamTag>, error: &Error, ctx: Arc<Context>) -> Action {
    let object = ObjectRef::from_obj(tag.as_ref()).erase();
    ctx.metrics.reconciles.error_policy(CONTROLLER, object, error)
}

async fn import_tag(tag: Arc<ImageStreamTag>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = tag.namespace().ok_or(Error::Incomplete("ImageStreamTag"))?;
    let key = ObjectRef::from_obj(tag.as_ref());
    let now = jiff::Timestamp::now();
    let pushed = ctx.take_push_request(&key);
    let snapshot = TagSnapshot(ctx.tags.state());
    let source = ctx
        .grants
        .decide(|grants| source::source_of(&tag, &namespace, &snapshot, grants))
        .await?;
    let due = schedule::reason_to_import(&tag, ctx.last_check(&key), ctx.pacing, now.as_second());
    let trigger = match (&source, pushed.is_some(), due) {
        (_, true, _) => "registry push",
        (_, false, Some(reason)) => reason,
        // What needs no registry (aliases, pinned digests) is looked at whenever its tag or the tag it
        // follows changes: it costs nothing, and writes nothing when nothing changed.
        (Source::Known(_), false, None) => "followed tag changed",
        (Source::Registry(_) | Source::Versions { .. }, false, None) => {
            return Ok(action(schedule::plan(
                &tag,
                ctx.last_check(&key),
                ctx.pacing,
                now.as_second(),
            )));
        }
    };

    ctx.metrics.imports_in_flight.inc();
    let fresher_than = pushed.as_ref().and_then(|p| p.received);
    let priority = schedule::priority(trigger);
    // A tag deleted while its import waits for its registry is dropped at once, and one whose spec changed is
    // imported again at once: the import (and its place in the registry's queue) goes.
    let cancelled = ctx.importing(&tag);
    let imported = tokio::select! {
        imported = async {
            let (outcome, retry_after) = import(&tag, source, &namespace, &ctx, fresher_than, priority).await;
            let image = image_metadata(&tag, &outcome, &namespace, &ctx).await;
            (outcome, retry_after, image)
        } => Ok(imported),
        why = cancelled => Err(why.unwrap_or(Cancelled::Deleted)),
    };
    ctx.done_importing(&tag);
    ctx.metrics.imports_in_flight.dec();
    let (outcome, retry_after, image) = match imported {
        Ok(imported) => imported,
        Err(why) => {
            debug!(trigger, ?why, "the import was given up while it waited");
            let (result, action) = match why {
                Cancelled::Deleted => ("TagDeleted", Action::await_change()),
                // The watch event that changed the spec asks for the next reconcile already; this is a net.
                Cancelled::Superseded => ("Superseded", Action::requeue(Duration::from_secs(1))),
            };
            ctx.metrics
                .imports
                .get_or_create(&ImportLabels {
                    trigger: trigger.to_owned(),
                    result: result.to_owned(),
                })
                .inc();
            return Ok(action);
        }
    };
    let failure = match &outcome {
        Outcome::Failed { reason, .. } => Some(schedule::Failure::of(reason)),
        _ => None,
    };
    ctx.record_check(key.clone(), now.as_second(), failure, retry_after);
    let result = match &outcome {
        Outcome::Failed { reason, .. } => reason.clone(),
        Outcome::Resolved { .. } => status::REASON_IMPORTED.to_owned(),
        Outcome::Recorded { .. } => "Recorded".to_owned(),
    };
    ctx.metrics
        .imports
        .get_or_create(&ImportLabels {
            trigger: trigger.to_owned(),
            result,
        })
        .inc();

    let decision = status::decide(
        tag.status.as_ref(),
        status::Import {
            generation: tag.metadata.generation,
            import_request: tag
                .annotations()
                .get(IMPORT_REQUESTED_ANNOTATION)
                .map(String::as_str),
            history_limit: history_limit(&tag, &namespace, &ctx),
            now: Time(now),
            outcome,
            image,
        },
    );
    debug!(trigger, changed = decision.changed, "imported");
    write(&tag, &namespace, &decision, &ctx).await?;

    // The registry notifies before its tag points at the pushed manifest: until an import sees the pushed
    // digest, look again shortly (a few times: an index imported in Legacy mode never shows it).
    let unseen = |p: &Push| p.digest.is_some() && p.digest != decision.status.digest;
    if let Some(push) = pushed.filter(|p| unseen(p) && p.attempts + 1 < Push::MAX_ATTEMPTS) {
        ctx.request_push_import(
            key,
            Push {
                attempts: push.attempts + 1,
                received: Some(std::time::Instant::now()),
                ..push
            },
        );
        return Ok(Action::requeue(PUSH_RECHECK));
    }

    let mut updated = (*tag).clone();
    updated.status = Some(decision.status);
    let plan = schedule::plan(&updated, ctx.last_check(&key), ctx.pacing, now.as_second());
    // Nothing in this namespace changes when another one revokes its grant: look again now and then.
    if plan.recheck_in.is_none() && !plan.import_now && reads_another_namespace(&tag, &namespace) {
        return Ok(Action::requeue(grants::RECHECK));
    }
    Ok(action(plan))
}

/// Whether the tag names a tag or image of another namespace.
fn reads_another_namespace(tag: &ImageStreamTag, namespace: &str) -> bool {
    tag.spec
        .from
        .namespace
        .as_deref()
        .is_some_and(|ns| !ns.is_empty() && ns != namespace)
}

fn action(plan: Plan) -> Action {
    match plan {
        Plan { import_now: true, .. } => Action::requeue(Duration::from_secs(1)),
        Plan {
            recheck_in: Some(after),
            ..
        } => Action::requeue(after),
        Plan { recheck_in: None, .. } => Action::await_change(),
    }
}

/// Asks the cache or the registry for the tag's image.
async fn import(
    tag: &ImageStreamTag,
    source: Source,
    namespace: &str,
    ctx: &Context,
    fresher_than: Option<std::time::Instant>,
    priority: Priority,
) -> (Outcome, Option<Duration>) {
    let (reference, chosen) = match source {
        Source::Known(outcome) => return (refused_by_policy(tag, ctx).unwrap_or(outcome), None),
        Source::Registry(reference) => (reference, None),
        Source::Versions { repository, policy } => {
            match choose(tag, &repository, &policy, namespace, ctx, fresher_than, priority).await {
                Ok(choice) => (repository, Some(choice)),
                Err(failed) => return failed,
            }
        }
    };
    let policy = tag.spec.import_policy.clone().unwrap_or_default();
    let request = ResolveRequest {
        reference: match &chosen {
            Some(choice) => format!(
                "{}/{}:{}",
                reference.registry(),
                reference.repository(),
                choice.tag
            ),
            None => tag.spec.from.name.clone(),
        },
        insecure: policy.insecure,
        import_mode: policy.import_mode.unwrap_or(ImportMode::Legacy),
        credentials: ctx.credentials(namespace, reference.registry(), reference.repository()),
        trust_pinned: true,
        priority,
    };
    match ctx.resolver.resolve(&request).await {
        Ok(resolved) => {
            let source = match &chosen {
                Some(choice) => format!("{} (versionPolicy: {})", request.reference, choice.why),
                None => source_name(&reference, &tag.spec.from.name),
            };
            (
                Outcome::Resolved {
                    digest: resolved.digest,
                    pull_spec: resolved.pull_spec,
                    source,
                    chosen_tag: chosen.map(|c| c.tag),
                    image: None,
                },
                None,
            )
        }
        Err(e) => (
            Outcome::Failed {
                reason: e.reason().to_owned(),
                message: e.to_string(),
            },
            e.retry_after(),
        ),
    }
}

/// The metadata of the image a registry import resolved, read once per digest ([`status::wants_metadata`]):
/// `None` when it is not wanted (no new digest, or a source that needs no registry: aliases and stream images
/// take what their tag records, see [`source`]; `reference: true` records none) or the registry could not be asked now (unavailable, rate limiting: the next import
/// tries again). Metadata that cannot be read (a config over 1 MiB or not matching its digest, JSON that does
/// not parse) is recorded as `unreadable` with the reason, and the import itself still succeeds: the digest
/// is what matters.
async fn image_metadata(
    tag: &ImageStreamTag,
    outcome: &Outcome,
    namespace: &str,
    ctx: &Context,
) -> Option<ImageMetadata> {
    let Outcome::Resolved {
        digest, pull_spec, ..
    } = outcome
    else {
        return None;
    };
    let from_registry = tag.spec.from.kind == SourceKind::DockerImage && !tag.spec.reference;
    if !from_registry || !status::wants_metadata(tag.status.as_ref(), digest) {
        return None;
    }
    // A digest pinned in `from` (a copy by `kubectl berth tag`, a rollback) was recorded without asking the
    // registry, and its metadata is not read from it either: a copy names no `insecure` of its source, and a
    // registry that failed that request would hold back every other tag's import. What another tag of the
    // namespace read for the digest is taken instead.
    let pinned = ImageReference::parse(&tag.spec.from.name).is_ok_and(|r| r.digest().is_some());
    if pinned {
        return ctx
            .tags
            .state()
            .iter()
            .filter(|t| t.namespace().as_deref() == Some(namespace))
            .filter_map(|t| t.status.as_ref()?.image.clone())
            .find(|image| image.digest == *digest && image.unreadable.is_none());
    }
    let reference = ImageReference::parse(pull_spec).ok()?;
    let request = MetadataRequest {
        pull_spec: pull_spec.clone(),
        insecure: tag.spec.import_policy.as_ref().is_some_and(|p| p.insecure),
        credentials: ctx.credentials(namespace, reference.registry(), reference.repository()),
    };
    match ctx.resolver.read_metadata(&request).await {
        Ok(image) => Some(image),
        Err(e) if e.transient() => {
            warn!(error = %e, "image metadata not read now; the next import tries again");
            None
        }
        Err(e) => {
            warn!(error = %e, "image metadata cannot be read; recorded as unreadable");
            Some(ImageMetadata::unreadable(digest, e.to_string()))
        }
    }
}

/// The tag of `repository` that the version policy chooses: listed (or from the listing cache), then chosen.
async fn choose(
    tag: &ImageStreamTag,
    repository: &ImageReference,
    policy: &VersionPolicy,
    namespace: &str,
    ctx: &Context,
    fresher_than: Option<std::time::Instant>,
    priority: Priority,
) -> Result<version_policy::Choice, (Outcome, Option<Duration>)> {
    let failed = |reason: &str, message: String| Outcome::Failed {
        reason: reason.to_owned(),
        message,
    };
    let policy =
        Policy::compile(policy).map_err(|e| (failed(version_policy::REASON_INVALID, e.to_string()), None))?;
    let name = format!("{}/{}", repository.registry(), repository.repository());
    let request = TagListRequest {
        repository: name.clone(),
        insecure: tag.spec.import_policy.as_ref().is_some_and(|p| p.insecure),
        credentials: ctx.credentials(namespace, repository.registry(), repository.repository()),
        fresher_than,
        priority,
    };
    let listed = ctx
        .resolver
        .list_tags(&request)
        .await
        .map_err(|e| (failed(e.reason(), e.to_string()), e.retry_after()))?;
    policy
        .choose(Listed {
            tags: &listed.tags,
            truncated: listed.truncated,
        })
        .map_err(|why| {
            (
                failed(version_policy::REASON_NO_MATCH, format!("{name}: {why}")),
                None,
            )
        })
}

/// A reference pinned by digest (or recorded with `reference: true`) needs no registry, but names one: the
/// registry policy refuses it as it refuses an import.
fn refused_by_policy(tag: &ImageStreamTag, ctx: &Context) -> Option<Outcome> {
    let from = &tag.spec.from;
    if from.kind != SourceKind::DockerImage {
        return None;
    }
    let reference = ImageReference::parse(&from.name).ok()?;
    let insecure = tag.spec.import_policy.as_ref().is_some_and(|p| p.insecure);
    let refusal = ctx
        .resolver
        .policy()
        .check(reference.registry(), insecure)
        .err()?;
    Some(Outcome::Failed {
        reason: refusal.reason().to_owned(),
        message: refusal.to_string(),
    })
}

fn source_name(reference: &ImageReference, given: &str) -> String {
    match reference.tag() {
        Some(tag) => format!("{}/{}:{tag}", reference.registry(), reference.repository()),
        None => given.to_owned(),
    }
}

/// The history limit of the tag's stream, or the default when the stream does not say (or does not exist).
fn history_limit(tag: &ImageStreamTag, namespace: &str, ctx: &Context) -> usize {
    let stream = ctx
        .streams
        .get(&ObjectRef::new(&tag.spec.stream).within(namespace));
    let limit = stream
        .and_then(|s| s.spec.history_limit)
        .unwrap_or(berth_api::image::DEFAULT_HISTORY_LIMIT);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// Writes the status if it changed (server-side apply of the whole status), and publishes the transition.
async fn write(tag: &ImageStreamTag, namespace: &str, decision: &Decision, ctx: &Context) -> Result<()> {
    let name = tag.name_any();
    if decision.changed {
        let api: Api<ImageStreamTag> = Api::namespaced(ctx.client.clone(), namespace);
        let patch = serde_json::json!({
            "apiVersion": ImageStreamTag::api_version(&()),
            "kind": ImageStreamTag::kind(&()),
            "status": decision.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::kube("apply ImageStreamTag status"))?;
        ctx.metrics.status_written("ImageStreamTag");
    }
    let Some(event) = &decision.event else {
        return Ok(());
    };
    let (type_, reason, note) = match event {
        ImportEvent::Imported { pull_spec } => {
            (EventType::Normal, "Imported", format!("imported {pull_spec}"))
        }
        ImportEvent::TagUpdated { from, to } => (
            EventType::Normal,
            "TagUpdated",
            format!("moved from {from} to {to}"),
        ),
        ImportEvent::ImportFailed { reason, message } => {
            (EventType::Warning, "ImportFailed", format!("{reason}: {message}"))
        }
    };
    info!(reason, note, "tag transition");
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Import".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &tag.object_ref(&())).await {
        // An Event that cannot be published is not worth a retry of the import: the status says it all.
        warn!(error = %e, "cannot publish an Event");
    }
    Ok(())
}
