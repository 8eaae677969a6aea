//! Every kind parses from YAML and serialises back to the same document.

use berth_api::apps::Workload;
use berth_api::image::{ImageStream, ImageStreamTag, SourceKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn read(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Parses `yaml` as `T`, serialises it back, and checks nothing was lost, added or changed.
fn round_trip<T: DeserializeOwned + Serialize>(yaml: &str) -> T {
    let typed: T = serde_saphyr::from_str(yaml).expect("parses as the typed resource");
    let original: serde_json::Value = serde_saphyr::from_str(yaml).expect("parses as YAML");
    let back = serde_json::to_value(&typed).unwrap();
    pretty_assertions::assert_eq!(original, back);
    typed
}

#[test]
fn example_stream_round_trips() {
    let is: ImageStream = round_trip(&read("../manifests/examples/imagestream.yaml"));
    assert_eq!(is.spec.tags.len(), 2);
    assert_eq!(
        is.spec.tags[1].from.as_ref().unwrap().kind,
        SourceKind::ImageStreamTag
    );
}

#[test]
fn example_tag_round_trips() {
    let tag: ImageStreamTag = round_trip(&read("../manifests/examples/imagestreamtag.yaml"));
    assert_eq!(
        (tag.spec.stream.as_str(), tag.spec.tag.as_str()),
        ("demo", "canary")
    );
}

#[test]
fn example_version_policy_round_trips() {
    let tag: ImageStreamTag = round_trip(&read("../manifests/examples/imagestreamtag-versionpolicy.yaml"));
    let policy = tag.spec.import_policy.unwrap().version_policy.unwrap();
    assert_eq!(policy.semver.unwrap().range, ">=1.0.0 <2.0.0");
    assert_eq!(policy.exclude, vec!["-debug$".to_owned()]);
}

#[test]
fn example_workload_round_trips() {
    let wl: Workload = round_trip(&read("../manifests/examples/workload.yaml"));
    assert_eq!(wl.spec.replicas, 3);
    assert_eq!(
        wl.spec.template.spec.containers[0]
            .image_from
            .as_ref()
            .unwrap()
            .name,
        "demo:stable"
    );
}

#[test]
fn openshift_image_stream_reads_unchanged() {
    let is: ImageStream = round_trip(&read("tests/fixtures/openshift-imagestream.yaml"));
    assert_eq!(is.spec.tags[0].name, "3.1-ubi9");
    assert_eq!(is.spec.tags[0].generation, Some(2));
    assert!(is.spec.tags[1].import_policy.as_ref().unwrap().scheduled);
}

#[test]
fn status_round_trips() {
    let yaml = r#"
apiVersion: image.berth.dev/v1alpha1
kind: ImageStreamTag
metadata: {name: demo.stable, namespace: default, generation: 3}
spec:
  stream: demo
  tag: stable
  from: {kind: DockerImage, name: "10.213.0.1:5000/berth/demo:v2"}
status:
  digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222"
  shortDigest: "222222222222"
  pullSpec: "10.213.0.1:5000/berth/demo@sha256:2222222222222222222222222222222222222222222222222222222222222222"
  observedGeneration: 3
  lastImportTime: "2026-11-22T10:00:00Z"
  history:
  - created: "2026-11-22T10:00:00Z"
    digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222"
    pullSpec: "10.213.0.1:5000/berth/demo@sha256:2222222222222222222222222222222222222222222222222222222222222222"
    generation: 3
  - created: "2026-11-21T10:00:00Z"
    digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"
    pullSpec: "10.213.0.1:5000/berth/demo@sha256:1111111111111111111111111111111111111111111111111111111111111111"
    generation: 1
  conditions:
  - type: ImportSuccess
    status: "True"
    reason: Imported
    message: "resolved 10.213.0.1:5000/berth/demo:v2"
    lastTransitionTime: "2026-11-22T10:00:00Z"
    observedGeneration: 3
"#;
    let tag: ImageStreamTag = round_trip(yaml);
    assert_eq!(tag.status.unwrap().history.len(), 2);
}
