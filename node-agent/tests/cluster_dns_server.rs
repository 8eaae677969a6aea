//! The cluster DNS server over loopback: UDP and TCP answers from a fixed index, forwarding to
//! a fake upstream resolver (local sockets that answer every name with 192.0.2.1), SERVFAIL
//! without an upstream or when it stays silent, and malformed packets that change nothing.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_agent::cluster_dns::records::{Index, ServiceEntry, ServiceKind};
use berth_agent::cluster_dns::{DnsServer, Forwarder};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(5);

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a valid name")
}

/// `default/kubernetes` (10.215.0.1) and `shop/ext` (ExternalName `db.example.com`).
fn index() -> Index {
    let services = BTreeMap::from([
        (
            ("default".to_string(), "kubernetes".to_string()),
            ServiceEntry {
                kind: ServiceKind::ClusterIp(vec![Ipv4Addr::new(10, 215, 0, 1)]),
                ports: vec![],
                publish_not_ready: false,
            },
        ),
        (
            ("shop".to_string(), "ext".to_string()),
            ServiceEntry {
                kind: ServiceKind::ExternalName("db.example.com".into()),
                ports: vec![],
                publish_not_ready: false,
            },
        ),
    ]);
    Index::build(&name("cluster.local."), &services, Some(&BTreeMap::new()), 1)
}

/// A server on a free loopback port, forwarding to `upstreams` with `timeout`.
async fn server(upstreams: Vec<SocketAddr>, timeout: Duration) -> SocketAddr {
    let server = DnsServer::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("binds");
    let addr = server.local_addr().expect("an address");
    let (_tx, rx) = watch::channel(Arc::new(index()));
    tokio::spawn(async move {
        let _keep = _tx;
        server.run(rx, Forwarder::new(upstreams, timeout)).await;
    });
    addr
}

fn query(id: u16, n: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(n), qtype));
    m
}

async fn ask_udp(server: SocketAddr, q: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    socket
        .send_to(&q.to_vec().expect("encodes"), server)
        .await
        .expect("sends");
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .expect("receives");
    let m = Message::from_vec(&buf[..n]).expect("decodes");
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

async fn ask_tcp(stream: &mut TcpStream, q: &Message) -> Message {
    let bytes = q.to_vec().expect("encodes");
    stream
        .write_u16(u16::try_from(bytes.len()).expect("small"))
        .await
        .expect("writes");
    stream.write_all(&bytes).await.expect("writes");
    let len = tokio::time::timeout(WAIT, stream.read_u16())
        .await
        .expect("in time")
        .expect("reads");
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.expect("reads");
    Message::from_vec(&buf).expect("decodes")
}

fn addresses(m: &Message) -> Vec<RData> {
    m.answers.iter().map(|r| r.data.clone()).collect()
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

/// A fake upstream resolver on loopback, UDP and TCP on one port: answers every question
/// with `A 192.0.2.1` (TTL 60), or stays silent; counts the queries it got.
struct FakeUpstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
}

impl FakeUpstream {
    async fn start(silent: bool) -> Self {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
        let addr = udp.local_addr().expect("an address");
        let tcp = TcpListener::bind(addr).await.expect("binds TCP on the same port");
        let queries = Arc::new(AtomicUsize::new(0));
        let count = queries.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                count.fetch_add(1, Ordering::SeqCst);
                if let (false, Some(reply)) = (silent, Self::reply(&buf[..n])) {
                    let _ = udp.send_to(&reply, peer).await;
                }
            }
        });
        let count = queries.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let Ok(len) = stream.read_u16().await else { return };
                    let mut buf = vec![0u8; usize::from(len)];
                    if stream.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    if let (false, Some(reply)) = (silent, Self::reply(&buf)) {
                        let _ = stream.write_u16(u16::try_from(reply.len()).unwrap_or(0)).await;
                        let _ = stream.write_all(&reply).await;
                    }
                });
            }
        });
        FakeUpstream { addr, queries }
    }

    fn reply(bytes: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(bytes).ok()?;
        let mut m = Message::response(q.metadata.id, OpCode::Query);
        m.metadata.recursion_available = true;
        m.add_queries(q.queries.iter().cloned());
        for question in &q.queries {
            m.add_answer(Record::from_rdata(question.name().clone(), 60, a([192, 0, 2, 1])));
        }
        m.to_vec().ok()
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn cluster_names_are_answered_over_udp_and_tcp() {
    let server = server(vec![], Duration::from_secs(2)).await;
    let m = ask_udp(
        server,
        &query(1, "kubernetes.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(addresses(&m), vec![a([10, 215, 0, 1])]);

    let m = ask_udp(
        server,
        &query(2, "nope.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities.len(), 1, "the SOA");

    // Two queries on one connection.
    let mut stream = TcpStream::connect(server).await.expect("connects");
    let m = ask_tcp(
        &mut stream,
        &query(3, "KUBERNETES.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!((m.metadata.id, addresses(&m)), (3, vec![a([10, 215, 0, 1])]));
    let m = ask_tcp(
        &mut stream,
        &query(4, "kubernetes.default.svc.cluster.local.", RecordType::AAAA),
    )
    .await;
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (4, ResponseCode::NoError)
    );
    assert!(m.answers.is_empty(), "AAAA is NODATA");
}

#[tokio::test]
async fn other_names_are_forwarded_to_the_upstream_over_the_client_s_transport() {
    let upstream = FakeUpstream::start(false).await;
    let server = server(vec![upstream.addr], Duration::from_secs(2)).await;

    let m = ask_udp(server, &query(10, "example.com.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&m), vec![a([192, 0, 2, 1])]);
    assert_eq!(m.answers[0].ttl, 60, "the upstream's answer, as it is");

    let mut stream = TcpStream::connect(server).await.expect("connects");
    let m = ask_tcp(&mut stream, &query(11, "example.org.", RecordType::A)).await;
    assert_eq!((m.metadata.id, addresses(&m)), (11, vec![a([192, 0, 2, 1])]));

    // An ExternalName Service: its CNAME here, the target's address from upstream.
    let m = ask_udp(server, &query(12, "ext.shop.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(
        addresses(&m),
        vec![RData::CNAME(CNAME(name("db.example.com."))), a([192, 0, 2, 1])]
    );
    assert_eq!(upstream.queries(), 3, "cluster names never reach the upstream");
    ask_udp(
        server,
        &query(13, "kubernetes.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(upstream.queries(), 3);
}

#[tokio::test]
async fn without_an_upstream_other_names_get_servfail() {
    let server = server(vec![], Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    let m = ask_udp(server, &query(20, "example.com.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "at once, no timeout to wait for"
    );
    let mut stream = TcpStream::connect(server).await.expect("connects");
    let m = ask_tcp(&mut stream, &query(21, "example.com.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);

    // An ExternalName without upstream: the CNAME alone.
    let m = ask_udp(server, &query(22, "ext.shop.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(addresses(&m), vec![RData::CNAME(CNAME(name("db.example.com.")))]);
}

#[tokio::test]
async fn a_silent_upstream_times_out_into_servfail() {
    let upstream = FakeUpstream::start(true).await;
    let server = server(vec![upstream.addr], Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let m = ask_udp(server, &query(30, "example.com.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(upstream.queries(), 1);
}

#[tokio::test]
async fn malformed_packets_are_dropped_and_the_server_keeps_answering() {
    let server = server(vec![], Duration::from_secs(2)).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    for garbage in [
        &b""[..],
        b"\x00",
        b"\x12\x34\x01\x00\x00\x01\x00\x00",
        &[0xffu8; 600][..],
    ] {
        socket.send_to(garbage, server).await.expect("sends");
    }
    // A response sent to the server is not answered either.
    let mut response = query(40, "example.com.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    socket
        .send_to(&response.to_vec().expect("encodes"), server)
        .await
        .expect("sends");
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf))
            .await
            .is_err(),
        "nothing answers garbage"
    );
    let m = ask_udp(
        server,
        &query(41, "kubernetes.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&m), vec![a([10, 215, 0, 1])]);

    // Garbage over TCP ends that connection only.
    let mut bad = TcpStream::connect(server).await.expect("connects");
    bad.write_all(b"\x00\x05hello").await.expect("writes");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, bad.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    assert!(read.is_err() || rest.is_empty(), "no answer to garbage: {rest:?}");
    let mut good = TcpStream::connect(server).await.expect("connects");
    let m = ask_tcp(
        &mut good,
        &query(42, "kubernetes.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&m), vec![a([10, 215, 0, 1])]);
}
