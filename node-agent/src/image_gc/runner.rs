//! The image collector's loop: gathers the images, the containers and the pods bound to this
//! node, asks [`super::plan::decide`], removes, and reports (logs, Node Events, metrics).
//! Thin around the pure decisions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::{debug, error, info, warn};

use super::in_use::{Users, in_use};
use super::plan::{self, Decision, Disk, Keep};
use super::records::{ImageInfo, Records};
use super::{Policy, sandbox_image_from_info};
use crate::cri::CriClient;
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::metrics::Metrics;
use crate::pods::PodIndex;
use crate::sync::{Shared, now_nanos};

/// Reads the capacity and free space of the filesystem mounted at a path.
pub type StatFs = Arc<dyn Fn(&str) -> std::io::Result<Disk> + Send + Sync>;

/// [`StatFs`] of the host: `statvfs(2)`; available is what unprivileged users may use.
pub fn statvfs(path: &str) -> std::io::Result<Disk> {
    let s = rustix::fs::statvfs(path)?;
    Ok(Disk {
        capacity: s.f_blocks.saturating_mul(s.f_frsize),
        available: s.f_bavail.saturating_mul(s.f_frsize),
    })
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The image filesystem's usage before the round, percent (`None`: not measured).
    pub usage_percent: Option<u8>,
    /// The bytes the round had to free (0 below the high threshold).
    pub wanted: u64,
    /// The bytes it freed.
    pub freed: u64,
    /// The ids of the images it removed, in order.
    pub removed: Vec<String>,
}

/// The image garbage collector of one node.
pub struct Gc {
    cri: CriClient,
    pods: PodIndex,
    recorder: Recorder,
    node: ObjectReference,
    metrics: Metrics,
    policy: Policy,
    sandbox_image: Option<String>,
    statfs: StatFs,
    records: Records,
    failed_before: bool,
    warned_no_sandbox: bool,
}

impl Gc {
    /// A collector over the agent's runtime, recorder and metrics; `node` is the Node its
    /// Events are about, `sandbox_image` the configured pause image (else the runtime's).
    pub fn new(
        shared: &Shared,
        pods: PodIndex,
        node: ObjectReference,
        policy: Policy,
        sandbox_image: Option<String>,
        statfs: StatFs,
    ) -> Self {
        Gc {
            cri: shared.cri.clone(),
            pods,
            recorder: shared.recorder.clone(),
            node,
            metrics: shared.metrics.clone(),
            policy,
            sandbox_image,
            statfs,
            records: Records::default(),
            failed_before: false,
            warned_no_sandbox: false,
        }
    }

    /// Detects the images now (those present count as detected long ago), then runs a round
    /// every `period`, forever.
    pub async fn run(mut self, period: Duration) {
        if let Err(e) = self.detect().await {
            warn!(error = %e, "detecting images");
        }
        loop {
            tokio::time::sleep(period).await;
            self.tick().await;
        }
    }

    /// One round with its reporting: a shortfall is published as `FreeDiskSpaceFailed`; a
    /// failure (shortfall or error) following a failed round also as `ImageGCFailed`, as the
    /// kubelet's.
    pub async fn tick(&mut self) -> Option<Round> {
        let result = self.collect().await;
        let failure = match &result {
            Ok(r) if r.freed < r.wanted => {
                let message = format!(
                    "failed to garbage collect required amount of images. Wanted to free {} bytes, but freed {} bytes",
                    r.wanted, r.freed
                );
                self.publish("FreeDiskSpaceFailed", &message).await;
                Some(message)
            }
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        let failed = failure.is_some();
        match failure {
            Some(message) if self.failed_before => {
                error!(%message, "image garbage collection failed multiple times in a row");
                self.publish("ImageGCFailed", &message).await;
            }
            Some(message) => warn!(%message, "image garbage collection failed"),
            None if self.failed_before => info!("image garbage collection succeeded"),
            None => debug!("image garbage collection succeeded"),
        }
        self.failed_before = failed;
        result.ok()
    }

    /// One round: detect, measure, decide, remove.
    pub async fn collect(&mut self) -> Result<Round> {
        let Some((images, keep)) = self.detect().await? else {
            return Ok(Round::default());
        };
        let disk = self.measure().await?;
        let now = now_nanos();
        let decision = plan::decide(&self.policy, disk, &images, &keep, &self.records, now);
        let plan = match decision {
            Decision::Disabled => return Ok(Round::default()),
            Decision::InvalidCapacity => {
                let message = "invalid capacity 0 on image filesystem";
                self.publish("InvalidDiskCapacity", message).await;
                return Err(Error::ImageGc(message.into()));
            }
            Decision::Below { usage_percent } => {
                return Ok(Round {
                    usage_percent: Some(usage_percent),
                    ..Round::default()
                });
            }
            Decision::Free(plan) => plan,
        };
        info!(
            usage = plan.usage_percent,
            high = self.policy.high,
            low = self.policy.low,
            bytes = plan.to_free,
            "disk usage on the image filesystem is over the high threshold; freeing space down to the low threshold"
        );
        for (id, why) in &plan.kept {
            debug!(image = %id, reason = ?why, "image kept");
        }
        let mut round = Round {
            usage_percent: Some(plan.usage_percent),
            wanted: plan.to_free,
            ..Round::default()
        };
        for r in plan.removals.iter().chain(&plan.reserve) {
            if round.freed >= round.wanted {
                break;
            }
            match self.cri.remove_image(&r.id).await {
                Ok(()) => {
                    info!(
                        image = %r.id,
                        tags = ?r.tags,
                        bytes = r.size,
                        unused_for = ?(r.last_used > 0).then(|| plan::age(now, r.last_used)),
                        "removed an unused image"
                    );
                    self.metrics.image_removed(r.size);
                    self.records.forget(&r.id);
                    round.freed = round.freed.saturating_add(r.size);
                    round.removed.push(r.id.clone());
                }
                Err(e) => warn!(image = %r.id, error = %e, "removing an image failed; trying the next"),
            }
        }
        Ok(round)
    }

    /// Lists images, containers and pods and updates the records; `None` while the sandbox
    /// image is unknown (nothing may be removed then). Returns the images and those to keep.
    async fn detect(&mut self) -> Result<Option<(Vec<ImageInfo>, HashMap<String, Keep>)>> {
        let Some(sandbox) = self.sandbox_image().await else {
            return Ok(None);
        };
        let images: Vec<ImageInfo> = self
            .cri
            .list_images()
            .await?
            .iter()
            .map(ImageInfo::from)
            .collect();
        let containers = self.cri.list_containers(HashMap::new()).await?;
        let users = Users {
            containers: containers
                .into_iter()
                .flat_map(|c| [c.image_ref, c.image.map(|i| i.image).unwrap_or_default()])
                .filter(|r| !r.is_empty())
                .collect(),
            pods: self.pod_images(),
            sandbox: Some(sandbox),
        };
        let keep = in_use(&images, &users);
        let used: HashSet<&str> = keep.keys().map(String::as_str).collect();
        self.records.detect(&images, &used, now_nanos());
        Ok(Some((images, keep)))
    }

    /// The images the pods bound to this node name (init and app containers).
    fn pod_images(&self) -> Vec<String> {
        let Ok(pods) = self.pods.read() else {
            return Vec::new();
        };
        pods.values()
            .flat_map(|p| {
                let inits = lifecycle::spec_init_containers(p);
                lifecycle::spec_containers(p)
                    .into_iter()
                    .chain(inits)
                    .map(|(_, image)| image.to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The pause image: configured, else as the runtime reports it (asked until known).
    async fn sandbox_image(&mut self) -> Option<String> {
        if self.sandbox_image.is_none() {
            match self.cri.status_info().await {
                Ok(info) => self.sandbox_image = sandbox_image_from_info(&info),
                Err(e) => warn!(error = %e, "asking the runtime for its sandbox image"),
            }
            if let Some(image) = &self.sandbox_image {
                info!(%image, "the runtime's pod sandbox image is never garbage collected");
            } else if !self.warned_no_sandbox {
                self.warned_no_sandbox = true;
                warn!(
                    "the pod sandbox image is unknown (set --pod-infra-container-image): no image is garbage collected"
                );
            }
        }
        self.sandbox_image.clone()
    }

    /// The capacity and free space of the filesystem the runtime keeps its images on.
    async fn measure(&self) -> Result<Disk> {
        let filesystems = self.cri.image_fs_info().await?;
        let fs = filesystems.first().ok_or(Error::CriIncomplete {
            op: "ImageFsInfo",
            field: "image_filesystems",
        })?;
        let mountpoint = fs
            .fs_id
            .as_ref()
            .map(|f| f.mountpoint.as_str())
            .unwrap_or_default();
        if mountpoint.is_empty() {
            return Err(Error::CriIncomplete {
                op: "ImageFsInfo",
                field: "fs_id.mountpoint",
            });
        }
        let disk = (self.statfs)(mountpoint).map_err(|source| Error::Io {
            what: "reading the capacity of the image filesystem",
            path: mountpoint.to_string(),
            source,
        })?;
        debug!(
            mountpoint,
            images_bytes = fs.used_bytes.as_ref().map(|u| u.value),
            capacity = disk.capacity,
            available = disk.available,
            "image filesystem"
        );
        Ok(disk)
    }

    /// Publishes a Warning Event about the Node (failures are logged, never fatal).
    async fn publish(&self, reason: &str, message: &str) {
        let ev = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(message.to_string()),
            action: "ImageGarbageCollection".to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &self.node).await {
            debug!(error = %e, reason, "publishing an event failed");
        }
    }
}

/// The reference of the Node `name` (uid `uid`) that Events are about.
pub fn node_reference(name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.to_string()),
        uid: uid.or_else(|| Some(name.to_string())),
        ..Default::default()
    }
}
