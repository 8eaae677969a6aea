//! The trigger annotations of OpenShift's sample templates (excerpts of github.com/openshift/library in
//! `crds/tests/fixtures/openshift/templates/`, see the README there), read with the templates' default
//! parameters: every trigger selects the container OpenShift would set, and the patch names it in its list.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::annotation::{OPENSHIFT_TRIGGERS, TagKey, triggers_of};
use super::plan::{patch, plan};
use super::target::{ContainerList, TargetKind};
use crate::context::TagSnapshot;
use crate::testing::fixtures::{TagFixture, istag};
use berth_api::image::ImageStreamTag;

/// The namespace the templates are processed in (`oc process` leaves an object's namespace to `oc apply`).
const NAMESPACE: &str = "demo";

fn templates() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/tests/fixtures/openshift/templates");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no templates in {}", dir.display());
    files
}

/// The Deployments of a template, its `${PARAMETER}`s replaced by their default values as `oc process` would.
fn deployments(path: &Path) -> Vec<Value> {
    let template: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut text = template["objects"].to_string();
    for parameter in template["parameters"].as_array().into_iter().flatten() {
        let value = parameter["value"].as_str().unwrap_or("generated");
        text = text.replace(&format!("${{{}}}", parameter["name"].as_str().unwrap()), value);
    }
    let objects: Vec<Value> = serde_json::from_str(&text).unwrap();
    objects
        .into_iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect()
}

fn annotations(object: &Value) -> std::collections::BTreeMap<String, String> {
    serde_json::from_value(object["metadata"]["annotations"].clone()).unwrap()
}

/// What one trigger must set: the container's list and name, and the tag it follows.
type Sets = (ContainerList, &'static str, &'static str);

/// What each trigger of each templated Deployment must set: (template, Deployment, what its triggers set).
fn expected() -> Vec<(&'static str, &'static str, Vec<Sets>)> {
    use ContainerList::{Containers, InitContainers};
    vec![
        (
            "cakephp-mysql-persistent.json",
            "cakephp-mysql-persistent",
            vec![
                (
                    Containers,
                    "cakephp-mysql-persistent",
                    "demo/cakephp-mysql-persistent:latest",
                ),
                (
                    InitContainers,
                    "cakephp-init-container",
                    "demo/cakephp-mysql-persistent:latest",
                ),
            ],
        ),
        (
            "cakephp-mysql-persistent.json",
            "mysql",
            vec![(Containers, "mysql", "openshift/mysql:8.0-el8")],
        ),
        (
            "httpd-example.json",
            "httpd-example",
            vec![(Containers, "httpd-example", "demo/httpd-example:latest")],
        ),
        (
            "mysql-persistent.json",
            "mysql",
            vec![(Containers, "mysql", "openshift/mysql:8.4-el10")],
        ),
        (
            "nodejs-example.json",
            "nodejs-example",
            vec![(Containers, "nodejs-example", "demo/nodejs-example:latest")],
        ),
        (
            "rails-postgresql-example.json",
            "rails-postgresql-example",
            vec![
                (
                    Containers,
                    "rails-postgresql-example",
                    "demo/rails-postgresql-example:latest",
                ),
                (
                    InitContainers,
                    "ruby-init-container",
                    "demo/rails-postgresql-example:latest",
                ),
            ],
        ),
        (
            "rails-postgresql-example.json",
            "postgresql",
            vec![(Containers, "postgresql", "openshift/postgresql:12-el8")],
        ),
    ]
}

#[test]
fn every_template_trigger_selects_the_right_container() {
    let expected = expected();
    let mut seen = 0;
    for path in templates() {
        let file = path.file_name().unwrap().to_str().unwrap();
        for object in deployments(&path) {
            let name = object["metadata"]["name"].as_str().unwrap();
            let annotations = annotations(&object);
            assert!(annotations.contains_key(OPENSHIFT_TRIGGERS), "{file} {name}");
            let triggers = triggers_of(&annotations, NAMESPACE, TargetKind::Deployment)
                .unwrap()
                .unwrap_or_else(|e| panic!("{file} {name}: {e}"));
            let (_, _, want) = expected
                .iter()
                .find(|(f, d, _)| *f == file && *d == name)
                .unwrap_or_else(|| panic!("{file} {name}: not in the expected table"));
            let got: Vec<(ContainerList, String, String)> = triggers
                .iter()
                .map(|t| {
                    let (container, _) = t
                        .container
                        .resolve(TargetKind::Deployment, &object)
                        .unwrap_or_else(|| panic!("{file} {name}: {} selects nothing", t.container));
                    (container.list, container.name, t.from.to_string())
                })
                .collect();
            let want: Vec<_> = want
                .iter()
                .map(|(l, c, t)| (*l, (*c).to_owned(), (*t).to_owned()))
                .collect();
            assert_eq!(got, want, "{file} {name}");
            seen += 1;
        }
    }
    assert_eq!(
        seen,
        expected.len(),
        "a Deployment of the table is missing from the fixtures"
    );
}

fn tag(key: &TagKey, pull_spec: &str) -> std::sync::Arc<ImageStreamTag> {
    std::sync::Arc::new(istag(&key.namespace, &key.stream, &key.tag).pulled(pull_spec))
}

#[test]
fn a_moved_tag_patches_the_template_containers_and_init_containers_by_name() {
    let path = templates()
        .into_iter()
        .find(|p| p.ends_with("cakephp-mysql-persistent.json"))
        .unwrap();
    let app = deployments(&path)
        .into_iter()
        .find(|d| d["metadata"]["name"] == "cakephp-mysql-persistent")
        .unwrap();
    let triggers = triggers_of(&annotations(&app), NAMESPACE, TargetKind::Deployment)
        .unwrap()
        .unwrap();
    let spec = "image-registry.demo/demo/cakephp-mysql-persistent@sha256:1";
    let tags = TagSnapshot(vec![tag(&triggers[0].from, spec)]);
    let changes = plan(TargetKind::Deployment, &app, &triggers, &tags).unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        patch(TargetKind::Deployment, "5", &changes),
        json!({"metadata": {"resourceVersion": "5"}, "spec": {"template": {"spec": {
            "containers": [{"name": "cakephp-mysql-persistent", "image": spec}],
            "initContainers": [{"name": "cakephp-init-container", "image": spec}]}}}})
    );
}
