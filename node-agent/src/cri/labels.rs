//! Labels the agent puts on every sandbox and container it creates, so that after a
//! restart it can find and adopt them from the runtime alone.

/// The uid of the Pod a sandbox or container belongs to.
pub const POD_UID: &str = "berth.dev/pod-uid";
/// The Pod's name.
pub const POD_NAME: &str = "berth.dev/pod-name";
/// The Pod's namespace.
pub const POD_NAMESPACE: &str = "berth.dev/pod-namespace";
/// The container's name in the Pod spec (containers only).
pub const CONTAINER_NAME: &str = "berth.dev/container-name";
/// Marks objects managed by a Berth agent.
pub const MANAGED_BY: &str = "berth.dev/managed-by";
/// The value of [`MANAGED_BY`].
pub const MANAGED_BY_AGENT: &str = "berth-agent";

/// Annotation on containers: the image reference the Pod spec asked for.
pub const ANNOTATION_SPEC_IMAGE: &str = "berth.dev/spec-image";
/// Annotation on containers: a hash of the container spec it was created from.
pub const ANNOTATION_SPEC_HASH: &str = "berth.dev/spec-hash";
/// Annotation on containers: the Pod's termination grace period in seconds.
pub const ANNOTATION_GRACE: &str = "berth.dev/termination-grace-seconds";
