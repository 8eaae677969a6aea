//! The generated schemas accept the examples and refuse bad manifests, naming the field.
//!
//! This checks the OpenAPI schema with a JSON Schema validator, which is fast and needs no cluster; the same
//! fixtures are applied to the real API server by the end-to-end tests.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod support;
use support::errors;

fn load(path: &Path) -> (Value, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let manifest: Value = serde_saphyr::from_str(&text).unwrap();
    (manifest, text)
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// `spec.tags[0].importPolicy` as a JSON pointer: `/spec/tags/0/importPolicy`.
fn pointer(field: &str) -> String {
    field
        .split(['.', '['])
        .map(|part| format!("/{}", part.trim_end_matches(']')))
        .collect()
}

#[test]
fn examples_are_valid() {
    for path in yaml_files("../manifests/examples")
        .into_iter()
        .chain(yaml_files("tests/fixtures"))
    {
        let (manifest, _) = load(&path);
        let errors = errors(&manifest);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

#[test]
fn invalid_manifests_are_refused_naming_the_field() {
    for path in yaml_files("tests/fixtures/invalid") {
        let (manifest, text) = load(&path);
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
        let errors = errors(&manifest);
        let want = pointer(expected);
        // A missing required field is reported at its parent, with the field's name in the message.
        let (parent, field) = want.rsplit_once('/').unwrap();
        let names_field = |e: &String| {
            e.starts_with(&format!("{want} "))
                || (e.starts_with(&format!("{parent} ")) && e.contains(&format!("\"{field}\"")))
        };
        assert!(
            errors.iter().any(names_field),
            "{}: expected an error at {want}, got {errors:#?}",
            path.display()
        );
    }
}

#[test]
fn field_paths_become_pointers() {
    assert_eq!(pointer("spec.tags[0].importPolicy"), "/spec/tags/0/importPolicy");
}
