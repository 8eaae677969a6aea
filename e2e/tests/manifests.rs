//! The deploy manifests and the examples are accepted by the real API server (server-side dry run: nothing
//! is changed).

use std::process::Command;

use berth_e2e::cluster::LocalCluster;

fn kubectl(cluster: &LocalCluster, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn e2e_the_deploy_manifests_and_examples_are_accepted() {
    let Some(cluster) = LocalCluster::require() else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = root.join("manifests");
    let (ok, out) = kubectl(
        &cluster,
        &["apply", "-k", base.to_str().unwrap(), "--dry-run=server"],
    );
    assert!(ok, "kubectl apply -k manifests/ --dry-run=server failed:\n{out}");
    for kind in [
        "deployment.apps/berth-controller",
        "clusterrole.rbac.authorization.k8s.io/berth-node",
        "serviceaccount/berth-controller",
    ] {
        assert!(out.contains(kind), "{kind} missing from:\n{out}");
    }
    let examples = root.join("manifests/examples");
    let (ok, out) = kubectl(
        &cluster,
        &[
            "apply",
            "-n",
            "default",
            "-f",
            examples.to_str().unwrap(),
            "--dry-run=server",
        ],
    );
    assert!(ok, "the examples were refused:\n{out}");
    // One object per file.
    let files = std::fs::read_dir(&examples).expect("the examples").count();
    assert_eq!(out.matches("(server dry run)").count(), files, "{out}");
}
