//! Cluster DNS answered by the agent itself, node-local (as NodeLocal DNSCache, with CoreDNS's
//! `kubernetes` plugin inside): with `--dns-listen`, each agent serves DNS on its node and
//! `--cluster-dns` gives pods (`dnsPolicy: ClusterFirst`, [`crate::dns`]) that address.
//!
//! Why not a DNS Service with a ClusterIP in front of DNS pods: no DNS server image is to be
//! had here, and a node-local server needs none: every agent already talks to the API server,
//! a pod's query never leaves its node (no kube-proxy DNAT, no conntrack entries for UDP), and
//! the node's DNS lives and dies with the node's agent, like its pods. The cost: every agent
//! watches every Service and Endpoints object (the kubelet watches Services anyway), and the
//! agent needs `list` and `watch` on `endpoints` beyond the Node authorizer's node rules.
//!
//! - [`records`]: the names and records, from Services and core/v1 Endpoints (pure);
//! - [`answer`]: one query's reply, or the decision to forward it (pure);
//! - [`server`]: UDP and TCP, forwarding to the node's resolvers with a 2 s timeout;
//! - [`watch`]: the watches that keep the index current.

pub mod answer;
#[cfg(test)]
mod fixtures;
pub mod records;
pub mod server;
pub mod watch;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use kube::Client;
use tracing::{Instrument, info, info_span, warn};

use crate::dns::ResolvConf;
use crate::error::{Error, Result};
pub use records::Index;
pub use server::{DnsServer, Forwarder};

/// Where and what the agent serves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The address served (UDP and TCP).
    pub listen: SocketAddr,
    /// The cluster domain, `cluster.local`.
    pub domain: String,
    /// The node's resolvers, for every other name.
    pub upstreams: Vec<SocketAddr>,
}

impl Settings {
    /// The settings of an agent listening on `listen`: the node's resolvers of `resolv` less any
    /// that is this server (its address, the node's, those pods are given as cluster DNS).
    pub fn new(
        listen: SocketAddr,
        domain: &str,
        resolv: &ResolvConf,
        node_ip: IpAddr,
        cluster_dns: &[String],
    ) -> Self {
        let mut own: Vec<IpAddr> = cluster_dns.iter().filter_map(|s| s.parse().ok()).collect();
        own.push(node_ip);
        Settings {
            listen,
            domain: domain.to_string(),
            upstreams: server::upstreams(resolv, listen, &own),
        }
    }
}

/// Binds the server (failing with a clear error when the address cannot be had), then serves
/// and watches in the background. Returns the address bound.
pub async fn start(client: Client, settings: Settings) -> Result<SocketAddr> {
    let zone = records::fqdn(&settings.domain)
        .map(|z| z.to_lowercase())
        .ok_or_else(|| {
            Error::Config(format!(
                "cluster domain {:?} is not a domain name",
                settings.domain
            ))
        })?;
    let server = DnsServer::bind(settings.listen)
        .await
        .map_err(|source| Error::Io {
            what: "binding the cluster DNS server (--dns-listen) on",
            path: settings.listen.to_string(),
            source,
        })?;
    let addr = server.local_addr().unwrap_or(settings.listen);
    if settings.upstreams.is_empty() {
        warn!(%addr, "cluster DNS has no upstream resolver: names outside the cluster domain get SERVFAIL");
    }
    info!(%addr, domain = %zone, upstreams = ?settings.upstreams, "serving cluster DNS");
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Index::unsynced(&zone)));
    tokio::spawn(watch::run(client, zone, tx).instrument(info_span!("cluster_dns_watch")));
    let forwarder = Forwarder::new(settings.upstreams, server::UPSTREAM_TIMEOUT);
    tokio::spawn(
        server
            .run(rx, forwarder)
            .instrument(info_span!("cluster_dns", %addr)),
    );
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_s_own_addresses_are_never_upstreams() {
        let resolv = crate::dns::parse_resolv_conf("nameserver 10.213.0.11\nnameserver 10.255.255.53\n");
        let listen: SocketAddr = "0.0.0.0:53".parse().expect("address");
        let s = Settings::new(
            listen,
            "cluster.local",
            &resolv,
            "10.213.0.11".parse().expect("ip"),
            &[],
        );
        assert_eq!(
            s.upstreams,
            vec!["10.255.255.53:53".parse::<SocketAddr>().expect("address")]
        );
    }
}
