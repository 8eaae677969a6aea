use std::sync::Arc;

use berth_api::apps::{REVISION_LABEL, SCHEDULER_NAME};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus, ResourceRequirements, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

use super::*;

/// Pod `ns/name` (uid `name-uid`) of owner `owner` at `revision`, asking for `cpu` millicores.
fn pod(ns: &str, name: &str, owner: &str, revision: &str, cpu: i64) -> Pod {
    let mut p = Pod::default();
    p.metadata.namespace = Some(ns.into());
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("{name}-uid"));
    p.metadata.labels = Some([(REVISION_LABEL.to_owned(), revision.to_owned())].into());
    p.metadata.owner_references = Some(vec![OwnerReference {
        uid: owner.into(),
        controller: Some(true),
        ..Default::default()
    }]);
    p.spec = Some(PodSpec {
        scheduler_name: Some(SCHEDULER_NAME.into()),
        containers: vec![Container {
            resources: Some(ResourceRequirements {
                requests: Some([("cpu".to_owned(), Quantity(format!("{cpu}m")))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    p
}

fn on(mut p: Pod, node: &str) -> Pod {
    p.spec.as_mut().expect("spec").node_name = Some(node.into());
    p
}

fn phase(mut p: Pod, phase: &str) -> Pod {
    p.status = Some(PodStatus {
        phase: Some(phase.into()),
        ..Default::default()
    });
    p
}

fn node(name: &str, cpu: i64) -> NodeView {
    NodeView {
        name: name.into(),
        labels: Default::default(),
        taints: Vec::<Taint>::new(),
        allocatable: Resources {
            cpu_milli: cpu,
            memory: 1 << 30,
            pods: 110,
        },
        schedulable: true,
    }
}

fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

#[test]
fn only_pods_of_berths_scheduler_without_a_node_wait_oldest_first() {
    let mut newer = pod("a", "newer", "w", "r", 1);
    newer.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(2).unwrap()));
    let mut older = pod("b", "older", "w", "r", 1);
    older.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(1).unwrap()));
    let mut other = pod("a", "default", "w", "r", 1);
    other.spec.as_mut().unwrap().scheduler_name = Some("default-scheduler".into());
    let mut going = pod("a", "going", "w", "r", 1);
    going.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::from_second(3).unwrap()));
    let pods = arcs(vec![
        newer,
        on(pod("a", "bound", "w", "r", 1), "n1"),
        other,
        going,
        older,
    ]);
    let names: Vec<String> = pending(&pods).iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["older", "newer"]);
}

#[test]
fn a_pass_counts_the_cache_the_bindings_not_yet_seen_and_its_own_choices() {
    let nodes = [node("n1", 1000), node("n2", 1000)];
    // n1 holds 600m in the cache (a finished pod's requests do not count); n2 holds a binding not yet seen.
    let cache = arcs(vec![
        on(pod("a", "x", "other", "r", 600), "n1"),
        phase(on(pod("a", "done", "other", "r", 900), "n2"), "Succeeded"),
        pod("a", "y", "other", "r", 500),
    ]);
    let mut assumed = Assumptions::default();
    assumed.bound(&cache[2], "n2");
    let mut usage = Usage::of(&cache, &assumed);
    assert_eq!(usage.used()["n1"].cpu_milli, 600);
    assert_eq!(usage.used()["n2"].cpu_milli, 500);
    // 400m fits both: n2 has less CPU requested.
    assert_eq!(
        usage.place(&pod("a", "p1", "w", "r", 400), &nodes),
        Ok("n2".into())
    );
    // n2 now holds 900m: the next 400m pod fits only n1.
    assert_eq!(
        usage.place(&pod("a", "p2", "w", "r", 400), &nodes),
        Ok("n1".into())
    );
    let full = usage.place(&pod("a", "p3", "w", "r", 400), &nodes).unwrap_err();
    assert_eq!(full, "0/2 nodes are available: 2 Insufficient cpu.");
}

#[test]
fn replicas_of_one_owner_and_revision_spread_and_other_revisions_do_not_count() {
    let nodes = [node("n1", 4000), node("n2", 4000)];
    let cache = arcs(vec![
        on(pod("a", "old-0", "w", "old", 1), "n1"),
        on(pod("a", "old-1", "w", "old", 1), "n1"),
        on(pod("a", "new-0", "w", "new", 1), "n2"),
        // Another owner's pods on n1 count for resources only.
        on(pod("a", "z", "other", "new", 1), "n1"),
    ]);
    let mut usage = Usage::of(&cache, &Assumptions::default());
    // The new revision has one pod on n2: the next goes to n1, then they alternate.
    assert_eq!(
        usage.place(&pod("a", "new-1", "w", "new", 1), &nodes),
        Ok("n1".into())
    );
    // One each now: the tie goes to the node with less CPU requested (n1 holds the old revision and `z`).
    assert_eq!(
        usage.place(&pod("a", "new-2", "w", "new", 1), &nodes),
        Ok("n2".into())
    );
}

#[test]
fn a_binding_is_assumed_until_the_cache_shows_that_pod_bound_or_gone() {
    let waiting = pod("a", "web-0", "w", "r", 100);
    let mut assumed = Assumptions::default();
    assumed.bound(&waiting, "n1");
    assumed.settle(&arcs(vec![waiting.clone()]));
    assert_eq!(assumed.len(), 1, "the cache still shows it unbound");
    assert!(assumed.holds(&waiting), "so the next pass does not bind it again");
    // Bound in the cache: counted from the cache.
    assumed.settle(&arcs(vec![on(waiting.clone(), "n1")]));
    assert!(assumed.is_empty());
    // Deleted before its binding was seen: its requests no longer count on n1.
    assumed.bound(&waiting, "n1");
    assumed.settle(&[]);
    assert!(assumed.is_empty());
    // The same name in another namespace, or a new pod under the name, is another pod.
    assumed.bound(&waiting, "n1");
    assumed.settle(&arcs(vec![pod("b", "web-0", "w", "r", 100)]));
    assert!(assumed.is_empty());
    assumed.bound(&waiting, "n1");
    let mut again = waiting.clone();
    again.metadata.uid = Some("another".into());
    assumed.settle(&arcs(vec![again]));
    assert!(assumed.is_empty());
}
