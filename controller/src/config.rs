//! The controller's configuration: flags, each also read from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// berth-controller: resolves image-stream tags to digests, fires triggers, rolls out Workloads.
///
/// Reaches the Kubernetes API server through KUBECONFIG, ~/.kube/config or the in-cluster service account.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "berth-controller", version)]
pub struct Config {
    /// Where the registry's push notifications are taken (POST /registry/notifications). Disabled without a
    /// token.
    #[arg(long, env = "BERTH_WEBHOOK_ADDR", default_value = "127.0.0.1:8085")]
    pub webhook_addr: SocketAddr,

    /// A file holding the shared secret of registry notifications (sent as `Authorization: Bearer <token>`,
    /// in a path, or as the key of an HMAC signature: see `webhook`). A file that is empty or holds only
    /// whitespace is refused at start.
    #[arg(long, env = "BERTH_WEBHOOK_TOKEN_FILE", value_parser = token_file)]
    pub webhook_token_file: Option<PathBuf>,

    /// The shared secret itself (prefer the file: flags show in process lists). An empty or whitespace-only
    /// token is refused at start.
    #[arg(long, env = "BERTH_WEBHOOK_TOKEN", hide_env_values = true, value_parser = token)]
    pub webhook_token: Option<String>,

    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "BERTH_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,

    /// How often tags with `importPolicy.scheduled` are imported again (spread over the interval).
    #[arg(long, env = "BERTH_IMPORT_INTERVAL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub import_interval: Duration,

    /// The first retry after an import failed for a transient cause (429, 5xx, timeout, unreachable); it
    /// doubles up to the import interval.
    #[arg(long, env = "BERTH_IMPORT_RETRY", default_value = "10s", value_parser = humantime::parse_duration)]
    pub import_retry: Duration,

    /// The first retry after an import failed for a lasting cause (NotFound, Unauthorized, Forbidden, ...); it
    /// quadruples up to the import interval.
    #[arg(long, env = "BERTH_IMPORT_RETRY_LASTING", default_value = "1m", value_parser = humantime::parse_duration)]
    pub import_retry_lasting: Duration,

    /// The platform picked from an image index when a tag's importMode is Legacy.
    #[arg(long, env = "BERTH_PLATFORM", default_value = "linux/amd64")]
    pub platform: String,

    /// Requests per second to any one registry.
    #[arg(long, env = "BERTH_REGISTRY_QPS", default_value_t = 10.0)]
    pub registry_qps: f64,

    /// Requests at once to any one registry after a quiet period.
    #[arg(long, env = "BERTH_REGISTRY_BURST", default_value_t = 20)]
    pub registry_burst: u32,

    /// The most requests in flight to any one registry; the adaptive window stays between 1 and this
    /// (the registry policy's `berth.registries` may set it per registry).
    #[arg(long, env = "BERTH_REGISTRY_MAX_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub registry_max_concurrency: u32,

    /// A PEM file of extra certificate authorities trusted for registries.
    #[arg(long, env = "BERTH_REGISTRY_CA_FILE")]
    pub registry_ca_file: Option<PathBuf>,

    /// Which registries tags may import from: a file holding an `image.config.openshift.io` `Image` (or its
    /// `spec`) with `allowedRegistriesForImport` and `registrySources.blockedRegistries`, as OpenShift's
    /// cluster image configuration, and Berth's per-registry limits (`berth.registries`: `qps`, `burst`,
    /// `maxConcurrency`). Without it, every registry is allowed and gets the flags' limits.
    #[arg(long, env = "BERTH_REGISTRY_POLICY")]
    pub registry_policy: Option<PathBuf>,

    /// How long a node's agent may miss renewing its Lease before the node's Workload pods are replaced.
    #[arg(long, env = "BERTH_NODE_GRACE", default_value = "40s", value_parser = humantime::parse_duration)]
    pub node_grace: Duration,

    /// The namespace of the leader-election Lease.
    #[arg(long, env = "BERTH_LEASE_NAMESPACE", default_value = "berth-system")]
    pub lease_namespace: String,

    /// The name of the leader-election Lease.
    #[arg(long, env = "BERTH_LEASE_NAME", default_value = "berth-controller")]
    pub lease_name: String,

    /// This replica's name in the Lease (default: the pod name, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long the API server may take to answer at start before the controller gives up.
    #[arg(long, env = "BERTH_CONNECT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
}

/// A webhook token that is not blank.
fn token(value: &str) -> Result<String, String> {
    crate::webhook::check_token(value).map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

/// A readable webhook token file whose content is not blank (read again when the controller starts).
fn token_file(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    let content = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {value}: {e}"))?;
    crate::webhook::check_token(&content).map_err(|e| format!("{value}: {e}"))?;
    Ok(path)
}

impl Config {
    /// This replica's identity for leader election.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    }
}

/// The `User-Agent` of the controller's API requests, naming the replica (`berth-controller/0.1.0
/// (<identity>)`), so that the API server's audit log tells the replicas apart. Characters a header cannot carry
/// become `_`.
pub fn user_agent(identity: &str) -> http::HeaderValue {
    let identity: String = identity
        .chars()
        .map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '_' })
        .collect();
    let agent = format!("berth-controller/{} ({identity})", env!("CARGO_PKG_VERSION"));
    http::HeaderValue::try_from(agent).expect("visible ASCII only")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_agent_names_the_version_and_the_replica() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            user_agent("berth-controller-7d9f-x2k"),
            format!("berth-controller/{version} (berth-controller-7d9f-x2k)").as_str()
        );
        assert_eq!(
            user_agent("host\n\u{e9}t\u{e9}-12"),
            format!("berth-controller/{version} (host__t_-12)").as_str()
        );
    }
}
