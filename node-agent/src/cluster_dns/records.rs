//! The cluster's DNS records, as the Kubernetes DNS-based service discovery specification
//! (schema 1.0.1) and CoreDNS's `kubernetes` plugin give them, built from Services and core/v1
//! Endpoints (the 1.20 API server serves EndpointSlices only as `v1beta1`). Pure.
//!
//! | name | records |
//! |---|---|
//! | `<svc>.<ns>.svc.<zone>` | A: the ClusterIPs; headless: the ready endpoint addresses; ExternalName: a CNAME |
//! | `<host>.<svc>.<ns>.svc.<zone>` | A: the endpoint whose `hostname` is `<host>` (else whose address is `a-b-c-d`) |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<zone>` | SRV per named port: to the Service; headless: to each ready endpoint |
//! | `<d>.<c>.<b>.<a>.in-addr.arpa` | PTR: a ClusterIP's Service, a headless endpoint's name |
//! | `<a-b-c-d>.<ns>.pod.<zone>` | A: `a.b.c.d`, any address (CoreDNS's `pods insecure`, the kubeadm default) |
//! | `dns-version.<zone>` | TXT: the schema version |
//!
//! A name that exists only as a parent of others (`<ns>.svc.<zone>`, the zone itself) exists
//! without records (NODATA, not NXDOMAIN). IPv4 only: the cluster has no IPv6.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, CNAME, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData};
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, Endpoints, Service};

/// The version of the specification's schema these records follow (`dns-version.<zone>`).
pub const SCHEMA_VERSION: &str = "1.0.1";

/// The annotation that publishes a Service's not-ready endpoints (before
/// `spec.publishNotReadyAddresses`).
const TOLERATE_UNREADY: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// An object's namespace and name.
pub type Key = (String, String);

/// A port with a name, the only kind that gets SRV records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    /// The port's name.
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The port number.
    pub port: u16,
}

/// How a Service is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// Its IPv4 ClusterIPs.
    ClusterIp(Vec<Ipv4Addr>),
    /// `clusterIP: None`: its ready endpoints.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

/// What a Service contributes to DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    /// How it is answered.
    pub kind: ServiceKind,
    /// Its named ports.
    pub ports: Vec<NamedPort>,
    /// Whether not-ready endpoints count as ready (`publishNotReadyAddresses` or the
    /// tolerate-unready annotation).
    pub publish_not_ready: bool,
}

/// One endpoint address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Its `hostname`, if any.
    pub hostname: Option<String>,
    /// Whether it is in `addresses` (not `notReadyAddresses`).
    pub ready: bool,
}

impl Address {
    /// The endpoint's name under its Service: its hostname, else its address with dashes.
    pub fn label(&self) -> String {
        match &self.hostname {
            Some(h) if !h.is_empty() => h.clone(),
            _ => dashed(self.ip),
        }
    }
}

/// One subset of an Endpoints object: addresses and the ports they all serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subset {
    /// Its addresses.
    pub addresses: Vec<Address>,
    /// Its named ports.
    pub ports: Vec<NamedPort>,
}

/// What an Endpoints object contributes to DNS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointsEntry {
    /// Its subsets.
    pub subsets: Vec<Subset>,
}

/// An object's key, when it has a namespace and a name.
pub fn key(meta: &kube::api::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

fn named_port(name: Option<&String>, protocol: Option<&String>, port: i32) -> Option<NamedPort> {
    let name = name.filter(|n| !n.is_empty())?;
    Some(NamedPort {
        name: name.to_ascii_lowercase(),
        protocol: protocol.map_or("tcp".to_string(), |p| p.to_ascii_lowercase()),
        port: u16::try_from(port).ok().filter(|p| *p != 0)?,
    })
}

/// What `svc` contributes, or `None` when it has nothing to answer yet (no ClusterIP).
pub fn service_entry(svc: &Service) -> Option<ServiceEntry> {
    let spec = svc.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(spec.external_name.clone().filter(|n| !n.is_empty())?)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let ips: Vec<Ipv4Addr> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().filter_map(|i| i.parse().ok()).collect(),
            _ => spec.cluster_ip.iter().filter_map(|i| i.parse().ok()).collect(),
        };
        if ips.is_empty() {
            return None;
        }
        ServiceKind::ClusterIp(ips)
    };
    let tolerate = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TOLERATE_UNREADY))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Some(ServiceEntry {
        kind,
        ports: spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| named_port(p.name.as_ref(), p.protocol.as_ref(), p.port))
            .collect(),
        publish_not_ready: tolerate || spec.publish_not_ready_addresses == Some(true),
    })
}

fn address(a: &EndpointAddress, ready: bool) -> Option<Address> {
    Some(Address {
        ip: a.ip.parse().ok()?,
        hostname: a.hostname.clone().map(|h| h.to_ascii_lowercase()),
        ready,
    })
}

fn endpoint_port(p: &EndpointPort) -> Option<NamedPort> {
    named_port(p.name.as_ref(), p.protocol.as_ref(), p.port)
}

/// What `ep` contributes (IPv4 addresses, named ports).
pub fn endpoints_entry(ep: &Endpoints) -> EndpointsEntry {
    let subsets = ep.subsets.iter().flatten().map(|s| {
        let ready = s.addresses.iter().flatten().filter_map(|a| address(a, true));
        let not_ready = s
            .not_ready_addresses
            .iter()
            .flatten()
            .filter_map(|a| address(a, false));
        Subset {
            addresses: ready.chain(not_ready).collect(),
            ports: s.ports.iter().flatten().filter_map(endpoint_port).collect(),
        }
    });
    EndpointsEntry {
        subsets: subsets.collect(),
    }
}

/// `10.0.0.1` as `10-0-0-1`.
pub fn dashed(ip: Ipv4Addr) -> String {
    ip.octets().map(|o| o.to_string()).join("-")
}

/// `10-0-0-1` as `10.0.0.1`; `None` for anything else.
pub fn undashed(label: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = label.split('-').collect();
    let [a, b, c, d] = parts.as_slice() else {
        return None;
    };
    let octet = |s: &str| {
        (!s.is_empty() && s.len() <= 3 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u8>().ok())
            .flatten()
    };
    Some(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?))
}

/// The reverse name of `ip`: `<d>.<c>.<b>.<a>.in-addr.arpa.`.
pub fn reverse_name(ip: Ipv4Addr) -> Name {
    let [a, b, c, d] = ip.octets();
    Name::from_ascii(format!("{d}.{c}.{b}.{a}.in-addr.arpa.")).unwrap_or_else(|_| Name::root())
}

/// A fully qualified name from text (a trailing dot is added).
pub fn fqdn(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    (name.iter().count() > 0).then_some(name)
}

/// What a name holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// These records (never empty).
    Records(Vec<RData>),
    /// The name exists without records (NODATA).
    Empty,
    /// No such name (NXDOMAIN).
    Missing,
    /// Not known yet: the objects it comes from are not listed yet (SERVFAIL).
    Pending,
}

/// Every record of the cluster domain, by name (case-insensitive), and the reverse names of
/// ClusterIPs and headless endpoints.
#[derive(Clone, Debug)]
pub struct Index {
    zone: Name,
    serial: u32,
    synced: bool,
    records: HashMap<Name, Vec<RData>>,
    parents: HashSet<Name>,
    pending: HashSet<Name>,
}

impl Index {
    /// An index of `zone` that knows nothing yet: every name of the zone is [`Lookup::Pending`].
    pub fn unsynced(zone: &Name) -> Self {
        Index {
            zone: zone.to_lowercase(),
            serial: 0,
            synced: false,
            records: HashMap::new(),
            parents: HashSet::new(),
            pending: HashSet::new(),
        }
    }

    /// The index of `services`, with the records of `endpoints` (`None` while Endpoints are not
    /// listed yet: headless Services are then pending). `serial` is the SOA serial.
    pub fn build(
        zone: &Name,
        services: &BTreeMap<Key, ServiceEntry>,
        endpoints: Option<&BTreeMap<Key, EndpointsEntry>>,
        serial: u32,
    ) -> Self {
        let mut index = Index::unsynced(zone);
        index.serial = serial;
        index.synced = true;
        if let Some(version) = index.child("dns-version") {
            index.add(version, RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])));
        }
        for ((ns, name), svc) in services {
            let Some(base) = index.child(&format!("{name}.{ns}.svc")) else {
                continue;
            };
            let eps = match endpoints {
                Some(all) => all.get(&(ns.clone(), name.clone())),
                None if svc.kind == ServiceKind::Headless => {
                    index.parents_of(&base);
                    index.pending.insert(base);
                    continue;
                }
                None => None,
            };
            index.add_service(&base, svc, eps);
        }
        index
    }

    fn child(&self, relative: &str) -> Option<Name> {
        fqdn(&format!("{relative}.{}", self.zone))
    }

    fn add(&mut self, name: Name, data: RData) {
        if self.zone.zone_of(&name) {
            self.parents_of(&name);
        }
        let records = self.records.entry(name).or_default();
        if !records.contains(&data) {
            records.push(data);
        }
    }

    /// Records every name between `name` (excluded) and the zone (included) as existing.
    fn parents_of(&mut self, name: &Name) {
        let mut parent = name.base_name();
        while self.zone.zone_of(&parent) && self.parents.insert(parent.clone()) {
            parent = parent.base_name();
        }
    }

    fn srv_name(base: &Name, port: &NamedPort) -> Option<Name> {
        fqdn(&format!("_{}._{}.{base}", port.name, port.protocol))
    }

    fn add_service(&mut self, base: &Name, svc: &ServiceEntry, eps: Option<&EndpointsEntry>) {
        let published = |a: &&Address| a.ready || svc.publish_not_ready;
        match &svc.kind {
            ServiceKind::ExternalName(target) => {
                if let Some(target) = fqdn(target) {
                    self.add(base.clone(), RData::CNAME(CNAME(target)));
                }
                return;
            }
            ServiceKind::ClusterIp(ips) => {
                for ip in ips {
                    self.add(base.clone(), RData::A(A(*ip)));
                    self.add(reverse_name(*ip), RData::PTR(PTR(base.clone())));
                }
                for port in &svc.ports {
                    if let Some(srv) = Self::srv_name(base, port) {
                        self.add(srv, RData::SRV(SRV::new(0, 100, port.port, base.clone())));
                    }
                }
            }
            ServiceKind::Headless => {
                for subset in eps.iter().flat_map(|e| &e.subsets) {
                    for addr in subset.addresses.iter().filter(published) {
                        let Some(host) = fqdn(&format!("{}.{base}", addr.label())) else {
                            continue;
                        };
                        self.add(base.clone(), RData::A(A(addr.ip)));
                        self.add(reverse_name(addr.ip), RData::PTR(PTR(host.clone())));
                        for port in &subset.ports {
                            if let Some(srv) = Self::srv_name(base, port) {
                                self.add(srv, RData::SRV(SRV::new(0, 100, port.port, host.clone())));
                            }
                        }
                    }
                }
            }
        }
        // Endpoint names, for ClusterIP Services too (as CoreDNS).
        for subset in eps.iter().flat_map(|e| &e.subsets) {
            for addr in subset.addresses.iter().filter(published) {
                if let Some(host) = fqdn(&format!("{}.{base}", addr.label())) {
                    self.add(host, RData::A(A(addr.ip)));
                }
            }
        }
    }

    /// The zone (lowercase, fully qualified).
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Whether `name` is the zone or below it.
    pub fn in_zone(&self, name: &Name) -> bool {
        self.zone.zone_of(name)
    }

    /// What `name` holds (a fully qualified name of the zone, or a reverse name).
    pub fn lookup(&self, name: &Name) -> Lookup {
        if !self.in_zone(name) {
            return match self.records.get(name) {
                Some(r) => Lookup::Records(r.clone()),
                None => Lookup::Missing,
            };
        }
        if !self.synced {
            return Lookup::Pending;
        }
        let zone_labels = self.zone.iter().count();
        let mut up = name.clone();
        while up.iter().count() > zone_labels {
            if self.pending.contains(&up) {
                return Lookup::Pending;
            }
            up = up.base_name();
        }
        if let Some(r) = self.records.get(name) {
            return Lookup::Records(r.clone());
        }
        if name == &self.zone || self.parents.contains(name) {
            return Lookup::Empty;
        }
        self.pod(name)
    }

    /// `<a-b-c-d>.<ns>.pod.<zone>`: A `a.b.c.d`; `<ns>.pod.<zone>` and `pod.<zone>` exist.
    fn pod(&self, name: &Name) -> Lookup {
        let depth = name.iter().count() - self.zone.iter().count();
        let labels: Vec<&[u8]> = name.iter().take(depth).collect();
        let is_pod = |l: &[u8]| l.eq_ignore_ascii_case(b"pod");
        match labels.as_slice() {
            [pod] | [_, pod] if is_pod(pod) => Lookup::Empty,
            [ip, _, pod] if is_pod(pod) => match std::str::from_utf8(ip).ok().and_then(undashed) {
                Some(ip) => Lookup::Records(vec![RData::A(A(ip))]),
                None => Lookup::Missing,
            },
            _ => Lookup::Missing,
        }
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
