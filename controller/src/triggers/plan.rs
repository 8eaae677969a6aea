//! What a trigger annotation asks of its object now: for each trigger, the tag's current pull spec against the
//! container's image; the change is the containers whose image differs.

use serde_json::{Map, Value, json};

use super::annotation::{TagKey, Trigger, TriggerError};
use super::target::{ContainerList, ContainerRef, TargetKind};
use crate::grants::{self, GrantLookup, GrantRequest, Refusal};
use crate::import::source::TagLookup;

/// One container image to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageChange {
    /// The container, by name.
    pub container: ContainerRef,
    /// Its image now (empty when it has none).
    pub from: String,
    /// The tag's pull spec.
    pub to: String,
    /// The tag that moved.
    pub tag: TagKey,
}

/// The pull spec `tag` resolves to now, if it exists and has been imported.
pub fn pull_spec<'a>(tag: &TagKey, tags: &'a impl TagLookup) -> Option<&'a str> {
    tags.tag(&tag.namespace, &tag.stream, &tag.tag)?
        .status
        .as_ref()?
        .pull_spec
        .as_deref()
}

/// The image changes that `triggers` ask of `object` (of `kind`), given the tags as `tags` has them.
///
/// Every trigger must select a container of the pod template (paused ones too: they are there to be resumed),
/// and no two the same one (a container may be selected by index in one trigger and by name in another);
/// paused triggers and tags not found or not yet imported change nothing; a container that already runs the
/// pull spec changes nothing. Each change names its container, whichever way the trigger selected it.
pub fn plan(
    kind: TargetKind,
    object: &Value,
    triggers: &[Trigger],
    tags: &impl TagLookup,
) -> Result<Vec<ImageChange>, TriggerError> {
    let mut changes = Vec::new();
    let mut selected: Vec<ContainerRef> = Vec::with_capacity(triggers.len());
    for (index, trigger) in triggers.iter().enumerate() {
        let (resolved, container) =
            trigger
                .container
                .resolve(kind, object)
                .ok_or_else(|| TriggerError::NoSuchContainer {
                    index,
                    container: trigger.container.clone(),
                })?;
        if let Some(first) = selected.iter().position(|c| *c == resolved) {
            return Err(TriggerError::DuplicateContainer {
                first,
                second: index,
                container: resolved.into(),
            });
        }
        selected.push(resolved.clone());
        if trigger.paused {
            continue;
        }
        let Some(to) = pull_spec(&trigger.from, tags) else {
            continue;
        };
        let from = container.get("image").and_then(Value::as_str).unwrap_or_default();
        if from != to {
            changes.push(ImageChange {
                container: resolved,
                from: from.to_owned(),
                to: to.to_owned(),
                tag: trigger.from.clone(),
            });
        }
    }
    Ok(changes)
}

/// The first trigger that follows a tag of another namespace without that namespace's grant to `namespace`,
/// the object's (see [`crate::grants`]); paused triggers read nothing. A grant nobody knows yet is asked for.
pub fn refused(
    triggers: &[Trigger],
    namespace: &str,
    grants: &impl GrantLookup,
) -> Result<Option<TriggerError>, GrantRequest> {
    for (index, trigger) in triggers.iter().enumerate().filter(|(_, t)| !t.paused) {
        match grants::require(grants, namespace, &trigger.from.namespace) {
            Ok(()) => {}
            Err(Refusal::Ask(request)) => return Err(request),
            Err(Refusal::Forbidden(message)) => return Ok(Some(TriggerError::Forbidden { index, message })),
        }
    }
    Ok(None)
}

/// A strategic merge patch that sets exactly the changed containers' images (containers merge by name), with
/// `resource_version` as a precondition: the server refuses it (409 Conflict) when the object changed since
/// the version the decision read, so a container renamed or removed meanwhile is never re-created by the patch.
pub fn patch(kind: TargetKind, resource_version: &str, changes: &[ImageChange]) -> Value {
    let mut pod_spec = Map::new();
    for list in [ContainerList::Containers, ContainerList::InitContainers] {
        let entries: Vec<Value> = changes
            .iter()
            .filter(|c| c.container.list == list)
            .map(|c| json!({"name": c.container.name, "image": c.to}))
            .collect();
        if !entries.is_empty() {
            pod_spec.insert(list.key().to_owned(), Value::Array(entries));
        }
    }
    let mut body = Value::Object(pod_spec);
    for key in kind.pod_spec_keys().iter().rev() {
        body = json!({ *key: body });
    }
    body["metadata"] = json!({"resourceVersion": resource_version});
    body
}

/// The note of the `Triggered` Event: what moved where.
pub fn note(changes: &[ImageChange]) -> String {
    changes
        .iter()
        .map(|c| format!("{} set to {} (tag {})", c.container, c.to, c.tag))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::TagSnapshot;
    use crate::testing::fixtures::{TagFixture, istag};
    use crate::triggers::annotation::{OPENSHIFT_TRIGGERS, parse};
    use berth_api::image::ImageStreamTag;
    use std::sync::Arc;

    fn tag(ns: &str, stream: &str, name: &str, pull_spec: Option<&str>) -> Arc<ImageStreamTag> {
        let t = istag(ns, stream, name);
        Arc::new(match pull_spec {
            Some(p) => t.pulled(p),
            None => t,
        })
    }

    fn cache() -> TagSnapshot {
        TagSnapshot(vec![
            tag("ns", "app", "live", Some("reg/app@sha256:2")),
            tag("ns", "app", "pending", None),
            tag("shared", "base", "v1", Some("reg/base@sha256:b")),
            tag("ns", "sidecar", "v1", Some("reg/sidecar@sha256:s")),
        ])
    }

    fn deployment(containers: &[(&str, &str)], init: &[(&str, &str)]) -> Value {
        let list = |l: &[(&str, &str)]| -> Vec<Value> {
            l.iter().map(|(n, i)| json!({"name": n, "image": i})).collect()
        };
        json!({"spec": {"template": {"spec": {"containers": list(containers), "initContainers": list(init)}}}})
    }

    fn triggers(kind: TargetKind, list: &[(&str, &str, bool)]) -> Vec<Trigger> {
        let value: Vec<Value> = list
            .iter()
            .map(|(from, path, paused)| {
                let (name, ns) = from
                    .split_once('@')
                    .map_or((*from, None), |(n, ns)| (n, Some(ns)));
                json!({"from": {"kind": "ImageStreamTag", "name": name, "namespace": ns},
                       "fieldPath": path, "paused": paused})
            })
            .collect();
        parse(OPENSHIFT_TRIGGERS, &Value::Array(value).to_string(), "ns", kind).unwrap()
    }

    const WEB: &str = r#"spec.template.spec.containers[?(@.name=="web")].image"#;
    const SIDE: &str = r#"spec.template.spec.containers[?(@.name="side")].image"#;
    const INIT: &str = r#"spec.template.spec.initContainers[?(@.name=="init")].image"#;

    #[test]
    fn a_moved_tag_changes_its_container_only() {
        let obj = deployment(&[("web", "reg/app:old"), ("side", "reg/sidecar@sha256:s")], &[]);
        let t = triggers(
            TargetKind::Deployment,
            &[("app:live", WEB, false), ("sidecar:v1", SIDE, false)],
        );
        let changes = plan(TargetKind::Deployment, &obj, &t, &cache()).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (
                changes[0].container.name.as_str(),
                changes[0].from.as_str(),
                changes[0].to.as_str()
            ),
            ("web", "reg/app:old", "reg/app@sha256:2")
        );
    }

    #[test]
    fn nothing_changes_when_the_image_is_already_the_pull_spec() {
        let obj = deployment(&[("web", "reg/app@sha256:2")], &[]);
        let t = triggers(TargetKind::Deployment, &[("app:live", WEB, false)]);
        assert_eq!(plan(TargetKind::Deployment, &obj, &t, &cache()), Ok(vec![]));
    }

    #[test]
    fn paused_missing_and_unimported_tags_change_nothing() {
        let obj = deployment(&[("web", "x"), ("side", "y")], &[("init", "z")]);
        for t in [
            triggers(TargetKind::Deployment, &[("app:live", WEB, true)]),
            triggers(TargetKind::Deployment, &[("app:pending", WEB, false)]),
            triggers(TargetKind::Deployment, &[("app:gone", WEB, false)]),
            triggers(TargetKind::Deployment, &[("nostream:v1", SIDE, false)]),
            // The tag exists, but in another namespace than the object's.
            triggers(TargetKind::Deployment, &[("base:v1", INIT, false)]),
        ] {
            assert_eq!(
                plan(TargetKind::Deployment, &obj, &t, &cache()),
                Ok(vec![]),
                "{t:?}"
            );
        }
    }

    #[test]
    fn another_namespace_and_init_containers() {
        let obj = deployment(&[("web", "x")], &[("init", "old")]);
        let t = triggers(TargetKind::Deployment, &[("base:v1@shared", INIT, false)]);
        let changes = plan(TargetKind::Deployment, &obj, &t, &cache()).unwrap();
        assert_eq!(changes[0].to, "reg/base@sha256:b");
        assert_eq!(changes[0].container.list, ContainerList::InitContainers);
        assert_eq!(changes[0].tag.to_string(), "shared/base:v1");
    }

    #[test]
    fn a_container_without_image_gets_one() {
        let obj = json!({"spec": {"template": {"spec": {"containers": [{"name": "web"}]}}}});
        let t = triggers(TargetKind::StatefulSet, &[("app:live", WEB, false)]);
        let changes = plan(TargetKind::StatefulSet, &obj, &t, &cache()).unwrap();
        assert_eq!(
            (changes[0].from.as_str(), changes[0].to.as_str()),
            ("", "reg/app@sha256:2")
        );
    }

    #[test]
    fn a_trigger_naming_no_container_is_an_error_paused_or_not() {
        let obj = deployment(&[("other", "x")], &[("web", "y")]);
        for paused in [false, true] {
            let t = triggers(TargetKind::DaemonSet, &[("app:live", WEB, paused)]);
            let e = plan(TargetKind::DaemonSet, &obj, &t, &cache()).unwrap_err();
            assert!(matches!(e, TriggerError::NoSuchContainer { index: 0, .. }), "{e}");
            assert_eq!(
                e.to_string(),
                "triggers[0]: the pod template has no container \"web\""
            );
        }
    }

    #[test]
    fn cronjobs_change_their_job_template() {
        let path = r#"spec.jobTemplate.spec.template.spec.containers[?(@.name=="job")].image"#;
        let obj = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "job", "image": "old"}]}}}}}});
        let t = triggers(TargetKind::CronJob, &[("app:live", path, false)]);
        let changes = plan(TargetKind::CronJob, &obj, &t, &cache()).unwrap();
        assert_eq!(changes[0].to, "reg/app@sha256:2");
        let body = patch(TargetKind::CronJob, "42", &changes);
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "42"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "job", "image": "reg/app@sha256:2"}]}}}}}})
        );
    }

    #[test]
    fn the_patch_names_exactly_the_changed_containers() {
        let obj = deployment(&[("web", "a"), ("side", "b"), ("other", "c")], &[("init", "d")]);
        let t = triggers(
            TargetKind::Deployment,
            &[
                ("app:live", WEB, false),
                ("sidecar:v1", SIDE, false),
                ("base:v1@shared", INIT, false),
            ],
        );
        let changes = plan(TargetKind::Deployment, &obj, &t, &cache()).unwrap();
        let body = patch(TargetKind::Deployment, "7", &changes);
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"template": {"spec": {
                "containers": [{"name": "web", "image": "reg/app@sha256:2"},
                               {"name": "side", "image": "reg/sidecar@sha256:s"}],
                "initContainers": [{"name": "init", "image": "reg/base@sha256:b"}]}}}})
        );
        assert_eq!(
            note(&changes[..1]),
            "container \"web\" set to reg/app@sha256:2 (tag ns/app:live)"
        );
    }

    #[test]
    fn containers_selected_by_index_are_patched_by_name_in_their_list() {
        let obj = deployment(&[("web", "a"), ("side", "b")], &[("init", "d")]);
        let t = triggers(
            TargetKind::Deployment,
            &[
                ("sidecar:v1", "spec.template.spec.containers[1].image", false),
                (
                    "base:v1@shared",
                    "spec.template.spec.initContainers[0].image",
                    false,
                ),
            ],
        );
        let changes = plan(TargetKind::Deployment, &obj, &t, &cache()).unwrap();
        assert_eq!(
            patch(TargetKind::Deployment, "8", &changes),
            json!({"metadata": {"resourceVersion": "8"}, "spec": {"template": {"spec": {
                "containers": [{"name": "side", "image": "reg/sidecar@sha256:s"}],
                "initContainers": [{"name": "init", "image": "reg/base@sha256:b"}]}}}})
        );
        assert_eq!(
            note(&changes),
            "container \"side\" set to reg/sidecar@sha256:s (tag ns/sidecar:v1); \
             init container \"init\" set to reg/base@sha256:b (tag shared/base:v1)"
        );
        // Already current: nothing to write.
        let current = deployment(
            &[("web", "a"), ("side", "reg/sidecar@sha256:s")],
            &[("init", "reg/base@sha256:b")],
        );
        assert_eq!(plan(TargetKind::Deployment, &current, &t, &cache()), Ok(vec![]));
    }

    #[test]
    fn an_index_past_the_list_selects_nothing_and_says_so() {
        let obj = deployment(&[("web", "a")], &[]);
        for (path, says) in [
            ("spec.template.spec.containers[1].image", "containers[1]"),
            ("spec.template.spec.initContainers[0].image", "initContainers[0]"),
        ] {
            let t = triggers(TargetKind::Deployment, &[("app:live", path, false)]);
            let e = plan(TargetKind::Deployment, &obj, &t, &cache()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("triggers[0]: the pod template has no {says}")
            );
        }
    }

    #[test]
    fn one_container_selected_by_index_and_by_name_conflicts() {
        let obj = deployment(&[("web", "a"), ("side", "b")], &[]);
        let t = triggers(
            TargetKind::Deployment,
            &[
                ("app:live", WEB, false),
                ("sidecar:v1", "spec.template.spec.containers[0].image", true),
            ],
        );
        let e = plan(TargetKind::Deployment, &obj, &t, &cache()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "triggers[0] and triggers[1] both set the image of container \"web\""
        );
        // The same index twice is refused when the annotation is read.
        let twice = json!([
            {"from": {"kind": "ImageStreamTag", "name": "a:b"}, "fieldPath": "spec.template.spec.containers[0].image"},
            {"from": {"kind": "ImageStreamTag", "name": "a:c"}, "fieldPath": "spec.template.spec.containers[ 0 ].image"},
        ]);
        let e = parse(
            OPENSHIFT_TRIGGERS,
            &twice.to_string(),
            "ns",
            TargetKind::Deployment,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "triggers[0] and triggers[1] both set the image of containers[0]"
        );
    }

    #[test]
    fn the_decision_follows_the_tag_to_its_latest_digest() {
        // Several moves before the object is looked at: one change, to the last digest.
        let obj = deployment(&[("web", "reg/app@sha256:1")], &[]);
        let t = triggers(TargetKind::Deployment, &[("app:live", WEB, false)]);
        let moved = TagSnapshot(vec![tag("ns", "app", "live", Some("reg/app@sha256:3"))]);
        let changes = plan(TargetKind::Deployment, &obj, &t, &moved).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].to, "reg/app@sha256:3");
        // After the write, the same decision changes nothing.
        let written = deployment(&[("web", "reg/app@sha256:3")], &[]);
        assert_eq!(plan(TargetKind::Deployment, &written, &t, &moved), Ok(vec![]));
    }

    #[test]
    fn a_tag_of_another_namespace_needs_its_grant_unless_the_trigger_is_paused() {
        use crate::grants::FakeGrants;
        let value = json!([
            {"from": {"kind": "ImageStreamTag", "name": "app:live"}, "fieldPath": "spec.template.spec.containers[0].image"},
            {"from": {"kind": "ImageStreamTag", "name": "secret:v1", "namespace": "team-b"},
             "fieldPath": "spec.template.spec.containers[1].image"}
        ]);
        let triggers = parse(
            OPENSHIFT_TRIGGERS,
            &value.to_string(),
            "team-a",
            TargetKind::Deployment,
        )
        .unwrap();
        let ask = refused(&triggers, "team-a", &FakeGrants::default()).unwrap_err();
        assert_eq!((ask.consumer.as_str(), ask.source.as_str()), ("team-a", "team-b"));
        let mut denied = FakeGrants::default();
        denied.0.insert(("team-a".into(), "team-b".into()), false);
        let Ok(Some(TriggerError::Forbidden { index: 1, message })) = refused(&triggers, "team-a", &denied)
        else {
            panic!("triggers[1] is refused")
        };
        assert!(
            message.contains("--group=system:serviceaccounts:team-a"),
            "{message}"
        );
        let granted = FakeGrants::granting(&[("team-a", "team-b")]);
        assert_eq!(refused(&triggers, "team-a", &granted), Ok(None));
        let mut paused = triggers.clone();
        paused[1].paused = true;
        assert_eq!(refused(&paused, "team-a", &denied), Ok(None));
    }
}
