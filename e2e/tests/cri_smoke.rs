//! CRI smoke test against the local cluster (`hack/up.sh`): on EACH host, straight over the
//! host's containerd socket and without any Berth component, pull the demo image by digest,
//! run a pod sandbox with a CNI network, create and start a container, read its CRI log,
//! GET the pod IP on :8080 from this process, then stop and remove everything.
//!
//! Run: `cargo test -p berth-e2e --test cri_smoke -- --nocapture`
//! (`BERTH_E2E=skip` skips it; without a cluster and without that it fails.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_agent::cri::CriClient;
use berth_agent::cri::api::{
    ContainerConfig, ContainerMetadata, ContainerState, ImageSpec, KeyValue, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    PortMapping, Protocol,
};
use berth_e2e::cluster::{LocalCluster, NodeEnv, ipv4_in_cidr};
use berth_e2e::http;

/// Label on everything this test creates, so leftovers of a killed run can be swept.
const TEST_LABEL: &str = "berth.dev/e2e";
const TEST_LABEL_VALUE: &str = "cri-smoke";

fn test_labels() -> HashMap<String, String> {
    HashMap::from([(TEST_LABEL.to_string(), TEST_LABEL_VALUE.to_string())])
}

/// Removes this test's sandboxes (and with them their containers) on one host.
async fn sweep(cri: &CriClient) -> anyhow::Result<usize> {
    let sandboxes = cri.list_pod_sandboxes(test_labels()).await?;
    for sb in &sandboxes {
        cri.stop_pod_sandbox(&sb.id).await?;
        cri.remove_pod_sandbox(&sb.id).await?;
    }
    Ok(sandboxes.len())
}

/// On drop (success or panic) removes what the test created on one host: the sandbox (CRI
/// removes its containers too) and the log directory. Runs the async cleanup on its own
/// thread and runtime, since `Drop` cannot await.
struct HostGuard {
    endpoint: String,
    log_dir: PathBuf,
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        let endpoint = self.endpoint.clone();
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let cri = CriClient::connect(&endpoint).await?;
                sweep(&cri).await
            })
        })
        .join();
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("cleanup on {}: {e:#}", self.endpoint),
            Err(_) => eprintln!("cleanup on {} panicked", self.endpoint),
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

/// What one host run measured.
#[derive(Debug)]
struct HostReport {
    node: String,
    pod_ip: String,
    pull: Duration,
    sandbox: Duration,
    container: Duration,
}

async fn smoke_host(cluster: &LocalCluster, node: &NodeEnv, digest: &str) -> anyhow::Result<HostReport> {
    let cri = CriClient::connect(&node.cri_endpoint)
        .await
        .with_context(|| format!("{}: connecting to its containerd", node.name))?;
    let version = cri.version().await?;
    eprintln!(
        "{}: {} {} (CRI {})",
        node.name, version.runtime_name, version.runtime_version, version.runtime_api_version
    );
    let swept = sweep(&cri).await?;
    if swept > 0 {
        eprintln!(
            "{}: removed {swept} sandbox(es) left by an earlier run",
            node.name
        );
    }

    let uid = format!(
        "cri-smoke-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let log_root = node
        .pod_log_dir
        .clone()
        .unwrap_or_else(|| cluster.state.join("nodes").join(&node.name).join("logs"));
    let log_dir = log_root.join(&uid);
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let _guard = HostGuard {
        endpoint: node.cri_endpoint.clone(),
        log_dir: log_dir.clone(),
    };

    // 1. Pull by digest.
    let image = format!("{}/berth/demo@{digest}", cluster.registry);
    let t = Instant::now();
    let image_ref = cri.pull_image(&image, None, None).await?;
    let pull = t.elapsed();
    let status = cri
        .image_status(&image)
        .await?
        .with_context(|| format!("{}: {image} pulled but ImageStatus does not know it", node.name))?;
    ensure!(
        status.repo_digests.iter().any(|d| d == &image),
        "{}: pulled image's repo digests {:?} do not include {image}",
        node.name,
        status.repo_digests
    );
    ensure!(
        status.id == image_ref,
        "image id {} != pull ref {image_ref}",
        status.id
    );

    // 2. A sandbox with a pod network.
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "cri-smoke".into(),
            uid: uid.clone(),
            namespace: "berth-e2e".into(),
            attempt: 0,
        }),
        hostname: "cri-smoke".into(),
        log_directory: log_dir.display().to_string(),
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 8080,
            ..Default::default()
        }],
        labels: test_labels(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t = Instant::now();
    let sandbox_id = cri.run_pod_sandbox(sandbox_config.clone()).await?;
    let sandbox = t.elapsed();
    let sb_status = cri
        .pod_sandbox_status(&sandbox_id)
        .await?
        .context("sandbox vanished after RunPodSandbox")?;
    let pod_ip = sb_status.network.map(|n| n.ip).unwrap_or_default();
    ensure!(
        ipv4_in_cidr(&pod_ip, &node.pod_cidr),
        "{}: pod IP {pod_ip:?} is not in the host's pod CIDR {}",
        node.name,
        node.pod_cidr
    );

    // 3. The container.
    let container_config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "demo".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.clone(),
            ..Default::default()
        }),
        envs: vec![KeyValue {
            key: "BERTH_E2E".into(),
            value: "cri-smoke".into(),
        }],
        log_path: "demo/0.log".into(),
        labels: test_labels(),
        ..Default::default()
    };
    let t = Instant::now();
    let container_id = cri
        .create_container(&sandbox_id, container_config, sandbox_config)
        .await?;
    cri.start_container(&container_id).await?;
    let container = t.elapsed();
    let cs = cri
        .container_status(&container_id)
        .await?
        .context("container vanished after StartContainer")?;
    ensure!(
        cs.state == ContainerState::ContainerRunning as i32,
        "{}: container state {} after start (reason {:?}, message {:?})",
        node.name,
        cs.state,
        cs.reason,
        cs.message
    );
    ensure!(
        cs.image_ref == image_ref || cs.image_ref.contains(digest),
        "odd imageRef {}",
        cs.image_ref
    );

    // 4. Its CRI log carries the start line.
    let log_file = log_dir.join("demo/0.log");
    ensure!(
        cs.log_path.is_empty() || std::path::Path::new(&cs.log_path) == log_file,
        "log path {} != {}",
        cs.log_path,
        log_file.display()
    );
    let start_line = wait_for_log(
        &log_file,
        "berth-demo v1 starting on :8080",
        Duration::from_secs(10),
    )
    .await?;
    ensure!(
        start_line.contains(" stdout F "),
        "log line not in CRI format: {start_line:?}"
    );

    // 5. HTTP from the root namespace to the pod IP.
    let body = wait_for_http(&format!("{pod_ip}:8080"), Duration::from_secs(10)).await?;
    ensure!(
        body.contains("berth-demo v1"),
        "{}: pod answered {body:?}",
        node.name
    );

    // 6. Stop and remove explicitly (the guard covers failures).
    cri.stop_container(&container_id, Duration::from_secs(5)).await?;
    cri.remove_container(&container_id).await?;
    cri.stop_pod_sandbox(&sandbox_id).await?;
    cri.remove_pod_sandbox(&sandbox_id).await?;
    ensure!(
        cri.container_status(&container_id).await?.is_none(),
        "container still there after removal"
    );
    ensure!(
        cri.pod_sandbox_status(&sandbox_id).await?.is_none(),
        "sandbox still there after removal"
    );
    Ok(HostReport {
        node: node.name.clone(),
        pod_ip,
        pull,
        sandbox,
        container,
    })
}

/// Waits until `file` has a line containing `needle`; returns that line.
async fn wait_for_log(file: &std::path::Path, needle: &str, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return Ok(line.to_string());
        }
        if Instant::now() > deadline {
            bail!(
                "{} has no line with {needle:?} after {timeout:?}; it holds {text:?}",
                file.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GETs `/` from `addr` until it answers 200 or `timeout` passes; returns the body.
async fn wait_for_http(addr: &str, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        match http::get(addr, "/", Duration::from_secs(2)).await {
            Ok(r) if r.status == 200 => return Ok(r.body),
            Ok(r) if Instant::now() > deadline => bail!("GET http://{addr}/: status {}", r.status),
            Err(e) if Instant::now() > deadline => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_cri_smoke_on_every_host() -> anyhow::Result<()> {
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let digest = http::registry_digest(&cluster.registry, "berth/demo", "v1").await?;
    eprintln!("berth/demo:v1 is {digest}");
    for node in &cluster.nodes {
        let report = smoke_host(&cluster, node, &digest)
            .await
            .with_context(|| format!("CRI smoke on host {}", node.name))?;
        eprintln!(
            "{}: ok, pod IP {}; PullImage {:?}, RunPodSandbox {:?}, Create+StartContainer {:?}",
            report.node, report.pod_ip, report.pull, report.sandbox, report.container
        );
    }
    Ok(())
}
