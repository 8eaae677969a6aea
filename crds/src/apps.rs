//! `apps.berth.dev/v1alpha1`: Workload.
//!
//! A Workload is a set of identical Pods whose containers may name an image-stream tag instead of an image.
//! The manifest names the tag; the digest it runs lives in `status`, so GitOps tools see no drift when a tag
//! moves.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, EnvVar, LocalObjectReference, Probe, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of Workload.
pub const GROUP: &str = "apps.berth.dev";

/// Label on every Pod of a Workload: the Workload's name.
pub const WORKLOAD_LABEL: &str = "berth.dev/workload";

/// Label on every Pod of a Workload: the hash of the revision it runs.
pub const REVISION_LABEL: &str = "berth.dev/revision";

/// Label and `NoSchedule` taint of every node a Berth agent serves; Workload pods tolerate it.
pub const AGENT_KEY: &str = "berth.dev/agent";

/// `spec.schedulerName` of Workload pods: Berth binds them, other schedulers leave them alone.
pub const SCHEDULER_NAME: &str = "berth-scheduler";

/// How many Pods of which template to run, and how to roll out a new revision.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "apps.berth.dev",
    version = "v1alpha1",
    kind = "Workload",
    plural = "workloads",
    shortname = "wl",
    category = "berth",
    namespaced,
    status = "WorkloadStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Replicas of a pod template whose containers may follow image-stream tags.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Updated", type_ = "integer", json_path = ".status.updatedReplicas"),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas"
    ),
    printcolumn(name = "Revision", type_ = "integer", json_path = ".status.revision"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// How many Pods should run. Default 1.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: i32,

    /// The Pods to run.
    pub template: PodTemplate,

    /// How Pods of an older revision are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RolloutStrategy>,

    /// Whether a moved image-stream tag rolls out by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_change_trigger: Option<ImageChangeTrigger>,
}

fn default_replicas() -> i32 {
    1
}

/// The Pods of a Workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PodTemplate {
    /// Labels and annotations copied to every Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodTemplateMetadata>,
    /// What each Pod runs.
    pub spec: PodSpec,
}

/// Labels and annotations of the Pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct PodTemplateMetadata {
    /// Labels of every Pod (Berth adds `berth.dev/workload` and `berth.dev/revision`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of every Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The part of a Pod spec that Berth's agent runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The containers, at least one.
    #[schemars(length(min = 1, max = 64))]
    pub containers: Vec<Container>,

    /// Only nodes with all these labels run the Pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the Pods tolerate. Berth nodes carry the `berth.dev/agent` taint, tolerated automatically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Secrets of this namespace used to pull the images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Seconds a container gets to stop after SIGTERM before it is killed. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub termination_grace_period_seconds: Option<i64>,
}

/// A container of a Workload's Pods. It names its image by `image` or by `imageFrom`, not both.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["image"]}, {"required": ["imageFrom"]}]))]
pub struct Container {
    /// The container's name, unique in the Pod.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: String,

    /// A plain image reference. With the stream's `lookupPolicy.local`, `STREAM:TAG` names a tag of a stream in
    /// this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\S+$"), length(max = 512))]
    pub image: Option<String>,

    /// An image-stream tag whose current digest the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_from: Option<ImageFrom>,

    /// `Always`, `IfNotPresent` or `Never`. A digest is always `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,

    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,

    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// The working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,

    /// Ports the container listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,

    /// Requested and limited resources; requests count when choosing a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// When the container is ready for traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,

    /// When the container must be restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
}

/// Pull policies, as in Kubernetes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Pull every time a container starts.
    Always,
    /// Pull when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// An image-stream tag a container follows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ImageFrom {
    /// Always `ImageStreamTag`.
    pub kind: ImageFromKind,
    /// `STREAM:TAG`.
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
    ))]
    pub name: String,
    /// The stream's namespace; the Workload's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub namespace: Option<String>,
}

/// What `imageFrom` may name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ImageFromKind {
    /// A tag of an image stream.
    #[default]
    ImageStreamTag,
}

/// How a Workload replaces Pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Bounds of a rolling update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

/// Bounds of a rolling update, counted in Ready Pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    /// How many Pods may exist above `replicas` during a rollout: a number or a percentage. Default 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    /// How many of `replicas` may be not Ready during a rollout: a number or a percentage. Default 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// Whether tag moves roll out.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ImageChangeTrigger {
    /// When true, a moved tag does not roll out: the Workload keeps the digests it runs. Setting it back to
    /// false rolls forward to the tags' current digests.
    #[serde(default)]
    pub paused: bool,
}

/// What the controller observed of a Workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// The `metadata.generation` this status answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revision the Workload rolls towards; it grows by one with every new template or digest.
    #[serde(default)]
    pub revision: i64,
    /// The hash of that revision, the value of the Pods' `berth.dev/revision` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_hash: Option<String>,
    /// The label selector of the Workload's Pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Pods that exist, of any revision.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods of the current revision.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Pods of the current revision that are Ready.
    #[serde(default)]
    pub available_replicas: i32,
    /// The image each container runs in the current revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ContainerImage>,
    /// `Available` and `Progressing`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The image one container runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImage {
    /// The container's name.
    pub container: String,
    /// The image-stream tag it follows, `NAMESPACE/STREAM:TAG`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// What it runs, `REPO@sha256:...` when resolved from a tag.
    pub image: String,
}
