//! Writes `crds/*.yaml` from the API types: `cargo run -p berth-api --bin crdgen`.

use std::path::Path;

fn main() -> std::process::ExitCode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, crd) in berth_api::crds() {
        let path = dir.join(file);
        if let Err(e) = std::fs::write(&path, berth_api::render_crd(&crd)) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
        eprintln!("crdgen: wrote {}", path.display());
    }
    std::process::ExitCode::SUCCESS
}
