//! One step of a rolling update, as a pure function of the Pods that exist: how many Pods of the current
//! revision to create and which Pods to delete, within `maxSurge` and `maxUnavailable`, counting only Ready
//! Pods as available (the Deployment controller's rules).

use berth_api::apps::RolloutStrategy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the rollout sees of one Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// The Pod's name.
    pub name: String,
    /// The revision hash it runs.
    pub revision: String,
    /// Whether it is Ready.
    pub ready: bool,
    /// Whether it is bound to a node.
    pub scheduled: bool,
    /// Seconds since the epoch of its creation.
    pub created: i64,
}

/// The bounds of a rollout, in Pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Pods allowed above `replicas`.
    pub max_surge: i32,
    /// Pods of `replicas` allowed not to be Ready.
    pub max_unavailable: i32,
}

/// The bounds for `replicas` (percentages: surge rounds up, unavailability down; 25% each by default; never
/// both zero, as in Kubernetes).
pub fn bounds(replicas: i32, strategy: Option<&RolloutStrategy>) -> Bounds {
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".to_owned());
    let surge = rolling.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter);
    let unavailable = rolling
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&quarter);
    let max_surge = scaled(surge, replicas, true);
    let max_unavailable = scaled(unavailable, replicas, false);
    if max_surge == 0 && max_unavailable == 0 {
        Bounds {
            max_surge,
            max_unavailable: 1,
        }
    } else {
        Bounds {
            max_surge,
            max_unavailable,
        }
    }
}

fn scaled(value: &IntOrString, replicas: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(s) => {
            let percent: i64 = s.trim_end_matches('%').trim().parse().unwrap_or(25);
            let total = i64::from(replicas) * percent.max(0);
            let n = if round_up { (total + 99) / 100 } else { total / 100 };
            i32::try_from(n).unwrap_or(i32::MAX)
        }
    }
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Pods of the current revision to create.
    pub create: usize,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
}

/// The next step towards `replicas` Pods of revision `current`, given the live (not terminating) Pods.
pub fn step(replicas: i32, current: &str, pods: &[PodView], bounds: Bounds) -> Step {
    let replicas = usize::try_from(replicas).unwrap_or(0);
    let (new, old): (Vec<&PodView>, Vec<&PodView>) = pods.iter().partition(|p| p.revision == current);
    let mut step = Step::default();
    if old.is_empty() {
        if new.len() > replicas {
            // Scale down: the least useful first (not Ready, unscheduled), then the youngest.
            let mut victims = new.clone();
            victims.sort_by_key(|p| (p.ready, p.scheduled, std::cmp::Reverse(p.created)));
            step.delete = victims
                .iter()
                .take(new.len() - replicas)
                .map(|p| p.name.clone())
                .collect();
        } else {
            step.create = replicas - new.len();
        }
        return step;
    }

    let surge = usize::try_from(bounds.max_surge).unwrap_or(0);
    let unavailable = usize::try_from(bounds.max_unavailable).unwrap_or(0);
    let room = (replicas + surge).saturating_sub(pods.len());
    step.create = room.min(replicas.saturating_sub(new.len()));

    // Old Pods that are not Ready give no availability: they go first, and freely.
    let mut old_unready: Vec<_> = old.iter().filter(|p| !p.ready).collect();
    old_unready.sort_by_key(|p| (p.scheduled, p.created));
    step.delete.extend(old_unready.iter().map(|p| p.name.clone()));

    // Ready old Pods go while enough Ready Pods remain.
    let min_available = replicas.saturating_sub(unavailable);
    let ready = pods.iter().filter(|p| p.ready).count();
    let budget = ready.saturating_sub(min_available);
    let mut old_ready: Vec<_> = old.iter().filter(|p| p.ready).collect();
    old_ready.sort_by_key(|p| p.created);
    step.delete
        .extend(old_ready.iter().take(budget).map(|p| p.name.clone()));
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::apps::RollingUpdate;

    fn pods(spec: &[(&str, bool)]) -> Vec<PodView> {
        spec.iter()
            .enumerate()
            .map(|(i, (rev, ready))| PodView {
                name: format!("{rev}-{i}"),
                revision: (*rev).into(),
                ready: *ready,
                scheduled: true,
                created: i64::try_from(i).unwrap(),
            })
            .collect()
    }

    fn strategy(surge: IntOrString, unavailable: IntOrString) -> RolloutStrategy {
        RolloutStrategy {
            rolling_update: Some(RollingUpdate {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        }
    }

    #[test]
    fn bounds_round_like_kubernetes() {
        assert_eq!(
            bounds(3, None),
            Bounds {
                max_surge: 1,
                max_unavailable: 0
            }
        );
        assert_eq!(
            bounds(10, None),
            Bounds {
                max_surge: 3,
                max_unavailable: 2
            }
        );
        let zero = strategy(IntOrString::Int(0), IntOrString::Int(0));
        assert_eq!(
            bounds(3, Some(&zero)),
            Bounds {
                max_surge: 0,
                max_unavailable: 1
            }
        );
        let pct = strategy(
            IntOrString::String("50%".into()),
            IntOrString::String("50%".into()),
        );
        assert_eq!(
            bounds(3, Some(&pct)),
            Bounds {
                max_surge: 2,
                max_unavailable: 1
            }
        );
    }

    #[test]
    fn scale_up_and_down_without_a_rollout() {
        let b = Bounds {
            max_surge: 1,
            max_unavailable: 0,
        };
        assert_eq!(
            step(3, "new", &pods(&[("new", true)]), b),
            Step {
                create: 2,
                delete: vec![]
            }
        );
        let s = step(
            1,
            "new",
            &pods(&[("new", true), ("new", false), ("new", true)]),
            b,
        );
        assert_eq!(s.create, 0);
        assert_eq!(
            s.delete,
            vec!["new-1".to_owned(), "new-2".to_owned()],
            "unready first, then the youngest"
        );
    }

    /// Simulates a rollout where every created Pod becomes Ready before the next step, checking the bounds at
    /// every step.
    fn simulate(replicas: i32, b: Bounds) -> usize {
        let mut live = pods(&vec![("old", true); usize::try_from(replicas).unwrap()]);
        let mut next = 100;
        for steps in 1..100 {
            let s = step(replicas, "new", &live, b);
            if s == Step::default() {
                assert!(live.iter().all(|p| p.revision == "new" && p.ready));
                assert_eq!(live.len(), usize::try_from(replicas).unwrap());
                return steps;
            }
            live.retain(|p| !s.delete.contains(&p.name));
            let ready = live.iter().filter(|p| p.ready).count();
            let min = usize::try_from((replicas - b.max_unavailable).max(0)).unwrap();
            assert!(ready >= min, "too few Ready pods: {ready} < {min}");
            for _ in 0..s.create {
                live.push(PodView {
                    name: format!("new-{next}"),
                    revision: "new".into(),
                    ready: false,
                    scheduled: true,
                    created: next,
                });
                next += 1;
            }
            assert!(
                live.len() <= usize::try_from(replicas + b.max_surge).unwrap(),
                "surge exceeded"
            );
            live.iter_mut().for_each(|p| p.ready = true);
        }
        panic!("the rollout did not finish");
    }

    #[test]
    fn rollouts_finish_within_their_bounds() {
        for replicas in [1, 2, 3, 5, 10] {
            for (surge, unavailable) in [(1, 0), (0, 1), (2, 2), (3, 0), (0, 3)] {
                let b = Bounds {
                    max_surge: surge,
                    max_unavailable: unavailable,
                };
                if unavailable >= replicas && surge == 0 {
                    continue;
                }
                simulate(replicas, b);
            }
        }
    }

    #[test]
    fn surge_one_unavailable_zero_replaces_one_at_a_time() {
        let b = Bounds {
            max_surge: 1,
            max_unavailable: 0,
        };
        let start = pods(&[("old", true), ("old", true), ("old", true)]);
        assert_eq!(
            step(3, "new", &start, b),
            Step {
                create: 1,
                delete: vec![]
            }
        );
        // The new Pod is not Ready yet: nothing old may go, nothing more may come.
        let mut waiting = start.clone();
        waiting.push(PodView {
            name: "n".into(),
            revision: "new".into(),
            ready: false,
            scheduled: true,
            created: 9,
        });
        assert_eq!(step(3, "new", &waiting, b), Step::default());
        waiting[3].ready = true;
        assert_eq!(
            step(3, "new", &waiting, b),
            Step {
                create: 0,
                delete: vec!["old-0".into()]
            }
        );
    }

    #[test]
    fn old_pods_that_are_not_ready_go_first() {
        let b = Bounds {
            max_surge: 0,
            max_unavailable: 1,
        };
        let s = step(
            3,
            "new",
            &pods(&[("old", true), ("old", false), ("old", true)]),
            b,
        );
        assert_eq!(s.delete, vec!["old-1".to_owned()]);
    }
}
