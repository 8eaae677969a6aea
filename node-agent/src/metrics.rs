//! Prometheus metrics of the agent.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label of pull metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PullLabels {
    result: &'static str,
}

/// Labels of probe metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe: &'static str,
    result: &'static str,
}

/// The agent's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pulls: Family<PullLabels, Counter>,
    pull_seconds: Histogram,
    containers_started: Counter,
    pods: Gauge,
    lease_renewals: Family<PullLabels, Counter>,
    probes: Family<ProbeLabels, Counter>,
    images_removed: Counter,
    image_bytes_freed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth_agent");
        let pulls = Family::<PullLabels, Counter>::default();
        let pull_seconds = Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]);
        let containers_started = Counter::default();
        let pods = Gauge::default();
        let lease_renewals = Family::<PullLabels, Counter>::default();
        registry.register("image_pulls", "Image pulls by result", pulls.clone());
        registry.register(
            "image_pull_seconds",
            "Duration of image pulls",
            pull_seconds.clone(),
        );
        registry.register(
            "containers_started",
            "Containers started",
            containers_started.clone(),
        );
        registry.register("pods", "Pods bound to this node", pods.clone());
        registry.register(
            "lease_renewals",
            "Lease renewals by result",
            lease_renewals.clone(),
        );
        let probes = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "probes",
            "Container probe attempts by probe (startup, liveness, readiness) and result",
            probes.clone(),
        );
        let images_removed = Counter::default();
        let image_bytes_freed = Counter::default();
        registry.register(
            "image_gc_removed_images",
            "Images removed by the image garbage collection",
            images_removed.clone(),
        );
        registry.register(
            "image_gc_freed_bytes",
            "Bytes freed by the image garbage collection (the sizes the runtime reported)",
            image_bytes_freed.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            pulls,
            pull_seconds,
            containers_started,
            pods,
            lease_renewals,
            probes,
            images_removed,
            image_bytes_freed,
        }
    }

    /// Records an image removed by the garbage collection, and its size.
    pub fn image_removed(&self, bytes: u64) {
        self.images_removed.inc();
        self.image_bytes_freed.inc_by(bytes);
    }

    /// Records a probe attempt (`probe` is `startup`, `liveness` or `readiness`; `result`
    /// `success`, `failure` or `skipped`).
    pub fn probed(&self, probe: &'static str, result: &'static str) {
        self.probes.get_or_create(&ProbeLabels { probe, result }).inc();
    }

    /// Records an image pull.
    pub fn observe_pull(&self, took: Duration, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.pulls.get_or_create(&PullLabels { result }).inc();
        self.pull_seconds.observe(took.as_secs_f64());
    }

    /// Records a container start.
    pub fn container_started(&self) {
        self.containers_started.inc();
    }

    /// Sets the number of pods bound to the node.
    pub fn set_pods(&self, n: usize) {
        self.pods.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Records a lease renewal.
    pub fn lease_renewed(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.lease_renewals.get_or_create(&PullLabels { result }).inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prometheus_text() {
        let m = Metrics::new();
        m.observe_pull(Duration::from_millis(20), true);
        m.container_started();
        m.probed("readiness", "failure");
        m.image_removed(2048);
        let text = m.encode();
        assert!(
            text.contains("berth_agent_probes_total{probe=\"readiness\",result=\"failure\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_agent_image_pulls_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("berth_agent_containers_started_total 1"), "{text}");
        assert!(
            text.contains("berth_agent_image_gc_removed_images_total 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_agent_image_gc_freed_bytes_total 2048"),
            "{text}"
        );
    }
}
