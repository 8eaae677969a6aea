//! Running the probes of a pod's containers: which are due (pure, [`due`]), the checks
//! themselves (HTTP GET and TCP from the agent, which shares the host's network namespace and
//! reaches pod IPs; HTTPS without certificate verification, as the kubelet; exec through CRI
//! `ExecSync`), and what the outcomes mean ([`record`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cri::CriClient;
use crate::lifecycle;
use crate::observe::{Observed, State};
use crate::probe::{self, Check, Kind, Outcome, ProbeSpec, Tracker};

/// The probe state of a pod's containers, by (container id, kind).
pub type Probes = HashMap<(String, Kind), Tracker>;

/// A probe to run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The container's runtime id.
    pub id: String,
    /// Its name in the spec.
    pub name: String,
    /// The probe.
    pub spec: ProbeSpec,
    /// The pod's IP (the default host of HTTP and TCP checks), when known.
    pub pod_ip: Option<String>,
}

/// A container to kill because it failed its liveness or startup probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kill {
    /// Runtime id.
    pub id: String,
    /// Name in the spec.
    pub name: String,
    /// Grace period: the probe's, else the pod's.
    pub grace: Duration,
    /// Which probe failed.
    pub kind: Kind,
}

/// A probe whose result changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Which probe.
    pub kind: Kind,
    /// Container name.
    pub name: String,
    /// The new result.
    pub ok: bool,
    /// The last failure's message.
    pub message: Option<String>,
}

/// Decides which probes are due at `now` (creating trackers for new containers and dropping
/// those of containers that no longer run), and when the next one is due.
pub fn due(pod: &Pod, obs: &Observed, probes: &mut Probes, now: i64) -> (Vec<Due>, Option<i64>) {
    let Some(sandbox) = obs.ready_sandbox() else {
        probes.clear();
        return (vec![], None);
    };
    let pod_ip = sandbox.ip.clone().filter(|ip| !ip.is_empty());
    let mut out = Vec::new();
    let mut next: Option<i64> = None;
    let mut live = std::collections::HashSet::new();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    for spec_c in containers {
        let Some(c) = obs
            .latest(&spec_c.name)
            .filter(|c| c.state == State::Running && c.sandbox_id == sandbox.id)
        else {
            continue;
        };
        let has_startup = spec_c.startup_probe.is_some();
        for kind in Kind::ALL {
            let Some(spec) = probe::probe_spec(spec_c, kind) else {
                continue;
            };
            let key = (c.id.clone(), kind);
            live.insert(key.clone());
            probes
                .entry(key.clone())
                .or_insert_with(|| Tracker::new(kind, probe::reported_ok(pod, &c.name, &c.id, kind)));
            let startup = probes.get(&(c.id.clone(), Kind::Startup));
            if kind != Kind::Startup && !probe::started(has_startup, startup) {
                continue;
            }
            let Some(at) = probe::next_run(&spec, &probes[&key], c.started_at) else {
                continue;
            };
            if at <= now {
                out.push(Due {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    spec: spec.clone(),
                    pod_ip: pod_ip.clone(),
                });
                let after = now.saturating_add(i64::try_from(spec.period.as_nanos()).unwrap_or(i64::MAX));
                next = Some(next.map_or(after, |n| n.min(after)));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
    }
    probes.retain(|k, _| live.contains(k));
    (out, next)
}

/// What the outcomes of one round mean.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Probes whose result changed.
    pub transitions: Vec<Transition>,
    /// Probes that started failing this round (the first failure after a success or since
    /// the container started): reported once, not on every period.
    pub first_failures: Vec<Transition>,
    /// Containers to kill.
    pub kills: Vec<Kill>,
    /// Probes not sent this round for the first time since they last were (with why).
    pub first_skips: Vec<Transition>,
}

/// Records the outcomes of the probes run this round.
pub fn record(pod: &Pod, probes: &mut Probes, ran: Vec<(Due, Outcome)>, now: i64) -> Recorded {
    let mut out = Recorded::default();
    for (d, outcome) in ran {
        let Some(t) = probes.get_mut(&(d.id.clone(), d.spec.kind)) else {
            continue;
        };
        if let Outcome::Skipped(why) = &outcome {
            let why = why.clone();
            t.record(&d.spec, outcome, now);
            if t.skips == 1 {
                out.first_skips.push(Transition {
                    kind: d.spec.kind,
                    name: d.name.clone(),
                    ok: t.result,
                    message: Some(why),
                });
            }
            continue;
        }
        let changed = t.record(&d.spec, outcome, now);
        let transition = Transition {
            kind: d.spec.kind,
            name: d.name.clone(),
            ok: t.result,
            message: t.last_message.clone(),
        };
        if t.failures == 1 {
            out.first_failures.push(transition.clone());
        }
        if changed {
            out.transitions.push(transition);
        }
        if t.kills(&d.spec) {
            out.kills.push(Kill {
                id: d.id.clone(),
                name: d.name.clone(),
                grace: d.spec.grace.unwrap_or_else(|| lifecycle::grace_period(pod)),
                kind: d.spec.kind,
            });
        }
    }
    out
}

/// Runs one check.
pub async fn run(cri: &CriClient, d: &Due) -> Outcome {
    let timeout = d.spec.timeout;
    let check = match &d.spec.check {
        Ok(c) => c,
        Err(why) => return Outcome::Failure(why.clone()),
    };
    match check {
        Check::Exec { command } => match cri.exec_sync(&d.id, command.clone(), timeout).await {
            Ok((0, _)) => Outcome::Success,
            Ok((code, out)) => Outcome::Failure(format!(
                "command {command:?} exited with {code}: {}",
                out.trim().chars().take(200).collect::<String>()
            )),
            Err(e) => Outcome::Failure(format!("command {command:?} failed: {e}")),
        },
        Check::Tcp { host, port } => {
            let Some(host) = target(host.as_deref(), d.pod_ip.as_deref()) else {
                return Outcome::Skipped(no_host("tcp", *port));
            };
            match tokio::time::timeout(timeout, TcpStream::connect((host, *port))).await {
                Ok(Ok(_)) => Outcome::Success,
                Ok(Err(e)) => Outcome::Failure(format!("dial tcp {host}:{port}: {e}")),
                Err(_) => Outcome::Failure(format!("dial tcp {host}:{port}: timeout after {timeout:?}")),
            }
        }
        Check::Http {
            scheme,
            host,
            port,
            path,
            headers,
        } => {
            let Some(host) = target(host.as_deref(), d.pod_ip.as_deref()) else {
                return Outcome::Skipped(no_host(&scheme.to_lowercase(), *port));
            };
            match http_get(scheme, host, *port, path, headers, timeout).await {
                Ok(code) if (200..400).contains(&code) => Outcome::Success,
                Ok(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
                Err(e) => Outcome::Failure(e),
            }
        }
    }
}

/// Sends one GET (`scheme` `HTTP` or `HTTPS`, the latter without certificate verification)
/// within `timeout` and returns the response's status code, or why there is none
/// (`Get "url": error`). Shared by HTTP probes and `httpGet` lifecycle hooks.
pub async fn http_get(
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<u16, String> {
    let tls = match scheme {
        "HTTP" => false,
        "HTTPS" => true,
        other => return Err(format!("unknown scheme {other:?}")),
    };
    let url = format!("{}://{host}:{port}{path}", scheme.to_lowercase());
    match tokio::time::timeout(timeout, http_status(host, port, path, headers, tls)).await {
        Ok(Ok(code)) => Ok(code),
        Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
        Err(_) => Err(format!("Get {url:?}: timeout after {timeout:?}")),
    }
}

/// The host an HTTP or TCP check connects to: the probe's own, else the pod's IP; `None`
/// when neither is known (never an empty host: `http://:8080/` reaches nothing meant).
pub fn target<'a>(probe_host: Option<&'a str>, pod_ip: Option<&'a str>) -> Option<&'a str> {
    probe_host.or(pod_ip).filter(|h| !h.trim().is_empty())
}

fn no_host(scheme: &str, port: u16) -> String {
    format!(
        "not sent: the pod's IP is unknown (the runtime reports none), so {scheme} port {port} has no host"
    )
}

/// The request an HTTP probe sends (HTTP/1.1, `Connection: close`).
pub fn http_request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> String {
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !has("host") {
        req.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !has("user-agent") {
        req.push_str("User-Agent: kube-probe/berth\r\n");
    }
    if !has("accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
pub fn parse_status_line(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// Sends the probe's GET (over TLS when `tls`, without verifying the server's certificate,
/// as the kubelet) and returns the response's status code.
async fn http_status(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    tls: bool,
) -> std::io::Result<u16> {
    let tcp = TcpStream::connect((host, port)).await?;
    let request = http_request(host, port, path, headers);
    if !tls {
        return exchange(tcp, &request).await;
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let connector = tokio_rustls::TlsConnector::from(insecure_tls()?);
    exchange(connector.connect(name, tcp).await?, &request).await
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &str) -> std::io::Result<u16> {
    s.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(&String::from_utf8_lossy(&buf))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response"))
}

/// A TLS client that accepts any server certificate (HTTPS probes skip verification, as the
/// kubelet's do); handshake signatures are still checked.
fn insecure_tls() -> std::io::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificate verifier of HTTPS probes: any certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "prober_tests.rs"]
mod tests;
