//! Whether a node's agent is alive, judged as kube-controller-manager's node lifecycle judges it: by when
//! *this controller* saw the node's Lease renewed, never by the timestamp the agent wrote.
//!
//! - The age of a Lease is the time since the controller last observed its `renewTime` change (or first saw
//!   it). So a clock that runs ahead or behind on the agent's host does not matter, and after a controller
//!   restart every node starts with a fresh grace.
//! - When no Lease at all was seen renewed for longer than [`BLIND_AFTER`] (agents renew every 10 s), the
//!   controller was blind (an API server that hung, a watch that stalled without an error), not every node
//!   dead: when renewals are seen again, every node's grace starts afresh from that moment, so a node whose
//!   agent renews a few seconds after the others is not judged by the time nobody could see.
//! - When more than [`UNHEALTHY_THRESHOLD`] of the nodes look lost at once, the fault is more likely the
//!   controller's view (an API server outage, a network cut on the controller's side) than the nodes: nothing
//!   is evicted ("full disruption", as the node lifecycle controller does for a zone), and pods keep running
//!   where they are. A single node cluster therefore never evicts.
//!
//! Pure: the caller passes the controller's clock.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;

/// The share of nodes that may look lost at once for evictions to go on (kube-controller-manager's
/// `--unhealthy-zone-threshold` default, 0.55).
pub const UNHEALTHY_THRESHOLD: f64 = 0.55;

/// How long no Lease may be seen renewed before the controller counts itself blind: twice the agents'
/// renewal interval (10 s), half the default node grace.
pub const BLIND_AFTER: Duration = Duration::from_secs(20);

/// The last renewal of each node's Lease as this controller observed it.
#[derive(Debug, Default)]
pub struct Observations {
    seen: HashMap<String, Seen>,
    /// When any Lease was last seen renewed.
    last_renewal: Option<Timestamp>,
    /// When the controller last saw renewals again after being blind: no grace runs from before it.
    fresh_from: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct Seen {
    /// The `renewTime` the Lease had (as written; compared, never trusted as a clock).
    renew: Option<String>,
    /// When the controller saw that value first.
    at: Timestamp,
}

impl Observations {
    /// Records what the Lease of `node` says now (`renew`: its `renewTime`, `None` without a Lease). When
    /// several nodes are judged at once, record them all first and then ask each one's [`age`](Self::age): a
    /// renewal seen on any node may end a blind time for all.
    pub fn record(&mut self, node: &str, renew: Option<&str>, now: Timestamp) {
        let seen = self.seen.entry(node.to_owned()).or_insert_with(|| Seen {
            renew: renew.map(str::to_owned),
            at: now,
        });
        if seen.renew.as_deref() != renew {
            *seen = Seen {
                renew: renew.map(str::to_owned),
                at: now,
            };
            if self
                .last_renewal
                .is_some_and(|last| now.duration_since(last).unsigned_abs() > BLIND_AFTER)
            {
                self.fresh_from = Some(now);
            }
            self.last_renewal = Some(now);
        } else if self.last_renewal.is_none() {
            // The first look at the Leases: what they say counts as seen now (a new node alone never
            // ends a blind time: only a renewal does).
            self.last_renewal = Some(now);
        }
    }

    /// How long ago, by the controller's clock, `node`'s Lease was last seen renewed (counted from the end
    /// of a blind time at most); zero for a node never recorded.
    pub fn age(&self, node: &str, now: Timestamp) -> Duration {
        let Some(seen) = self.seen.get(node) else {
            return Duration::ZERO;
        };
        let since = self.fresh_from.map_or(seen.at, |fresh| fresh.max(seen.at));
        now.duration_since(since).unsigned_abs()
    }

    /// Forgets every observation: after a gap in what the controller could see (its Lease watch restarted),
    /// every node gets a fresh grace.
    pub fn reset(&mut self) {
        self.seen.clear();
        self.last_renewal = None;
        self.fresh_from = None;
    }

    /// Forgets nodes that are gone.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.seen.retain(|n, _| keep(n));
    }
}

/// Whether pods may be evicted from lost nodes when `lost` of `total` nodes look lost.
pub fn evictions_allowed(lost: usize, total: usize) -> bool {
    total > 0 && lost < total && (lost as f64) <= UNHEALTHY_THRESHOLD * total as f64
}

/// Which nodes look lost now, and whether their pods may be replaced: what the node lifecycle tells the
/// scheduler (no new pods on a lost node) and acts on itself (evictions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Nodes whose Lease this controller has not seen renewed within the grace.
    pub lost: BTreeSet<String>,
    /// Whether pods may be evicted from them ([`evictions_allowed`]).
    pub evict: bool,
}

impl Health {
    /// Judges `nodes` (the Node objects there are) from `observations`, recording what each one's Lease says
    /// now (`renewed`) first: a renewal seen on any node may end a time the controller was blind. (Pods bound
    /// to a node whose object is gone are kube-controller-manager's pod garbage collector's.)
    pub fn judge(
        observations: &mut Observations,
        nodes: &BTreeSet<String>,
        renewed: impl Fn(&str) -> Option<String>,
        grace: Duration,
        now: Timestamp,
    ) -> Self {
        observations.retain(|n| nodes.contains(n));
        for n in nodes {
            observations.record(n, renewed(n).as_deref(), now);
        }
        let lost: BTreeSet<String> = nodes
            .iter()
            .filter(|n| observations.age(n, now) > grace)
            .cloned()
            .collect();
        let evict = evictions_allowed(lost.len(), nodes.len());
        Self { lost, evict }
    }

    /// A node that may take new pods.
    pub fn alive(&self, node: &str) -> bool {
        !self.lost.contains(node)
    }

    /// A node whose pods are to be replaced: lost, and not one of most nodes looking lost at once.
    pub fn evicting(&self, node: &str) -> bool {
        self.evict && self.lost.contains(node)
    }
}

/// How often eviction may begin on one more lost node: kube-controller-manager's `--node-eviction-rate`
/// default (0.1 nodes a second), so that a fault spreading node by node does not empty the cluster at once.
pub const EVICTION_INTERVAL: Duration = Duration::from_secs(10);

/// Which lost nodes eviction has begun on, paced by [`EVICTION_INTERVAL`].
#[derive(Debug, Default)]
pub struct EvictionPacing {
    begun: BTreeSet<String>,
    last: Option<Timestamp>,
}

impl EvictionPacing {
    /// The nodes whose pods may be replaced now: those eviction began on and `health` still evicts from,
    /// and one more when the last began [`EVICTION_INTERVAL`] ago. A node seen again is forgotten.
    pub fn admit(&mut self, health: &Health, now: Timestamp) -> BTreeSet<String> {
        self.begun.retain(|n| health.evicting(n));
        for node in health.lost.iter().filter(|n| health.evicting(n)) {
            let due = self
                .last
                .is_none_or(|last| now.duration_since(last).unsigned_abs() >= EVICTION_INTERVAL);
            if !self.begun.contains(node) && due {
                self.begun.insert(node.clone());
                self.last = Some(now);
            }
        }
        self.begun.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Observations {
        /// Records one node and says its age.
        fn observe(&mut self, node: &str, renew: Option<&str>, now: Timestamp) -> Duration {
            self.record(node, renew, now);
            self.age(node, now)
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn age_counts_from_the_controllers_observation_not_the_agents_clock() {
        let mut o = Observations::default();
        // The agent's clock is an hour ahead: its renewTime is in the "future"; only changes count.
        assert_eq!(
            o.observe("n1", Some("2027-01-01T01:00:00Z"), at(0)),
            Duration::ZERO
        );
        assert_eq!(
            o.observe("n1", Some("2027-01-01T01:00:00Z"), at(30)),
            Duration::from_secs(30)
        );
        assert_eq!(
            o.observe("n1", Some("2027-01-01T01:00:10Z"), at(35)),
            Duration::ZERO
        );
        assert_eq!(
            o.observe("n1", Some("2027-01-01T01:00:10Z"), at(80)),
            Duration::from_secs(45)
        );
    }

    #[test]
    fn a_node_first_seen_or_seen_after_a_reset_gets_a_fresh_grace() {
        let mut o = Observations::default();
        // A renewTime from long ago (written before an outage or a controller restart) starts fresh.
        assert_eq!(
            o.observe("n1", Some("2020-01-01T00:00:00Z"), at(0)),
            Duration::ZERO
        );
        assert_eq!(
            o.observe("n1", Some("2020-01-01T00:00:00Z"), at(50)),
            Duration::from_secs(50)
        );
        o.reset();
        assert_eq!(
            o.observe("n1", Some("2020-01-01T00:00:00Z"), at(60)),
            Duration::ZERO
        );
        // No Lease at all: the grace runs from the first look too.
        assert_eq!(o.observe("n2", None, at(60)), Duration::ZERO);
        assert_eq!(o.observe("n2", None, at(100)), Duration::from_secs(40));
    }

    #[test]
    fn after_a_time_nobody_saw_any_renewal_every_node_starts_afresh() {
        let mut o = Observations::default();
        for n in ["n1", "n2", "n3"] {
            o.observe(n, Some("t0"), at(0));
        }
        // Renewals seen every 10 s: a silent node ages.
        o.observe("n1", Some("t10"), at(10));
        o.observe("n2", Some("t10"), at(10));
        assert_eq!(o.observe("n3", Some("t0"), at(10)), Duration::from_secs(10));
        // The API server hangs for 60 s: nothing is seen renewed.
        for n in ["n1", "n2"] {
            assert_eq!(o.observe(n, Some("t10"), at(70)), Duration::from_secs(60));
        }
        // It answers: n1 and n2 renew at once, n3 a few seconds later. n3 is not judged by the blind minute.
        assert_eq!(o.observe("n1", Some("t71"), at(71)), Duration::ZERO);
        assert_eq!(o.observe("n2", Some("t71"), at(71)), Duration::ZERO);
        assert_eq!(o.observe("n3", Some("t0"), at(71)), Duration::ZERO);
        assert_eq!(o.observe("n3", Some("t0"), at(100)), Duration::from_secs(29));
        assert_eq!(o.observe("n3", Some("t0"), at(115)), Duration::from_secs(44));
        // While the others keep renewing, a node that really stopped still ages past the grace.
        o.observe("n1", Some("t81"), at(81));
        o.observe("n1", Some("t91"), at(91));
        o.observe("n1", Some("t101"), at(101));
        o.observe("n1", Some("t111"), at(111));
        assert_eq!(o.observe("n3", Some("t0"), at(120)), Duration::from_secs(49));
    }

    #[test]
    fn a_renewal_seen_on_any_node_ends_the_blind_time_for_all_whatever_the_order() {
        let mut o = Observations::default();
        for n in ["n1", "n2"] {
            o.record(n, Some("t0"), at(0));
        }
        // After a minute nobody saw: n2 (silent still) is recorded before n1 (renewed).
        o.record("n2", Some("t0"), at(60));
        o.record("n1", Some("t60"), at(60));
        assert_eq!(o.age("n2", at(60)), Duration::ZERO);
        assert_eq!(o.age("n1", at(60)), Duration::ZERO);
        assert_eq!(o.age("n2", at(70)), Duration::from_secs(10));
    }

    #[test]
    fn gone_nodes_are_forgotten() {
        let mut o = Observations::default();
        o.observe("n1", Some("a"), at(0));
        o.observe("n2", Some("a"), at(0));
        o.retain(|n| n == "n2");
        assert_eq!(o.observe("n1", Some("a"), at(50)), Duration::ZERO);
        assert_eq!(o.observe("n2", Some("a"), at(50)), Duration::from_secs(50));
    }

    #[test]
    fn health_judges_every_node_and_holds_evictions_when_most_look_lost() {
        let mut o = Observations::default();
        let nodes: BTreeSet<String> = ["n1", "n2", "n3", "n4"].map(String::from).into();
        let grace = Duration::from_secs(40);
        // Every node renews every 10 s but n4 (no Lease) and those in `silent` (from `since` on).
        let mut judge = |t: i64, silent: &[&str], since: i64| {
            let renewed = |n: &str| {
                let stopped = silent.contains(&n) && t >= since;
                (n != "n4").then(|| format!("t{}", if stopped { since } else { t }))
            };
            Health::judge(&mut o, &nodes, renewed, grace, at(t))
        };
        for t in (0..=40).step_by(10) {
            assert_eq!(
                judge(t, &[], 0),
                Health {
                    lost: BTreeSet::new(),
                    evict: true
                },
                "at {t}"
            );
        }
        let lost = judge(45, &[], 0);
        assert_eq!(lost.lost, ["n4".to_owned()].into());
        assert!(lost.evict, "1 of 4 lost");
        assert!(lost.evicting("n4") && !lost.alive("n4") && lost.alive("n1") && !lost.evicting("n1"));
        // n2 and n3 stop renewing at 50: at 95, 3 of 4 look lost, so nothing is evicted, and none of the three
        // takes new pods.
        for t in (50..=90).step_by(10) {
            judge(t, &["n2", "n3"], 50);
        }
        let most = judge(95, &["n2", "n3"], 50);
        assert_eq!(most.lost.len(), 3);
        assert!(!most.evict && !most.evicting("n4") && !most.alive("n3"));
    }

    #[test]
    fn eviction_begins_on_one_more_lost_node_every_ten_seconds() {
        let mut pacing = EvictionPacing::default();
        let health = |lost: &[&str], evict: bool| Health {
            lost: lost.iter().map(|n| (*n).to_owned()).collect(),
            evict,
        };
        let names = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>();
        assert_eq!(names(pacing.admit(&health(&["a", "b"], true), at(0))), ["a"]);
        assert_eq!(names(pacing.admit(&health(&["a", "b"], true), at(9))), ["a"]);
        assert_eq!(
            names(pacing.admit(&health(&["a", "b", "c"], true), at(10))),
            ["a", "b"]
        );
        // `a` is seen again; `c` waits its turn.
        assert_eq!(names(pacing.admit(&health(&["b", "c"], true), at(15))), ["b"]);
        assert_eq!(
            names(pacing.admit(&health(&["b", "c"], true), at(20))),
            ["b", "c"]
        );
        // Full disruption holds every eviction, begun or not.
        assert!(pacing.admit(&health(&["b", "c"], false), at(30)).is_empty());
    }

    #[test]
    fn no_eviction_when_most_or_all_nodes_look_lost() {
        assert!(evictions_allowed(0, 3));
        assert!(evictions_allowed(1, 3));
        assert!(
            !evictions_allowed(2, 3),
            "2 of 3 lost is more than 55%: likely the controller's view"
        );
        assert!(!evictions_allowed(3, 3), "all lost: full disruption");
        assert!(!evictions_allowed(1, 1), "a single node cluster never evicts");
        assert!(evictions_allowed(5, 10));
        assert!(!evictions_allowed(6, 10));
        assert!(!evictions_allowed(0, 0));
    }
}
