//! The trigger annotation: OpenShift's `image.openshift.io/triggers` format, also read under Berth's own key
//! `image.berth.dev/triggers`.
//!
//! The value is a JSON list of triggers:
//!
//! ```json
//! [{"from": {"kind": "ImageStreamTag", "name": "app:live", "namespace": "optional"},
//!   "fieldPath": "spec.template.spec.containers[?(@.name==\"web\")].image",
//!   "paused": false}]
//! ```
//!
//! - When both keys are present, Berth's wins and OpenShift's is not read at all (so a manifest shared with an
//!   OpenShift cluster can follow other tags here). An empty value means no triggers.
//! - `fieldPath` selects one container by index (`containers[0]`, as OpenShift's templates write it) or by name
//!   (`containers[?(@.name=="web")]`) in `containers` or `initContainers` of the pod template
//!   (`spec.template.spec` for Deployments, StatefulSets and DaemonSets, `spec.jobTemplate.spec.template.spec`
//!   for CronJobs); `@.name=="web"`, OpenShift's `@.name="web"` and single quotes are accepted. An index is
//!   resolved to the container's name when the object is read, and the patch names the container.
//! - `from.namespace` left out (or empty) is the object's own namespace.
//! - An annotation is valid or not as a whole: one bad trigger stops them all, and is reported.

use std::collections::BTreeMap;

use berth_api::names::StreamTagRef;
use berth_api::validation::is_dns_subdomain;
use serde::Deserialize;

use super::field_path::field_path;
use super::target::{ContainerPath, TargetKind};

/// OpenShift's trigger annotation.
pub const OPENSHIFT_TRIGGERS: &str = "image.openshift.io/triggers";

/// Berth's trigger annotation: the same format; it wins over OpenShift's when both are present.
pub const BERTH_TRIGGERS: &str = "image.berth.dev/triggers";

/// A tag a trigger follows, with its namespace resolved.
pub use crate::followers::TagKey;

/// One trigger, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// The tag it follows.
    pub from: TagKey,
    /// The container whose image it sets, as the fieldPath selects it.
    pub container: ContainerPath,
    /// A paused trigger changes nothing.
    pub paused: bool,
}

/// Why a trigger annotation cannot be used. `index` is the trigger's position in the list, from 0.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// The value is not a JSON list of `{from, fieldPath, paused}`.
    #[error("{annotation} is not a JSON list of triggers ({{from, fieldPath, paused}}): {detail}")]
    Json {
        /// The annotation's key.
        annotation: &'static str,
        /// What the JSON parser said.
        detail: String,
    },
    /// `from.kind` is not `ImageStreamTag`.
    #[error("triggers[{index}]: from.kind {kind:?} is not supported: only ImageStreamTag")]
    UnsupportedKind {
        /// The trigger.
        index: usize,
        /// The kind given.
        kind: String,
    },
    /// `from.name` has no tag.
    #[error("triggers[{index}]: from.name {name:?} names no tag: write STREAM:TAG")]
    MissingTag {
        /// The trigger.
        index: usize,
        /// The name given.
        name: String,
    },
    /// `from.name` is not `STREAM:TAG` with valid names.
    #[error("triggers[{index}]: from.name: {detail}")]
    InvalidName {
        /// The trigger.
        index: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// `from.namespace` is not a namespace name.
    #[error("triggers[{index}]: from.namespace {namespace:?} is not a namespace name")]
    InvalidNamespace {
        /// The trigger.
        index: usize,
        /// The namespace given.
        namespace: String,
    },
    /// `fieldPath` does not select one container's image.
    #[error("triggers[{index}]: fieldPath {path:?}: {reason}")]
    InvalidFieldPath {
        /// The trigger.
        index: usize,
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two triggers set the same container (found when the annotation is read, or, for a container selected by
    /// index and another by name, when the object is).
    #[error("triggers[{first}] and triggers[{second}] both set the image of {container}")]
    DuplicateContainer {
        /// The first trigger.
        first: usize,
        /// The second.
        second: usize,
        /// The container.
        container: ContainerPath,
    },
    /// `from.namespace` names another namespace that does not grant the object's its images.
    #[error("triggers[{index}]: {message}")]
    Forbidden {
        /// The trigger.
        index: usize,
        /// What to grant (see [`crate::grants::forbidden_message`]).
        message: String,
    },
    /// The pod template has no such container.
    #[error("triggers[{index}]: the pod template has no {container}")]
    NoSuchContainer {
        /// The trigger.
        index: usize,
        /// The container named.
        container: ContainerPath,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrigger {
    from: RawFrom,
    field_path: String,
    #[serde(default)]
    paused: bool,
}

#[derive(Deserialize)]
struct RawFrom {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// The trigger annotation that counts among `annotations`, as `(key, value)`: Berth's if present, else
/// OpenShift's.
pub fn trigger_annotation(annotations: &BTreeMap<String, String>) -> Option<(&'static str, &str)> {
    [BERTH_TRIGGERS, OPENSHIFT_TRIGGERS]
        .into_iter()
        .find_map(|key| annotations.get(key).map(|v| (key, v.as_str())))
}

/// The triggers of an object of `kind` in `namespace`, or `None` when it has no trigger annotation.
pub fn triggers_of(
    annotations: &BTreeMap<String, String>,
    namespace: &str,
    kind: TargetKind,
) -> Option<Result<Vec<Trigger>, TriggerError>> {
    trigger_annotation(annotations).map(|(key, value)| parse(key, value, namespace, kind))
}

/// Reads the value of the annotation `key` of an object of `kind` in `namespace`.
pub fn parse(
    key: &'static str,
    value: &str,
    namespace: &str,
    kind: TargetKind,
) -> Result<Vec<Trigger>, TriggerError> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<RawTrigger> = serde_json::from_str(value).map_err(|e| TriggerError::Json {
        annotation: key,
        detail: e.to_string(),
    })?;
    let mut triggers: Vec<Trigger> = Vec::with_capacity(raw.len());
    for (index, t) in raw.into_iter().enumerate() {
        let trigger = read(index, t, namespace, kind)?;
        if let Some(first) = triggers.iter().position(|o| o.container == trigger.container) {
            return Err(TriggerError::DuplicateContainer {
                first,
                second: index,
                container: trigger.container,
            });
        }
        triggers.push(trigger);
    }
    Ok(triggers)
}

fn read(index: usize, raw: RawTrigger, namespace: &str, kind: TargetKind) -> Result<Trigger, TriggerError> {
    if raw.from.kind != "ImageStreamTag" {
        return Err(TriggerError::UnsupportedKind {
            index,
            kind: raw.from.kind,
        });
    }
    let name = raw.from.name.trim();
    if name.split_once(':').is_none_or(|(_, tag)| tag.is_empty()) {
        return Err(TriggerError::MissingTag {
            index,
            name: raw.from.name,
        });
    }
    let reference: StreamTagRef =
        name.parse().map_err(
            |e: berth_api::names::StreamTagRefError| TriggerError::InvalidName {
                index,
                detail: e.to_string(),
            },
        )?;
    let namespace = match raw.from.namespace.as_deref().map(str::trim) {
        None | Some("") => namespace.to_owned(),
        Some(ns) if is_dns_subdomain(ns) && ns.len() <= 63 && !ns.contains('.') => ns.to_owned(),
        Some(ns) => {
            return Err(TriggerError::InvalidNamespace {
                index,
                namespace: ns.to_owned(),
            });
        }
    };
    let container = field_path(&raw.field_path, kind).map_err(|reason| TriggerError::InvalidFieldPath {
        index,
        path: raw.field_path.clone(),
        reason,
    })?;
    Ok(Trigger {
        from: TagKey {
            namespace,
            stream: reference.stream,
            tag: reference.tag,
        },
        container,
        paused: raw.paused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::target::{ContainerList, Select};

    const WEB: &str = r#"spec.template.spec.containers[?(@.name=="web")].image"#;

    fn one(from: &str, field_path: &str) -> String {
        serde_json::json!([{"from": serde_json::from_str::<serde_json::Value>(from).unwrap(), "fieldPath": field_path}])
            .to_string()
    }

    fn parse_one(from: &str, field_path: &str, kind: TargetKind) -> Result<Vec<Trigger>, TriggerError> {
        parse(OPENSHIFT_TRIGGERS, &one(from, field_path), "ns", kind)
    }

    fn web() -> ContainerPath {
        ContainerPath {
            list: ContainerList::Containers,
            select: Select::Name("web".into()),
        }
    }

    #[test]
    fn a_trigger_in_openshift_format_reads() {
        let t = parse_one(
            r#"{"kind":"ImageStreamTag","name":"app:live"}"#,
            WEB,
            TargetKind::Deployment,
        )
        .unwrap();
        assert_eq!(
            t,
            vec![Trigger {
                from: TagKey {
                    namespace: "ns".into(),
                    stream: "app".into(),
                    tag: "live".into()
                },
                container: web(),
                paused: false,
            }]
        );
    }

    #[test]
    fn bad_annotations_give_specific_errors() {
        let kind = TargetKind::Deployment;
        let e = parse(OPENSHIFT_TRIGGERS, "[{", "ns", kind).unwrap_err();
        assert!(
            matches!(
                e,
                TriggerError::Json {
                    annotation: OPENSHIFT_TRIGGERS,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse(BERTH_TRIGGERS, r#"{"from":{}}"#, "ns", kind).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("image.berth.dev/triggers is not a JSON list"),
            "{e}"
        );
        let e = parse(
            OPENSHIFT_TRIGGERS,
            r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"}}]"#,
            "ns",
            kind,
        )
        .unwrap_err();
        assert!(e.to_string().contains("fieldPath"), "{e}");

        let e = parse_one(r#"{"kind":"DockerImage","name":"nginx:1"}"#, WEB, kind).unwrap_err();
        assert_eq!(
            e,
            TriggerError::UnsupportedKind {
                index: 0,
                kind: "DockerImage".into()
            }
        );
        for name in ["app", "app:", ""] {
            let from = format!(r#"{{"kind":"ImageStreamTag","name":"{name}"}}"#);
            let e = parse_one(&from, WEB, kind).unwrap_err();
            assert!(matches!(e, TriggerError::MissingTag { .. }), "{name}: {e}");
        }
        for name in ["App:v1", "app:v 1", ":v1"] {
            let from = format!(r#"{{"kind":"ImageStreamTag","name":"{name}"}}"#);
            let e = parse_one(&from, WEB, kind).unwrap_err();
            assert!(matches!(e, TriggerError::InvalidName { .. }), "{name}: {e}");
        }
        let e = parse_one(
            r#"{"kind":"ImageStreamTag","name":"a:b","namespace":"Other_NS"}"#,
            WEB,
            kind,
        )
        .unwrap_err();
        assert!(matches!(e, TriggerError::InvalidNamespace { .. }), "{e}");
    }

    #[test]
    fn the_second_bad_trigger_is_named_by_its_index() {
        let value = serde_json::json!([
            {"from": {"kind": "ImageStreamTag", "name": "a:b"}, "fieldPath": WEB},
            {"from": {"kind": "ImageStream", "name": "a"}, "fieldPath": WEB},
        ]);
        let e = parse(
            OPENSHIFT_TRIGGERS,
            &value.to_string(),
            "ns",
            TargetKind::Deployment,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("triggers[1]: from.kind"), "{e}");
    }

    #[test]
    fn two_triggers_on_one_container_conflict() {
        let value = serde_json::json!([
            {"from": {"kind": "ImageStreamTag", "name": "a:b"}, "fieldPath": WEB},
            {"from": {"kind": "ImageStreamTag", "name": "a:c"}, "fieldPath": WEB.replace("==", "=")},
        ]);
        let e = parse(
            OPENSHIFT_TRIGGERS,
            &value.to_string(),
            "ns",
            TargetKind::Deployment,
        )
        .unwrap_err();
        assert_eq!(
            e,
            TriggerError::DuplicateContainer {
                first: 0,
                second: 1,
                container: web()
            }
        );
    }

    #[test]
    fn namespace_paused_and_unknown_fields() {
        let value = r#"[{"from":{"kind":"ImageStreamTag","name":"app:v1","namespace":"shared",
            "apiVersion":"image.openshift.io/v1"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image",
            "paused":true,"extra":1}]"#;
        let t = parse(OPENSHIFT_TRIGGERS, value, "ns", TargetKind::Deployment).unwrap();
        assert_eq!(t[0].from.namespace, "shared");
        assert!(t[0].paused);
    }

    #[test]
    fn empty_values_are_no_triggers() {
        for value in ["", "  ", "[]"] {
            assert_eq!(
                parse(BERTH_TRIGGERS, value, "ns", TargetKind::Deployment),
                Ok(vec![])
            );
        }
    }

    #[test]
    fn berths_key_wins_over_openshifts() {
        let ours = one(r#"{"kind":"ImageStreamTag","name":"ours:v1"}"#, WEB);
        let theirs = one(r#"{"kind":"ImageStreamTag","name":"theirs:v1"}"#, WEB);
        let mut annotations = BTreeMap::from([(OPENSHIFT_TRIGGERS.to_owned(), theirs)]);
        let t = triggers_of(&annotations, "ns", TargetKind::Deployment)
            .unwrap()
            .unwrap();
        assert_eq!(t[0].from.stream, "theirs");
        annotations.insert(BERTH_TRIGGERS.to_owned(), ours);
        let t = triggers_of(&annotations, "ns", TargetKind::Deployment)
            .unwrap()
            .unwrap();
        assert_eq!(t[0].from.stream, "ours");
        // Even a broken Berth annotation wins: it is reported, never silently replaced by the other.
        annotations.insert(BERTH_TRIGGERS.to_owned(), "nope".into());
        assert!(matches!(
            triggers_of(&annotations, "ns", TargetKind::Deployment),
            Some(Err(TriggerError::Json {
                annotation: BERTH_TRIGGERS,
                ..
            }))
        ));
        // And an empty one switches OpenShift's off here.
        annotations.insert(BERTH_TRIGGERS.to_owned(), String::new());
        assert_eq!(
            triggers_of(&annotations, "ns", TargetKind::Deployment),
            Some(Ok(vec![]))
        );
        assert_eq!(triggers_of(&BTreeMap::new(), "ns", TargetKind::Deployment), None);
    }
}
