//! Tests of the probe decisions, without a runtime.

use super::*;

const SEC: i64 = 1_000_000_000;

fn container(probe: serde_json::Value) -> Container {
    serde_json::from_value(serde_json::json!({
        "name": "app",
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": probe,
        "livenessProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 1},
    }))
    .expect("container")
}

#[test]
fn defaults_are_kubernetes_defaults() {
    let c = container(serde_json::json!({"httpGet": {"port": "http"}}));
    let s = probe_spec(&c, Kind::Readiness).expect("probe");
    assert_eq!(
        s.check,
        Ok(Check::Http {
            scheme: "HTTP".into(),
            host: None,
            port: 8080,
            path: "/".into(),
            headers: vec![]
        })
    );
    assert_eq!(s.initial_delay, Duration::ZERO);
    assert_eq!(s.period, Duration::from_secs(10));
    assert_eq!(s.timeout, Duration::from_secs(1));
    assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
    assert!(probe_spec(&c, Kind::Startup).is_none());
    let l = probe_spec(&c, Kind::Liveness).expect("liveness");
    assert_eq!(l.check, Ok(Check::Tcp { host: None, port: 9 }));
    assert_eq!((l.period, l.failure_threshold), (Duration::from_secs(1), 1));
}

#[test]
fn bad_ports_and_handlers_are_reported() {
    let c = container(serde_json::json!({"tcpSocket": {"port": "nope"}}));
    let s = probe_spec(&c, Kind::Readiness).expect("probe");
    assert!(s.check.unwrap_err().contains("no port named"));
    let c = container(serde_json::json!({"grpc": {"port": 1}}));
    assert!(probe_spec(&c, Kind::Readiness).expect("probe").check.is_err());
    let c = container(serde_json::json!({"exec": {"command": []}}));
    assert!(probe_spec(&c, Kind::Readiness).expect("probe").check.is_err());
    let c = container(serde_json::json!({"exec": {"command": ["cat", "/tmp/ready"]}}));
    assert_eq!(
        probe_spec(&c, Kind::Readiness).expect("probe").check,
        Ok(Check::Exec {
            command: vec!["cat".into(), "/tmp/ready".into()]
        })
    );
}

#[test]
fn thresholds_decide_transitions() {
    let c = container(serde_json::json!({
        "exec": {"command": ["true"]}, "successThreshold": 2, "failureThreshold": 2
    }));
    let s = probe_spec(&c, Kind::Readiness).expect("probe");
    let mut t = Tracker::new(Kind::Readiness, false);
    assert!(!t.result, "readiness starts not ready");
    assert!(!t.record(&s, Outcome::Success, SEC));
    assert!(
        t.record(&s, Outcome::Success, 2 * SEC),
        "second success makes it ready"
    );
    assert!(!t.record(&s, Outcome::Failure("x".into()), 3 * SEC));
    assert!(
        !t.record(&s, Outcome::Success, 4 * SEC),
        "a success resets the failures"
    );
    assert!(!t.record(&s, Outcome::Failure("x".into()), 5 * SEC));
    assert!(t.record(&s, Outcome::Failure("y".into()), 6 * SEC));
    assert!(!t.result);
    assert_eq!(t.last_message.as_deref(), Some("y"));
    assert!(!t.kills(&s), "readiness never kills");
}

#[test]
fn liveness_starts_healthy_and_kills_at_the_threshold() {
    let c: Container = serde_json::from_value(serde_json::json!({
        "name": "app", "livenessProbe": {"tcpSocket": {"port": 1}, "successThreshold": 5}
    }))
    .expect("container");
    let s = probe_spec(&c, Kind::Liveness).expect("probe");
    assert_eq!(s.success_threshold, 1, "liveness uses 1 whatever is set");
    let mut t = Tracker::new(Kind::Liveness, false);
    assert!(t.result);
    for i in 1..=2 {
        t.record(&s, Outcome::Failure("refused".into()), i * SEC);
        assert!(!t.kills(&s));
    }
    assert!(t.record(&s, Outcome::Failure("refused".into()), 3 * SEC));
    assert!(t.kills(&s));
}

#[test]
fn scheduling_honours_initial_delay_and_period() {
    let c = container(serde_json::json!({
        "exec": {"command": ["true"]}, "initialDelaySeconds": 5, "periodSeconds": 3
    }));
    let s = probe_spec(&c, Kind::Readiness).expect("probe");
    let mut t = Tracker::new(Kind::Readiness, false);
    assert_eq!(next_run(&s, &t, 100 * SEC), Some(105 * SEC));
    t.record(&s, Outcome::Success, 105 * SEC);
    assert_eq!(next_run(&s, &t, 100 * SEC), Some(108 * SEC));
    // A succeeded startup probe never runs again.
    let c: Container = serde_json::from_value(serde_json::json!({
        "name": "app", "startupProbe": {"exec": {"command": ["true"]}}
    }))
    .expect("container");
    let s = probe_spec(&c, Kind::Startup).expect("probe");
    let mut t = Tracker::new(Kind::Startup, false);
    assert_eq!(next_run(&s, &t, 0), Some(0));
    t.record(&s, Outcome::Success, SEC);
    assert_eq!(next_run(&s, &t, 0), None);
}

#[test]
fn readiness_of_a_container() {
    let ok = Tracker::new(Kind::Readiness, true);
    let not = Tracker::new(Kind::Readiness, false);
    assert!(container_ready(true, true, None), "no probe: ready when running");
    assert!(!container_ready(false, true, None));
    assert!(!container_ready(true, false, None), "startup probe not passed");
    assert!(container_ready(true, true, Some(Some(&ok))));
    assert!(!container_ready(true, true, Some(Some(&not))));
    assert!(!container_ready(true, true, Some(None)), "probe not run yet");
    assert!(started(false, None));
    assert!(!started(true, None));
}

#[test]
fn reported_state_survives_an_agent_restart() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "status": {"containerStatuses": [{
            "name": "app", "image": "i", "imageID": "", "restartCount": 0,
            "ready": true, "started": true, "containerID": "containerd://abc"
        }]}
    }))
    .expect("pod");
    assert!(reported_ok(&pod, "app", "abc", Kind::Readiness));
    assert!(reported_ok(&pod, "app", "abc", Kind::Startup));
    assert!(!reported_ok(&pod, "app", "other", Kind::Readiness));
    assert!(!reported_ok(&pod, "web", "abc", Kind::Readiness));
}
