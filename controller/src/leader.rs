//! Leader election over a `coordination.k8s.io/v1` Lease: only the leader imports, schedules and rolls out,
//! so two replicas never import twice. A replica that loses the Lease exits and starts again as a standby.

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};
use tokio::sync::watch;
use tracing::info;

use crate::config::Config;
use crate::error::{Error, Result};

/// Seconds a leader's Lease lasts without renewal; a standby takes over within about this long.
pub const LEASE_SECONDS: u64 = 15;

/// Waits until this replica holds the Lease; the receiver then says whether it still does.
pub async fn acquire(client: Client, config: &Config) -> Result<watch::Receiver<bool>> {
    let identity = config.identity();
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(&identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(5)
        .with_create_mode(LeaseCreateMode::AutoCreate)
        .with_field_manager(crate::context::FIELD_MANAGER)
        .build()
        .await?;
    let (mut leading, _task) = manager.watch().await;
    info!(identity, lease = %config.lease_name, namespace = %config.lease_namespace, "waiting to lead");
    while !*leading.borrow_and_update() {
        leading.changed().await.map_err(|_| Error::LostLeadership)?;
    }
    info!(identity, "leading");
    Ok(leading)
}

/// Resolves when the Lease is lost.
pub async fn lost(mut leading: watch::Receiver<bool>) -> Error {
    loop {
        if leading.changed().await.is_err() || !*leading.borrow_and_update() {
            return Error::LostLeadership;
        }
    }
}
