//! The local cluster's env files (written by `hack/up.sh`), read by the end-to-end tests.
//!
//! `${BERTH_STATE:-$HOME/.berth/local}/env` and `$BERTH_STATE/nodes/<node>/env`: one
//! `export NAME="VALUE"` per line, values without quotes, `$` or newlines.
//!
//! A test that needs the cluster calls [`LocalCluster::require`]: it returns `None` only when
//! `BERTH_E2E=skip` is set, and otherwise fails loudly when the cluster is not there, so an
//! end-to-end test never passes without having run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Parses an env file into name → value.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

fn read_env(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_env_file(&text))
}

fn get(env: &HashMap<String, String>, name: &str, file: &Path) -> anyhow::Result<String> {
    env.get(name)
        .cloned()
        .with_context(|| format!("{} has no {name}", file.display()))
}

/// One host of the local cluster.
#[derive(Clone, Debug)]
pub struct NodeEnv {
    /// `berth-<i>`.
    pub name: String,
    /// The host's address.
    pub ip: String,
    /// The host's network namespace (`/run/netns/<netns>`).
    pub netns: String,
    /// `unix://.../containerd.sock`.
    pub cri_endpoint: String,
    /// The host's pod subnet, `10.214.<i>.0/24`.
    pub pod_cidr: String,
    /// The agent's kubeconfig.
    pub kubeconfig: PathBuf,
    /// The agent's serving certificate and key.
    pub tls_cert: PathBuf,
    /// The agent's serving key.
    pub tls_key: PathBuf,
    /// Where pod logs of this host go, if up.sh said so.
    pub pod_log_dir: Option<PathBuf>,
}

/// The local cluster as `hack/up.sh` describes it.
#[derive(Clone, Debug)]
pub struct LocalCluster {
    /// The state dir.
    pub state: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `host:port` of the registry.
    pub registry: String,
    /// The hosts, in order.
    pub nodes: Vec<NodeEnv>,
}

/// The state dir: `$BERTH_STATE`, else `$HOME/.berth/local`.
pub fn state_dir() -> PathBuf {
    match std::env::var_os("BERTH_STATE") {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".berth/local"),
    }
}

/// True when the caller asked to skip end-to-end tests (`BERTH_E2E=skip`).
pub fn skip_requested() -> bool {
    std::env::var("BERTH_E2E").is_ok_and(|v| v == "skip")
}

impl LocalCluster {
    /// Reads the cluster from `state`.
    pub fn load(state: &Path) -> anyhow::Result<Self> {
        let file = state.join("env");
        let env = read_env(&file)?;
        let nodes = get(&env, "BERTH_NODES", &file)?
            .split_whitespace()
            .map(|name| NodeEnv::load(&state.join("nodes").join(name).join("env")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if nodes.is_empty() {
            bail!("{} lists no BERTH_NODES", file.display());
        }
        Ok(LocalCluster {
            state: state.to_path_buf(),
            kubeconfig: get(&env, "KUBECONFIG", &file)?.into(),
            registry: get(&env, "BERTH_REGISTRY", &file)?,
            nodes,
        })
    }

    /// The cluster, or `None` when `BERTH_E2E=skip` is set; panics with a clear message when
    /// the cluster's env file is missing or unreadable.
    pub fn require() -> Option<Self> {
        if skip_requested() {
            eprintln!("BERTH_E2E=skip: skipping an end-to-end test");
            return None;
        }
        let state = state_dir();
        let file = state.join("env");
        if !file.exists() {
            panic!(
                "no local Berth cluster: {} does not exist. Start one with `hack/up.sh` \
                 (or set BERTH_STATE), or set BERTH_E2E=skip to skip end-to-end tests.",
                file.display()
            );
        }
        match Self::load(&state) {
            Ok(c) => Some(c),
            Err(e) => panic!("the local cluster's env files are unusable: {e:#}"),
        }
    }
}

impl NodeEnv {
    /// Reads one host's env file.
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        let env = read_env(file)?;
        Ok(NodeEnv {
            name: get(&env, "NODE_NAME", file)?,
            ip: get(&env, "NODE_IP", file)?,
            netns: get(&env, "NETNS", file)?,
            cri_endpoint: get(&env, "CRI_ENDPOINT", file)?,
            pod_cidr: get(&env, "POD_CIDR", file)?,
            kubeconfig: get(&env, "KUBECONFIG", file)?.into(),
            tls_cert: get(&env, "TLS_CERT", file)?.into(),
            tls_key: get(&env, "TLS_KEY", file)?.into(),
            pod_log_dir: env.get("POD_LOG_DIR").map(PathBuf::from),
        })
    }
}

/// True when IPv4 `ip` lies in `cidr` (`a.b.c.d/n`).
pub fn ipv4_in_cidr(ip: &str, cidr: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Some(ip), Some(net), Ok(bits)) = (parse(ip), parse(net), bits.parse::<u32>()) else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    ip & mask == net & mask
}

/// Runs `hack/node.sh OP NODE` on the local cluster (cut, restore, stop, start, restart-containerd, ...).
pub fn node_op(op: &str, node: &str) -> anyhow::Result<()> {
    hack("node.sh", &[op, node])
}

/// Runs `hack/control-plane.sh OP COMPONENT` on the local cluster (stop or start etcd or kube-apiserver).
pub fn control_plane_op(op: &str, component: &str) -> anyhow::Result<()> {
    hack("control-plane.sh", &[op, component])
}

/// Restarts the agent of `node` (`hack/node.sh stop-agent`, then `start-agent`), with its clock
/// `clock_offset` seconds off the cluster's (`+60`, `-60`: `BERTH_AGENT_CLOCK_OFFSET`), or on time.
pub fn restart_agent(node: &str, clock_offset: Option<&str>) -> anyhow::Result<()> {
    hack("node.sh", &["stop-agent", node])?;
    let env: Vec<(&str, &str)> = clock_offset
        .map(|o| ("BERTH_AGENT_CLOCK_OFFSET", o))
        .into_iter()
        .collect();
    hack_with("node.sh", &["start-agent", node], &env)
}

fn hack(script: &str, args: &[&str]) -> anyhow::Result<()> {
    hack_with(script, args, &[])
}

fn hack_with(script: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hack")
        .join(script);
    let out = std::process::Command::new(path)
        .args(args)
        .env_remove("BERTH_AGENT_CLOCK_OFFSET")
        .envs(env.iter().copied())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "hack/{script} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_env_contract() {
        let env = parse_env_file(
            "# comment\nexport NODE_NAME=\"berth-1\"\nexport POD_CIDR=\"10.214.1.0/24\"\n\nPLAIN=x\n",
        );
        assert_eq!(env["NODE_NAME"], "berth-1");
        assert_eq!(env["POD_CIDR"], "10.214.1.0/24");
        assert_eq!(env["PLAIN"], "x");
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn cidr_membership() {
        assert!(ipv4_in_cidr("10.214.1.7", "10.214.1.0/24"));
        assert!(!ipv4_in_cidr("10.214.2.7", "10.214.1.0/24"));
        assert!(!ipv4_in_cidr("nonsense", "10.214.1.0/24"));
        assert!(ipv4_in_cidr("1.2.3.4", "0.0.0.0/0"));
    }
}
