//! A pod's resolver configuration, as the kubelet 1.20 builds it (`pkg/kubelet/network/dns`):
//! the node's `/etc/resolv.conf` for `dnsPolicy: Default` (and for `ClusterFirst` while the
//! node knows no cluster DNS, as the kubelet falls back, saying so in an Event), the cluster's
//! DNS servers and search path for `ClusterFirst`, nothing for `None`; then `spec.dnsConfig`
//! merged in. Pure.

use k8s_openapi::api::core::v1::Pod;

use crate::cri::api::DnsConfig;

/// A parsed `resolv.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// `search` (or `domain`) domains.
    pub searches: Vec<String>,
    /// `options`, as `name` or `name:value`.
    pub options: Vec<String>,
}

/// The cluster's DNS (the agent's `--cluster-dns` and `--cluster-domain`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterDns {
    /// The DNS Service's addresses; empty when the cluster has no DNS.
    pub servers: Vec<String>,
    /// The cluster domain, `cluster.local`.
    pub domain: String,
}

/// Reads a `resolv.conf` (comments and unknown lines are skipped).
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => conf.servers.extend(words.next().map(str::to_string)),
            Some("search" | "domain") => conf.searches = words.map(str::to_string).collect(),
            Some("options") => conf.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    conf
}

/// Which base the pod's policy resolves to on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The node's resolver.
    Host,
    /// The cluster's DNS.
    Cluster,
    /// Nothing but `dnsConfig`.
    Empty,
}

/// The base of `pod`'s resolver; the bool is true when `ClusterFirst` fell back to the node's
/// resolver for want of a cluster DNS (the kubelet's `MissingClusterDNS`).
pub fn base(pod: &Pod, cluster: &ClusterDns) -> (Base, bool) {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let wants_cluster = match spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst")
    {
        "None" => return (Base::Empty, false),
        "Default" => false,
        "ClusterFirstWithHostNet" => true,
        _ => !host_network,
    };
    match (wants_cluster, cluster.servers.is_empty()) {
        (true, false) => (Base::Cluster, false),
        (true, true) => (Base::Host, true),
        (false, _) => (Base::Host, false),
    }
}

fn push_unique(into: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !into.contains(&i) {
            into.push(i);
        }
    }
}

/// The pod's resolver configuration for the sandbox.
pub fn pod_dns(pod: &Pod, host: &ResolvConf, cluster: &ClusterDns) -> DnsConfig {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = DnsConfig::default();
    match base(pod, cluster).0 {
        Base::Host => {
            out.servers = host.servers.clone();
            out.searches = host.searches.clone();
            out.options = host.options.clone();
        }
        Base::Cluster => {
            let d = &cluster.domain;
            out.servers = cluster.servers.clone();
            out.searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            push_unique(&mut out.searches, host.searches.iter().cloned());
            out.options = vec!["ndots:5".to_string()];
        }
        Base::Empty => {}
    }
    if let Some(cfg) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        push_unique(&mut out.servers, cfg.nameservers.iter().flatten().cloned());
        push_unique(&mut out.searches, cfg.searches.iter().flatten().cloned());
        for o in cfg.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else { continue };
            out.options.retain(|x| x.split(':').next() != Some(name));
            out.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};

    fn pod(policy: Option<&str>, config: Option<PodDNSConfig>) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                namespace: Some("shop".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                dns_policy: policy.map(str::to_string),
                dns_config: config,
                ..Default::default()
            }),
            status: None,
        }
    }

    fn host() -> ResolvConf {
        parse_resolv_conf(
            "# generated\nnameserver 10.0.0.2\nnameserver 10.0.0.3 # second\nsearch corp.example\noptions edns0\n",
        )
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            servers: vec!["10.215.0.10".into()],
            domain: "cluster.local".into(),
        }
    }

    #[test]
    fn resolv_conf_reads_servers_searches_and_options() {
        let h = host();
        assert_eq!(h.servers, vec!["10.0.0.2", "10.0.0.3"]);
        assert_eq!(h.searches, vec!["corp.example"]);
        assert_eq!(h.options, vec!["edns0"]);
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_or_falls_back_to_the_node() {
        let d = pod_dns(&pod(None, None), &host(), &cluster());
        assert_eq!(d.servers, vec!["10.215.0.10"]);
        assert_eq!(
            d.searches,
            vec![
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(d.options, vec!["ndots:5"]);
        assert_eq!(base(&pod(None, None), &ClusterDns::default()), (Base::Host, true));
        let d = pod_dns(&pod(None, None), &host(), &ClusterDns::default());
        assert_eq!(d.servers, vec!["10.0.0.2", "10.0.0.3"]);
        assert_eq!(base(&pod(Some("Default"), None), &cluster()), (Base::Host, false));
    }

    #[test]
    fn dns_config_is_merged_and_none_starts_empty() {
        let config = PodDNSConfig {
            nameservers: Some(vec!["1.2.3.4".into()]),
            searches: Some(vec!["ns1.svc.cluster-domain.example".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        };
        let d = pod_dns(&pod(Some("None"), Some(config.clone())), &host(), &cluster());
        assert_eq!(d.servers, vec!["1.2.3.4"]);
        assert_eq!(d.searches, vec!["ns1.svc.cluster-domain.example"]);
        assert_eq!(d.options, vec!["ndots:2", "edns0"]);
        let d = pod_dns(&pod(None, Some(config)), &host(), &cluster());
        assert_eq!(d.servers, vec!["10.215.0.10", "1.2.3.4"]);
        assert_eq!(
            d.options,
            vec!["ndots:2", "edns0"],
            "a pod's option replaces the default"
        );
    }
}
