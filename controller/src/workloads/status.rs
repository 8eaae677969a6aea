//! A Workload's status from the Pods that exist, and the Events its changes are worth.

use berth_api::apps::{ContainerImage, WORKLOAD_LABEL, Workload, WorkloadStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::images::Unresolved;
use super::rollout::{Bounds, PodView};
use crate::conditions;

/// The revision a Workload rolls towards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its hash.
    pub hash: String,
    /// Its number.
    pub revision: i64,
    /// The images of its containers.
    pub images: Vec<ContainerImage>,
}

/// The target for `hash`: the same revision number when the hash is the current one, the next otherwise.
pub fn target(workload: &Workload, hash: String, images: Vec<ContainerImage>) -> Target {
    let status = workload.status.clone().unwrap_or_default();
    let revision = if status.revision_hash.as_deref() == Some(hash.as_str()) {
        status.revision
    } else {
        status.revision + 1
    };
    Target {
        hash,
        revision,
        images,
    }
}

/// The status: counts from `pods`, the target (or, when images cannot be resolved, the old revision kept with a
/// `Progressing=False` condition saying why).
pub fn compute(
    workload: &Workload,
    target: Result<&Target, &[Unresolved]>,
    pods: &[PodView],
    bounds: Bounds,
    now: &Time,
) -> WorkloadStatus {
    let mut status = workload.status.clone().unwrap_or_default();
    let replicas = workload.spec.replicas;
    let current = match target {
        Ok(t) => {
            status.revision = t.revision;
            status.revision_hash = Some(t.hash.clone());
            status.images = t.images.clone();
            Some(t.hash.as_str())
        }
        Err(_) => None,
    };
    let count = |f: &dyn Fn(&PodView) -> bool| {
        i32::try_from(pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let hash = status.revision_hash.clone();
    let is_current = |p: &PodView| hash.as_deref() == Some(p.revision.as_str());
    status.observed_generation = workload.metadata.generation;
    status.selector = Some(format!("{WORKLOAD_LABEL}={}", workload.name_any()));
    status.replicas = count(&|_| true);
    status.ready_replicas = count(&|p| p.ready);
    status.updated_replicas = count(&is_current);
    status.available_replicas = count(&|p| is_current(p) && p.ready);

    let generation = workload.metadata.generation;
    let available = status.ready_replicas >= replicas - bounds.max_unavailable;
    let condition = if available {
        conditions::new(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            format!("{} of {replicas} pods are ready", status.ready_replicas),
        )
    } else {
        conditions::new(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            format!("{} of {replicas} pods are ready", status.ready_replicas),
        )
    };
    conditions::set(&mut status.conditions, condition, generation, now);
    let progressing = match (target, current) {
        (Err(problems), _) => conditions::new(
            "Progressing",
            "False",
            "ImageNotResolved",
            problems
                .iter()
                .map(|p| format!("container {}: {}", p.container, p.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (Ok(t), _)
            if status.updated_replicas == replicas
                && status.available_replicas == replicas
                && status.replicas == replicas =>
        {
            conditions::new(
                "Progressing",
                "True",
                "RolloutComplete",
                format!("revision {} runs on all {replicas} pods", t.revision),
            )
        }
        (Ok(t), _) => conditions::new(
            "Progressing",
            "True",
            "RollingOut",
            format!(
                "revision {}: {} of {replicas} pods updated, {} available",
                t.revision, status.updated_replicas, status.available_replicas
            ),
        ),
    };
    conditions::set(&mut status.conditions, progressing, generation, now);
    status
}

/// The Events a status change is worth: `(type is Warning, reason, note)`.
pub fn events(old: &WorkloadStatus, new: &WorkloadStatus) -> Vec<(bool, &'static str, String)> {
    let mut out = Vec::new();
    if old.revision_hash.is_some() && old.revision_hash != new.revision_hash {
        let moved: Vec<_> = new
            .images
            .iter()
            .filter(|n| {
                n.from.is_some()
                    && !old
                        .images
                        .iter()
                        .any(|o| o.container == n.container && o.image == n.image)
            })
            .map(|n| {
                format!(
                    "{} follows {} to {}",
                    n.container,
                    n.from.as_deref().unwrap_or_default(),
                    n.image
                )
            })
            .collect();
        if !moved.is_empty() {
            out.push((false, "Triggered", moved.join("; ")));
        }
        out.push((
            false,
            "RolloutStarted",
            format!("rolling out revision {}", new.revision),
        ));
    }
    let reason =
        |s: &WorkloadStatus| conditions::find(&s.conditions, "Progressing").map(|c| c.reason.clone());
    match (reason(old).as_deref(), reason(new).as_deref()) {
        (Some("RolloutComplete"), Some("RolloutComplete")) | (None, Some("RolloutComplete"))
            if old.revision_hash == new.revision_hash => {}
        (_, Some("RolloutComplete")) => out.push((
            false,
            "RolloutComplete",
            format!("revision {} runs on all {} pods", new.revision, new.replicas),
        )),
        (old_reason, Some("ImageNotResolved")) if old_reason != Some("ImageNotResolved") => {
            let message = conditions::find(&new.conditions, "Progressing")
                .map(|c| c.message.clone())
                .unwrap_or_default();
            out.push((true, "ImageNotResolved", message));
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::apps::WorkloadSpec;

    fn wl(replicas: i32) -> Workload {
        let mut w = Workload::new(
            "web",
            WorkloadSpec {
                replicas,
                ..Default::default()
            },
        );
        w.metadata.generation = Some(1);
        w
    }

    fn pods(spec: &[(&str, bool)]) -> Vec<PodView> {
        spec.iter()
            .enumerate()
            .map(|(i, (rev, ready))| PodView {
                name: format!("p{i}"),
                revision: (*rev).into(),
                ready: *ready,
                scheduled: true,
                created: 0,
            })
            .collect()
    }

    const B: Bounds = Bounds {
        max_surge: 1,
        max_unavailable: 0,
    };

    fn t() -> Time {
        Time(Default::default())
    }

    #[test]
    fn counts_and_conditions_follow_the_pods() {
        let w = wl(3);
        let target = target(&w, "h1".into(), vec![]);
        assert_eq!(target.revision, 1);
        let s = compute(
            &w,
            Ok(&target),
            &pods(&[("h1", true), ("h1", false), ("h0", true)]),
            B,
            &t(),
        );
        assert_eq!(
            (
                s.replicas,
                s.ready_replicas,
                s.updated_replicas,
                s.available_replicas
            ),
            (3, 2, 2, 1)
        );
        assert_eq!(
            conditions::find(&s.conditions, "Available").unwrap().status,
            "False"
        );
        assert_eq!(
            conditions::find(&s.conditions, "Progressing").unwrap().reason,
            "RollingOut"
        );
        let done = compute(
            &w,
            Ok(&target),
            &pods(&[("h1", true), ("h1", true), ("h1", true)]),
            B,
            &t(),
        );
        assert_eq!(
            conditions::find(&done.conditions, "Progressing").unwrap().reason,
            "RolloutComplete"
        );
        assert_eq!(done.selector.as_deref(), Some("berth.dev/workload=web"));
    }

    #[test]
    fn a_new_hash_is_the_next_revision_and_says_so_once() {
        let mut w = wl(1);
        let first = target(&w, "h1".into(), vec![]);
        let s1 = compute(&w, Ok(&first), &pods(&[("h1", true)]), B, &t());
        w.status = Some(s1.clone());
        assert_eq!(target(&w, "h1".into(), vec![]).revision, 1);
        let image = ContainerImage {
            container: "app".into(),
            from: Some("ns/demo:stable".into()),
            image: "reg@sha256:2".into(),
        };
        let second = target(&w, "h2".into(), vec![image]);
        assert_eq!(second.revision, 2);
        let s2 = compute(&w, Ok(&second), &pods(&[("h1", true)]), B, &t());
        let reasons: Vec<_> = events(&s1, &s2).into_iter().map(|(_, r, _)| r).collect();
        assert_eq!(reasons, ["Triggered", "RolloutStarted"]);
        w.status = Some(s2.clone());
        let s3 = compute(&w, Ok(&second), &pods(&[("h2", true)]), B, &t());
        assert_eq!(
            events(&s2, &s3)
                .into_iter()
                .map(|(_, r, _)| r)
                .collect::<Vec<_>>(),
            ["RolloutComplete"]
        );
        assert!(events(&s3, &s3).is_empty(), "no Events without a transition");
    }

    #[test]
    fn unresolved_images_keep_the_revision_and_say_why() {
        let mut w = wl(1);
        let first = target(&w, "h1".into(), vec![]);
        let s1 = compute(&w, Ok(&first), &pods(&[("h1", true)]), B, &t());
        w.status = Some(s1.clone());
        let problem = [Unresolved {
            container: "app".into(),
            message: "image stream tag ns/demo:gone does not exist".into(),
        }];
        let s2 = compute(&w, Err(&problem), &pods(&[("h1", true)]), B, &t());
        assert_eq!(s2.revision_hash.as_deref(), Some("h1"));
        let c = conditions::find(&s2.conditions, "Progressing").unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "ImageNotResolved")
        );
        assert!(c.message.contains("demo:gone"));
        assert_eq!(events(&s1, &s2)[0].1, "ImageNotResolved");
    }
}
