//! The binary as a person meets it: `--help`, and one clear line when the runtime cannot be reached.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth-agent"))
}

#[test]
fn help_names_the_settings_up_sh_passes() {
    let out = agent().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "BERTH_NODE_NAME",
        "BERTH_NODE_IP",
        "BERTH_CRI_ENDPOINT",
        "BERTH_TLS_CERT",
        "BERTH_CLIENT_CA",
    ] {
        assert!(help.contains(env), "--help lacks {env}:\n{help}");
    }
}

#[test]
fn an_unreachable_runtime_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-containerd.sock");
    let out = agent()
        .env("NO_COLOR", "1")
        .args([
            "--node-name",
            "test",
            "--node-ip",
            "127.0.0.1",
            "--tls-cert",
            "/nonexistent.crt",
        ])
        .args([
            "--tls-key",
            "/nonexistent.key",
            "--client-ca",
            "/nonexistent-ca.crt",
            "--cri-endpoint",
            &format!("unix://{}", socket.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach the container runtime at unix://"),
        "{stderr}"
    );
}

#[test]
fn the_https_port_is_never_open_by_default() {
    // Without a client CA the agent does not start (exit 2, the flag named) unless development
    // mode is asked for by name.
    let out = agent()
        .env("NO_COLOR", "1")
        .args(["--node-name", "test", "--node-ip", "127.0.0.1"])
        .args(["--tls-cert", "/c.crt", "--tls-key", "/c.key"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--client-ca"), "{stderr}");
    // Both at once is a contradiction, refused the same way.
    let out = agent()
        .args(["--node-name", "test", "--node-ip", "127.0.0.1"])
        .args(["--tls-cert", "/c.crt", "--tls-key", "/c.key"])
        .args(["--client-ca", "/ca.crt", "--insecure-skip-client-auth"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Development mode authorises nothing, so an authorization mode given with it would be ignored: refused.
    let out = agent()
        .args(["--node-name", "test", "--node-ip", "127.0.0.1"])
        .args(["--tls-cert", "/c.crt", "--tls-key", "/c.key"])
        .args(["--insecure-skip-client-auth", "--authorization-mode", "Webhook"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--authorization-mode"));
}
