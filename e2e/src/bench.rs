//! What every bench of `e2e/benches/` does around its run: honour `cargo bench`'s filter, find the local
//! cluster, read the bench's settings, and run it on a small runtime.

use std::future::Future;

use crate::cluster::LocalCluster;

/// Runs bench `name`: skipped when `cargo bench` was given a filter that does not name it, or when
/// `BERTH_E2E=skip`; fails when the cluster is not there. `settings` reads the bench's environment.
pub fn main<S, F, Fut>(name: &str, settings: impl FnOnce() -> anyhow::Result<S>, run: F) -> anyhow::Result<()>
where
    F: FnOnce(LocalCluster, S) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // `cargo bench` passes `--bench`; a filter argument that does not name this bench skips it.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !name.contains(&f)) {
        return Ok(());
    }
    let Some(cluster) = LocalCluster::require() else {
        return Ok(());
    };
    let settings = settings()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(cluster, settings))
}
