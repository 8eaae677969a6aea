//! Tests of the status computation, without a runtime or a cluster.

use super::*;
use crate::lifecycle::tests::{container, pod};
use crate::observe::Sandbox;

const SEC: i64 = 1_000_000_000;

fn ctx<'a>(pulls: Option<&'a HashMap<String, PullFailure>>, now: i64) -> Context<'a> {
    Context {
        host_ip: "10.213.0.11".into(),
        runtime_name: "containerd".into(),
        pulls,
        image_ids: None,
        unsupported: vec![],
        rejection: None,
        probes: None,
        now,
    }
}

fn ready_sandbox() -> Sandbox {
    Sandbox {
        id: "sb1".into(),
        attempt: 0,
        ready: true,
        ip: Some("10.214.1.5".into()),
    }
}

fn reason(s: &PodStatus) -> Option<String> {
    let st = s.container_statuses.as_ref()?[0].state.clone()?;
    st.waiting.and_then(|w| w.reason)
}

#[test]
fn running_pod() {
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![container("c1", 0, State::Running, 0, 100)],
    };
    let s = compute(&pod("Always"), &obs, &ctx(None, 100 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.214.1.5"));
    assert_eq!(s.host_ip.as_deref(), Some("10.213.0.11"));
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert!(cs.ready);
    assert_eq!(cs.container_id.as_deref(), Some("containerd://c1"));
    let ready = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
}

#[test]
fn pending_while_creating() {
    let s = compute(&pod("Always"), &Observed::default(), &ctx(None, SEC));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(reason(&s).as_deref(), Some("ContainerCreating"));
}

#[test]
fn crash_loop_back_off_with_last_state() {
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![container("c2", 1, State::Exited, 2, 100)],
    };
    let s = compute(&pod("Always"), &obs, &ctx(None, 101 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(reason(&s).as_deref(), Some("CrashLoopBackOff"));
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.restart_count, 1);
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 2);
    assert_eq!(last.reason.as_deref(), Some("Error"));
}

#[test]
fn pull_errors_then_back_off() {
    let mut pulls = HashMap::from([(
        "app".to_string(),
        PullFailure {
            image: "10.213.0.1:5000/berth/demo:v1".into(),
            failures: 1,
            retry_at: 110 * SEC,
            message: "not found".into(),
            ..Default::default()
        },
    )]);
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![],
    };
    let s = compute(&pod("Always"), &obs, &ctx(Some(&pulls), 100 * SEC));
    assert_eq!(reason(&s).as_deref(), Some("ErrImagePull"));
    pulls.get_mut("app").unwrap().failures = 2;
    let s = compute(&pod("Always"), &obs, &ctx(Some(&pulls), 100 * SEC));
    assert_eq!(reason(&s).as_deref(), Some("ImagePullBackOff"));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
}

#[test]
fn completed_pods() {
    let ok = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![container("c1", 0, State::Exited, 0, 100)],
    };
    let s = compute(&pod("Never"), &ok, &ctx(None, 200 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    let failed = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![container("c1", 0, State::Exited, 1, 100)],
    };
    let s = compute(&pod("OnFailure"), &failed, &ctx(None, 200 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Running"), "OnFailure restarts");
    let s = compute(&pod("Never"), &failed, &ctx(None, 200 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn unchanged_status_is_not_rewritten_and_transition_times_stay() {
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![container("c1", 0, State::Running, 0, 100)],
    };
    let mut p = pod("Always");
    let first = compute(&p, &obs, &ctx(None, 100 * SEC));
    p.status = Some(first.clone());
    let again = compute(&p, &obs, &ctx(None, 500 * SEC));
    assert!(!changed(&p, &again), "{first:?}\n{again:?}");
    let mut c = ctx(None, 500 * SEC);
    c.unsupported = vec!["spec.volumes".into()];
    let with = compute(&p, &obs, &c);
    assert!(changed(&p, &with));
    assert!(
        with.conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == UNSUPPORTED_CONDITION)
    );
}

#[test]
fn readiness_probe_drives_ready_and_conditions() {
    let mut p = pod("Always");
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[0].readiness_probe =
            Some(serde_json::from_value(serde_json::json!({"exec": {"command": ["true"]}})).expect("probe"));
    }
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![container("c1", 0, State::Running, 0, 100)],
    };
    let cond = |s: &PodStatus, t: &str| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
    };
    let mut probes = crate::prober::Probes::new();
    for ok in [false, true] {
        probes.insert(
            ("c1".into(), Kind::Readiness),
            crate::probe::Tracker::new(Kind::Readiness, ok),
        );
        let mut c = ctx(None, 101 * SEC);
        c.probes = Some(&probes);
        let s = compute(&p, &obs, &c);
        let cs = &s.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(cs.ready, ok);
        assert_eq!(cs.started, Some(true));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let want = if ok { "True" } else { "False" };
        assert_eq!(cond(&s, "Ready").as_deref(), Some(want));
        assert_eq!(cond(&s, "ContainersReady").as_deref(), Some(want));
    }
    // Without probe results yet (fresh worker, no status): not ready.
    let s = compute(&p, &obs, &ctx(None, 101 * SEC));
    assert!(!s.container_statuses.expect("statuses")[0].ready);
}

// Init containers and the active deadline.

fn init_status<'a>(s: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    s.init_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)
        .expect("init container status")
}

fn condition_of<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == t)
        .expect("condition")
}

fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

#[test]
fn while_init_runs_the_pod_is_pending_and_not_initialized() {
    use crate::lifecycle::tests::{init_pod, named};
    let p = init_pod("Always");
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![named("a", "i1", 0, State::Running, 0, 100, "sb1")],
    };
    let s = compute(&p, &obs, &ctx(None, 101 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let a = init_status(&s, "a");
    assert!(a.state.as_ref().is_some_and(|st| st.running.is_some()));
    assert!(!a.ready);
    assert_eq!(a.started, None);
    assert_eq!(a.container_id.as_deref(), Some("containerd://i1"));
    assert_eq!(a.image, "10.213.0.1:5000/berth/demo:v1");
    assert_eq!(waiting_reason(init_status(&s, "b")), Some("PodInitializing"));
    assert_eq!(reason(&s).as_deref(), Some("PodInitializing"), "the app waits");
    let init = condition_of(&s, "Initialized");
    assert_eq!(init.status, "False");
    assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
    assert_eq!(
        init.message.as_deref(),
        Some("containers with incomplete status: [a b]")
    );
}

#[test]
fn once_init_succeeded_the_pod_is_initialized_and_runs() {
    use crate::lifecycle::tests::{init_pod, named};
    let p = init_pod("Always");
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![
            named("a", "i1", 0, State::Exited, 0, 100, "sb1"),
            named("app", "c1", 0, State::Running, 0, 120, "sb1"),
            named("b", "i2", 0, State::Exited, 0, 110, "sb1"),
        ],
    };
    let s = compute(&p, &obs, &ctx(None, 130 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    for name in ["a", "b"] {
        let c = init_status(&s, name);
        assert!(c.ready, "{name}");
        let t = c
            .state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .expect("terminated");
        assert_eq!(
            t.reason.as_deref(),
            Some("Completed"),
            "no CrashLoopBackOff under Always"
        );
    }
    let init = condition_of(&s, "Initialized");
    assert_eq!((init.status.as_str(), init.reason.as_deref()), ("True", None));
}

#[test]
fn a_failing_init_container_crash_loops_or_fails_the_pod_under_never() {
    use crate::lifecycle::tests::{init_pod, named};
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![named("a", "i2", 1, State::Exited, 1, 100, "sb1")],
    };
    let s = compute(&init_pod("Always"), &obs, &ctx(None, 105 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let a = init_status(&s, "a");
    assert_eq!(waiting_reason(a), Some("CrashLoopBackOff"));
    assert_eq!(a.restart_count, 1);
    assert!(
        a.last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 1)
    );

    let s = compute(&init_pod("Never"), &obs, &ctx(None, 105 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let a = init_status(&s, "a");
    assert!(
        a.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 1)
    );
    assert_eq!(condition_of(&s, "Initialized").status, "False");
}

#[test]
fn pods_without_init_containers_report_none() {
    let s = compute(&pod("Always"), &Observed::default(), &ctx(None, SEC));
    assert_eq!(s.init_container_statuses, None);
    assert_eq!(condition_of(&s, "Initialized").status, "True");
    assert_eq!(reason(&s).as_deref(), Some("ContainerCreating"));
}

#[test]
fn past_the_active_deadline_the_pod_fails_with_the_kubelets_reason() {
    let p = crate::lifecycle::tests::deadline_pod();
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![container("c1", 0, State::Running, 0, 105)],
    };
    let before = compute(&p, &obs, &ctx(None, 109 * SEC));
    assert_eq!(before.phase.as_deref(), Some("Running"));
    assert_eq!(before.reason, None);
    let s = compute(&p, &obs, &ctx(None, 111 * SEC));
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        s.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    // Written once, the phase, reason and message stay while the containers are stopped.
    let mut p = p;
    p.status = Some(s.clone());
    let stopped = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![container("c1", 0, State::Exited, 143, 112)],
    };
    let later = compute(&p, &stopped, &ctx(None, 120 * SEC));
    assert_eq!(later.phase.as_deref(), Some("Failed"));
    assert_eq!(later.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(later.message, s.message);
}

#[test]
fn ready_waits_for_the_readiness_gates() {
    use k8s_openapi::api::core::v1::PodReadinessGate;
    let obs = Observed {
        sandboxes: vec![ready_sandbox()],
        containers: vec![container("c1", 0, State::Running, 0, 100)],
    };
    let mut p = pod("Always");
    p.spec.as_mut().unwrap().readiness_gates = Some(vec![PodReadinessGate {
        condition_type: "example.com/lb".into(),
    }]);
    let ready = |p: &Pod| {
        let s = compute(p, &obs, &ctx(None, 100 * SEC));
        (
            condition_of(&s, "ContainersReady").status.clone(),
            condition_of(&s, "Ready").clone(),
        )
    };
    let (containers, r) = ready(&p);
    assert_eq!((containers.as_str(), r.status.as_str()), ("True", "False"));
    assert_eq!(r.reason.as_deref(), Some("ReadinessGatesNotReady"));
    assert!(r.message.unwrap().contains("\"example.com/lb\" does not exist"));
    let gate = |status: &str| PodCondition {
        type_: "example.com/lb".into(),
        status: status.into(),
        ..Default::default()
    };
    p.status.get_or_insert_with(Default::default).conditions = Some(vec![gate("False")]);
    assert!(
        ready(&p)
            .1
            .message
            .unwrap()
            .contains("is not \"True\", but False")
    );
    p.status.as_mut().unwrap().conditions = Some(vec![gate("True")]);
    assert_eq!(ready(&p).1.status, "True");
}
