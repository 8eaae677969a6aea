//! The API server side of the scenarios: a client for the local cluster, a namespace per test that is removed
//! again, waiting with a deadline that says what was still missing, and moving registry tags.

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cluster::LocalCluster;

/// A client with the cluster's admin identity.
pub async fn admin_client(cluster: &LocalCluster) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(&cluster.kubeconfig)
        .with_context(|| format!("reading {}", cluster.kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// A namespace of one test, `e2e-PREFIX-RANDOM`, deleted (with everything in it) when dropped, also when the
/// test fails; kept with `BERTH_E2E_KEEP=1`.
pub struct TestNamespace {
    /// Its name.
    pub name: String,
    client: Client,
    kubeconfig: std::path::PathBuf,
}

impl TestNamespace {
    /// Creates the namespace.
    pub async fn create(client: &Client, prefix: &str) -> anyhow::Result<Self> {
        // Drop cannot use `client`: it may block the very runtime the client's connection runs on.
        let kubeconfig = LocalCluster::load(&crate::cluster::state_dir())?.kubeconfig;
        let name = format!("e2e-{}-{}", prefix.trim_start_matches("e2e-"), unique());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self {
            name,
            client: client.clone(),
            kubeconfig,
        })
    }

    /// The pods API of this namespace.
    pub fn pods(&self) -> Api<k8s_openapi::api::core::v1::Pod> {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var("BERTH_E2E_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("BERTH_E2E_KEEP=1: leaving namespace {}", self.name);
            return;
        }
        // Drop cannot await: kubectl deletes it, and the controller-manager removes what is inside.
        let _ = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .output();
    }
}

/// A short random suffix for names.
pub fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{:x}{:04x}", std::process::id() % 0xfff, nanos % 0xffff)
}

/// Polls `check` until it returns `Some`, at most `timeout`; fails naming `what` and the last state seen.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let start = Instant::now();
    let mut last = String::from("nothing observed yet");
    while start.elapsed() < timeout {
        match check().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => last = state,
            Err(e) => last = format!("error: {e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
}

/// Copies `registry/src` to `registry/dest` (repository:tag each) with skopeo: a push, as far as the registry
/// and its notifications are concerned.
pub fn copy_image(registry: &str, src: &str, dest: &str) -> anyhow::Result<()> {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{registry}/{src}"))
        .arg(format!("docker://{registry}/{dest}"))
        .output()
        .context("running skopeo (Debian package skopeo; hack/deps.sh installs it)")?;
    if !out.status.success() {
        bail!(
            "skopeo copy {src} {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Applies a manifest with kubectl as a person would, returning kubectl's output or its error message.
pub fn kubectl_apply(cluster: &LocalCluster, namespace: &str, manifest: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["apply", "-n", namespace, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run kubectl: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(manifest.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An Event as the scenarios read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenEvent {
    /// `Normal` or `Warning`.
    pub type_: String,
    /// The reason, `Imported`, `Triggered`, ...
    pub reason: String,
    /// The note.
    pub note: String,
    /// The reporting controller's instance (a controller replica's identity).
    pub instance: String,
    /// How often it happened: a repeated Event is one object with a series count.
    pub count: usize,
}

/// The Events (`events.k8s.io/v1`) of namespace `ns` about the object named `name`.
pub async fn events_about(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<SeenEvent>> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    Ok(events
        .list(&Default::default())
        .await?
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| SeenEvent {
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
            instance: e.reporting_instance.unwrap_or_default(),
            count: e
                .series
                .as_ref()
                .map_or(1, |s| usize::try_from(s.count.max(1)).unwrap_or(1)),
        })
        .collect())
}

/// A Pod of a Workload that is not being deleted, as the scenarios read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivePod {
    /// Its name.
    pub name: String,
    /// The node it is bound to (empty when unbound).
    pub node: String,
    /// Its IP (empty before it has one).
    pub ip: String,
    /// Whether it is Ready.
    pub ready: bool,
}

/// The Pods of Workload `workload` that are not being deleted.
pub async fn workload_pods(
    pods: &Api<k8s_openapi::api::core::v1::Pod>,
    workload: &str,
) -> anyhow::Result<Vec<LivePod>> {
    let selector = format!("{}={workload}", berth_api::apps::WORKLOAD_LABEL);
    let list = pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?;
    Ok(list
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            LivePod {
                name: p.metadata.name.clone().unwrap_or_default(),
                node: p.spec.and_then(|s| s.node_name).unwrap_or_default(),
                ip: status.pod_ip.unwrap_or_default(),
                ready: status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True"),
            }
        })
        .collect())
}

/// The tag's `ImportSuccess` condition as `(status, reason, message)`, once it has one.
pub fn import_condition(tag: &berth_api::image::ImageStreamTag) -> Option<(String, String, String)> {
    let c = tag
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == berth_api::image::IMPORT_SUCCESS)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until every host of the cluster is Ready and its agent renewed its Lease in the last 15 s, so that a
/// scenario starting now can use all of them (a host that just came back is not schedulable until then).
pub async fn wait_hosts_ready(
    client: &Client,
    cluster: &LocalCluster,
    timeout: Duration,
) -> anyhow::Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Node;
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    wait_for("every host Ready with a fresh Lease", timeout, || async {
        let mut missing = Vec::new();
        for host in &cluster.nodes {
            let ready = nodes
                .get_opt(&host.name)
                .await?
                .and_then(|n| n.status)
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let renewed = leases
                .get_opt(&host.name)
                .await?
                .and_then(|l| l.spec)
                .and_then(|s| s.renew_time);
            let fresh = renewed.is_some_and(|t| {
                k8s_openapi::jiff::Timestamp::now().duration_since(t.0)
                    < k8s_openapi::jiff::SignedDuration::from_secs(15)
            });
            if !(ready && fresh) {
                missing.push(format!("{} (ready {ready}, fresh lease {fresh})", host.name));
            }
        }
        Ok(if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join(", "))
        })
    })
    .await
}

/// Waits at most `timeout` until the ImageStreamTag `name` satisfies `ok`, describing what it saw otherwise.
pub async fn wait_tag(
    api: &Api<berth_api::image::ImageStreamTag>,
    name: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&berth_api::image::ImageStreamTag) -> bool,
) -> anyhow::Result<berth_api::image::ImageStreamTag> {
    wait_for(&format!("{name}: {what}"), timeout, || async {
        let tag = api.get_opt(name).await?;
        Ok(match tag {
            Some(t) if ok(&t) => Ok(t),
            Some(t) => Err(format!(
                "condition {:?}, digest {:?}",
                import_condition(&t),
                t.status.as_ref().and_then(|s| s.digest.clone())
            )),
            None => Err("no such ImageStreamTag".to_owned()),
        })
    })
    .await
}
