//! `-o json|yaml|name`, as kubectl prints objects: one object alone, several as a `v1` `List`; managed
//! fields left out; `-o name` as `kind.group/name`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::{DataFormat, Format};
use crate::error::{Error, Result};

/// Renders `objects` in `format`.
pub fn objects<T: Serialize>(format: Format, objects: &[T]) -> Result<String> {
    let mut values: Vec<Value> = objects
        .iter()
        .map(|o| serde_json::to_value(o).map_err(|e| render_error("json", e)))
        .collect::<Result<_>>()?;
    for v in &mut values {
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    }
    match format {
        Format::Name => Ok(values.iter().map(|v| format!("{}\n", name_of(v))).collect()),
        Format::Json | Format::Yaml => {
            let data = match values.len() {
                1 => values.remove(0),
                _ => {
                    json!({"apiVersion": "v1", "kind": "List", "items": values, "metadata": {"resourceVersion": ""}})
                }
            };
            data_as(
                if format == Format::Json {
                    DataFormat::Json
                } else {
                    DataFormat::Yaml
                },
                &data,
            )
        }
    }
}

/// Renders any data as JSON (pretty, with a final newline) or YAML.
pub fn data_as<T: Serialize>(format: DataFormat, data: &T) -> Result<String> {
    match format {
        DataFormat::Json => serde_json::to_string_pretty(data)
            .map(|s| s + "\n")
            .map_err(|e| render_error("json", e)),
        DataFormat::Yaml => serde_saphyr::to_string(data).map_err(|e| render_error("yaml", e)),
    }
}

fn render_error(format: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Render {
        format,
        message: e.to_string(),
    }
}

/// `kind.group/name`, as `kubectl get -o name` prints it.
pub fn name_of(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or_default().to_ascii_lowercase();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match object["apiVersion"].as_str().and_then(|v| v.split_once('/')) {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str) -> Value {
        json!({"apiVersion": "image.berth.dev/v1alpha1", "kind": "ImageStreamTag",
               "metadata": {"name": name, "managedFields": [{"manager": "x"}]}, "spec": {"tag": "v1"}})
    }

    #[test]
    fn names_as_kubectl_prints_them() {
        assert_eq!(
            objects(Format::Name, &[tag("a.b"), tag("a.c")]).unwrap(),
            "imagestreamtag.image.berth.dev/a.b\nimagestreamtag.image.berth.dev/a.c\n"
        );
        assert_eq!(
            name_of(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})),
            "pod/p"
        );
        assert_eq!(
            name_of(&json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}})),
            "deployment.apps/w"
        );
    }

    #[test]
    fn one_object_alone_several_as_a_list_without_managed_fields() {
        let one: Value = serde_json::from_str(&objects(Format::Json, &[tag("a.b")]).unwrap()).unwrap();
        assert_eq!(one["kind"], "ImageStreamTag");
        assert!(one["metadata"].get("managedFields").is_none());
        let list: Value =
            serde_json::from_str(&objects(Format::Json, &[tag("a.b"), tag("a.c")]).unwrap()).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        let yaml = objects(Format::Yaml, &[tag("a.b")]).unwrap();
        assert!(yaml.contains("kind: ImageStreamTag"), "{yaml}");
        assert!(!yaml.contains("managedFields"), "{yaml}");
    }
}
