//! Tests of the lifecycle hook decisions, without a runtime or a cluster.

use super::*;

fn pod(lifecycle: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
        "spec": {
            "containers": [{
                "name": "app",
                "image": "r/demo:v1",
                "ports": [{"name": "http", "containerPort": 8080}],
                "lifecycle": lifecycle,
            }],
            "initContainers": [{"name": "setup", "image": "r/demo:v1"}],
        }
    }))
    .expect("pod")
}

#[test]
fn exec_http_and_sleep_hooks_are_found_and_translated() {
    let p = pod(serde_json::json!({
        "postStart": {"exec": {"command": ["sh", "-c", "echo hi"]}},
        "preStop": {"httpGet": {"port": "http", "path": "quit", "httpHeaders": [{"name": "X-A", "value": "1"}]}},
    }));
    let post = hook_spec(&p, "app", Hook::PostStart).expect("postStart");
    assert_eq!(
        post.action,
        Ok(Action::Check(Check::Exec {
            command: vec!["sh".into(), "-c".into(), "echo hi".into()]
        }))
    );
    let pre = hook_spec(&p, "app", Hook::PreStop).expect("preStop");
    assert_eq!(
        pre.action,
        Ok(Action::Check(Check::Http {
            scheme: "HTTP".into(),
            host: None,
            port: 8080,
            path: "/quit".into(),
            headers: vec![("X-A".into(), "1".into())],
        }))
    );
    let p = pod(serde_json::json!({"preStop": {"sleep": {"seconds": 5}}}));
    assert_eq!(
        hook_spec(&p, "app", Hook::PreStop).expect("sleep").action,
        Ok(Action::Sleep(Duration::from_secs(5)))
    );
    assert_eq!(hook_spec(&p, "app", Hook::PostStart), None);
}

#[test]
fn containers_without_hooks_and_init_containers_have_none() {
    let p = pod(serde_json::json!({}));
    assert_eq!(hook_spec(&p, "app", Hook::PostStart), None);
    assert_eq!(hook_spec(&p, "setup", Hook::PreStop), None);
    assert_eq!(hook_spec(&p, "missing", Hook::PreStop), None);
}

#[test]
fn handlers_that_cannot_run_fail() {
    let p = pod(serde_json::json!({
        "postStart": {"tcpSocket": {"port": 80}},
        "preStop": {"exec": {"command": []}},
    }));
    assert!(
        hook_spec(&p, "app", Hook::PostStart)
            .expect("hook")
            .action
            .is_err()
    );
    assert!(hook_spec(&p, "app", Hook::PreStop).expect("hook").action.is_err());
    let p = pod(serde_json::json!({"preStop": {"httpGet": {"port": "nope"}}}));
    assert!(hook_spec(&p, "app", Hook::PreStop).expect("hook").action.is_err());
}

#[test]
fn pre_stop_runs_only_with_grace_and_the_stop_gets_what_is_left() {
    let p = pod(serde_json::json!({"preStop": {"exec": {"command": ["drain"]}}}));
    let (spec, budget) = pre_stop(&p, "app", Duration::from_secs(30)).expect("preStop");
    assert_eq!(spec.hook, Hook::PreStop);
    assert_eq!(budget, Duration::from_secs(30));
    assert_eq!(pre_stop(&p, "app", Duration::ZERO), None, "no grace, no hook");
    assert_eq!(
        pre_stop(&pod(serde_json::json!({})), "app", Duration::from_secs(30)),
        None
    );

    let grace = Duration::from_secs(30);
    assert_eq!(stop_grace(grace, Duration::ZERO), grace);
    assert_eq!(
        stop_grace(grace, Duration::from_secs(10)),
        Duration::from_secs(20)
    );
    // Never less than the minimum, even when the hook took it all or there was none.
    assert_eq!(stop_grace(grace, Duration::from_secs(30)), MIN_STOP_GRACE);
    assert_eq!(stop_grace(grace, Duration::from_secs(99)), MIN_STOP_GRACE);
    assert_eq!(stop_grace(Duration::ZERO, Duration::ZERO), MIN_STOP_GRACE);
}

#[test]
fn failure_messages_are_the_kubelets() {
    let p = pod(serde_json::json!({
        "postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}},
        "preStop": {"httpGet": {"port": 8080, "path": "/quit"}},
    }));
    let post = hook_spec(&p, "app", Hook::PostStart).expect("hook");
    let command = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
    let f = Failure {
        error: exec_error(&command, 3, "oops\n"),
        output: "oops\n".into(),
        timed_out: false,
    };
    assert_eq!(
        failure_message(&p, &post, &f),
        "Exec lifecycle hook ([sh -c exit 3]) for Container \"app\" in Pod \"web_shop(u-1)\" failed - \
         error: command 'sh -c exit 3' exited with 3: oops\n, message: \"oops\\n\""
    );
    let pre = hook_spec(&p, "app", Hook::PreStop).expect("hook");
    let f = Failure {
        error: "Get \"http://10.0.0.2:8080/quit\": connection refused".into(),
        output: String::new(),
        timed_out: false,
    };
    assert!(
        failure_message(&p, &pre, &f).starts_with("HTTP lifecycle hook (/quit) for Container \"app\" in Pod"),
        "{}",
        failure_message(&p, &pre, &f)
    );
    assert_eq!(Hook::PostStart.failure_reason(), "FailedPostStartHook");
    assert_eq!(Hook::PreStop.failure_reason(), "FailedPreStopHook");
}
