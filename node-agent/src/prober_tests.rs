//! Tests of probe scheduling and outcomes, and of the HTTP and TCP checks against local
//! listeners.

use super::*;
use crate::lifecycle::tests::container;
use crate::observe::Sandbox;

const SEC: i64 = 1_000_000_000;

fn pod(probes: serde_json::Value) -> Pod {
    let mut c = serde_json::json!({"name": "app", "image": "i"});
    if let (Some(c), Some(p)) = (c.as_object_mut(), probes.as_object()) {
        c.extend(p.clone());
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "uid": "u"},
        "spec": {"containers": [c], "terminationGracePeriodSeconds": 7}
    }))
    .expect("pod")
}

fn running() -> Observed {
    let mut c = container("c1", 0, State::Running, 0, 100);
    c.started_at = 100 * SEC;
    Observed {
        sandboxes: vec![Sandbox {
            id: "sb1".into(),
            attempt: 0,
            ready: true,
            ip: Some("10.214.1.5".into()),
        }],
        containers: vec![c],
    }
}

#[test]
fn probes_wait_for_the_initial_delay_then_run_every_period() {
    let p = pod(serde_json::json!({"readinessProbe": {
        "exec": {"command": ["true"]}, "initialDelaySeconds": 2, "periodSeconds": 5
    }}));
    let obs = running();
    let mut probes = Probes::new();
    let (d, next) = due(&p, &obs, &mut probes, 101 * SEC);
    assert!(d.is_empty());
    assert_eq!(next, Some(102 * SEC));
    let (d, next) = due(&p, &obs, &mut probes, 102 * SEC);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].pod_ip.as_deref(), Some("10.214.1.5"));
    assert_eq!(next, Some(107 * SEC));
    let ran = d.into_iter().map(|d| (d, Outcome::Success)).collect();
    let r = record(&p, &mut probes, ran, 102 * SEC);
    assert_eq!(r.transitions.len(), 1);
    assert!(r.transitions[0].ok && r.kills.is_empty() && r.first_failures.is_empty());
    let (d, next) = due(&p, &obs, &mut probes, 103 * SEC);
    assert!(d.is_empty());
    assert_eq!(next, Some(107 * SEC));
}

#[test]
fn liveness_failures_kill_with_the_pods_grace_period() {
    let p = pod(serde_json::json!({"livenessProbe": {
        "tcpSocket": {"port": 1}, "periodSeconds": 1, "failureThreshold": 2
    }}));
    let obs = running();
    let mut probes = Probes::new();
    for (i, expect_kill) in [(100, false), (101, true)] {
        let (d, _) = due(&p, &obs, &mut probes, i * SEC);
        let ran = d
            .into_iter()
            .map(|d| (d, Outcome::Failure("refused".into())))
            .collect();
        let r = record(&p, &mut probes, ran, i * SEC);
        // Only the first failure of a run of failures is reported.
        assert_eq!(r.first_failures.len(), usize::from(!expect_kill), "at {i}");
        let kills = r.kills;
        assert_eq!(!kills.is_empty(), expect_kill, "at {i}");
        if expect_kill {
            assert_eq!(kills[0].grace, Duration::from_secs(7));
            assert_eq!(kills[0].kind, Kind::Liveness);
        }
    }
}

#[test]
fn startup_probe_gates_the_others() {
    let p = pod(serde_json::json!({
        "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
    }));
    let obs = running();
    let mut probes = Probes::new();
    let (d, _) = due(&p, &obs, &mut probes, 100 * SEC);
    assert_eq!(
        d.iter().map(|d| d.spec.kind).collect::<Vec<_>>(),
        vec![Kind::Startup]
    );
    let ran = d.into_iter().map(|d| (d, Outcome::Success)).collect();
    record(&p, &mut probes, ran, 100 * SEC);
    let (d, _) = due(&p, &obs, &mut probes, 101 * SEC);
    assert_eq!(
        d.iter().map(|d| d.spec.kind).collect::<Vec<_>>(),
        vec![Kind::Readiness]
    );
}

#[test]
fn trackers_of_replaced_containers_are_dropped() {
    let p = pod(serde_json::json!({"readinessProbe": {"exec": {"command": ["true"]}}}));
    let mut probes = Probes::new();
    due(&p, &running(), &mut probes, 100 * SEC);
    assert_eq!(probes.len(), 1);
    let mut obs = running();
    obs.containers[0].state = State::Exited;
    due(&p, &obs, &mut probes, 101 * SEC);
    assert!(probes.is_empty());
}

#[test]
fn http_request_and_status_line() {
    let req = http_request("10.0.0.1", 8080, "/healthz", &[("X-A".into(), "b".into())]);
    assert!(req.starts_with("GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n"));
    assert!(req.contains("X-A: b\r\n") && req.ends_with("\r\n\r\n"));
    let custom = http_request("h", 1, "/", &[("Host".into(), "example".into())]);
    assert!(!custom.contains("Host: h:1"));
    assert_eq!(parse_status_line("HTTP/1.1 204 No Content\r\n"), Some(204));
    assert_eq!(parse_status_line("HTTP/1.0 404\r\n"), Some(404));
    assert_eq!(parse_status_line("SSH-2.0-x\r\n"), None);
}

fn client() -> CriClient {
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    CriClient::from_channel("unix:///nowhere", channel)
}

async fn serve_once(answer: &'static str) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    port
}

fn due_for(check: Check) -> Due {
    let c: k8s_openapi::api::core::v1::Container = serde_json::from_value(
        serde_json::json!({"name": "app", "readinessProbe": {"exec": {"command": ["x"]}}}),
    )
    .expect("container");
    let mut spec = probe::probe_spec(&c, Kind::Readiness).expect("spec");
    spec.check = Ok(check);
    Due {
        id: "c1".into(),
        name: "app".into(),
        spec,
        pod_ip: Some("127.0.0.1".into()),
    }
}

fn http(port: u16) -> Check {
    Check::Http {
        scheme: "HTTP".into(),
        host: None,
        port,
        path: "/".into(),
        headers: vec![],
    }
}

#[tokio::test]
async fn http_and_tcp_checks() {
    let cri = client();
    let ok = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(run(&cri, &due_for(http(ok))).await, Outcome::Success);
    let bad = serve_once("HTTP/1.1 503 Unavailable\r\n\r\n").await;
    let Outcome::Failure(m) = run(&cri, &due_for(http(bad))).await else {
        panic!("503 must fail")
    };
    assert!(m.contains("503"), "{m}");
    assert_eq!(
        run(&cri, &due_for(Check::Tcp { host: None, port: ok })).await,
        Outcome::Success
    );
    // A port nobody listens on: refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    assert!(matches!(
        run(
            &cri,
            &due_for(Check::Tcp {
                host: None,
                port: closed
            })
        )
        .await,
        Outcome::Failure(_)
    ));
    // A server that never answers: the timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let t = std::time::Instant::now();
    let Outcome::Failure(m) = run(&cri, &due_for(http(port))).await else {
        panic!("silence must fail")
    };
    assert!(m.contains("timeout"), "{m}");
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(silent);
}

#[test]
fn the_target_is_never_an_empty_host() {
    assert_eq!(target(Some("example"), Some("10.0.0.1")), Some("example"));
    assert_eq!(target(None, Some("10.0.0.1")), Some("10.0.0.1"));
    assert_eq!(target(None, None), None);
    assert_eq!(target(None, Some("")), None);
    assert_eq!(target(Some(" "), None), None);
}

/// A listener that counts the connections it accepts.
async fn counting() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = n.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        }
    });
    (port, n)
}

#[tokio::test]
async fn a_probe_without_a_host_is_not_sent() {
    let cri = client();
    let (port, accepted) = counting().await;
    for pod_ip in [None, Some(String::new())] {
        for check in [http(port), Check::Tcp { host: None, port }] {
            let mut d = due_for(check);
            d.pod_ip = pod_ip.clone();
            let Outcome::Skipped(why) = run(&cri, &d).await else {
                panic!("a probe without a host must be skipped")
            };
            assert!(why.contains("IP is unknown"), "{why}");
        }
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    // With the pod's IP the same probe is sent.
    assert_eq!(run(&cri, &due_for(http(port))).await, Outcome::Success);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn a_skipped_probe_changes_nothing_and_kills_nothing() {
    let p = pod(serde_json::json!({
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 1},
    }));
    let mut obs = running();
    obs.sandboxes[0].ip = None;
    let mut probes = Probes::new();
    for (i, first) in [(100, true), (101, false)] {
        let (d, next) = due(&p, &obs, &mut probes, i * SEC);
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|d| d.pod_ip.is_none()));
        assert_eq!(next, Some((i + 1) * SEC), "tried again a period later");
        let ran = d
            .into_iter()
            .map(|d| (d, Outcome::Skipped("no IP".into())))
            .collect();
        let r = record(&p, &mut probes, ran, i * SEC);
        assert!(r.kills.is_empty() && r.transitions.is_empty() && r.first_failures.is_empty());
        assert_eq!(
            r.first_skips.len(),
            if first { 2 } else { 0 },
            "reported once per run"
        );
    }
    let liveness = &probes[&("c1".to_string(), Kind::Liveness)];
    let readiness = &probes[&("c1".to_string(), Kind::Readiness)];
    assert!(liveness.result && liveness.failures == 0);
    assert!(!readiness.result && readiness.failures == 0);
}
