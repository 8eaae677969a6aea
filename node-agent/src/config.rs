//! The agent's configuration: flags, each also readable from a `BERTH_*` environment variable
//! (the names `hack/up.sh` and the manifests use).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Berth's node agent: registers this host as a Node, renews its Lease, and runs the Pods
/// bound to it through the container runtime's CRI socket.
#[derive(Clone, Debug, Parser)]
#[command(name = "berth-agent", version, about, long_about = None)]
pub struct Config {
    /// Name of the Node this agent registers and serves.
    #[arg(long, env = "BERTH_NODE_NAME")]
    pub node_name: String,

    /// The node's address (the Node's InternalIP, the pods' hostIP).
    #[arg(long, env = "BERTH_NODE_IP")]
    pub node_ip: IpAddr,

    /// The container runtime's CRI endpoint, `unix:///path/to/containerd.sock`.
    #[arg(
        long,
        env = "BERTH_CRI_ENDPOINT",
        default_value = "unix:///run/containerd/containerd.sock"
    )]
    pub cri_endpoint: String,

    /// The pod subnet of this node (the Node's `spec.podCIDR`), e.g. `10.214.1.0/24`.
    #[arg(long, env = "BERTH_POD_CIDR")]
    pub pod_cidr: Option<String>,

    /// PEM certificate served on the log/health port (HTTPS).
    #[arg(long, env = "BERTH_TLS_CERT")]
    pub tls_cert: PathBuf,

    /// PEM private key (PKCS#8, SEC1 or PKCS#1) of `--tls-cert`.
    #[arg(long, env = "BERTH_TLS_KEY")]
    pub tls_key: PathBuf,

    /// PEM bundle of the CAs whose client certificates authenticate on the HTTPS port (the
    /// cluster CA that signed the API server's kubelet client certificate); the subject's CN
    /// is the user and its O the groups, as the API server reads them. Clients without a
    /// certificate authenticate with a bearer token (TokenReview). Required unless
    /// `--insecure-skip-client-auth`.
    #[arg(
        long,
        env = "BERTH_CLIENT_CA",
        required_unless_present = "insecure_skip_client_auth"
    )]
    pub client_ca: Option<PathBuf>,

    /// How authenticated callers of the HTTPS port are authorised: `Webhook` asks the API
    /// server a SubjectAccessReview of `nodes/proxy`, `nodes/log`, `nodes/stats` or
    /// `nodes/metrics` for each request (as the kubelet's `--authorization-mode=Webhook`);
    /// `AlwaysAllow` lets every authenticated caller in.
    #[arg(
        long,
        env = "BERTH_AUTHORIZATION_MODE",
        value_enum,
        default_value = "Webhook",
        conflicts_with = "insecure_skip_client_auth"
    )]
    pub authorization_mode: crate::access::AuthorizationMode,

    /// Development only: no client authentication or authorisation on the HTTPS port, so anyone
    /// who reaches it may read logs and run commands in containers.
    #[arg(long, env = "BERTH_INSECURE_SKIP_CLIENT_AUTH", conflicts_with = "client_ca")]
    pub insecure_skip_client_auth: bool,

    /// Directory under which each pod's container logs are written (`<dir>/<ns>_<pod>_<uid>/`).
    #[arg(long, env = "BERTH_POD_LOG_DIR", default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,

    /// The agent's own state directory: pod volumes, `/etc/hosts` and termination-message
    /// files under `<dir>/pods/<uid>/` (see [`crate::volumes`]). It must be a shared mount
    /// that the container runtime sees, or tmpfs volumes look empty in containers.
    #[arg(long, env = "BERTH_ROOT_DIR", default_value = "/var/lib/berth-agent")]
    pub root_dir: PathBuf,

    /// Address of the HTTPS server for container logs, `/healthz` and `/metrics` (the API server
    /// reaches it at the node IP and `daemonEndpoints.kubeletEndpoint.Port`).
    #[arg(long, env = "BERTH_LISTEN_ADDR", default_value = "0.0.0.0:10250")]
    pub listen_addr: SocketAddr,

    /// Address of a plain-HTTP server for `/healthz` and `/metrics` (local probes and scrapes).
    #[arg(long, env = "BERTH_HEALTH_ADDR", default_value = "127.0.0.1:10248")]
    pub health_addr: SocketAddr,

    /// Maximum number of pods this node accepts (Node capacity `pods`).
    #[arg(long, env = "BERTH_MAX_PODS", default_value_t = 110)]
    pub max_pods: u32,

    /// How often the Lease is renewed, in seconds.
    #[arg(long, env = "BERTH_LEASE_RENEW_SECONDS", default_value_t = 10)]
    pub lease_renew_seconds: u64,

    /// The Lease's duration, in seconds.
    #[arg(long, env = "BERTH_LEASE_DURATION_SECONDS", default_value_t = 40)]
    pub lease_duration_seconds: i32,

    /// Allow containers with `securityContext.privileged: true` (refused otherwise).
    #[arg(long, env = "BERTH_ALLOW_PRIVILEGED")]
    pub allow_privileged: bool,

    /// Allow pods with `hostNetwork`, `hostPID` or `hostIPC` (refused otherwise).
    #[arg(long, env = "BERTH_ALLOW_HOST_NAMESPACES")]
    pub allow_host_namespaces: bool,

    /// Allow `hostPath` volumes (refused otherwise).
    #[arg(long, env = "BERTH_ALLOW_HOST_PATH")]
    pub allow_host_path: bool,

    /// Sysctls beyond the kubelet's safe set that pods may set, comma-separated names or
    /// `prefix.*` (as the kubelet's `--allowed-unsafe-sysctls`).
    #[arg(long, env = "BERTH_ALLOWED_UNSAFE_SYSCTLS", value_delimiter = ',')]
    pub allowed_unsafe_sysctls: Vec<String>,

    /// Directory of the node's seccomp profiles (`seccompProfile.type: Localhost` names a
    /// file in it).
    #[arg(
        long,
        env = "BERTH_SECCOMP_PROFILE_ROOT",
        default_value = "/var/lib/berth/seccomp"
    )]
    pub seccomp_profile_root: PathBuf,

    /// The cluster DNS's addresses, comma-separated (as the kubelet's `--cluster-dns`): those
    /// `dnsPolicy: ClusterFirst` pods get as nameservers, a DNS Service's or this node's own
    /// (`--dns-listen`); without them such pods get the node's resolver, with an Event.
    #[arg(long, env = "BERTH_CLUSTER_DNS", value_delimiter = ',')]
    pub cluster_dns: Vec<String>,

    /// Address on which the agent serves DNS to pods, UDP and TCP (e.g. `10.213.0.11:53`): the
    /// names of `--cluster-domain` from Services and Endpoints, every other name forwarded to
    /// the resolvers of `--resolv-conf`. Unset: no DNS server.
    #[arg(long, env = "BERTH_DNS_LISTEN")]
    pub dns_listen: Option<SocketAddr>,

    /// The cluster's DNS domain (the kubelet's `--cluster-domain`).
    #[arg(long, env = "BERTH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// The node's resolver configuration, the base of `dnsPolicy: Default` pods.
    #[arg(long, env = "BERTH_RESOLV_CONF", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,

    /// Image garbage collection starts when the image filesystem's usage reaches this percent
    /// (as the kubelet's `--image-gc-high-threshold`); 100 disables it.
    #[arg(long, env = "BERTH_IMAGE_GC_HIGH_THRESHOLD", default_value_t = 85,
        value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_high_threshold: u8,

    /// Image garbage collection frees space until usage is down to this percent (as the
    /// kubelet's `--image-gc-low-threshold`); not above the high threshold.
    #[arg(long, env = "BERTH_IMAGE_GC_LOW_THRESHOLD", default_value_t = 80,
        value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,

    /// Unused images first seen less than this long ago are never garbage collected (as the
    /// kubelet's `--minimum-image-ttl-duration`), e.g. `2m`, `90s`.
    #[arg(long, env = "BERTH_IMAGE_GC_MINIMUM_AGE", default_value = "2m", value_parser = humantime::parse_duration)]
    pub image_gc_minimum_age: Duration,

    /// How often image garbage collection checks the disk, e.g. `5m`.
    #[arg(long, env = "BERTH_IMAGE_GC_PERIOD", default_value = "5m", value_parser = humantime::parse_duration)]
    pub image_gc_period: Duration,

    /// The pod sandbox ("pause") image, never garbage collected. Unset: the one the runtime
    /// reports (containerd's `sandbox_image`); if it reports none, no image is collected.
    #[arg(long, env = "BERTH_POD_INFRA_CONTAINER_IMAGE")]
    pub pod_infra_container_image: Option<String>,

    /// Log output format.
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// How the agent writes its own logs (the level comes from `RUST_LOG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// What this node allows pods beyond the default.
    pub fn node_policy(&self) -> crate::admission::NodePolicy {
        crate::admission::NodePolicy {
            allow_privileged: self.allow_privileged,
            allow_host_namespaces: self.allow_host_namespaces,
            allow_host_path: self.allow_host_path,
            allowed_unsafe_sysctls: self.allowed_unsafe_sysctls.clone(),
        }
    }

    /// The image garbage collection's thresholds, checked: an error names the flags when the
    /// low threshold is above the high one.
    pub fn image_gc_policy(&self) -> crate::Result<crate::image_gc::Policy> {
        crate::image_gc::Policy::new(
            self.image_gc_high_threshold,
            self.image_gc_low_threshold,
            self.image_gc_minimum_age,
        )
        .map_err(crate::Error::Config)
    }

    /// How often the Lease is renewed.
    pub fn lease_renew_interval(&self) -> Duration {
        Duration::from_secs(self.lease_renew_seconds.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let c = Config::try_parse_from([
            "berth-agent",
            "--node-name=berth-1",
            "--node-ip=10.213.0.11",
            "--cri-endpoint=unix:///tmp/c.sock",
            "--pod-cidr=10.214.1.0/24",
            "--tls-cert=/c.crt",
            "--tls-key=/c.key",
            "--client-ca=/ca.crt",
        ])
        .expect("parses");
        assert_eq!(c.client_ca.as_deref(), Some(std::path::Path::new("/ca.crt")));
        assert_eq!(c.node_name, "berth-1");
        assert_eq!(c.node_ip.to_string(), "10.213.0.11");
        assert_eq!(c.listen_addr.port(), 10250);
        assert_eq!(c.max_pods, 110);
        assert_eq!(c.lease_renew_interval(), Duration::from_secs(10));
        assert_eq!(c.dns_listen, None);
        let gc = c.image_gc_policy().expect("default thresholds are valid");
        assert_eq!((gc.high, gc.low, gc.min_age), (85, 80, Duration::from_secs(120)));
        assert_eq!(c.image_gc_period, Duration::from_secs(300));
        let c = Config::try_parse_from([
            "berth-agent",
            "--node-name=berth-1",
            "--node-ip=10.213.0.11",
            "--tls-cert=/c.crt",
            "--tls-key=/c.key",
            "--insecure-skip-client-auth",
            "--dns-listen=10.213.0.11:53",
            "--cluster-dns=10.213.0.11",
        ])
        .expect("parses");
        assert_eq!(c.dns_listen, Some("10.213.0.11:53".parse().expect("address")));
        assert_eq!(c.cluster_dns, vec!["10.213.0.11"]);
    }

    #[test]
    fn image_gc_thresholds_are_checked() {
        let base = [
            "berth-agent",
            "--node-name=n",
            "--node-ip=10.0.0.1",
            "--tls-cert=/c",
            "--tls-key=/k",
            "--insecure-skip-client-auth",
        ];
        let parse = |extra: &[&str]| Config::try_parse_from(base.iter().chain(extra));
        let c = parse(&["--image-gc-high-threshold=70", "--image-gc-low-threshold=75"]).expect("parses");
        let e = c.image_gc_policy().expect_err("low above high").to_string();
        assert!(
            e.contains(
                "--image-gc-low-threshold (75) must not be higher than --image-gc-high-threshold (70)"
            ),
            "{e}"
        );
        let e = parse(&["--image-gc-high-threshold=101"])
            .expect_err("out of range")
            .to_string();
        assert!(e.contains("--image-gc-high-threshold"), "{e}");
        assert!(parse(&["--image-gc-low-threshold=-1"]).is_err());
        let c = parse(&["--image-gc-high-threshold=100", "--image-gc-minimum-age=90s"]).expect("parses");
        let p = c.image_gc_policy().expect("valid");
        assert!(!p.enabled());
        assert_eq!(p.min_age, Duration::from_secs(90));
    }
}
