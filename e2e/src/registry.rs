//! A private registry for one test: `docker-registry` (distribution 2.8, the Debian package the local cluster
//! already uses) on 127.0.0.1 with a free port, its own storage and no push notifications, so that only
//! the controller's own schedule or an explicit request can make a tag move. It can be stopped and started
//! again on the same port and storage, and is killed (its storage removed) when dropped, also on failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::api::unique;
use crate::http;

/// A running (or stopped) private registry.
pub struct PrivateRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    dir: PathBuf,
    child: Option<Child>,
}

/// A port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn config(addr: &str, storage: &Path) -> String {
    format!(
        "version: 0.1\nlog:\n  level: warn\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
         delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\n",
        storage.display()
    )
}

impl PrivateRegistry {
    /// Starts a registry on a free port of 127.0.0.1 and waits until `/v2/` answers.
    pub async fn start() -> anyhow::Result<Self> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let dir = std::env::temp_dir().join(format!("berth-e2e-registry-{}", unique()));
        std::fs::create_dir_all(dir.join("data")).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("config.yml"), config(&addr, &dir.join("data")))?;
        let mut registry = Self {
            addr,
            dir,
            child: None,
        };
        registry.resume().await?;
        Ok(registry)
    }

    /// Starts the registry again (after [`stop`](Self::stop)) on the same port and storage.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("the registry on {} already runs", self.addr);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("running docker-registry (Debian package docker-registry; hack/deps.sh installs it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                bail!(
                    "docker-registry on {} exited at start ({status}): {}",
                    self.addr,
                    self.log_tail()
                );
            }
            if let Ok(r) = http::get(&self.addr, "/v2/", Duration::from_secs(2)).await
                && r.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry on {} does not answer /v2/ after 15s: {}",
                    self.addr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the registry (its port then refuses connections); storage is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Copies `src` (`repository:tag`) of the registry `from` (plain HTTP) into this registry as `dest`.
    pub fn copy_from(&self, from: &str, src: &str, dest: &str) -> anyhow::Result<()> {
        let out = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{from}/{src}"))
            .arg(format!("docker://{}/{dest}", self.addr))
            .output()
            .context("running skopeo (Debian package skopeo; hack/deps.sh installs it)")?;
        if !out.status.success() {
            bail!(
                "skopeo copy {from}/{src} {}/{dest}: {}",
                self.addr,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The manifest digest this registry reports for `repo:tag`.
    pub async fn digest(&self, repo: &str, tag: &str) -> anyhow::Result<String> {
        http::registry_digest(&self.addr, repo, tag).await
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<_> = text.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
