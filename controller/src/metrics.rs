//! Prometheus metrics and the health endpoints (`/metrics`, `/healthz`, `/readyz`).

pub mod reconciles;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

use crate::registry::{Observation, ResolveObserver};
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
    /// Registry notifications by result (`accepted`, `unauthorized`, `malformed`).
    pub notifications: Family<ResultLabels, Counter>,
    /// Status writes by kind (`ImageStreamTag`, `ImageStream`, `Workload`).
    pub status_writes: Family<ResultLabels, Counter>,
    /// Every reconcile: its duration, its errors by class, its back-off, the drain at shutdown.
    pub reconciles: Reconciles,
    ready: Arc<AtomicBool>,
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
        let notifications = Family::<ResultLabels, Counter>::default();
        registry.register(
            "registry_notifications",
            "Registry push notifications by result",
            notifications.clone(),
        );
        let status_writes = Family::<ResultLabels, Counter>::default();
        registry.register("status_writes", "Status writes by kind", status_writes.clone());
        let reconciles = Reconciles::register(&mut registry);
        Self {
            registry: Arc::new(registry),
            imports,
            registry_latency,
            imports_in_flight,
            push_queue_depth,
            notifications,
            status_writes,
            reconciles,
            ready: Arc::default(),
        }
    }
}

impl Metrics {
    /// Marks the controller ready (leader, caches synced) or not; `/readyz` answers accordingly, so a
    /// Service sends registry notifications only to the leader.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
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
                get(|State(m): State<Metrics>| async move {
                    if m.ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ok").into_response()
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not the leader, or caches not synced",
                        )
                            .into_response()
                    }
                }),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
