//! The berth-controller processes of a scenario: the cluster's own (started by `hack/up.sh`, found by its
//! recorded pid), and extra replicas a test starts itself (killed when dropped), with their settings,
//! memory, metrics and health endpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::cluster::LocalCluster;
use crate::http;

/// The leader-election Lease's duration (`berth_controller::leader::LEASE_SECONDS`).
pub const LEASE: Duration = Duration::from_secs(15);

/// The default of `--metrics-addr`.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9090";

/// The cluster's own controller, as `hack/up.sh` recorded it.
#[derive(Clone, Debug)]
pub struct ClusterController {
    /// Its process id.
    pub pid: u32,
    /// Its start time (clock ticks since boot), guarding against a reused pid.
    pub start_time: String,
    /// Its environment (the settings `hack/lib/berth.sh` gave it).
    pub env: HashMap<String, String>,
}

impl ClusterController {
    /// The controller recorded in `$BERTH_STATE/pids/berth-controller.pid`; fails clearly when it does not
    /// run.
    pub fn find(cluster: &LocalCluster) -> anyhow::Result<Self> {
        let file = cluster.state.join("pids/berth-controller.pid");
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "reading {}: the local cluster runs no berth-controller (cargo build, then hack/up.sh)",
                file.display()
            )
        })?;
        let mut fields = text.split_whitespace();
        let pid: u32 = fields
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("{} holds no pid", file.display()))?;
        let recorded = fields.next().unwrap_or_default().to_owned();
        let start_time = start_time(pid).with_context(|| {
            format!(
                "berth-controller (pid {pid} in {}) does not run: restart it with hack/up.sh",
                file.display()
            )
        })?;
        if !recorded.is_empty() && recorded != start_time {
            bail!(
                "pid {pid} in {} is another process now: restart berth-controller with hack/up.sh",
                file.display()
            );
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ"))
            .with_context(|| format!("reading the environment of berth-controller (pid {pid})"))?;
        let env = environ
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect();
        Ok(Self { pid, start_time, env })
    }

    /// Its `--import-interval`.
    pub fn import_interval(&self) -> anyhow::Result<Duration> {
        let value = self
            .env
            .get("BERTH_IMPORT_INTERVAL")
            .map_or("15m", String::as_str);
        parse_duration(value).with_context(|| format!("BERTH_IMPORT_INTERVAL={value:?} of berth-controller"))
    }

    /// Where it serves `/metrics`, `/healthz` and `/readyz`.
    pub fn metrics_addr(&self) -> String {
        self.env
            .get("BERTH_METRICS_ADDR")
            .cloned()
            .unwrap_or_else(|| DEFAULT_METRICS_ADDR.to_owned())
    }

    /// True while this very process (same pid, same start time) runs.
    pub fn alive(&self) -> bool {
        start_time(self.pid).is_ok_and(|s| s == self.start_time)
    }

    /// Its resident memory in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid)
    }
}

/// The start time (field 22 of `/proc/<pid>/stat`) of a live, non-zombie process.
pub fn start_time(pid: u32) -> anyhow::Result<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<_> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        bail!("pid {pid} is a zombie");
    }
    fields
        .get(19)
        .map(|s| (*s).to_owned())
        .with_context(|| format!("odd /proc/{pid}/stat"))
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Parses the durations `humantime` reads in the usual shapes: `30s`, `15m`, `1h30m`, `500ms`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        bail!("an empty duration");
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .with_context(|| format!("no number in {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" | "sec" | "secs" => Duration::from_secs(n),
            "m" | "min" | "mins" => Duration::from_secs(n * 60),
            "h" | "hr" | "hrs" => Duration::from_secs(n * 3600),
            other => bail!("unknown unit {other:?} in {text:?}"),
        };
    }
    Ok(total)
}

/// The value of each sample of `name` whose labels include all of `labels` (`("trigger", "scheduled")`),
/// summed; `None` when no sample matches.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(s) => s,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, l)) => (m, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        if !labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// `GET /metrics` of a controller.
pub async fn scrape(addr: &str) -> anyhow::Result<String> {
    let r = http::get(addr, "/metrics", Duration::from_secs(5)).await?;
    if r.status != 200 {
        bail!("GET http://{addr}/metrics: status {}", r.status);
    }
    Ok(r.body)
}

/// The status code of `GET /readyz` of a controller.
pub async fn readyz(addr: &str) -> anyhow::Result<u16> {
    Ok(http::get(addr, "/readyz", Duration::from_secs(5)).await?.status)
}

/// The berth-controller binary of this workspace: `${CARGO_TARGET_DIR:-<workspace>/target}/debug`.
pub fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/berth-controller")
}

/// One more replica of berth-controller, started by a test with the cluster's controller identity and
/// Lease, its own identity and ports on 127.0.0.1; killed when dropped.
pub struct Replica {
    /// Its identity in the Lease.
    pub identity: String,
    /// Where it serves `/metrics`, `/healthz` and `/readyz`.
    pub metrics_addr: String,
    /// Where it would take registry notifications once leading.
    pub webhook_addr: String,
    /// Its log file.
    pub log: PathBuf,
    child: Child,
}

impl Replica {
    /// Starts the replica with the cluster's controller kubeconfig; `extra_env` adds settings (e.g. the
    /// import interval of the cluster's controller).
    pub fn start(cluster: &LocalCluster, identity: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin = binary();
        if !bin.is_file() {
            bail!("{} is not built: cargo build -p berth-controller", bin.display());
        }
        let metrics_addr = format!("127.0.0.1:{}", crate::registry::free_port()?);
        let webhook_addr = format!("127.0.0.1:{}", crate::registry::free_port()?);
        let log = std::env::temp_dir().join(format!("berth-e2e-{identity}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("KUBECONFIG", cluster.state.join("controller.kubeconfig"))
            .env("BERTH_METRICS_ADDR", &metrics_addr)
            .env("BERTH_WEBHOOK_ADDR", &webhook_addr)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            identity: identity.to_owned(),
            metrics_addr,
            webhook_addr,
            log,
            child,
        })
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with SIGTERM (as the kubelet would), waiting at most `grace` before SIGKILL.
    pub fn terminate(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Dropped: killed.
    }

    /// `Some(status)` once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until the replica stands by for the Lease, as its `/readyz` says (503, "standing by: ...");
    /// fails when it exits instead.
    pub async fn wait_standing_by(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = http::get(&self.metrics_addr, "/readyz", Duration::from_secs(2)).await;
            let said = match answer {
                Ok(r) if r.status == 503 && r.body.starts_with("standing by") => return Ok(()),
                Ok(r) => format!("{} {}", r.status, r.body),
                Err(e) => e.to_string(),
            };
            if let Some(status) = self.exited() {
                bail!("replica {} exited ({status}): {}", self.identity, self.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "replica {} does not stand by for the Lease after {timeout:?} (/readyz: {said}): {}",
                    self.identity,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("log of replica {} kept at {}", self.identity, self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Restarts the cluster's berth-controller with `hack/up.sh` (with the settings it had) when dropped, unless
/// that was done already.
pub struct RestoreClusterController {
    state: std::path::PathBuf,
    /// The settings it is restored with.
    pub env: Vec<(String, String)>,
    metrics_addr: String,
    /// The directory of the binary it ran (debug or release), for `BERTH_BIN_DIR`.
    bin_dir: Option<std::path::PathBuf>,
    restored: bool,
}

impl RestoreClusterController {
    /// Restores `leader` as it runs now: same binary, state dir, import interval, registry rate and log level.
    pub fn of(cluster: &LocalCluster, leader: &ClusterController) -> Self {
        Self {
            state: cluster.state.clone(),
            env: [
                "BERTH_IMPORT_INTERVAL",
                "RUST_LOG",
                "BERTH_REGISTRY_QPS",
                "BERTH_REGISTRY_BURST",
            ]
            .iter()
            .filter_map(|k| leader.env.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect(),
            metrics_addr: leader.metrics_addr(),
            bin_dir: std::fs::read_link(format!("/proc/{}/exe", leader.pid))
                .ok()
                .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf)),
            restored: false,
        }
    }

    /// Runs `hack/up.sh` and waits until the controller is ready.
    pub fn restore(&mut self) -> anyhow::Result<()> {
        self.restored = true;
        let up = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/up.sh");
        let out = std::process::Command::new(&up)
            .env("BERTH_STATE", &self.state)
            .env_remove("BERTH_LOCK_HELD")
            .envs(self.bin_dir.iter().map(|d| ("BERTH_BIN_DIR", d)))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("running {}", up.display()))?;
        ensure!(
            out.status.success(),
            "{} failed: {}",
            up.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // The Lease of the replica that was killed runs out first.
        let deadline = Instant::now() + LEASE * 4;
        while Instant::now() < deadline {
            if blocking_status(&self.metrics_addr, "/readyz") == Some(200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        anyhow::bail!(
            "the restarted berth-controller is not ready after {:?}",
            LEASE * 4
        )
    }
}

impl Drop for RestoreClusterController {
    fn drop(&mut self) {
        if !self.restored
            && let Err(e) = self.restore()
        {
            eprintln!("could not restore the cluster's berth-controller: {e:#}; run hack/up.sh");
        }
    }
}

/// The status code of `GET path` without an async runtime (for Drop).
fn blocking_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    http::parse_response(&raw).ok().map(|r| r.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_humantime_shapes() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn metric_samples_are_summed_by_labels() {
        let text = "# HELP berth_imports Image imports\n# TYPE berth_imports counter\n\
                    berth_imports_total{trigger=\"scheduled\",result=\"Imported\"} 3\n\
                    berth_imports_total{trigger=\"never imported\",result=\"Imported\"} 2\n\
                    berth_imports_total{trigger=\"scheduled\",result=\"NotFound\"} 1\n\
                    berth_imports_in_flight 0\n";
        assert_eq!(metric_sum(text, "berth_imports_total", &[]), Some(6.0));
        assert_eq!(
            metric_sum(text, "berth_imports_total", &[("trigger", "scheduled")]),
            Some(4.0)
        );
        assert_eq!(
            metric_sum(text, "berth_imports_total", &[("result", "Imported")]),
            Some(5.0)
        );
        assert_eq!(metric_sum(text, "berth_imports_in_flight", &[]), Some(0.0));
        assert_eq!(metric_sum(text, "berth_status_writes_total", &[]), None);
    }
}
