//! Running the `kubectl-berth` binary against the local cluster, for `tests/kubectl_berth.rs`.
//!
//! The binary is taken from `$BERTH_BIN_DIR` (hack/test.sh sets it to `$CARGO_TARGET_DIR/debug`), else from
//! `$CARGO_TARGET_DIR/debug`, else from the workspace's `target/debug`; a missing binary fails the test with
//! the command that builds it.

use std::path::PathBuf;
use std::process::Command;

use crate::cluster::LocalCluster;

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The binary's path; panics with what to do when it is not there.
pub fn binary() -> PathBuf {
    let dir = std::env::var_os("BERTH_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("debug")))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let bin = dir.join("kubectl-berth");
    assert!(
        bin.is_file(),
        "{} does not exist: build it with `cargo build --workspace --bins` and point BERTH_BIN_DIR at the \
         directory that holds it",
        bin.display()
    );
    bin
}

/// Runs `kubectl-berth --kubeconfig ADMIN -n NS ARGS...`.
pub fn berth(cluster: &LocalCluster, ns: &str, args: &[&str]) -> Run {
    let out = Command::new(binary())
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("kubectl-berth runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ kubectl berth {} -> {}\n{}{}",
        args.join(" "),
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

/// Runs and expects exit 0.
pub fn ok(cluster: &LocalCluster, ns: &str, args: &[&str]) -> String {
    let run = berth(cluster, ns, args);
    assert_eq!(run.code, 0, "kubectl berth {args:?} failed: {}", run.stderr);
    run.stdout
}

/// Runs and expects `code`, with `needle` on stderr.
pub fn fails(cluster: &LocalCluster, ns: &str, args: &[&str], code: i32, needle: &str) {
    let run = berth(cluster, ns, args);
    assert_eq!(run.code, code, "kubectl berth {args:?}: {run:?}");
    assert!(
        run.stderr.contains(needle),
        "kubectl berth {args:?}: stderr lacks {needle:?}: {}",
        run.stderr
    );
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one line on stderr: {}",
        run.stderr
    );
}

/// The binary bound to a cluster and a namespace, so a scenario reads as the commands it runs.
pub struct Plugin<'a> {
    /// The cluster.
    pub cluster: &'a LocalCluster,
    /// The namespace (`-n`).
    pub namespace: &'a str,
}

impl Plugin<'_> {
    /// Runs `kubectl-berth ARGS...`.
    pub fn run(&self, args: &[&str]) -> Run {
        berth(self.cluster, self.namespace, args)
    }

    /// Runs and expects exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.cluster, self.namespace, args)
    }

    /// Runs and expects `code` with `needle` in the one line on stderr.
    pub fn fails(&self, args: &[&str], code: i32, needle: &str) {
        fails(self.cluster, self.namespace, args, code, needle)
    }
}
