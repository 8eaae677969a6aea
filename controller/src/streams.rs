//! The ImageStream reconciler: inline tags become ImageStreamTags owned by the stream, removed tags are
//! removed, a tag defined both inline and on its own is a reported conflict, and the status sums up the tags.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_api::image::{
    IMPORT_SUCCESS, ImageStream, ImageStreamStatus, ImageStreamTag, ImageStreamTagSpec, STREAM_LABEL,
    TagReference, TagSummary,
};
use berth_api::names::image_stream_tag_name;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{info, instrument, warn};

use crate::conditions;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};

/// The stream condition that reports tags defined twice.
pub const TAG_CONFLICT: &str = "TagConflict";

/// What to do with a stream's ImageStreamTags.
#[derive(Debug, Default, PartialEq)]
pub struct TagPlan {
    /// Tags to create or update (server-side apply).
    pub apply: Vec<ImageStreamTag>,
    /// Names of owned tags no longer in the stream.
    pub delete: Vec<String>,
    /// Tags defined inline that also exist as an ImageStreamTag the stream does not own.
    pub conflicts: Vec<String>,
}

/// Decides, from the stream and the tags of it that exist, what to apply and delete.
pub fn plan_tags(stream: &ImageStream, existing: &[Arc<ImageStreamTag>]) -> TagPlan {
    let uid = stream.uid().unwrap_or_default();
    let owned = |t: &ImageStreamTag| t.owner_references().iter().any(|o| o.uid == uid);
    let mut plan = TagPlan::default();
    let mut wanted = BTreeSet::new();
    for inline in stream.spec.tags.iter().filter(|t| t.from.is_some()) {
        wanted.insert(inline.name.clone());
        let current = existing.iter().find(|t| t.spec.tag == inline.name);
        match current {
            Some(t) if !owned(t) => plan.conflicts.push(inline.name.clone()),
            Some(t) if t.spec == spec_of(stream, inline) => {}
            _ => plan.apply.push(desired(stream, inline)),
        }
    }
    plan.delete = existing
        .iter()
        .filter(|t| owned(t) && !wanted.contains(&t.spec.tag))
        .map(|t| t.name_any())
        .collect();
    plan
}

fn spec_of(stream: &ImageStream, inline: &TagReference) -> ImageStreamTagSpec {
    ImageStreamTagSpec {
        stream: stream.name_any(),
        tag: inline.name.clone(),
        annotations: inline.annotations.clone(),
        from: inline.from.clone().unwrap_or_default(),
        reference: inline.reference,
        import_policy: inline.import_policy.clone(),
        reference_policy: inline.reference_policy.clone(),
    }
}

fn desired(stream: &ImageStream, inline: &TagReference) -> ImageStreamTag {
    ImageStreamTag {
        metadata: ObjectMeta {
            name: Some(image_stream_tag_name(&stream.name_any(), &inline.name)),
            namespace: stream.namespace(),
            labels: Some([(STREAM_LABEL.to_owned(), stream.name_any())].into()),
            owner_references: stream.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: spec_of(stream, inline),
        status: None,
    }
}

/// The stream's status from its tags and the conflicts found.
pub fn summarize(
    stream: &ImageStream,
    tags: &[Arc<ImageStreamTag>],
    conflicts: &[String],
    now: &Time,
) -> ImageStreamStatus {
    let mut status = stream.status.clone().unwrap_or_default();
    let mut summaries: Vec<TagSummary> = tags
        .iter()
        .map(|t| {
            let s = t.status.as_ref();
            let failed = s
                .and_then(|s| conditions::find(&s.conditions, IMPORT_SUCCESS))
                .filter(|c| c.status != "True");
            TagSummary {
                tag: t.spec.tag.clone(),
                pull_spec: s.and_then(|s| s.pull_spec.clone()),
                failure_reason: failed.map(|c| c.reason.clone()),
            }
        })
        .collect();
    summaries.sort_by(|a, b| a.tag.cmp(&b.tag));
    status.tag_count = u32::try_from(summaries.len()).unwrap_or(u32::MAX);
    status.resolved_tags = u32::try_from(
        tags.iter()
            .filter(|t| t.status.as_ref().is_some_and(|s| s.digest.is_some()))
            .count(),
    )
    .unwrap_or(u32::MAX);
    status.last_updated = tags
        .iter()
        .filter_map(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.history.first())
                .map(|h| h.created.clone())
        })
        .max_by_key(|t| t.0);
    status.tags = summaries;
    let condition = if conflicts.is_empty() {
        conditions::new(TAG_CONFLICT, "False", "NoConflict", "every tag is defined once")
    } else {
        conditions::new(
            TAG_CONFLICT,
            "True",
            "DefinedTwice",
            format!(
                "tags {} are defined inline and as ImageStreamTags the stream does not own; the standalone ones \
                 win: remove one of the two definitions",
                conflicts.join(", ")
            ),
        )
    };
    conditions::set(&mut status.conditions, condition, stream.metadata.generation, now);
    status
}

/// The controller's name in logs and metrics.
pub const CONTROLLER: &str = "streams";

/// Materialises the stream's inline tags and writes its status when it changed.
#[instrument(skip_all, fields(stream = %stream.name_any(), namespace = stream.namespace().unwrap_or_default()))]
pub async fn reconcile(stream: Arc<ImageStream>, ctx: Arc<Context>) -> Result<Action> {
    let object = ObjectRef::from_obj(stream.as_ref()).erase();
    let reconciles = &ctx.metrics.reconciles;
    reconciles
        .run(CONTROLLER, object, materialise(stream, ctx.clone()))
        .await
}

/// After a failed reconcile: classified, counted, and tried again with back-off (see [`crate::error::retry`]).
pub fn error_policy(stream: Arc<ImageStream>, error: &Error, ctx: Arc<Context>) -> Action {
    let object = ObjectRef::from_obj(stream.as_ref()).erase();
    ctx.metrics.reconciles.error_policy(CONTROLLER, object, error)
}

async fn materialise(stream: Arc<ImageStream>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = stream.namespace().ok_or(Error::Incomplete("ImageStream"))?;
    let name = stream.name_any();
    let tags_of = || -> Vec<Arc<ImageStreamTag>> {
        ctx.tags
            .state()
            .into_iter()
            .filter(|t| t.spec.stream == name && t.namespace().as_deref() == Some(namespace.as_str()))
            .collect()
    };
    let existing = tags_of();
    let plan = plan_tags(&stream, &existing);
    let api: Api<ImageStreamTag> = Api::namespaced(ctx.client.clone(), &namespace);
    for tag in &plan.apply {
        info!(tag = %tag.spec.tag, "materialising an inline tag");
        api.patch(
            &tag.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(tag),
        )
        .await
        .map_err(Error::kube("apply ImageStreamTag"))?;
    }
    for tag in &plan.delete {
        info!(tag, "removing a tag no longer in the stream");
        match api.delete(tag, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(Error::kube("delete ImageStreamTag")(e)),
        }
    }
    if !plan.conflicts.is_empty() {
        warn!(conflicts = ?plan.conflicts, "tags defined twice");
    }
    let status = summarize(&stream, &existing, &plan.conflicts, &Time(jiff::Timestamp::now()));
    if stream.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({
            "apiVersion": ImageStream::api_version(&()),
            "kind": ImageStream::kind(&()),
            "status": status,
        });
        Api::<ImageStream>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::kube("apply ImageStream status"))?;
        ctx.metrics.status_written("ImageStream");
    }
    // Tags just applied show up through the watch, which brings the stream back here for its status.
    Ok(Action::await_change())
}

#[cfg(test)]
#[path = "streams_scenarios.rs"]
mod scenarios;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures::{self, NS};
    use berth_api::image::ImageStreamTagStatus;

    fn stream(tags: &[(&str, &str)]) -> ImageStream {
        fixtures::stream(NS, "demo", tags)
    }

    fn materialised(s: &ImageStream) -> Vec<Arc<ImageStreamTag>> {
        plan_tags(s, &[]).apply.into_iter().map(Arc::new).collect()
    }

    #[test]
    fn inline_tags_become_owned_tags_once() {
        let s = stream(&[("v1", "reg/demo:v1"), ("Latest", "reg/demo:latest")]);
        let plan = plan_tags(&s, &[]);
        let names: Vec<_> = plan.apply.iter().map(|t| t.name_any()).collect();
        assert_eq!(names[0], "demo.v1");
        assert!(names[1].starts_with("demo.latest-"), "{names:?}");
        let owner = &plan.apply[0].owner_references()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("demo-uid", Some(true)));
        // Once they exist unchanged, nothing is written again.
        assert_eq!(plan_tags(&s, &materialised(&s)), TagPlan::default());
    }

    #[test]
    fn a_changed_inline_tag_is_applied_and_a_removed_one_deleted() {
        let before = stream(&[("v1", "reg/demo:v1"), ("v2", "reg/demo:v2")]);
        let existing = materialised(&before);
        let after = stream(&[("v1", "reg/demo:v1.1")]);
        let plan = plan_tags(&after, &existing);
        assert_eq!(plan.apply.len(), 1);
        assert_eq!(plan.apply[0].spec.from.name, "reg/demo:v1.1");
        assert_eq!(plan.delete, vec!["demo.v2".to_owned()]);
    }

    #[test]
    fn a_standalone_tag_with_the_same_name_is_a_conflict_not_a_fight() {
        let s = stream(&[("v1", "reg/demo:v1")]);
        let mut standalone = plan_tags(&s, &[]).apply.remove(0);
        standalone.metadata.owner_references = None;
        standalone.spec.from.name = "other/demo:v1".into();
        let plan = plan_tags(&s, &[Arc::new(standalone)]);
        assert_eq!(plan.conflicts, vec!["v1".to_owned()]);
        assert!(plan.apply.is_empty() && plan.delete.is_empty(), "{plan:?}");
        let status = summarize(&s, &[], &plan.conflicts, &Time(Default::default()));
        let c = conditions::find(&status.conditions, TAG_CONFLICT).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "DefinedTwice"));
    }

    #[test]
    fn the_status_sums_up_the_tags() {
        let s = stream(&[("a", "reg/demo:a"), ("b", "reg/demo:b")]);
        let mut tags = materialised(&s);
        let mut resolved = (*tags[0]).clone();
        resolved.status = Some(ImageStreamTagStatus {
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            pull_spec: Some("reg/demo@sha256:aaaa".into()),
            ..Default::default()
        });
        tags[0] = Arc::new(resolved);
        let status = summarize(&s, &tags, &[], &Time(Default::default()));
        assert_eq!((status.tag_count, status.resolved_tags), (2, 1));
        assert_eq!(status.tags[0].pull_spec.as_deref(), Some("reg/demo@sha256:aaaa"));
        assert_eq!(
            conditions::find(&status.conditions, TAG_CONFLICT).unwrap().status,
            "False"
        );
    }
}
