//! Leader election over a `coordination.k8s.io/v1` Lease: only the leader imports, schedules and rolls out,
//! so two replicas never import twice. A replica that loses the Lease exits and starts again as a standby.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, Phase};

/// Seconds a leader's Lease lasts without renewal; a standby takes over within about this long.
pub const LEASE_SECONDS: u64 = 15;

/// How long a stopping leader waits for the API server to take its release of the Lease.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// This replica's hold on the Lease: whether it still leads, and the task that renews it.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Waits until this replica holds the Lease, in [`Phase::StandingBy`] meanwhile.
pub async fn acquire(client: Client, config: &Config, metrics: &Metrics) -> Result<Leadership> {
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
    let (mut leading, task) = manager.watch().await;
    if !*leading.borrow() {
        info!(identity, lease = %config.lease_name, namespace = %config.lease_namespace, "waiting to lead");
        metrics.set_phase(Phase::StandingBy);
    }
    while !*leading.borrow_and_update() {
        leading.changed().await.map_err(|_| Error::LostLeadership)?;
    }
    info!(identity, "leading");
    metrics.set_phase(Phase::Syncing);
    Ok(Leadership { leading, task })
}

impl Leadership {
    /// Resolves when the Lease is lost.
    pub async fn lost(&mut self) -> Error {
        loop {
            if self.leading.changed().await.is_err() || !*self.leading.borrow_and_update() {
                return Error::LostLeadership;
            }
        }
    }

    /// Gives the Lease up (the renewing task releases it once nobody watches its state), so that a standby
    /// takes over at once rather than after [`LEASE_SECONDS`]; waits at most [`RELEASE_TIMEOUT`], after
    /// which the Lease simply expires.
    pub async fn release(self) {
        drop(self.leading);
        match tokio::time::timeout(RELEASE_TIMEOUT, self.task).await {
            Ok(Ok(Ok(_))) => info!("released the Lease"),
            Ok(Ok(Err(e))) => warn!(error = %e, "cannot release the Lease; it expires by itself"),
            Ok(Err(e)) => warn!(error = %e, "the Lease task failed; the Lease expires by itself"),
            Err(_) => {
                warn!(timeout = ?RELEASE_TIMEOUT, "releasing the Lease takes too long; it expires by itself")
            }
        }
    }
}
