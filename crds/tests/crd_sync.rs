//! The checked-in CRD YAML must be exactly what the Rust types generate.

#[test]
fn checked_in_crds_match_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, crd) in berth_api::crds() {
        let path = dir.join(file);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; run `cargo run -p berth-api --bin crdgen`",
                path.display()
            )
        });
        assert!(
            on_disk == berth_api::render_crd(&crd),
            "{} differs from the types in crds/src: run `cargo run -p berth-api --bin crdgen` and commit the result",
            path.display()
        );
    }
}

#[test]
fn crds_use_nothing_a_1_20_api_server_refuses() {
    for (file, crd) in berth_api::crds() {
        let json = serde_json::to_string(&crd).unwrap();
        // CEL rules arrived in 1.25 and selectable fields in 1.30; a 1.20 server rejects or drops them.
        assert!(!json.contains("x-kubernetes-validations"), "{file} has CEL rules");
        assert!(!json.contains("selectableFields"), "{file} has selectable fields");
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}: no status subresource"
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["berth".to_owned()][..]),
            "{file}"
        );
    }
}
