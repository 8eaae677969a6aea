//! End-to-end test of pulls with `imagePullSecrets`: a second, private registry (the same
//! `docker-registry` binary with htpasswd auth, started by the test on 10.213.0.1:5002 and
//! stopped after it) holds a copy of the demo image; a pod without the secret fails to pull,
//! a pod with a `kubernetes.io/dockerconfigjson` secret runs.
//!
//! Each host's containerd learns the private registry through a `hosts.toml` the test writes
//! under the host's `certs.d` (and removes). Run as root on the local cluster:
//! `cargo test -p berth-e2e --test agent_pull_secrets -- --nocapture`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::k8s::{TestNamespace, admin_client, create_pod, phase, wait_pod, waiting_reason};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};

const ADDR: &str = "10.213.0.1:5002";
const USER: &str = "berth-e2e";
const PASSWORD: &str = "berth-e2e-pass";
/// bcrypt of [`PASSWORD`] (htpasswd format, as `htpasswd -B` writes it).
const HTPASSWD_HASH: &str = "$2b$05$hST.BS9E1fvNH70JxNorWOcdVIxZYf4RkW6bjbIMxCHtCvPKxn60q";

/// The private registry and the containerd host entries; all removed when dropped.
struct PrivateRegistry {
    child: Child,
    dir: PathBuf,
    hosts: Vec<PathBuf>,
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for h in &self.hosts {
            let _ = std::fs::remove_dir_all(h);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_registry(cluster: &LocalCluster) -> anyhow::Result<PrivateRegistry> {
    let dir = std::env::temp_dir().join(format!("berth-e2e-private-registry-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(dir.join("htpasswd"), format!("{USER}:{HTPASSWD_HASH}\n"))?;
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: {ADDR}\nauth:\n  htpasswd:\n    realm: berth-e2e\n    path: {}\n",
        dir.join("data").display(),
        dir.join("htpasswd").display()
    );
    std::fs::write(dir.join("config.yml"), config)?;
    let log = std::fs::File::create(dir.join("registry.log"))?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting docker-registry (hack/deps.sh installs it)")?;
    let mut reg = PrivateRegistry {
        child,
        dir,
        hosts: Vec::new(),
    };
    for n in &cluster.nodes {
        let certs = cluster
            .state
            .join("nodes")
            .join(&n.name)
            .join("certs.d")
            .join(ADDR);
        std::fs::create_dir_all(&certs)?;
        std::fs::write(
            certs.join("hosts.toml"),
            format!(
                "server = \"http://{ADDR}\"\n\n[host.\"http://{ADDR}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        reg.hosts.push(certs);
    }
    Ok(reg)
}

fn copy_demo(cluster: &LocalCluster, reg: &Path) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..50 {
        let out = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("--dest-creds={USER}:{PASSWORD}"))
            .arg(format!("docker://{}/berth/demo:v1", cluster.registry))
            .arg(format!("docker://{ADDR}/private/demo:v1"))
            .output()
            .context("running skopeo")?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(reg.join("registry.log")).unwrap_or_default();
    bail!("pushing to the private registry failed: {last}\nregistry log: {log}")
}

fn pod(name: &str, node: &str, secret: Option<&str>) -> anyhow::Result<Pod> {
    let mut spec = serde_json::json!({
        "nodeName": node, "automountServiceAccountToken": false, "terminationGracePeriodSeconds": 1,
        // Always: a copy cached by an earlier run must not stand in for the pull.
        "containers": [{"name": "app", "image": format!("{ADDR}/private/demo:v1"), "imagePullPolicy": "Always"}]
    });
    if let Some(s) = secret {
        spec["imagePullSecrets"] = serde_json::json!([{"name": s}]);
    }
    Ok(serde_json::from_value(
        serde_json::json!({"metadata": {"name": name}, "spec": spec}),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_agent_pulls_from_a_private_registry_with_image_pull_secrets() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let reg = start_registry(&cluster)?;
    copy_demo(&cluster, &reg.dir)?;
    let client = admin_client(&cluster).await?;
    let ns = TestNamespace::create(&client, "e2e-pull-secret").await?;
    let api = ns.pods();
    let node = &cluster.nodes[0].name;

    // Without credentials the registry answers 401: the pull fails.
    create_pod(&api, &pod("anonymous", node, None)?).await?;
    wait_pod(&api, "anonymous", Duration::from_secs(30), |p| {
        (waiting_reason(p).as_deref() == Some("ErrImagePull")).then_some(())
    })
    .await?;

    let auth = format!("{USER}:{PASSWORD}");
    let config = serde_json::json!({"auths": {ADDR: {
        "username": USER, "password": PASSWORD, "auth": base64(auth.as_bytes())
    }}});
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "private-registry"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()}
    }))?;
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await?;
    create_pod(&api, &pod("authorized", node, Some("private-registry"))?).await?;
    wait_pod(&api, "authorized", Duration::from_secs(60), |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await?;
    drop(reg);
    Ok(())
}

/// Standard base64 with padding (the `auth` field of a docker config).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
