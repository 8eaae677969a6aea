//! What OpenShift's API server fills in for a manifest, read the same way here.
//!
//! OpenShift defaults empty values before it validates, and its own tools write them out: the sample catalogue
//! (github.com/openshift/library) has `"generation": null`, `"annotations": null`, `"importPolicy": {}` and
//! `"referencePolicy": {"type": ""}`. So, wherever OpenShift defaults a field:
//!
//! - `null` reads as the field left out (the schema marks such fields `nullable`, the only way a 1.20 API
//!   server accepts a null);
//! - an empty string for an enum reads as the enum's default (the schema lists `""` among the values).
//!
//! What OpenShift refuses stays refused: any other value of an enum is an error naming the field.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use schemars::Schema;
use serde::{Deserialize, Deserializer};

/// Reads `null` as `T::default()`, for fields that are plain values in Rust (a `bool`, a list) but may be
/// written as `null`.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads `""` (and `null`) as `None`: an empty namespace is the object's own, as in OpenShift.
pub(crate) fn empty_as_none<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(deserializer)?.filter(|s| !s.is_empty()))
}

/// The schema of a string enum that also accepts `""` (the default).
pub(crate) fn defaulted_string_enum(values: &[&str]) -> Schema {
    let mut all: Vec<&str> = values.to_vec();
    all.push("");
    schemars::json_schema!({"type": "string", "enum": all})
}

/// `crd` with a `spec` that may be left out and reads as `{}` (the API server fills the default in, so the
/// controller always reads one). OpenShift's templates declare ImageStreams without a spec, for builds and
/// `oc tag` to fill.
pub(crate) fn spec_defaults_to_empty(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        if let Some(required) = schema.required.as_mut() {
            required.retain(|r| r != "spec");
        }
        if schema.required.as_ref().is_some_and(Vec::is_empty) {
            schema.required = None;
        }
        if let Some(spec) = schema.properties.as_mut().and_then(|p| p.get_mut("spec")) {
            spec.default = Some(JSON(serde_json::json!({})));
        }
    }
    crd
}

/// Implements `Deserialize` and `JsonSchema` for a unit-variant enum (deriving `Default`, `Serialize`) so that
/// `""` reads as its default variant and any other unknown value is an error that lists the valid ones.
/// Removes `null` from every `enum` list of a CRD's schemas. schemars lists `null` among the values of an
/// optional enum; a 1.20 API server refuses such a CRD (with a misleading "per-version schemas may not all be
/// set to identical values"). The field's `nullable: true` is what lets a `null` through.
pub(crate) fn no_null_in_enums(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn visit(schema: &mut JSONSchemaProps) {
        if let Some(values) = &mut schema.enum_ {
            values.retain(|v| !v.0.is_null());
        }
        schema
            .properties
            .iter_mut()
            .flat_map(|p| p.values_mut())
            .for_each(visit);
        if let Some(JSONSchemaPropsOrArray::Schema(items)) = &mut schema.items {
            visit(items);
        }
        if let Some(JSONSchemaPropsOrBool::Schema(extra)) = &mut schema.additional_properties {
            visit(extra);
        }
        for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of] {
            list.iter_mut().flatten().for_each(visit);
        }
    }
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            visit(schema);
        }
    }
    crd
}

macro_rules! defaulted_enum {
    ($ty:ident { $($variant:ident),+ $(,)? }) => {
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                const VALID: &[&str] = &[$(stringify!($variant)),+, ""];
                let value = String::deserialize(deserializer)?;
                match value.as_str() {
                    "" => Ok(Self::default()),
                    $(stringify!($variant) => Ok(Self::$variant),)+
                    other => Err(<D::Error as ::serde::de::Error>::unknown_variant(other, VALID)),
                }
            }
        }

        impl ::schemars::JsonSchema for $ty {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                $crate::compat::defaulted_string_enum(&[$(stringify!($variant)),+])
            }
        }
    };
}

pub(crate) use defaulted_enum;

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
    enum Colour {
        #[default]
        Red,
        Blue,
    }
    defaulted_enum!(Colour { Red, Blue });

    #[derive(Deserialize, Debug, Default, PartialEq)]
    struct Paint {
        #[serde(default)]
        colour: Option<Colour>,
        #[serde(default, deserialize_with = "null_as_default")]
        coats: Vec<u32>,
        #[serde(default, deserialize_with = "empty_as_none")]
        shop: Option<String>,
    }

    fn read(json: &str) -> Result<Paint, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_strings_and_nulls_read_as_defaults() {
        assert_eq!(read(r#"{"colour": ""}"#).unwrap().colour, Some(Colour::Red));
        assert_eq!(read(r#"{"colour": "Blue"}"#).unwrap().colour, Some(Colour::Blue));
        assert_eq!(
            read(r#"{"colour": null, "coats": null, "shop": null}"#),
            Ok(Paint::default())
        );
        assert_eq!(read(r#"{"shop": ""}"#), Ok(Paint::default()));
        assert_eq!(read(r#"{"shop": "x", "coats": [2]}"#).unwrap().coats, vec![2]);
    }

    #[test]
    fn other_values_are_refused_listing_the_valid_ones() {
        let e = read(r#"{"colour": "Green"}"#).unwrap_err();
        assert!(e.contains("unknown variant `Green`"), "{e}");
        assert!(e.contains("`Red`, `Blue`"), "{e}");
        // Case matters, as in OpenShift.
        assert!(read(r#"{"colour": "red"}"#).is_err());
    }

    #[test]
    fn the_schema_lists_the_empty_string() {
        let schema = serde_json::to_value(schemars::schema_for!(Colour)).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["Red", "Blue", ""]));
        assert_eq!(schema["type"], "string");
    }
}
