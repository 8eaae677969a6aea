//! The CRI v1 Rust code in `src/cri/generated/` is generated from the vendored
//! `proto/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto` by ONE command:
//!
//! ```sh
//! BERTH_REGENERATE=1 cargo test -p berth-agent --test cri_codegen
//! ```
//!
//! Without `BERTH_REGENERATE` the test generates into a temporary directory and fails
//! when the checked-in code differs (so a proto edit without regeneration is caught).
//! It uses `protoc` from Debian's `protobuf-compiler` (installed by `hack/deps.sh`),
//! or the binary named by `$PROTOC`.

use std::path::{Path, PathBuf};

const GENERATED_FILE: &str = "runtime.v1.rs";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the code generator into `out_dir`.
fn generate(out_dir: &Path) {
    let proto_root = crate_dir().join("proto");
    let proto = proto_root.join("k8s.io/cri-api/pkg/apis/runtime/v1/api.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        // AuthConfig carries passwords and tokens: its Debug is written by hand in
        // `cri::auth` and redacts them, so a request never leaks them into logs.
        .skip_debug([".runtime.v1.AuthConfig"])
        .out_dir(out_dir)
        .compile_protos(&[proto], &[proto_root])
        .unwrap_or_else(|e| {
            panic!("generating the CRI code failed (is protoc installed? hack/deps.sh installs it): {e}")
        });
}

#[test]
fn generated_cri_code_is_up_to_date() {
    let checked_in = crate_dir().join("src/cri/generated").join(GENERATED_FILE);
    if std::env::var_os("BERTH_REGENERATE").is_some() {
        generate(checked_in.parent().expect("generated dir"));
        return;
    }
    let tmp = std::env::temp_dir().join(format!("berth-cri-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    generate(&tmp);
    let fresh = std::fs::read_to_string(tmp.join(GENERATED_FILE)).expect("generated file");
    let _ = std::fs::remove_dir_all(&tmp);
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        fresh == current,
        "{} is stale or edited by hand; regenerate it with\n  \
         BERTH_REGENERATE=1 cargo test -p berth-agent --test cri_codegen",
        checked_in.display()
    );
}
