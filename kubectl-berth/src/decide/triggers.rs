//! `kubectl berth set triggers`: the trigger annotation as `oc set triggers` writes it.
//!
//! The value is a JSON list of `{"from": {"kind": "ImageStreamTag", "name": "IS:TAG", "namespace": ...},
//! "fieldPath": "<pod spec>.containers[?(@.name==\"NAME\")].image", "paused": true}`: one entry per container,
//! `namespace` only when it is not the object's own, `paused` only when true (OpenShift's library writes it with
//! `omitempty`; a string `"false"`, as some consoles write, is read and written back as a boolean, since
//! Berth's controller reads a boolean). Init containers get `initContainers[...]`, which Berth's controller
//! reads. Berth's own key `image.berth.dev/triggers` is edited instead when the object has it (it wins there).

use serde_json::{Map, Value, json};

pub use super::target::{Kind, containers_of, parse_object};
use crate::error::{Error, Result};

/// OpenShift's trigger annotation.
pub const OPENSHIFT_TRIGGERS: &str = "image.openshift.io/triggers";
/// Berth's own, which wins when both are present.
pub const BERTH_TRIGGERS: &str = "image.berth.dev/triggers";

/// The tag a trigger follows: `[NAMESPACE/]STREAM:TAG`, its namespace left out when it is the object's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct From {
    /// `STREAM:TAG`.
    pub name: String,
    /// Another namespace.
    pub namespace: Option<String>,
}

/// Reads `--from-image`.
pub fn parse_from(input: &str, object_namespace: &str) -> Result<From> {
    let parsed = super::reference::ImageRef::parse(input)
        .map_err(|e| Error::usage(format!("the value of --from-image is not a valid reference: {e}")))?;
    if parsed.registry.is_some()
        || parsed.id.is_some()
        || parsed.namespace.as_deref().is_some_and(|n| n.contains('/'))
    {
        return Err(Error::usage(
            "the value of --from-image must point to an image stream tag on this server",
        ));
    }
    let Some(tag) = parsed.tag else {
        return Err(Error::usage(
            "the value of --from-image must include the tag you wish to pull from",
        ));
    };
    let name = format!("{}:{tag}", parsed.name);
    name.parse::<berth_api::names::StreamTagRef>()
        .map_err(|e| Error::usage(format!("--from-image: {e}")))?;
    Ok(From {
        name,
        namespace: parsed.namespace.filter(|ns| ns != object_namespace),
    })
}

/// What to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Follow `from` in `containers` (replacing any trigger of the same tag).
    Add {
        /// The tag.
        from: From,
        /// The containers, by name.
        containers: Vec<String>,
        /// `--manual`.
        paused: bool,
    },
    /// Remove the triggers of `from`.
    Remove(From),
    /// Pause (`--manual`) or resume (`--auto`) every trigger.
    SetAll {
        /// Whether paused.
        paused: bool,
    },
    /// Remove every trigger.
    RemoveAll,
}

/// The annotation key in effect: Berth's when present, else OpenShift's.
pub fn key_in_effect(has_berth_key: bool) -> &'static str {
    if has_berth_key {
        BERTH_TRIGGERS
    } else {
        OPENSHIFT_TRIGGERS
    }
}

/// The annotation's new value after `change` (`None`: remove the annotation).
pub fn apply(
    current: Option<&str>,
    change: &Change,
    kind: Kind,
    containers: &(Vec<String>, Vec<String>),
) -> Result<Option<String>> {
    let mut triggers = read(current)?;
    match change {
        Change::RemoveAll => triggers.clear(),
        Change::Remove(from) => triggers.retain(|t| !same_from(t, from)),
        Change::SetAll { paused } => {
            for t in &mut triggers {
                set_paused(t, *paused);
            }
        }
        Change::Add {
            from,
            containers: names,
            paused,
        } => {
            let (plain, init) = containers;
            let unknown: Vec<&str> = names
                .iter()
                .filter(|n| !plain.contains(n) && !init.contains(n))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                let mut all: Vec<&str> = plain.iter().chain(init).map(String::as_str).collect();
                all.sort_unstable();
                return Err(Error::refused(format!(
                    "not all container names exist: {} (accepts: {})",
                    unknown.join(", "),
                    all.join(", ")
                )));
            }
            triggers.retain(|t| !same_from(t, from));
            let pod_spec = kind.pod_spec_keys().join(".");
            let path = |name: &String| {
                let list = if plain.contains(name) {
                    "containers"
                } else {
                    "initContainers"
                };
                format!("{pod_spec}.{list}[?(@.name==\"{name}\")].image")
            };
            let taken: Vec<&str> = names
                .iter()
                .filter(|n| triggers.iter().any(|t| targets(t, n)))
                .map(String::as_str)
                .collect();
            if !taken.is_empty() {
                return Err(Error::refused(format!(
                    "only one trigger may reference each container: {} already follows another tag (remove that trigger first)",
                    taken.join(", ")
                )));
            }
            for name in names {
                let mut from_json = json!({"kind": "ImageStreamTag", "name": from.name});
                if let Some(ns) = &from.namespace {
                    from_json["namespace"] = json!(ns);
                }
                let mut trigger = json!({"from": from_json, "fieldPath": path(name)});
                set_paused(&mut trigger, *paused);
                triggers.push(trigger);
            }
        }
    }
    Ok((!triggers.is_empty()).then(|| render(triggers)))
}

/// One trigger in the order OpenShift's library writes its fields: `from`, `fieldPath`, `paused` (when true),
/// then whatever else an existing trigger held.
#[derive(serde::Serialize)]
struct Ordered {
    from: Value,
    #[serde(rename = "fieldPath")]
    field_path: Value,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    paused: bool,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

fn render(triggers: Vec<Value>) -> String {
    let ordered: Vec<Ordered> = triggers
        .into_iter()
        .map(|t| {
            let paused = paused_of(&t);
            let mut rest = match t {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            rest.remove("paused");
            Ordered {
                from: rest.remove("from").unwrap_or(Value::Null),
                field_path: rest.remove("fieldPath").unwrap_or(Value::Null),
                paused,
                rest,
            }
        })
        .collect();
    serde_json::to_string(&ordered).unwrap_or_default()
}

fn read(current: Option<&str>) -> Result<Vec<Value>> {
    match current.map(str::trim) {
        None | Some("") | Some("null") => Ok(Vec::new()),
        Some(text) => serde_json::from_str::<Vec<Value>>(text).map_err(|e| {
            Error::refused(format!(
                "the existing trigger annotation is not a JSON list of triggers ({e}); fix or remove it first"
            ))
        }),
    }
}

fn same_from(trigger: &Value, from: &From) -> bool {
    let f = &trigger["from"];
    let namespace = f["namespace"].as_str().filter(|ns| !ns.is_empty());
    f["name"].as_str() == Some(from.name.as_str()) && namespace == from.namespace.as_deref()
}

fn targets(trigger: &Value, container: &str) -> bool {
    let path = trigger["fieldPath"].as_str().unwrap_or_default();
    [
        format!("@.name==\"{container}\""),
        format!("@.name=\"{container}\""),
        format!("@.name=='{container}'"),
    ]
    .iter()
    .any(|needle| path.contains(needle.as_str()))
}

fn paused_of(trigger: &Value) -> bool {
    match &trigger["paused"] {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn set_paused(trigger: &mut Value, paused: bool) {
    if let Some(map) = trigger.as_object_mut() {
        if paused {
            map.insert("paused".into(), Value::Bool(true));
        } else {
            map.remove("paused");
        }
    }
}

/// One row of the trigger table: `(value, auto)`, as `oc set triggers` without flags prints them.
pub fn rows(current: Option<&str>) -> Result<Vec<(String, bool)>> {
    Ok(read(current)?
        .iter()
        .map(|t| {
            let f: &Map<String, Value> = t["from"].as_object().unwrap_or(&EMPTY);
            let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
            let from = match f
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_owned(),
            };
            let path = t["fieldPath"].as_str().unwrap_or_default();
            let container = path
                .split("@.name")
                .nth(1)
                .map(|rest| {
                    rest.trim_start_matches('=')
                        .trim_matches(|c| c == '"' || c == '\'')
                })
                .and_then(|rest| rest.split(['"', '\'']).next())
                .unwrap_or(path);
            (format!("{from} ({container})"), !paused_of(t))
        })
        .collect())
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> (Vec<String>, Vec<String>) {
        (vec!["web".into(), "side".into()], vec!["init".into()])
    }

    fn from(name: &str) -> From {
        From {
            name: name.into(),
            namespace: None,
        }
    }

    fn add(name: &str, containers: &[&str], paused: bool) -> Change {
        Change::Add {
            from: from(name),
            containers: containers.iter().map(|c| c.to_string()).collect(),
            paused,
        }
    }

    #[test]
    fn writes_what_oc_writes() {
        let value = apply(None, &add("app:live", &["web"], false), Kind::Deployment, &web())
            .unwrap()
            .unwrap();
        assert_eq!(
            value,
            r#"[{"from":{"kind":"ImageStreamTag","name":"app:live"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image"}]"#
        );
        let manual = apply(None, &add("app:live", &["web"], true), Kind::CronJob, &web())
            .unwrap()
            .unwrap();
        let parsed: Value = serde_json::from_str(&manual).unwrap();
        assert_eq!(parsed[0]["paused"], json!(true));
        assert_eq!(
            parsed[0]["fieldPath"],
            json!("spec.jobTemplate.spec.template.spec.containers[?(@.name==\"web\")].image")
        );
        let init = apply(None, &add("app:live", &["init"], false), Kind::Deployment, &web())
            .unwrap()
            .unwrap();
        assert!(
            init.contains(r#"spec.template.spec.initContainers[?(@.name==\"init\")].image"#),
            "{init}"
        );
    }

    #[test]
    fn the_namespace_is_written_only_for_another_one() {
        assert_eq!(parse_from("app:live", "ns").unwrap(), from("app:live"));
        assert_eq!(parse_from("ns/app:live", "ns").unwrap(), from("app:live"));
        let other = parse_from("shared/app:live", "ns").unwrap();
        assert_eq!(other.namespace.as_deref(), Some("shared"));
        let value = apply(
            None,
            &Change::Add {
                from: other,
                containers: vec!["web".into()],
                paused: false,
            },
            Kind::Deployment,
            &web(),
        )
        .unwrap()
        .unwrap();
        assert!(value.contains(r#""namespace":"shared""#), "{value}");
        for bad in ["app", "quay.io/x/app:1", "app@sha256:abc"] {
            assert!(matches!(parse_from(bad, "ns"), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn adding_again_replaces_and_other_tags_on_the_container_conflict() {
        let first = apply(None, &add("app:live", &["web"], false), Kind::Deployment, &web()).unwrap();
        let again = apply(
            first.as_deref(),
            &add("app:live", &["web"], true),
            Kind::Deployment,
            &web(),
        )
        .unwrap()
        .unwrap();
        let parsed: Vec<Value> = serde_json::from_str(&again).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0]["paused"], json!(true));
        let e = apply(
            first.as_deref(),
            &add("app:v2", &["web"], false),
            Kind::Deployment,
            &web(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("only one trigger may reference each container: web"),
            "{e}"
        );
        let e = apply(None, &add("app:v2", &["nope"], false), Kind::Deployment, &web()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not all container names exist: nope (accepts: init, side, web)"
        );
    }

    #[test]
    fn remove_pause_resume_and_strings() {
        let console = r#"[{"from":{"kind":"ImageStreamTag","name":"app:live"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image","paused":"false"},
                          {"from":{"kind":"ImageStreamTag","name":"app:v1"},"fieldPath":"spec.template.spec.containers[?(@.name==\"side\")].image","paused":"true"}]"#;
        assert_eq!(
            rows(Some(console)).unwrap(),
            vec![
                ("app:live (web)".to_owned(), true),
                ("app:v1 (side)".to_owned(), false)
            ]
        );
        let paused = apply(
            Some(console),
            &Change::SetAll { paused: true },
            Kind::Deployment,
            &web(),
        )
        .unwrap()
        .unwrap();
        assert!(rows(Some(&paused)).unwrap().iter().all(|(_, auto)| !auto));
        let resumed = apply(
            Some(&paused),
            &Change::SetAll { paused: false },
            Kind::Deployment,
            &web(),
        )
        .unwrap()
        .unwrap();
        assert!(!resumed.contains("paused"), "{resumed}");
        let removed = apply(
            Some(console),
            &Change::Remove(from("app:v1")),
            Kind::Deployment,
            &web(),
        )
        .unwrap()
        .unwrap();
        assert!(
            !removed.contains("app:v1") && !removed.contains("\"false\""),
            "{removed}"
        );
        assert_eq!(
            apply(Some(console), &Change::RemoveAll, Kind::Deployment, &web()).unwrap(),
            None
        );
        assert!(apply(Some("{"), &Change::RemoveAll, Kind::Deployment, &web()).is_err());
    }

    #[test]
    fn berth_key_wins_when_present() {
        assert_eq!(key_in_effect(true), BERTH_TRIGGERS);
        assert_eq!(key_in_effect(false), OPENSHIFT_TRIGGERS);
    }
}
