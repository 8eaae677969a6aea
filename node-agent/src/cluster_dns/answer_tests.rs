use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SRV};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use super::*;
use crate::cluster_dns::fixtures::{index, name, service_entries, zone};
use crate::cluster_dns::records::{Address, EndpointsEntry, Index, ServiceEntry, ServiceKind, Subset};

fn query(n: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(n), qtype));
    m
}

fn reply_to(q: &Message, index: &Index) -> Message {
    match decide(q, index) {
        Decision::Reply(m) => m,
        other => panic!("{:?}: {other:?}", q.queries),
    }
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

fn data(records: &[Record]) -> Vec<RData> {
    records.iter().map(|r| r.data.clone()).collect()
}

/// The SOA of a negative answer: the zone's, serial 7, negative TTL 5 s.
fn assert_soa_authority(m: &Message) {
    let [soa] = m.authorities.as_slice() else {
        panic!("authority: {:?}", m.authorities)
    };
    assert_eq!(soa.name, name("cluster.local."));
    assert_eq!(soa.ttl, TTL);
    let RData::SOA(soa) = &soa.data else {
        panic!("not an SOA: {soa:?}")
    };
    assert_eq!((soa.serial, soa.minimum), (7, 5));
    assert_eq!(soa.mname, name("ns.dns.cluster.local."));
}

#[test]
fn a_service_name_is_answered_authoritatively_with_a_five_second_ttl() {
    let q = query("kubernetes.default.svc.cluster.local.", RecordType::A);
    let m = reply_to(&q, &index());
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative && m.metadata.recursion_available && m.metadata.recursion_desired);
    assert_eq!(m.queries, q.queries);
    assert_eq!(data(&m.answers), vec![a([10, 215, 0, 1])]);
    assert_eq!(m.answers[0].ttl, 5);
    assert!(m.edns.is_none(), "no OPT record for a query without one");
}

#[test]
fn the_question_s_case_is_kept_and_matching_ignores_it() {
    let m = reply_to(&query("Web.SHOP.svc.Cluster.Local.", RecordType::A), &index());
    assert_eq!(data(&m.answers), vec![a([10, 215, 0, 20])]);
    assert_eq!(m.answers[0].name.to_ascii(), "Web.SHOP.svc.Cluster.Local.");
}

#[test]
fn missing_names_of_the_domain_are_nxdomain_with_the_soa() {
    // What a pod's search path tries first for `kubernetes.default`.
    for n in [
        "kubernetes.default.shop.svc.cluster.local.",
        "nope.shop.svc.cluster.local.",
        "empty.shop.svc.cluster.local.",
    ] {
        let m = reply_to(&query(n, RecordType::A), &index());
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{n}");
        assert!(m.answers.is_empty());
        assert!(m.metadata.authoritative);
        assert_soa_authority(&m);
    }
}

#[test]
fn a_type_the_name_lacks_is_nodata_aaaa_included() {
    for (n, t) in [
        ("kubernetes.default.svc.cluster.local.", RecordType::AAAA),
        ("kubernetes.default.svc.cluster.local.", RecordType::MX),
        ("db-0.db.shop.svc.cluster.local.", RecordType::AAAA),
        ("shop.svc.cluster.local.", RecordType::A),
        ("10-214-1-5.shop.pod.cluster.local.", RecordType::AAAA),
    ] {
        let m = reply_to(&query(n, t), &index());
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{n} {t}");
        assert!(m.answers.is_empty(), "{n} {t}");
        assert_soa_authority(&m);
    }
}

#[test]
fn srv_answers_carry_their_targets_addresses_in_the_additional_section() {
    let m = reply_to(
        &query("_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV),
        &index(),
    );
    let srv = |host: &str| RData::SRV(SRV::new(0, 100, 5432, name(host)));
    assert_eq!(
        data(&m.answers),
        vec![
            srv("db-0.db.shop.svc.cluster.local."),
            srv("db-1.db.shop.svc.cluster.local.")
        ]
    );
    assert_eq!(data(&m.additionals), vec![a([10, 214, 1, 5]), a([10, 214, 2, 6])]);
    assert_eq!(m.additionals[1].name, name("db-1.db.shop.svc.cluster.local."));

    let m = reply_to(
        &query(
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            RecordType::SRV,
        ),
        &index(),
    );
    assert_eq!(
        data(&m.answers),
        vec![RData::SRV(SRV::new(
            0,
            100,
            443,
            name("kubernetes.default.svc.cluster.local.")
        ))]
    );
    assert_eq!(data(&m.additionals), vec![a([10, 215, 0, 1])]);
}

#[test]
fn an_external_name_answers_its_cname_and_is_chased_upstream() {
    let q = query("ext.shop.svc.cluster.local.", RecordType::A);
    let Decision::Chase { reply, target } = decide(&q, &index()) else {
        panic!("not chased")
    };
    assert_eq!(
        data(&reply.answers),
        vec![RData::CNAME(CNAME(name("db.example.com.")))]
    );
    assert_eq!(target, Query::query(name("db.example.com."), RecordType::A));

    let mut upstream = Message::response(4242, OpCode::Query);
    upstream.add_answer(Record::from_rdata(
        name("db.example.com."),
        300,
        a([192, 0, 2, 53]),
    ));
    let merged = merge_chased(reply, &upstream);
    assert_eq!(
        data(&merged.answers),
        vec![RData::CNAME(CNAME(name("db.example.com."))), a([192, 0, 2, 53])]
    );
    let chase = chase_query(&q, target);
    assert_eq!(
        (chase.metadata.id, chase.metadata.recursion_desired),
        (4242, true)
    );

    // Asking for the CNAME itself is answered here.
    let m = reply_to(&query("ext.shop.svc.cluster.local.", RecordType::CNAME), &index());
    assert_eq!(
        data(&m.answers),
        vec![RData::CNAME(CNAME(name("db.example.com.")))]
    );
}

#[test]
fn a_cname_into_the_domain_is_followed_here() {
    let m = reply_to(&query("alias.shop.svc.cluster.local.", RecordType::A), &index());
    assert_eq!(
        data(&m.answers),
        vec![
            RData::CNAME(CNAME(name("web.shop.svc.cluster.local."))),
            a([10, 215, 0, 20])
        ]
    );
    assert_eq!(m.answers[1].name, name("web.shop.svc.cluster.local."));
}

#[test]
fn pod_names_version_and_the_apex_soa() {
    let m = reply_to(
        &query("10-214-2-6.shop.pod.cluster.local.", RecordType::A),
        &index(),
    );
    assert_eq!(data(&m.answers), vec![a([10, 214, 2, 6])]);
    let m = reply_to(&query("dns-version.cluster.local.", RecordType::TXT), &index());
    assert_eq!(m.answers.len(), 1);
    let m = reply_to(&query("cluster.local.", RecordType::SOA), &index());
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
}

#[test]
fn known_reverse_names_are_answered_and_everything_else_forwarded() {
    let m = reply_to(&query("20.0.215.10.in-addr.arpa.", RecordType::PTR), &index());
    assert_eq!(
        data(&m.answers),
        vec![RData::PTR(PTR(name("web.shop.svc.cluster.local.")))]
    );
    assert_eq!(
        decide(&query("99.0.215.10.in-addr.arpa.", RecordType::PTR), &index()),
        Decision::Forward
    );
    assert_eq!(
        decide(&query("example.com.", RecordType::A), &index()),
        Decision::Forward
    );
    assert_eq!(
        decide(&query("cluster.local.example.com.", RecordType::A), &index()),
        Decision::Forward,
        "only names below the zone are the zone's"
    );
}

#[test]
fn what_is_not_a_plain_query_is_ignored_or_refused() {
    let mut response = query("example.com.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    assert_eq!(decide(&response, &index()), Decision::Ignore);

    let mut notify = query("cluster.local.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(
        reply_to(&notify, &index()).metadata.response_code,
        ResponseCode::NotImp
    );

    let mut two = query("a.cluster.local.", RecordType::A);
    two.add_query(Query::query(name("b.cluster.local."), RecordType::A));
    assert_eq!(
        reply_to(&two, &index()).metadata.response_code,
        ResponseCode::FormErr
    );
    let mut none = query("a.cluster.local.", RecordType::A);
    none.queries.clear();
    assert_eq!(
        reply_to(&none, &index()).metadata.response_code,
        ResponseCode::FormErr
    );

    let mut chaos = query("kubernetes.default.svc.cluster.local.", RecordType::TXT);
    let mut q = Query::query(name("kubernetes.default.svc.cluster.local."), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    chaos.queries = vec![q];
    assert_eq!(
        reply_to(&chaos, &index()).metadata.response_code,
        ResponseCode::Refused
    );
}

#[test]
fn names_not_listed_yet_are_servfail_not_nxdomain() {
    let unsynced = Index::unsynced(&zone());
    let m = reply_to(
        &query("kubernetes.default.svc.cluster.local.", RecordType::A),
        &unsynced,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let partial = Index::build(&zone(), &service_entries(), None, 1);
    let m = reply_to(&query("db.shop.svc.cluster.local.", RecordType::A), &partial);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn udp_replies_fit_the_client_s_payload_or_say_truncated() {
    let addresses = (1..=60)
        .map(|i| Address {
            ip: Ipv4Addr::new(10, 214, 1, i),
            hostname: None,
            ready: true,
        })
        .collect();
    let key = ("shop".to_string(), "big".to_string());
    let services = BTreeMap::from([(
        key.clone(),
        ServiceEntry {
            kind: ServiceKind::Headless,
            ports: vec![],
            publish_not_ready: false,
        },
    )]);
    let endpoints = BTreeMap::from([(
        key,
        EndpointsEntry {
            subsets: vec![Subset {
                addresses,
                ports: vec![],
            }],
        },
    )]);
    let index = Index::build(&zone(), &services, Some(&endpoints), 1);

    let plain = query("big.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(udp_limit(&plain), 512);
    let full = reply_to(&plain, &index);
    assert_eq!(full.answers.len(), 60);
    let bytes = encode(&full, udp_limit(&plain)).expect("encodes");
    let short = Message::from_vec(&bytes).expect("decodes");
    assert!(short.metadata.truncation && short.answers.is_empty() && bytes.len() <= 512);

    let mut with_edns = plain.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    with_edns.set_edns(edns);
    assert_eq!(udp_limit(&with_edns), usize::from(MAX_UDP_PAYLOAD));
    let full = reply_to(&with_edns, &index);
    assert_eq!(full.edns.as_ref().map(|e| e.max_payload()), Some(MAX_UDP_PAYLOAD));
    let bytes = encode(&full, udp_limit(&with_edns)).expect("encodes");
    let whole = Message::from_vec(&bytes).expect("decodes");
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 60);
}
