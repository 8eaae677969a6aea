use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, CNAME, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData};

use super::*;
use crate::cluster_dns::fixtures::{endpoints_entries, index, name, service_entries, zone};

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

fn srv(port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(0, 100, port, name(target)))
}

fn records(index: &Index, n: &str) -> Vec<RData> {
    match index.lookup(&name(n)) {
        Lookup::Records(r) => r,
        other => panic!("{n}: {other:?}"),
    }
}

#[test]
fn entries_read_cluster_ips_named_ports_and_readiness() {
    let services = service_entries();
    let web = &services[&("shop".into(), "web".into())];
    assert_eq!(
        web.kind,
        ServiceKind::ClusterIp(vec![Ipv4Addr::new(10, 215, 0, 20)])
    );
    assert_eq!(
        web.ports
            .iter()
            .map(|p| (p.name.as_str(), p.protocol.as_str(), p.port))
            .collect::<Vec<_>>(),
        vec![("http", "tcp", 80), ("metrics", "tcp", 9090), ("dns", "udp", 53)]
    );
    assert!(
        services[&("shop".into(), "plain".into())].ports.is_empty(),
        "unnamed ports get no SRV"
    );
    assert!(services[&("shop".into(), "peers".into())].publish_not_ready);
    assert!(
        !services.contains_key(&("shop".into(), "pending".into())),
        "a Service without a ClusterIP yet has nothing to answer"
    );
    let eps = endpoints_entries();
    let db = &eps[&("shop".into(), "db".into())].subsets[0];
    assert_eq!(
        db.addresses
            .iter()
            .map(|a| (a.label(), a.ready))
            .collect::<Vec<_>>(),
        vec![
            ("db-0".into(), true),
            ("db-1".into(), true),
            ("db-2".into(), false)
        ]
    );
    assert_eq!(
        eps[&("shop".into(), "web".into())].subsets[0].addresses[0].label(),
        "10-214-1-10"
    );
}

#[test]
fn a_cluster_ip_service_has_its_a_srv_and_ptr_records() {
    let index = index();
    assert_eq!(
        records(&index, "kubernetes.default.svc.cluster.local."),
        vec![a([10, 215, 0, 1])]
    );
    assert_eq!(
        records(&index, "_https._tcp.kubernetes.default.svc.cluster.local."),
        vec![srv(443, "kubernetes.default.svc.cluster.local.")]
    );
    assert_eq!(
        records(&index, "1.0.215.10.in-addr.arpa."),
        vec![RData::PTR(PTR(name("kubernetes.default.svc.cluster.local.")))]
    );
    assert_eq!(
        records(&index, "10-214-1-10.web.shop.svc.cluster.local."),
        vec![a([10, 214, 1, 10])],
        "an endpoint of a ClusterIP Service has a name too (as CoreDNS)"
    );
}

#[test]
fn every_named_port_has_its_srv_record_with_its_protocol() {
    let index = index();
    let web = "web.shop.svc.cluster.local.";
    assert_eq!(
        records(&index, "_http._tcp.web.shop.svc.cluster.local."),
        vec![srv(80, web)]
    );
    assert_eq!(
        records(&index, "_metrics._tcp.web.shop.svc.cluster.local."),
        vec![srv(9090, web)]
    );
    assert_eq!(
        records(&index, "_dns._udp.web.shop.svc.cluster.local."),
        vec![srv(53, web)]
    );
    assert_eq!(
        index.lookup(&name("_dns._tcp.web.shop.svc.cluster.local.")),
        Lookup::Missing
    );
    assert_eq!(
        index.lookup(&name("_tcp.web.shop.svc.cluster.local.")),
        Lookup::Empty,
        "a parent of SRV names exists without records"
    );
}

#[test]
fn a_headless_service_answers_its_ready_endpoints_by_address_and_hostname() {
    let index = index();
    assert_eq!(
        records(&index, "db.shop.svc.cluster.local."),
        vec![a([10, 214, 1, 5]), a([10, 214, 2, 6])],
        "the not-ready db-2 is left out"
    );
    assert_eq!(
        records(&index, "db-1.db.shop.svc.cluster.local."),
        vec![a([10, 214, 2, 6])]
    );
    assert_eq!(
        index.lookup(&name("db-2.db.shop.svc.cluster.local.")),
        Lookup::Missing
    );
    assert_eq!(
        records(&index, "_pg._tcp.db.shop.svc.cluster.local."),
        vec![
            srv(5432, "db-0.db.shop.svc.cluster.local."),
            srv(5432, "db-1.db.shop.svc.cluster.local.")
        ]
    );
    assert_eq!(
        records(&index, "5.1.214.10.in-addr.arpa."),
        vec![RData::PTR(PTR(name("db-0.db.shop.svc.cluster.local.")))]
    );
    // Published not-ready addresses, named by their address.
    assert_eq!(
        records(&index, "peers.shop.svc.cluster.local."),
        vec![a([10, 214, 2, 9])]
    );
    assert_eq!(
        records(&index, "_gossip._udp.peers.shop.svc.cluster.local."),
        vec![srv(7946, "10-214-2-9.peers.shop.svc.cluster.local.")]
    );
    assert_eq!(
        index.lookup(&name("empty.shop.svc.cluster.local.")),
        Lookup::Missing,
        "a headless Service without ready endpoints is NXDOMAIN (the specification, 2.4.1)"
    );
}

#[test]
fn an_external_name_service_is_a_cname() {
    let index = index();
    assert_eq!(
        records(&index, "ext.shop.svc.cluster.local."),
        vec![RData::CNAME(CNAME(name("db.example.com.")))]
    );
}

#[test]
fn names_are_case_insensitive_and_parents_exist_without_records() {
    let index = index();
    assert_eq!(
        records(&index, "KUBERNETES.Default.SVC.cluster.LOCAL."),
        vec![a([10, 215, 0, 1])]
    );
    for parent in [
        "cluster.local.",
        "svc.cluster.local.",
        "shop.svc.cluster.local.",
        "Default.svc.cluster.local.",
    ] {
        assert_eq!(index.lookup(&name(parent)), Lookup::Empty, "{parent}");
    }
    for missing in [
        "nope.shop.svc.cluster.local.",
        "web.nope.svc.cluster.local.",
        "nope.svc.cluster.local.",
        "web.shop.cluster.local.",
        "x.web.shop.svc.cluster.local.",
    ] {
        assert_eq!(index.lookup(&name(missing)), Lookup::Missing, "{missing}");
    }
    assert_eq!(
        records(&index, "dns-version.cluster.local."),
        vec![RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()]))]
    );
}

#[test]
fn pod_names_answer_the_address_they_spell() {
    let index = index();
    assert_eq!(
        records(&index, "10-214-1-5.shop.pod.cluster.local."),
        vec![a([10, 214, 1, 5])]
    );
    assert_eq!(index.lookup(&name("shop.pod.cluster.local.")), Lookup::Empty);
    assert_eq!(index.lookup(&name("pod.cluster.local.")), Lookup::Empty);
    for bad in [
        "10-214-1.shop",
        "10-214-1-256.shop",
        "a-b-c-d.shop",
        "10-214-1-5a.shop",
        "x.10-214-1-5.shop",
    ] {
        let n = format!("{bad}.pod.cluster.local.");
        assert_eq!(index.lookup(&name(&n)), Lookup::Missing, "{n}");
    }
    assert_eq!(undashed("0-0-0-0"), Some(Ipv4Addr::UNSPECIFIED));
    assert_eq!(dashed(Ipv4Addr::new(10, 214, 1, 5)), "10-214-1-5");
}

#[test]
fn names_are_pending_until_their_objects_are_listed() {
    let zone = zone();
    let unsynced = Index::unsynced(&zone);
    assert_eq!(
        unsynced.lookup(&name("kubernetes.default.svc.cluster.local.")),
        Lookup::Pending
    );
    assert_eq!(
        unsynced.lookup(&name("1.0.215.10.in-addr.arpa.")),
        Lookup::Missing
    );

    // Services listed, Endpoints not yet: ClusterIPs answer, headless Services wait.
    let partial = Index::build(&zone, &service_entries(), None, 1);
    assert_eq!(
        records(&partial, "web.shop.svc.cluster.local."),
        vec![a([10, 215, 0, 20])]
    );
    assert_eq!(
        partial.lookup(&name("db.shop.svc.cluster.local.")),
        Lookup::Pending
    );
    assert_eq!(
        partial.lookup(&name("_pg._tcp.db.shop.svc.cluster.local.")),
        Lookup::Pending
    );
    assert_eq!(
        partial.lookup(&name("db-0.db.shop.svc.cluster.local.")),
        Lookup::Pending
    );
    assert_eq!(
        partial.lookup(&name("nope.shop.svc.cluster.local.")),
        Lookup::Missing
    );
}

#[test]
fn a_bad_external_name_is_skipped_not_fatal() {
    let mut services = service_entries();
    services.insert(
        ("shop".into(), "bad".into()),
        ServiceEntry {
            kind: ServiceKind::ExternalName("a..b".into()),
            ports: vec![],
            publish_not_ready: false,
        },
    );
    let index = Index::build(&zone(), &services, Some(&endpoints_entries()), 1);
    assert_eq!(
        index.lookup(&name("bad.shop.svc.cluster.local.")),
        Lookup::Missing
    );
    assert_eq!(index.zone(), &Name::from_ascii("cluster.local.").expect("name"));
}
