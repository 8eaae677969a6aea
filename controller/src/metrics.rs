//! Prometheus metrics and the health endpoints (`/metrics`, `/healthz`, `/readyz`).

pub mod reconciles;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::registry::{Load, LoadObserver, Observation, Priority, ResolveObserver};
use reconciles::Reconciles;

/// Labels of an import.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImportLabels {
    /// Why it ran: `scheduled`, `registry push`, `spec changed`, ...
    pub trigger: String,
    /// The `ImportSuccess` reason it ended with.
    pub result: String,
}

/// Labels of a registry request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// The registry host.
    pub registry: String,
    /// `Resolved` or the failure reason.
    pub outcome: String,
}

/// Labels of a registry host.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    /// The registry as named in references (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub registry: String,
}

/// Labels of a registry's queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The registry.
    pub registry: String,
    /// `prompt` (first import, spec change, push, requested), `scheduled` or `retry`.
    pub priority: String,
}

/// Labels of something counted by result alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// What happened.
    pub result: String,
}

/// Every metric of the controller. Cheap to clone: the metrics inside are shared.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Imports by trigger and result.
    pub imports: Family<ImportLabels, Counter>,
    /// Seconds registries took to answer a resolve, by registry and outcome.
    pub registry_latency: Family<RegistryLabels, Histogram>,
    /// Imports running now.
    pub imports_in_flight: Gauge,
    /// Tags a registry push asked for that wait for their import: the push queue's depth.
    pub push_queue_depth: Gauge,
    /// Requests in flight to each registry.
    pub registry_in_flight: Family<HostLabels, Gauge>,
    /// Each registry's concurrency window: how many requests may be in flight.
    pub registry_window: Family<HostLabels, Gauge>,
    /// Requests waiting for a slot of each registry, by priority.
    pub registry_queue_depth: Family<QueueLabels, Gauge>,
    /// Registry notifications by result (`accepted`, `unauthorized`, `malformed`).
    pub notifications: Family<ResultLabels, Counter>,
    /// Status writes by kind (`ImageStreamTag`, `ImageStream`, `Workload`).
    pub status_writes: Family<ResultLabels, Counter>,
    /// Every reconcile: its duration, its errors by class, its back-off, the drain at shutdown.
    pub reconciles: Reconciles,
    /// 1 while this replica holds the leader Lease, else 0 (as client-go's `leader_election_master_status`).
    pub leader: Gauge,
    /// Writes to the API server refused without being sent, because this replica had not renewed its leader
    /// Lease within the renew deadline (`leader::fence`).
    pub fenced_writes: Counter,
    phase: Arc<AtomicU8>,
}

/// Where a replica is on its way to serving: what `/readyz` says, and what `berth_leader` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Connecting, checking the CRDs, joining the election.
    Starting,
    /// In the election; another replica holds the Lease.
    StandingBy,
    /// Leading; the caches are not synced yet.
    Syncing,
    /// Leading with synced caches: reconciling and taking registry notifications.
    Ready,
    /// Stopping: no new reconcile starts.
    Stopping,
}

impl Phase {
    const ALL: [Self; 5] = [
        Self::Starting,
        Self::StandingBy,
        Self::Syncing,
        Self::Ready,
        Self::Stopping,
    ];

    /// What `/readyz` answers in this phase.
    pub fn readyz(self) -> (StatusCode, &'static str) {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        match self {
            Self::Starting => (unavailable, "starting"),
            Self::StandingBy => (unavailable, "standing by: another replica holds the leader Lease"),
            Self::Syncing => (unavailable, "leading; caches not synced yet"),
            Self::Ready => (StatusCode::OK, "ok"),
            Self::Stopping => (unavailable, "stopping"),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let imports = Family::<ImportLabels, Counter>::default();
        registry.register("imports", "Image imports by trigger and result", imports.clone());
        let registry_latency = Family::<RegistryLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "registry_request_duration_seconds",
            "Time registries took to resolve a reference",
            registry_latency.clone(),
        );
        let imports_in_flight = Gauge::default();
        registry.register(
            "imports_in_flight",
            "Imports running now",
            imports_in_flight.clone(),
        );
        let push_queue_depth = Gauge::default();
        registry.register(
            "push_queue_depth",
            "Tags waiting for an import a registry push asked for",
            push_queue_depth.clone(),
        );
        let registry_in_flight = Family::<HostLabels, Gauge>::default();
        registry.register(
            "registry_requests_in_flight",
            "Requests in flight to each registry",
            registry_in_flight.clone(),
        );
        let registry_window = Family::<HostLabels, Gauge>::default();
        registry.register(
            "registry_concurrency_window",
            "How many requests each registry may have in flight now (adaptive, between 1 and its maxConcurrency)",
            registry_window.clone(),
        );
        let registry_queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "registry_queue_depth",
            "Requests waiting for a slot of each registry, by priority",
            registry_queue_depth.clone(),
        );
        let notifications = Family::<ResultLabels, Counter>::default();
        registry.register(
            "registry_notifications",
            "Registry push notifications by result",
            notifications.clone(),
        );
        let status_writes = Family::<ResultLabels, Counter>::default();
        registry.register("status_writes", "Status writes by kind", status_writes.clone());
        let reconciles = Reconciles::register(&mut registry);
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let fenced_writes = Counter::default();
        registry.register(
            "fenced_writes",
            "Writes refused unsent because this replica had not renewed its leader Lease within the renew deadline",
            fenced_writes.clone(),
        );
        Self {
            registry: Arc::new(registry),
            imports,
            registry_latency,
            imports_in_flight,
            push_queue_depth,
            registry_in_flight,
            registry_window,
            registry_queue_depth,
            notifications,
            status_writes,
            reconciles,
            leader,
            fenced_writes,
            phase: Arc::new(AtomicU8::new(Phase::Starting as u8)),
        }
    }
}

impl Metrics {
    /// Moves the replica to `phase`: `/readyz` answers ready only in [`Phase::Ready`], so a Service sends
    /// registry notifications only to the leader, and says why not otherwise.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.leader
            .set(i64::from(matches!(phase, Phase::Syncing | Phase::Ready)));
    }

    /// The replica's phase.
    pub fn phase(&self) -> Phase {
        let n = self.phase.load(Ordering::Relaxed);
        Phase::ALL
            .into_iter()
            .find(|p| *p as u8 == n)
            .unwrap_or(Phase::Starting)
    }

    /// Counts one status write of `kind`.
    pub fn status_written(&self, kind: &str) {
        self.status_writes
            .get_or_create(&ResultLabels {
                result: kind.to_owned(),
            })
            .inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    /// The router of `/metrics`, `/healthz` and `/readyz`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/metrics",
                get(|State(m): State<Metrics>| async move { m.encode() }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(|State(m): State<Metrics>| async move { m.phase().readyz().into_response() }),
            )
            .with_state(self.clone())
    }
}

impl ResolveObserver for Metrics {
    fn observe(&self, o: &Observation<'_>) {
        let labels = RegistryLabels {
            registry: o.registry.to_owned(),
            outcome: o.outcome.to_owned(),
        };
        self.registry_latency
            .get_or_create(&labels)
            .observe(o.latency.as_secs_f64());
    }
}

impl LoadObserver for Metrics {
    fn load(&self, registry: &str, load: &Load) {
        let host = HostLabels {
            registry: registry.to_owned(),
        };
        self.registry_in_flight
            .get_or_create(&host)
            .set(i64::from(load.in_flight));
        self.registry_window
            .get_or_create(&host)
            .set(i64::from(load.window));
        for (priority, queued) in Priority::ALL.into_iter().zip(load.queued) {
            let labels = QueueLabels {
                registry: registry.to_owned(),
                priority: priority.as_str().to_owned(),
            };
            self.registry_queue_depth
                .get_or_create(&labels)
                .set(i64::try_from(queued).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_load_is_exposed_by_registry_and_priority() {
        let m = Metrics::default();
        m.load(
            "quay.io",
            &Load {
                in_flight: 3,
                window: 8,
                queued: [1, 0, 42],
            },
        );
        let text = m.encode();
        for line in [
            r#"berth_registry_requests_in_flight{registry="quay.io"} 3"#,
            r#"berth_registry_concurrency_window{registry="quay.io"} 8"#,
            r#"berth_registry_queue_depth{registry="quay.io",priority="retry"} 42"#,
            r#"berth_registry_queue_depth{registry="quay.io",priority="prompt"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn metrics_are_exposed_with_the_berth_prefix() {
        let m = Metrics::default();
        m.imports
            .get_or_create(&ImportLabels {
                trigger: "scheduled".into(),
                result: "Imported".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains(r#"berth_imports_total{trigger="scheduled",result="Imported"} 1"#),
            "{text}"
        );
        assert!(text.contains("berth_push_queue_depth"), "{text}");
        m.fenced_writes.inc();
        assert!(m.encode().contains("berth_fenced_writes_total 1\n"), "{text}");
    }

    #[test]
    fn readyz_and_the_leader_gauge_follow_the_phase() {
        let m = Metrics::default();
        assert_eq!(m.phase().readyz(), (StatusCode::SERVICE_UNAVAILABLE, "starting"));
        for (phase, code, leader) in [
            (Phase::StandingBy, StatusCode::SERVICE_UNAVAILABLE, 0),
            (Phase::Syncing, StatusCode::SERVICE_UNAVAILABLE, 1),
            (Phase::Ready, StatusCode::OK, 1),
            (Phase::Stopping, StatusCode::SERVICE_UNAVAILABLE, 0),
        ] {
            m.set_phase(phase);
            assert_eq!((m.phase(), m.phase().readyz().0), (phase, code));
            assert!(
                m.encode().contains(&format!("berth_leader {leader}\n")),
                "{phase:?}"
            );
        }
    }
}
