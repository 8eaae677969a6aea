//! The DNS server: UDP and TCP on one address, each message decided by [`super::answer`]
//! against the latest [`Index`]; names outside the cluster domain go to the node's resolvers
//! ([`Forwarder`]). Malformed packets are dropped (UDP) or end their connection (TCP); a loop
//! that panics is restarted. At most [`MAX_FORWARDS`] forwarded queries and [`MAX_TCP`] TCP
//! connections are in flight; past that, UDP queries get SERVFAIL and connections are closed.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, error, warn};

use super::answer::{self, Decision};
use super::records::Index;
use crate::dns::ResolvConf;

/// How long one upstream resolver has to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded (or chased) queries in flight at once.
pub const MAX_FORWARDS: usize = 256;
/// TCP connections served at once.
pub const MAX_TCP: usize = 64;
/// How long a TCP connection may stay idle between queries, or take to send one.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The node's resolvers from its `resolv.conf` (port 53), without any that would be this
/// server itself: its own address, an address pods are given as their cluster DNS (`own`), or
/// loopback when it listens on every address.
pub fn upstreams(resolv: &ResolvConf, listen: SocketAddr, own: &[IpAddr]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for server in &resolv.servers {
        let Ok(ip) = server.parse::<IpAddr>() else {
            continue;
        };
        let up = SocketAddr::new(ip, 53);
        let is_self = up.port() == listen.port()
            && (ip == listen.ip() || own.contains(&ip) || (listen.ip().is_unspecified() && ip.is_loopback()));
        if !is_self && !out.contains(&up) {
            out.push(up);
        }
    }
    out
}

/// Sends queries to the node's resolvers, one after another, each with its timeout.
#[derive(Clone, Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    /// A forwarder to `upstreams` (none: every forwarded query fails, so SERVFAIL).
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Forwarder { upstreams, timeout }
    }

    /// The resolvers it asks.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The first reply to `query` (its wire form, id `id`), over TCP or UDP.
    pub async fn forward(&self, query: &[u8], id: u16, tcp: bool) -> Option<Vec<u8>> {
        for up in &self.upstreams {
            let exchange = async {
                if tcp {
                    tcp_exchange(*up, query, id).await
                } else {
                    udp_exchange(*up, query, id).await
                }
            };
            match tokio::time::timeout(self.timeout, exchange).await {
                Ok(Ok(bytes)) => return Some(bytes),
                Ok(Err(e)) => debug!(upstream = %up, error = %e, "upstream resolver failed"),
                Err(_) => debug!(upstream = %up, "upstream resolver did not answer in time"),
            }
        }
        None
    }
}

/// Whether `bytes` is a reply with id `id`.
fn is_reply_to(bytes: &[u8], id: u16) -> bool {
    bytes.len() >= 12 && u16::from_be_bytes([bytes[0], bytes[1]]) == id && bytes[2] & 0x80 != 0
}

async fn udp_exchange(up: SocketAddr, query: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(up).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        if is_reply_to(&buf[..n], id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(up: SocketAddr, query: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(up).await?;
    write_framed(&mut stream, query).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    if is_reply_to(&buf, id) {
        Ok(buf)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a reply to the query",
        ))
    }
}

async fn write_framed(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 65535 bytes"))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await
}

/// The server's sockets, bound.
#[derive(Debug)]
pub struct DnsServer {
    udp: Arc<UdpSocket>,
    tcp: Arc<TcpListener>,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0: one free port for both).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let mut last = None;
        for _ in 0..5 {
            let udp = UdpSocket::bind(addr).await?;
            match TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => {
                    return Ok(DnsServer {
                        udp: Arc::new(udp),
                        tcp: Arc::new(tcp),
                    });
                }
                // The free UDP port may be taken for TCP: try another one.
                Err(e) if addr.port() == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free port for UDP and TCP")))
    }

    /// The address served.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Serves until the process ends, answering from the latest index of `index`.
    pub async fn run(self, index: watch::Receiver<Arc<Index>>, forwarder: Forwarder) {
        let shared = Arc::new(Shared {
            index,
            forwarder,
            forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
            connections: Arc::new(Semaphore::new(MAX_TCP)),
        });
        let (udp, tcp) = (self.udp, self.tcp);
        let s = shared.clone();
        tokio::join!(
            supervise("udp", move || udp_loop(s.clone(), udp.clone())),
            supervise("tcp", move || tcp_loop(shared.clone(), tcp.clone())),
        );
    }
}

struct Shared {
    index: watch::Receiver<Arc<Index>>,
    forwarder: Forwarder,
    forwards: Arc<Semaphore>,
    connections: Arc<Semaphore>,
}

/// Runs the loop `start` makes, again whenever it panics.
async fn supervise<F, Fut>(what: &'static str, start: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(start()).await {
            Err(e) if e.is_panic() => {
                error!(transport = what, "the DNS loop panicked; restarting it");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return,
        }
    }
}

/// The reply to a decided query, on the wire; `None` to send nothing.
async fn resolve(
    shared: &Shared,
    raw: &[u8],
    query: &Message,
    decision: Decision,
    tcp: bool,
) -> Option<Vec<u8>> {
    let limit = if tcp {
        usize::from(u16::MAX)
    } else {
        answer::udp_limit(query)
    };
    let reply = match decision {
        Decision::Ignore => return None,
        Decision::Reply(reply) => reply,
        Decision::Chase { reply, target } => {
            let chase = answer::chase_query(query, target);
            let upstream = match chase.to_vec() {
                Ok(bytes) => shared.forwarder.forward(&bytes, query.metadata.id, tcp).await,
                Err(_) => None,
            };
            match upstream.and_then(|b| Message::from_vec(&b).ok()) {
                Some(up) => answer::merge_chased(reply, &up),
                None => reply,
            }
        }
        Decision::Forward => match shared.forwarder.forward(raw, query.metadata.id, tcp).await {
            Some(bytes) => return Some(bytes),
            None => answer::servfail(query),
        },
    };
    answer::encode(&reply, limit).or_else(|| answer::encode(&answer::servfail(query), limit))
}

async fn udp_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        let raw = buf[..n].to_vec();
        let Ok(query) = Message::from_vec(&raw) else {
            debug!(%peer, "dropping a malformed DNS packet");
            continue;
        };
        let index = shared.index.borrow().clone();
        let decision = answer::decide(&query, &index);
        if let Decision::Reply(_) | Decision::Ignore = decision {
            if let Some(bytes) = resolve(&shared, &raw, &query, decision, false).await {
                send(&socket, &bytes, peer).await;
            }
            continue;
        }
        let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
            if let Some(bytes) = answer::encode(&answer::servfail(&query), answer::udp_limit(&query)) {
                send(&socket, &bytes, peer).await;
            }
            continue;
        };
        let (shared, socket) = (shared.clone(), socket.clone());
        tokio::spawn(async move {
            if let Some(bytes) = resolve(&shared, &raw, &query, decision, false).await {
                send(&socket, &bytes, peer).await;
            }
            drop(permit);
        });
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, peer).await {
        debug!(%peer, error = %e, "DNS UDP send failed");
    }
}

async fn tcp_loop(shared: Arc<Shared>, listener: Arc<TcpListener>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            debug!(%peer, "too many DNS TCP connections; closing one");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_connection(&shared, stream).await;
            drop(permit);
        });
    }
}

/// Answers the queries of one connection in turn until it closes, idles, or sends garbage.
async fn serve_connection(shared: &Shared, mut stream: TcpStream) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let mut raw = vec![0u8; usize::from(len)];
        let Ok(Ok(_)) = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut raw)).await else {
            return;
        };
        let Ok(query) = Message::from_vec(&raw) else {
            return;
        };
        let index = shared.index.borrow().clone();
        let decision = answer::decide(&query, &index);
        let upstream = matches!(decision, Decision::Forward | Decision::Chase { .. });
        let permit = if upstream {
            shared.forwards.clone().try_acquire_owned().ok()
        } else {
            None
        };
        let reply = if upstream && permit.is_none() {
            answer::encode(&answer::servfail(&query), usize::from(u16::MAX))
        } else {
            resolve(shared, &raw, &query, decision, true).await
        };
        drop(permit);
        let Some(bytes) = reply else { continue };
        if !matches!(
            tokio::time::timeout(TCP_IDLE, write_framed(&mut stream, &bytes)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn upstreams_are_the_node_s_resolvers_but_never_this_server() {
        let resolv = crate::dns::parse_resolv_conf(
            "nameserver 10.255.255.53\nnameserver 10.213.0.11\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver 10.255.255.53\n",
        );
        assert_eq!(
            upstreams(&resolv, addr("10.213.0.11:53"), &[]),
            vec![addr("10.255.255.53:53"), addr("127.0.0.53:53")],
            "its own address is left out, and duplicates"
        );
        assert_eq!(
            upstreams(&resolv, addr("0.0.0.0:53"), &["10.213.0.11".parse().expect("ip")]),
            vec![addr("10.255.255.53:53")],
            "listening everywhere: loopback and the pods' cluster DNS are itself"
        );
        assert_eq!(
            upstreams(&resolv, addr("127.0.0.1:5353"), &[]).len(),
            3,
            "another port is another server"
        );
        assert!(upstreams(&crate::dns::ResolvConf::default(), addr("10.213.0.11:53"), &[]).is_empty());
    }

    #[test]
    fn a_reply_is_recognised_by_its_id_and_qr_bit() {
        let mut header = [0u8; 12];
        header[0..2].copy_from_slice(&7u16.to_be_bytes());
        assert!(!is_reply_to(&header, 7), "a query");
        header[2] = 0x80;
        assert!(is_reply_to(&header, 7));
        assert!(!is_reply_to(&header, 8));
        assert!(!is_reply_to(&header[..11], 7));
    }
}
