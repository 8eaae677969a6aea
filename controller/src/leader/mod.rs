//! Leader election over a `coordination.k8s.io/v1` Lease: only the leader imports, schedules and rolls out,
//! so two replicas never import twice. A replica that loses the Lease exits and starts again as a standby.
//!
//! The Lease has a client of its own ([`lease_client`]), which records each renewal in the replica's
//! [`Fence`](fence::Fence) ([`renewals`]); the controllers' client ([`api_client`]) refuses writes while the
//! fence is closed ([`fence`]): before the replica leads, after it lost the Lease, and whenever its last renewal
//! is older than [`RENEW_DEADLINE`] (a leader that was paused past its Lease, and does not know yet that a standby
//! took over).

pub mod fence;
pub mod renewals;

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::client::ClientBuilder;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerBuilder};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, Phase};
use fence::{Fence, FenceLayer};
use renewals::RenewalLayer;

/// Seconds a leader's Lease lasts without renewal; a standby takes over within about this long.
pub const LEASE_SECONDS: u64 = 15;

/// Seconds before its Lease expires that the leader renews it (kube-lease-manager's `grace`): the leader renews
/// every `LEASE_SECONDS - RENEW_GRACE_SECONDS` = 5 s, so two renewals fall within [`RENEW_DEADLINE`] and one
/// that fails does not fence a healthy leader.
pub const RENEW_GRACE_SECONDS: u64 = 10;

/// How long after the last renewal it sent (that found it holding the Lease) the leader may write: the
/// counterpart of kube-controller-manager's `--leader-elect-renew-deadline` (10 s) beside its
/// `--leader-elect-lease-duration` (15 s). Shorter than the Lease by 5 s, so a leader stopped past its Lease has
/// stopped writing before a standby may take over (with up to 5 s of clock skew between replicas, or of a write
/// held up on the way); longer than the renewal period (5 s), so one late or failed renewal does not fence.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

const _: () = assert!(
    LEASE_SECONDS - RENEW_GRACE_SECONDS < RENEW_DEADLINE.as_secs()
        && RENEW_DEADLINE.as_secs() < LEASE_SECONDS
);

/// How long a stopping leader waits for the API server to take its release of the Lease.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The controllers' client, on `kube_config`: it writes only while `fence` is open, counting refusals in
/// `refused`.
pub fn api_client(kube_config: kube::Config, fence: &Fence, refused: Counter) -> Result<Client> {
    let layer = FenceLayer {
        fence: fence.clone(),
        deadline: RENEW_DEADLINE,
        refused,
    };
    let builder = ClientBuilder::try_from(kube_config).map_err(Error::kube("build the client"))?;
    Ok(builder.with_layer(&layer).build())
}

/// The client of the Lease named in `config`, for the election only (never fenced): it opens `fence` at each
/// renewal that finds `identity` holding the Lease.
pub fn lease_client(
    kube_config: kube::Config,
    config: &Config,
    identity: &str,
    fence: &Fence,
) -> Result<Client> {
    let layer = RenewalLayer {
        fence: fence.clone(),
        lease_path: renewals::lease_path(&config.lease_namespace, &config.lease_name).into(),
        identity: Arc::from(identity),
    };
    let builder = ClientBuilder::try_from(kube_config).map_err(Error::kube("build the Lease client"))?;
    Ok(builder.with_layer(&layer).build())
}

/// This replica's hold on the Lease: whether it still leads, and the task that renews it.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    fence: Fence,
}

/// Waits until `identity` holds the Lease, in [`Phase::StandingBy`] meanwhile. `client` is the
/// [`lease_client`] that opens `fence`.
pub async fn acquire(
    client: Client,
    fence: &Fence,
    config: &Config,
    identity: &str,
    metrics: &Metrics,
) -> Result<Leadership> {
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(RENEW_GRACE_SECONDS)
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
    Ok(Leadership {
        leading,
        task,
        fence: fence.clone(),
    })
}

impl Leadership {
    /// Resolves when the Lease is lost, the fence closed for good.
    pub async fn lost(&mut self) -> Error {
        loop {
            if self.leading.changed().await.is_err() || !*self.leading.borrow_and_update() {
                self.fence.revoke();
                return Error::LostLeadership;
            }
        }
    }

    /// Gives the Lease up (the renewing task releases it once nobody watches its state), so that a standby
    /// takes over at once rather than after [`LEASE_SECONDS`]; waits at most [`RELEASE_TIMEOUT`], after
    /// which the Lease simply expires. The fence closes first: nothing written after.
    pub async fn release(self) {
        self.fence.revoke();
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
