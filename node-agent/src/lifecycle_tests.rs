//! Tests of the lifecycle decisions, without a runtime or a cluster.

use super::*;
use crate::observe::Sandbox;
use k8s_openapi::api::core::v1::{Container as SpecContainer, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const SEC: i64 = 1_000_000_000;
const IMAGE: &str = "10.213.0.1:5000/berth/demo:v1";

pub(crate) fn pod(policy: &str) -> Pod {
    Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            containers: vec![SpecContainer {
                name: "app".into(),
                image: Some(IMAGE.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn sandbox(id: &str, attempt: u32, ready: bool) -> Sandbox {
    Sandbox {
        id: id.into(),
        attempt,
        ready,
        ip: ready.then(|| "10.214.1.5".into()),
    }
}

pub(crate) fn container(id: &str, attempt: u32, state: State, exit: i32, finished_s: i64) -> Container {
    Container {
        id: id.into(),
        name: "app".into(),
        attempt,
        sandbox_id: "sb1".into(),
        state,
        exit_code: exit,
        reason: String::new(),
        message: String::new(),
        created_at: (finished_s - 2) * SEC,
        started_at: (finished_s - 1) * SEC,
        finished_at: if state == State::Exited {
            finished_s * SEC
        } else {
            0
        },
        spec_image: IMAGE.into(),
        image_ref: "sha256:abc".into(),
        log_path: String::new(),
    }
}

fn observed(sandboxes: Vec<Sandbox>, containers: Vec<Container>) -> Observed {
    Observed {
        sandboxes,
        containers,
    }
}

#[test]
fn new_pod_gets_a_sandbox_first() {
    let p = plan(&pod("Always"), &Observed::default(), &HashMap::new(), 100 * SEC);
    assert_eq!(p.actions, vec![Action::RunSandbox { attempt: 0 }]);
}

#[test]
fn ready_sandbox_then_container_starts() {
    let obs = observed(vec![sandbox("sb1", 0, true)], vec![]);
    let p = plan(&pod("Always"), &obs, &HashMap::new(), 100 * SEC);
    assert_eq!(
        p.actions,
        vec![Action::StartContainer {
            name: "app".into(),
            attempt: 0
        }]
    );
}

#[test]
fn running_container_is_left_alone() {
    let obs = observed(
        vec![sandbox("sb1", 0, true)],
        vec![container("c1", 0, State::Running, 0, 100)],
    );
    let p = plan(&pod("Always"), &obs, &HashMap::new(), 100 * SEC);
    assert!(p.actions.is_empty(), "{p:?}");
    assert_eq!(p.requeue, Some(RESYNC));
}

#[test]
fn crashed_container_waits_for_back_off_then_restarts() {
    let obs = observed(
        vec![sandbox("sb1", 0, true)],
        vec![container("c2", 2, State::Exited, 1, 100)],
    );
    // attempt 2 exited: back-off 40 s.
    let early = plan(&pod("Always"), &obs, &HashMap::new(), 120 * SEC);
    assert!(early.actions.is_empty(), "{early:?}");
    assert_eq!(early.requeue, Some(RESYNC));
    assert_eq!(
        restart("Always", &obs.containers[0], 120 * SEC),
        Restart::At(140 * SEC)
    );
    let due = plan(&pod("Always"), &obs, &HashMap::new(), 141 * SEC);
    assert_eq!(
        due.actions,
        vec![Action::StartContainer {
            name: "app".into(),
            attempt: 3
        }]
    );
}

#[test]
fn restart_policies() {
    let ok = container("c", 0, State::Exited, 0, 100);
    let failed = container("c", 0, State::Exited, 3, 100);
    let later = 1000 * SEC;
    assert_eq!(restart("Never", &failed, later), Restart::Never);
    assert_eq!(restart("OnFailure", &ok, later), Restart::Never);
    assert_eq!(restart("OnFailure", &failed, later), Restart::Now);
    assert_eq!(restart("Always", &ok, later), Restart::Now);
}

#[test]
fn finished_pod_stops_its_sandbox_and_keeps_containers() {
    let obs = observed(
        vec![sandbox("sb1", 0, true)],
        vec![container("c1", 0, State::Exited, 0, 100)],
    );
    let p = plan(&pod("Never"), &obs, &HashMap::new(), 200 * SEC);
    assert_eq!(p.actions, vec![Action::StopSandbox { id: "sb1".into() }]);
    // And once stopped, nothing more (no new sandbox).
    let obs = observed(vec![sandbox("sb1", 0, false)], obs.containers);
    assert!(
        plan(&pod("Never"), &obs, &HashMap::new(), 300 * SEC)
            .actions
            .is_empty()
    );
}

#[test]
fn dead_sandbox_is_replaced_and_containers_restart_in_the_new_one() {
    let obs = observed(
        vec![sandbox("sb1", 0, false)],
        vec![container("c1", 0, State::Exited, 137, 100)],
    );
    let p = plan(&pod("Always"), &obs, &HashMap::new(), 101 * SEC);
    assert_eq!(
        p.actions,
        vec![
            Action::RemoveSandbox { id: "sb1".into() },
            Action::RunSandbox { attempt: 1 }
        ]
    );
    let obs = observed(vec![sandbox("sb2", 1, true)], obs.containers);
    let p = plan(&pod("Always"), &obs, &HashMap::new(), 101 * SEC);
    assert_eq!(
        p.actions,
        vec![Action::StartContainer {
            name: "app".into(),
            attempt: 1
        }]
    );
}

#[test]
fn pull_back_off_holds_the_start() {
    let obs = observed(vec![sandbox("sb1", 0, true)], vec![]);
    let pulls = HashMap::from([(
        "app".to_string(),
        PullFailure {
            image: IMAGE.into(),
            failures: 2,
            retry_at: 130 * SEC,
            message: "not found".into(),
            ..Default::default()
        },
    )]);
    let p = plan(&pod("Always"), &obs, &pulls, 100 * SEC);
    assert!(p.actions.is_empty());
    assert_eq!(p.requeue, Some(RESYNC));
    let p = plan(&pod("Always"), &obs, &pulls, 131 * SEC);
    assert_eq!(p.actions.len(), 1);
}

#[test]
fn deletion_kills_with_grace_removes_everything_then_deletes_the_pod() {
    let mut p = pod("Always");
    p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    p.metadata.deletion_grace_period_seconds = Some(7);
    let obs = observed(
        vec![sandbox("sb1", 0, true)],
        vec![
            container("c2", 1, State::Running, 0, 100),
            container("c1", 0, State::Exited, 1, 90),
        ],
    );
    let plan = plan(&p, &obs, &HashMap::new(), 200 * SEC);
    assert_eq!(
        plan.actions,
        vec![
            Action::KillContainer {
                id: "c2".into(),
                name: "app".into(),
                grace: Duration::from_secs(7)
            },
            Action::RemoveContainer { id: "c2".into() },
            Action::RemoveContainer { id: "c1".into() },
            Action::RemoveSandbox { id: "sb1".into() },
            Action::DeletePod,
        ]
    );
}

#[test]
fn old_attempts_are_pruned_keeping_the_previous_one() {
    let obs = observed(
        vec![sandbox("sb1", 0, true)],
        vec![
            container("c3", 2, State::Running, 0, 100),
            container("c2", 1, State::Exited, 1, 90),
            container("c1", 0, State::Exited, 1, 80),
        ],
    );
    let p = plan(&pod("Always"), &obs, &HashMap::new(), 200 * SEC);
    assert_eq!(p.actions, vec![Action::RemoveContainer { id: "c1".into() }]);
}

#[test]
fn changed_image_replaces_the_container() {
    let mut c = container("c1", 0, State::Running, 0, 100);
    c.spec_image = "10.213.0.1:5000/berth/demo:v0".into();
    let obs = observed(vec![sandbox("sb1", 0, true)], vec![c]);
    let p = plan(&pod("Always"), &obs, &HashMap::new(), 200 * SEC);
    assert!(matches!(p.actions[..], [Action::KillContainer { .. }]), "{p:?}");
}

// Init containers and the active deadline.

/// A pod with init containers `a` and `b` before its app container.
pub(crate) fn init_pod(policy: &str) -> Pod {
    let mut p = pod(policy);
    let init = |name: &str| SpecContainer {
        name: name.into(),
        image: Some(IMAGE.into()),
        ..Default::default()
    };
    if let Some(spec) = p.spec.as_mut() {
        spec.init_containers = Some(vec![init("a"), init("b")]);
    }
    p
}

/// Container `name` (runtime id `id`) in sandbox `sandbox`.
pub(crate) fn named(
    name: &str,
    id: &str,
    attempt: u32,
    state: State,
    exit: i32,
    finished_s: i64,
    sandbox: &str,
) -> Container {
    let mut c = container(id, attempt, state, exit, finished_s);
    c.name = name.into();
    c.sandbox_id = sandbox.into();
    c
}

fn start(name: &str, attempt: u32) -> Action {
    Action::StartContainer {
        name: name.into(),
        attempt,
    }
}

#[test]
fn init_containers_run_one_at_a_time_in_order_before_the_app() {
    let p = init_pod("Always");
    let sb = || vec![sandbox("sb1", 0, true)];
    let now = 200 * SEC;
    let none = HashMap::new();
    assert_eq!(
        plan(&p, &observed(sb(), vec![]), &none, now).actions,
        vec![start("a", 0)]
    );
    let a_runs = vec![named("a", "i1", 0, State::Running, 0, 100, "sb1")];
    let waiting = plan(&p, &observed(sb(), a_runs), &none, now);
    assert!(waiting.actions.is_empty(), "{waiting:?}");
    assert_eq!(waiting.requeue, Some(RESYNC));
    let a_done = named("a", "i1", 0, State::Exited, 0, 100, "sb1");
    assert_eq!(
        plan(&p, &observed(sb(), vec![a_done.clone()]), &none, now).actions,
        vec![start("b", 0)]
    );
    let b_done = named("b", "i2", 0, State::Exited, 0, 110, "sb1");
    assert_eq!(
        plan(
            &p,
            &observed(sb(), vec![a_done.clone(), b_done.clone()]),
            &none,
            now
        )
        .actions,
        vec![start("app", 0)]
    );
    assert_eq!(
        init_progress(&p, &observed(sb(), vec![a_done, b_done]), "sb1", now),
        Init::Done
    );
}

#[test]
fn a_failed_init_container_restarts_with_back_off_unless_never() {
    // `a` failed as its attempt 1 at 100 s: back-off 20 s.
    let obs = observed(
        vec![sandbox("sb1", 0, true)],
        vec![named("a", "i2", 1, State::Exited, 1, 100, "sb1")],
    );
    let none = HashMap::new();
    for policy in ["Always", "OnFailure"] {
        let p = init_pod(policy);
        assert_eq!(
            init_progress(&p, &obs, "sb1", 110 * SEC),
            Init::BackOff { at: 120 * SEC }
        );
        let early = plan(&p, &obs, &none, 110 * SEC);
        assert!(early.actions.is_empty(), "{early:?}");
        assert_eq!(plan(&p, &obs, &none, 121 * SEC).actions, vec![start("a", 2)]);
        assert!(!pod_finished(&p, &obs, 121 * SEC));
    }
    let p = init_pod("Never");
    assert_eq!(
        init_progress(&p, &obs, "sb1", 121 * SEC),
        Init::Failed { name: "a".into() }
    );
    assert!(init_failed_for_good(&p, &obs));
    assert!(pod_finished(&p, &obs, 121 * SEC));
    // The pod fails: its sandbox stops, nothing else starts.
    assert_eq!(
        plan(&p, &obs, &none, 121 * SEC).actions,
        vec![Action::StopSandbox { id: "sb1".into() }]
    );
}

#[test]
fn a_new_sandbox_runs_the_init_containers_again() {
    let p = init_pod("Always");
    let done = vec![
        named("a", "i1", 0, State::Exited, 0, 100, "sb1"),
        named("app", "c1", 0, State::Exited, 137, 150, "sb1"),
        named("b", "i2", 0, State::Exited, 0, 110, "sb1"),
    ];
    let none = HashMap::new();
    let dead = plan(
        &p,
        &observed(vec![sandbox("sb1", 0, false)], done.clone()),
        &none,
        200 * SEC,
    );
    assert_eq!(dead.actions.last(), Some(&Action::RunSandbox { attempt: 1 }));
    let fresh = observed(vec![sandbox("sb2", 1, true)], done);
    assert_eq!(plan(&p, &fresh, &none, 200 * SEC).actions, vec![start("a", 1)]);
}

#[test]
fn app_restarts_and_image_changes_do_not_run_the_init_containers_again() {
    let p = init_pod("Always");
    let a = named("a", "i1", 0, State::Exited, 0, 100, "sb1");
    let b = named("b", "i2", 0, State::Exited, 0, 110, "sb1");
    let none = HashMap::new();
    let crashed = observed(
        vec![sandbox("sb1", 0, true)],
        vec![
            a.clone(),
            named("app", "c1", 0, State::Exited, 1, 150, "sb1"),
            b.clone(),
        ],
    );
    assert_eq!(
        plan(&p, &crashed, &none, 200 * SEC).actions,
        vec![start("app", 1)]
    );
    let mut old = named("app", "c1", 0, State::Running, 0, 150, "sb1");
    old.spec_image = "10.213.0.1:5000/berth/demo:v0".into();
    let changed = observed(vec![sandbox("sb1", 0, true)], vec![a, old, b]);
    let p2 = plan(&p, &changed, &none, 200 * SEC);
    assert!(
        matches!(&p2.actions[..], [Action::KillContainer { name, .. }] if name == "app"),
        "{p2:?}"
    );
    // An app container in the sandbox means initialization is over, even if an init
    // container was removed since.
    let gone = observed(
        vec![sandbox("sb1", 0, true)],
        vec![named("app", "c1", 0, State::Running, 0, 150, "sb1")],
    );
    assert_eq!(init_progress(&p, &gone, "sb1", 200 * SEC), Init::Done);
}

#[test]
fn init_containers_are_not_pruned_as_unknown_names() {
    let p = init_pod("Always");
    let obs = observed(
        vec![sandbox("sb1", 0, true)],
        vec![named("a", "i1", 0, State::Running, 0, 100, "sb1")],
    );
    let plan = plan(&p, &obs, &HashMap::new(), 200 * SEC);
    assert!(plan.actions.is_empty(), "{plan:?}");
}

#[test]
fn a_created_but_never_started_init_container_is_replaced() {
    let p = init_pod("Always");
    let obs = observed(
        vec![sandbox("sb1", 0, true)],
        vec![named("a", "i1", 0, State::Created, 0, 100, "sb1")],
    );
    assert_eq!(
        plan(&p, &obs, &HashMap::new(), 200 * SEC).actions,
        vec![Action::RemoveContainer { id: "i1".into() }, start("a", 1)]
    );
}

#[test]
fn an_init_container_pull_back_off_holds_its_start() {
    let p = init_pod("Always");
    let obs = observed(vec![sandbox("sb1", 0, true)], vec![]);
    let pulls = HashMap::from([(
        "a".to_string(),
        PullFailure {
            image: IMAGE.into(),
            failures: 2,
            retry_at: 130 * SEC,
            message: "not found".into(),
            ..Default::default()
        },
    )]);
    let held = plan(&p, &obs, &pulls, 100 * SEC);
    assert!(held.actions.is_empty(), "{held:?}");
    assert_eq!(plan(&p, &obs, &pulls, 131 * SEC).actions, vec![start("a", 0)]);
}

/// A pod that started at 100 s with an active deadline of 10 s.
pub(crate) fn deadline_pod() -> Pod {
    let mut p = pod("Always");
    if let Some(spec) = p.spec.as_mut() {
        spec.active_deadline_seconds = Some(10);
    }
    p.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Running".into()),
        start_time: Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(100).expect("time"),
        )),
        ..Default::default()
    });
    p
}

#[test]
fn past_the_active_deadline_the_containers_are_killed_and_the_sandbox_stops() {
    let p = deadline_pod();
    assert_eq!(deadline(&p), Some(110 * SEC));
    assert!(!deadline_exceeded(&p, 109 * SEC));
    assert!(deadline_exceeded(&p, 110 * SEC));
    let obs = observed(
        vec![sandbox("sb1", 0, true)],
        vec![container("c1", 0, State::Running, 0, 105)],
    );
    assert!(plan(&p, &obs, &HashMap::new(), 109 * SEC).actions.is_empty());
    assert_eq!(
        plan(&p, &obs, &HashMap::new(), 111 * SEC).actions,
        vec![
            Action::KillContainer {
                id: "c1".into(),
                name: "app".into(),
                grace: Duration::from_secs(30),
            },
            Action::StopSandbox { id: "sb1".into() },
        ]
    );
    // Without a deadline, without a start time, or once terminal: never.
    assert!(!deadline_exceeded(&pod("Always"), 1000 * SEC));
    let mut unstarted = deadline_pod();
    unstarted.status = None;
    assert!(!deadline_exceeded(&unstarted, 1000 * SEC));
    let mut done = deadline_pod();
    done.status.as_mut().expect("status").phase = Some("Succeeded".into());
    assert!(!deadline_exceeded(&done, 1000 * SEC));
}
