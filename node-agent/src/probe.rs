//! Pure parts of container probes (startup, liveness, readiness), as Kubernetes defines them:
//! the probe's check and timings with their defaults, when a probe is due, and how consecutive
//! outcomes turn into a result. The checks themselves run in [`crate::prober`].
//!
//! Semantics (the kubelet's): a probe first runs `initialDelaySeconds` after the container
//! started, then every `periodSeconds`; each attempt gets `timeoutSeconds`. The result turns
//! to success after `successThreshold` consecutive successes and to failure after
//! `failureThreshold` consecutive failures. Readiness starts as failure (not ready), liveness
//! as success; liveness and readiness wait until a startup probe, if any, succeeded once.
//! A container that fails its liveness or startup probe `failureThreshold` times is killed
//! and restarted according to the pod's restart policy.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `startupProbe`: gates the others; failing it kills the container.
    Startup,
    /// `livenessProbe`: failing it kills the container.
    Liveness,
    /// `readinessProbe`: drives the container's `ready`.
    Readiness,
}

impl Kind {
    /// The name used in Events (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    /// The lower-case name (metrics labels, log fields).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "startup",
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
        }
    }

    /// All kinds, in the order they are considered.
    pub const ALL: [Kind; 3] = [Kind::Startup, Kind::Liveness, Kind::Readiness];
}

/// What a probe checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// HTTP GET: a status from 200 to 399 is a success.
    Http {
        /// `HTTP` or `HTTPS`.
        scheme: String,
        /// The host, the pod IP when unset.
        host: Option<String>,
        /// The port (named ports resolved against the container's ports).
        port: u16,
        /// The path, `/` when unset.
        path: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// A TCP connection that opens is a success.
    Tcp {
        /// The host, the pod IP when unset.
        host: Option<String>,
        /// The port.
        port: u16,
    },
    /// A command run in the container (CRI `ExecSync`): exit code 0 is a success.
    Exec {
        /// The command and its arguments.
        command: Vec<String>,
    },
}

/// A probe of one container with its timings and defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Which probe.
    pub kind: Kind,
    /// The check, or why it cannot run (a failure every period).
    pub check: Result<Check, String>,
    /// `initialDelaySeconds` (0).
    pub initial_delay: Duration,
    /// `periodSeconds` (10, at least 1).
    pub period: Duration,
    /// `timeoutSeconds` (1, at least 1).
    pub timeout: Duration,
    /// `successThreshold` (1).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
    /// The probe's `terminationGracePeriodSeconds`, if set (liveness and startup kills).
    pub grace: Option<Duration>,
}

fn secs(v: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(min)).unwrap_or(0))
}

fn count(v: Option<i32>, default: i32) -> u32 {
    u32::try_from(v.unwrap_or(default).max(1)).unwrap_or(1)
}

/// Resolves a probe's port: a number, or the name of one of the container's ports.
pub fn resolve_port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("no port named {name:?} in container {}", container.name))
        }
    }
}

/// The check of an `httpGet` action (probes and lifecycle hooks): the scheme upper-cased, a
/// blank host left to the pod's IP, the port resolved, the path `/` when unset.
pub fn http_get_check(container: &Container, h: &HTTPGetAction) -> Result<Check, String> {
    Ok(Check::Http {
        scheme: h.scheme.clone().unwrap_or_else(|| "HTTP".into()).to_uppercase(),
        host: h.host.clone().filter(|s| !s.is_empty()),
        port: resolve_port(container, &h.port)?,
        path: h.path.clone().filter(|p| !p.is_empty()).map_or_else(
            || "/".to_string(),
            |p| if p.starts_with('/') { p } else { format!("/{p}") },
        ),
        headers: h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect(),
    })
}

/// The check of an `exec` action (probes and lifecycle hooks): a command is required.
pub fn exec_check(e: &ExecAction) -> Result<Check, String> {
    let command = e.command.clone().unwrap_or_default();
    if command.is_empty() {
        return Err("exec action without a command".into());
    }
    Ok(Check::Exec { command })
}

fn check(container: &Container, probe: &Probe) -> Result<Check, String> {
    if let Some(h) = &probe.http_get {
        return http_get_check(container, h);
    }
    if let Some(t) = &probe.tcp_socket {
        return Ok(Check::Tcp {
            host: t.host.clone().filter(|s| !s.is_empty()),
            port: resolve_port(container, &t.port)?,
        });
    }
    if let Some(e) = &probe.exec {
        return exec_check(e).map_err(|_| "exec probe without a command".to_string());
    }
    if probe.grpc.is_some() {
        return Err("gRPC probes are not supported by berth-agent".into());
    }
    Err("probe without a handler (httpGet, tcpSocket or exec)".into())
}

/// The container's probe of kind `kind`, with defaults applied.
pub fn probe_spec(container: &Container, kind: Kind) -> Option<ProbeSpec> {
    let probe = match kind {
        Kind::Startup => container.startup_probe.as_ref(),
        Kind::Liveness => container.liveness_probe.as_ref(),
        Kind::Readiness => container.readiness_probe.as_ref(),
    }?;
    Some(ProbeSpec {
        kind,
        check: check(container, probe),
        initial_delay: secs(probe.initial_delay_seconds, 0, 0),
        period: secs(probe.period_seconds, 10, 1),
        timeout: secs(probe.timeout_seconds, 1, 1),
        // Liveness and startup probes must use 1 (API validation); enforce it anyway.
        success_threshold: if kind == Kind::Readiness {
            count(probe.success_threshold, 1)
        } else {
            1
        },
        failure_threshold: count(probe.failure_threshold, 3),
        grace: probe
            .termination_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
    })
}

/// The outcome of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Success,
    /// The check failed, with why.
    Failure(String),
    /// The check was not sent, with why (an HTTP or TCP probe without a host to reach: the
    /// pod's IP is unknown). Neither a success nor a failure: it changes no result, kills
    /// nothing, and the probe is tried again a period later.
    Skipped(String),
}

impl Outcome {
    /// The outcome as a metrics label (`success`, `failure`, `skipped`).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure(_) => "failure",
            Outcome::Skipped(_) => "skipped",
        }
    }
}

/// The state of one probe of one container (one container id): reset when the container is
/// replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    /// The current result.
    pub result: bool,
    /// Consecutive successes.
    pub successes: u32,
    /// Consecutive failures.
    pub failures: u32,
    /// When the last attempt started, Unix nanoseconds.
    pub last_run: Option<i64>,
    /// The last failure's message.
    pub last_message: Option<String>,
    /// Consecutive attempts skipped (not sent), reset by one that was sent.
    pub skips: u32,
}

impl Tracker {
    /// A new tracker: readiness and startup start as failure, liveness as success, unless
    /// `known_ok` (the pod's status already reports this very container ready or started, as
    /// after an agent restart: readiness must not flap then).
    pub fn new(kind: Kind, known_ok: bool) -> Self {
        Tracker {
            result: kind == Kind::Liveness || known_ok,
            successes: 0,
            failures: 0,
            last_run: None,
            last_message: None,
            skips: 0,
        }
    }

    /// Records an outcome; returns true when the result changed (a skipped attempt never
    /// changes it).
    pub fn record(&mut self, spec: &ProbeSpec, outcome: Outcome, now: i64) -> bool {
        self.last_run = Some(now);
        let before = self.result;
        if !matches!(outcome, Outcome::Skipped(_)) {
            self.skips = 0;
        }
        match outcome {
            Outcome::Skipped(_) => self.skips = self.skips.saturating_add(1),
            Outcome::Success => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                self.last_message = None;
                if self.successes >= spec.success_threshold {
                    self.result = true;
                }
            }
            Outcome::Failure(m) => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                self.last_message = Some(m);
                if self.failures >= spec.failure_threshold {
                    self.result = false;
                }
            }
        }
        before != self.result
    }

    /// True when a liveness or startup probe failed `failureThreshold` times in a row: the
    /// container must be killed.
    pub fn kills(&self, spec: &ProbeSpec) -> bool {
        spec.kind != Kind::Readiness && self.failures >= spec.failure_threshold
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// When the probe may next run (Unix nanoseconds), for a container that started at
/// `started_at`; `None` when it never runs again (a startup probe that succeeded).
pub fn next_run(spec: &ProbeSpec, tracker: &Tracker, started_at: i64) -> Option<i64> {
    if spec.kind == Kind::Startup && tracker.result {
        return None;
    }
    let first = started_at.saturating_add(nanos(spec.initial_delay));
    Some(match tracker.last_run {
        None => first,
        Some(t) => first.max(t.saturating_add(nanos(spec.period))),
    })
}

/// True when the startup gate is open: there is no startup probe, or it succeeded.
pub fn started(has_startup_probe: bool, startup: Option<&Tracker>) -> bool {
    !has_startup_probe || startup.is_some_and(|t| t.result)
}

/// Whether a running container counts as ready: without a readiness probe as soon as it has
/// started (startup probe passed); with one, when the probe's result is success.
pub fn container_ready(running: bool, started: bool, readiness: Option<Option<&Tracker>>) -> bool {
    running
        && started
        && match readiness {
            None => true,
            Some(t) => t.is_some_and(|t| t.result),
        }
}

/// True when the pod's current status reports container `name` with id `container_id`
/// (`runtime://id`) as ready (`Kind::Readiness`) or started (`Kind::Startup`).
pub fn reported_ok(pod: &Pod, name: &str, container_id: &str, kind: Kind) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == name))
        .filter(|c| {
            c.container_id
                .as_deref()
                .is_some_and(|id| id.rsplit("://").next() == Some(container_id))
        })
        .is_some_and(|c| match kind {
            Kind::Readiness => c.ready,
            Kind::Startup => c.started == Some(true),
            Kind::Liveness => true,
        })
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
