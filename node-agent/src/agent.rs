//! Wiring: connect to the runtime and the API server (failing with one clear error when either
//! is unreachable), register the Node, then run the lease, node status, pod watch and servers
//! (with `--dns-listen`, the cluster DNS too: [`crate::cluster_dns`]) and the image garbage
//! collection ([`crate::image_gc`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Config as KubeConfig};
use tracing::{Instrument, info, info_span, warn};

use crate::access::Access;
use crate::config::Config;
use crate::cri::CriClient;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::node::{self, HostInfo};
use crate::podspec::NodeFacts;
use crate::server::{self, AppState};
use crate::sync::Shared;
use crate::{lease, pods};

/// How often the Node's status is written when nothing changes.
const NODE_STATUS_EVERY: Duration = Duration::from_secs(60);
/// How often the runtime's readiness is checked.
const RUNTIME_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Connects to the API server from the kubeconfig (`KUBECONFIG`) or in-cluster config and
/// checks that it answers.
async fn connect_api() -> Result<Client> {
    let mut config = KubeConfig::infer()
        .await
        .map_err(|e| Error::Config(format!("no usable kubeconfig or in-cluster config: {e}")))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    let url = config.cluster_url.to_string();
    let client =
        Client::try_from(config).map_err(|e| Error::kube(format!("building a client for {url}"), e))?;
    tokio::time::timeout(Duration::from_secs(15), client.apiserver_version())
        .await
        .map_err(|_| {
            Error::Config(format!(
                "cannot reach the API server at {url}: no answer within 15s"
            ))
        })?
        .map_err(|e| Error::kube(format!("cannot reach the API server at {url}"), e))?;
    Ok(client)
}

/// Runs the agent until SIGTERM or Ctrl-C. Containers keep running when it stops.
pub async fn run(cfg: Config) -> Result<()> {
    let gc_policy = cfg.image_gc_policy()?;
    let cri = CriClient::connect(&cfg.cri_endpoint).await?;
    let version = cri.version().await?;
    let tls = server::tls_config(&cfg.tls_cert, &cfg.tls_key, cfg.client_ca.as_deref())?;
    if cfg.insecure_skip_client_auth {
        warn!(addr = %cfg.listen_addr, "--insecure-skip-client-auth: anyone who reaches the HTTPS port may read logs and run commands in containers");
    }
    let client = connect_api().await?;
    let https = server::bind(cfg.listen_addr).await?;
    let plain = server::bind(cfg.health_addr).await?;
    let resolv = crate::dns::parse_resolv_conf(&std::fs::read_to_string(&cfg.resolv_conf).unwrap_or_else(|e| {
        warn!(path = %cfg.resolv_conf.display(), error = %e, "cannot read the node's resolver configuration; dnsPolicy Default pods get none");
        String::new()
    }));
    if let Some(listen) = cfg.dns_listen {
        let settings = crate::cluster_dns::Settings::new(
            listen,
            &cfg.cluster_domain,
            &resolv,
            cfg.node_ip,
            &cfg.cluster_dns,
        );
        crate::cluster_dns::start(client.clone(), settings).await?;
    }
    info!(
        node = %cfg.node_name,
        runtime = %format!("{} {}", version.runtime_name, version.runtime_version),
        "connected to the runtime and the API server"
    );

    let host = HostInfo::read();
    let nodes: Api<Node> = Api::all(client.clone());
    node::register(&nodes, &node::node_object(&cfg, &host)).await?;
    let node_uid = nodes
        .get(&cfg.node_name)
        .await
        .map_err(|e| Error::kube(format!("reading node {}", cfg.node_name), e))?
        .metadata
        .uid;
    let runtime_version = format!("{}://{}", version.runtime_name, version.runtime_version);
    write_node_status(&cri, &nodes, &cfg, &host, &runtime_version, None).await?;
    info!(node = %cfg.node_name, "node registered");

    let metrics = Metrics::new();
    let index: pods::PodIndex = Arc::new(RwLock::new(HashMap::new()));
    let shared = Arc::new(Shared {
        client: client.clone(),
        cri: cri.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "berth-agent".into(),
                instance: Some(cfg.node_name.clone()),
            },
        ),
        facts: NodeFacts {
            node_name: cfg.node_name.clone(),
            host_ip: cfg.node_ip.to_string(),
            memory_bytes: i64::try_from(host.memory_kib.saturating_mul(1024)).unwrap_or(i64::MAX),
            seccomp_root: cfg.seccomp_profile_root.clone(),
            resolv,
            cluster_dns: crate::dns::ClusterDns {
                servers: cfg.cluster_dns.clone(),
                domain: cfg.cluster_domain.clone(),
            },
        },
        policy: cfg.node_policy(),
        volumes: crate::volumes::Settings {
            root: cfg.root_dir.clone(),
            allow_host_path: cfg.allow_host_path,
            allocatable: crate::downward::Allocatable {
                cpu_millis: i64::try_from(host.cpus).unwrap_or(1).saturating_mul(1000),
                memory_bytes: i64::try_from(host.memory_kib.saturating_mul(1024)).unwrap_or(i64::MAX),
                ephemeral_bytes: 0,
            },
            refresh: None,
        },
        runtime_name: version.runtime_name.clone(),
        log_root: cfg.pod_log_dir.clone(),
        metrics: metrics.clone(),
    });

    if gc_policy.enabled() {
        let gc = crate::image_gc::Gc::new(
            &shared,
            index.clone(),
            crate::image_gc::node_reference(&cfg.node_name, node_uid.clone()),
            gc_policy,
            cfg.pod_infra_container_image.clone(),
            Arc::new(crate::image_gc::statvfs),
        );
        tokio::spawn(gc.run(cfg.image_gc_period).instrument(info_span!("image_gc")));
    } else {
        info!("image garbage collection disabled (--image-gc-high-threshold=100)");
    }

    let leases: Api<Lease> = Api::namespaced(client.clone(), lease::NAMESPACE);
    tokio::spawn(
        lease::run(
            leases,
            cfg.node_name.clone(),
            node_uid,
            cfg.lease_duration_seconds,
            cfg.lease_renew_interval(),
            metrics.clone(),
        )
        .instrument(info_span!("lease")),
    );
    tokio::spawn(
        node_status_loop(cri.clone(), nodes, cfg.clone(), host, runtime_version)
            .instrument(info_span!("node_status")),
    );
    tokio::spawn(pods::run(shared, cfg.node_name.clone(), index.clone()).instrument(info_span!("pods")));
    let state = AppState {
        cri,
        pods: index,
        metrics,
    };
    let reviewer = Arc::new(crate::access::review::ApiReviewer::new(client.clone()));
    let access = if cfg.insecure_skip_client_auth {
        Access::open(&cfg.node_name, reviewer)
    } else {
        Access::checked(&cfg.node_name, cfg.authorization_mode, reviewer)
    };
    let app = server::router(state.clone(), access);
    tokio::spawn(
        server::serve_tls(https, tls, app).instrument(info_span!("server", addr = %cfg.listen_addr)),
    );
    tokio::spawn(
        server::serve_plain(plain, server::health_router(state))
            .instrument(info_span!("health", addr = %cfg.health_addr)),
    );

    shutdown_signal().await;
    info!("stopping; containers keep running and are adopted on the next start");
    Ok(())
}

async fn write_node_status(
    cri: &CriClient,
    nodes: &Api<Node>,
    cfg: &Config,
    host: &HostInfo,
    runtime_version: &str,
    previous: Option<&k8s_openapi::api::core::v1::NodeCondition>,
) -> Result<k8s_openapi::api::core::v1::NodeCondition> {
    let runtime = cri.status().await.ok();
    let ready = node::ready_condition(runtime.as_ref(), Timestamp::now(), previous);
    let status = node::node_status(cfg, host, ready.clone(), runtime_version);
    node::write_status(nodes, &cfg.node_name, &status).await?;
    Ok(ready)
}

/// Rewrites the Node's status when readiness changes, and every minute as a heartbeat.
async fn node_status_loop(
    cri: CriClient,
    nodes: Api<Node>,
    cfg: Config,
    host: HostInfo,
    runtime_version: String,
) {
    let mut last: Option<k8s_openapi::api::core::v1::NodeCondition> = None;
    let mut last_write = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RUNTIME_CHECK_EVERY).await;
        let runtime = cri.status().await.ok();
        let ready = node::ready_condition(runtime.as_ref(), Timestamp::now(), last.as_ref());
        let changed = last
            .as_ref()
            .is_none_or(|l| l.status != ready.status || l.reason != ready.reason);
        if !changed && last_write.elapsed() < NODE_STATUS_EVERY {
            continue;
        }
        match write_node_status(&cri, &nodes, &cfg, &host, &runtime_version, last.as_ref()).await {
            Ok(r) => {
                last = Some(r);
                last_write = tokio::time::Instant::now();
            }
            Err(e) => warn!(error = %e, "writing node status"),
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
