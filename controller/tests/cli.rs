//! The binary as a person meets it: `--help`, and one clear line when there is no cluster to reach.

use std::process::Command;

fn controller() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth-controller"))
}

#[test]
fn help_names_every_setting_with_its_environment_variable() {
    let out = controller().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "BERTH_WEBHOOK_TOKEN_FILE",
        "BERTH_IMPORT_INTERVAL",
        "BERTH_NODE_GRACE",
        "BERTH_LEASE_NAMESPACE",
    ] {
        assert!(help.contains(env), "--help lacks {env}:\n{help}");
    }
}

#[test]
fn an_unreachable_api_server_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // Port 1 on loopback: nothing listens there.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    let out = controller()
        .env("KUBECONFIG", &kubeconfig)
        .env("BERTH_CONNECT_TIMEOUT", "3s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr
            .starts_with("berth-controller: cannot reach the Kubernetes API server at https://127.0.0.1:1/"),
        "{stderr}"
    );
}

#[test]
fn a_missing_kubeconfig_is_one_line_and_a_failure() {
    let out = controller()
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no Kubernetes configuration") && stderr.contains("/nonexistent/kubeconfig"),
        "{stderr}"
    );
}
