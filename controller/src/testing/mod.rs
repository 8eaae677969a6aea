//! Test scaffolding shared by the crate's tests: the mocked API server that checks each request
//! (`api_server`), the objects tests start from (`fixtures`), a fake registry (`fake_registry`), and the
//! reconcile context over them.

pub mod api_server;
#[path = "../../tests/support/fake_registry.rs"]
pub mod fake_registry;
pub mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use berth_api::image::{ImageStream, ImageStreamTag};
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::context::{Context, FIELD_MANAGER};
use crate::import::schedule::Pacing;
use crate::metrics::Metrics;
use crate::registry::{Resolver, ResolverConfig};

/// How the scenarios pace imports: a 60 s interval, a first retry after 10 s (transient failures) or 30 s
/// (lasting ones).
pub const PACING: Pacing = Pacing {
    interval: Duration::from_secs(60),
    retry: Duration::from_secs(10),
    retry_lasting: Duration::from_secs(30),
};

/// The reconcile context over `client` (a mocked API server) and caches holding `tags` and `streams`, with a
/// resolver that reaches only what the test serves (a [`fake_registry`]) within 2 s.
pub fn context(client: Client, tags: Vec<ImageStreamTag>, streams: Vec<ImageStream>) -> Arc<Context> {
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: None,
    };
    let resolver = Resolver::new(ResolverConfig {
        timeout: Duration::from_secs(2),
        ..ResolverConfig::default()
    })
    .expect("a resolver");
    Arc::new(Context::new(
        client.clone(),
        fixtures::store(tags),
        fixtures::store(streams),
        Vec::new(),
        resolver,
        Recorder::new(client, reporter),
        PACING,
        Metrics::default(),
    ))
}
