//! OpenShift's sample catalogue (github.com/openshift/library, excerpts in `fixtures/openshift/`, see its
//! README) with only `apiVersion` changed: every ImageStream passes the generated schema and reads into Berth's
//! type, with OpenShift's empty values read as their defaults.

use std::path::{Path, PathBuf};

use berth_api::image::{ImageStream, ReferencePolicyType, SourceKind, TagImportPolicy};
use serde_json::Value;

mod support;
use support::{errors, schema_for};

const OPENSHIFT_IMAGE_API: &str = "image.openshift.io/v1";
const BERTH_IMAGE_API: &str = "image.berth.dev/v1alpha1";

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openshift")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The objects of a template, its `${PARAMETER}`s replaced by their default values as `oc process` would
/// (a generated value becomes `generated`).
fn process(template: &Value) -> Vec<Value> {
    let mut text = template["objects"].to_string();
    for parameter in template["parameters"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap();
        let value = parameter["value"].as_str().unwrap_or("generated");
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(!text.contains("${"), "a parameter without a value: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Every ImageStream of the corpus, named by where it comes from: the stream files, then the streams the
/// templates declare.
fn image_streams() -> Vec<(String, Value)> {
    let mut streams: Vec<_> = fixtures("imagestreams")
        .into_iter()
        .map(|p| (p.display().to_string(), read(&p)))
        .collect();
    for path in fixtures("templates") {
        for object in process(&read(&path)) {
            if object["kind"] == "ImageStream" {
                let name = format!("{} ({})", path.display(), object["metadata"]["name"]);
                streams.push((name, object));
            }
        }
    }
    streams
}

/// `manifest` with only its apiVersion changed from OpenShift's to Berth's.
fn for_berth(mut manifest: Value) -> Value {
    assert_eq!(manifest["apiVersion"], OPENSHIFT_IMAGE_API);
    manifest["apiVersion"] = BERTH_IMAGE_API.into();
    manifest
}

/// What the API server stores: a stream without a spec gets the schema's default spec.
fn as_stored(mut manifest: Value) -> Value {
    if manifest.get("spec").is_none() {
        let default = schema_for("ImageStream")["properties"]["spec"]["default"].clone();
        assert!(default.is_object(), "the schema gives spec no default");
        manifest["spec"] = default;
    }
    manifest
}

#[test]
fn every_catalogue_image_stream_passes_the_schema_and_reads() {
    let streams = image_streams();
    assert!(streams.len() >= 8, "{} streams", streams.len());
    for (name, manifest) in streams {
        let manifest = for_berth(manifest);
        let errors = errors(&manifest);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        let stream: ImageStream =
            serde_json::from_value(as_stored(manifest.clone())).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tags = manifest["spec"]["tags"].as_array().map_or(0, Vec::len);
        assert_eq!(stream.spec.tags.len(), tags, "{name}");
    }
}

#[test]
fn the_corpus_has_every_empty_value_openshift_writes() {
    let all: Vec<String> = image_streams().iter().map(|(_, s)| s.to_string()).collect();
    for needle in [
        r#""referencePolicy":{"type":""}"#,
        r#""generation":null"#,
        r#""annotations":null"#,
        r#""importPolicy":{}"#,
        r#""creationTimestamp":null"#,
    ] {
        assert!(all.iter().any(|s| s.contains(needle)), "no fixture has {needle}");
    }
    // And a template stream without a spec.
    assert!(image_streams().iter().any(|(_, s)| s.get("spec").is_none()));
}

#[test]
fn empty_values_read_as_openshifts_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openshift/imagestreams/sso76-openshift-rhel8.json");
    let stream: ImageStream = serde_json::from_value(for_berth(read(&path))).unwrap();
    let latest = &stream.spec.tags[0];
    assert_eq!(latest.name, "latest");
    assert_eq!(latest.annotations, None);
    assert_eq!(latest.generation, None);
    assert_eq!(latest.import_policy, Some(TagImportPolicy::default()));
    assert_eq!(
        latest.reference_policy.as_ref().unwrap().type_,
        ReferencePolicyType::Source
    );
    assert_eq!(latest.from.as_ref().unwrap().kind, SourceKind::ImageStreamTag);
    assert_eq!(
        stream.spec.tags[1].reference_policy.as_ref().unwrap().type_,
        ReferencePolicyType::Local
    );
}

#[test]
fn other_nulls_and_empty_values_openshift_defaults() {
    let manifest = serde_json::json!({
        "apiVersion": BERTH_IMAGE_API, "kind": "ImageStream", "metadata": {"name": "s"},
        "spec": {"lookupPolicy": {}, "tags": [{
            "name": "v1", "reference": null, "from": {"kind": "DockerImage", "name": "reg/a:v1", "namespace": ""},
            "importPolicy": {"importMode": "", "scheduled": null, "insecure": null},
            "referencePolicy": {}}]}});
    assert_eq!(errors(&manifest), Vec::<String>::new());
    let stream: ImageStream = serde_json::from_value(manifest).unwrap();
    let tag = &stream.spec.tags[0];
    assert_eq!(tag.from.as_ref().unwrap().namespace, None);
    assert!(!stream.spec.lookup_policy.unwrap().local);
    assert_eq!(
        tag.reference_policy.as_ref().unwrap().type_,
        ReferencePolicyType::Source
    );
    let null_tags = serde_json::json!({"apiVersion": BERTH_IMAGE_API, "kind": "ImageStream",
        "metadata": {"name": "s"}, "spec": {"tags": null, "lookupPolicy": null}});
    assert_eq!(errors(&null_tags), Vec::<String>::new());
    let stream: ImageStream = serde_json::from_value(null_tags).unwrap();
    assert!(stream.spec.tags.is_empty());
}

#[test]
fn values_openshift_refuses_are_refused_naming_the_field() {
    let with_tag = |tag: Value| {
        serde_json::json!({"apiVersion": BERTH_IMAGE_API, "kind": "ImageStream", "metadata": {"name": "s"},
            "spec": {"tags": [tag]}})
    };
    let from = serde_json::json!({"kind": "DockerImage", "name": "reg/a:v1"});
    let cases = [
        (
            with_tag(serde_json::json!({"name": "v1", "from": from, "referencePolicy": {"type": "Remote"}})),
            "/spec/tags/0/referencePolicy/type",
            "unknown variant `Remote`",
        ),
        (
            // Case matters to OpenShift too.
            with_tag(serde_json::json!({"name": "v1", "from": from, "referencePolicy": {"type": "local"}})),
            "/spec/tags/0/referencePolicy/type",
            "unknown variant `local`",
        ),
        (
            with_tag(
                serde_json::json!({"name": "v1", "from": from, "importPolicy": {"importMode": "Newest"}}),
            ),
            "/spec/tags/0/importPolicy/importMode",
            "unknown variant `Newest`",
        ),
        (
            with_tag(serde_json::json!({"name": "v1", "from": {"kind": "", "name": "reg/a:v1"}})),
            "/spec/tags/0/from/kind",
            "unknown variant ``",
        ),
        (
            with_tag(serde_json::json!({"name": "", "from": from})),
            "/spec/tags/0/name",
            "",
        ),
    ];
    for (manifest, field, serde_says) in cases {
        let errors = errors(&manifest);
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{field} "))),
            "{manifest}: expected an error at {field}, got {errors:#?}"
        );
        if !serde_says.is_empty() {
            let e = serde_json::from_value::<ImageStream>(manifest).unwrap_err();
            assert!(e.to_string().contains(serde_says), "{e}");
        }
    }
}
