//! The generated schemas as a JSON Schema validator sees them, and the errors it finds.

use serde_json::Value;

/// The `openAPIV3Schema` of the CRD for `kind`.
pub fn schema_for(kind: &str) -> Value {
    let (_, crd) = berth_api::crds()
        .into_iter()
        .find(|(_, crd)| crd.spec.names.kind == kind)
        .expect("known kind");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

/// `schema` with OpenAPI's `nullable: true` spelt as JSON Schema does: `null` among the types (and the
/// values of an enum), so a null passes here exactly where the API server lets it.
pub fn with_nulls(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type").cloned() {
                    map.insert("type".into(), serde_json::json!([t, "null"]));
                }
                if let Some(Value::Array(values)) = map.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
            }
            map.values_mut().for_each(with_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(with_nulls),
        _ => {}
    }
}

/// The instance paths of every error the schema of the manifest's kind finds in it, as
/// `/spec/tags/0/name (message)`.
pub fn errors(manifest: &Value) -> Vec<String> {
    let mut schema = schema_for(manifest["kind"].as_str().expect("a kind"));
    with_nulls(&mut schema);
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    validator
        .iter_errors(manifest)
        .map(|e| format!("{} ({e})", e.instance_path()))
        .collect()
}
