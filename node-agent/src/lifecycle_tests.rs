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
