//! The controller's errors, classified for the requeue decision.

/// What went wrong in the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Kubernetes configuration was found (KUBECONFIG, ~/.kube/config, in-cluster).
    #[error("no Kubernetes configuration: {0} (set KUBECONFIG or run in a pod)")]
    KubeConfig(#[from] kube::config::InferConfigError),
    /// The API server did not answer at start.
    #[error("cannot reach the Kubernetes API server at {url}: {detail}")]
    Unreachable {
        /// The server's address.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The API server does not serve Berth's resources.
    #[error("the API server does not serve {0}: install the CRDs (kubectl apply -k manifests/, or -f crds/)")]
    CrdsMissing(&'static str),
    /// A call to the API server failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object the controller watches lacks a namespace or a name.
    #[error("{0} has no namespace or name")]
    Incomplete(&'static str),
    /// The registry client could not be built (bad CA file, TLS setup).
    #[error("registry transport: {0}")]
    Transport(#[from] crate::registry::TransportError),
    /// A platform given in the configuration does not parse.
    #[error("platform: {0}")]
    Platform(#[from] crate::registry::InvalidPlatform),
    /// The leader-election Lease could not be managed.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// This replica lost its Lease; it exits so that only one leader acts.
    #[error("lost the leader lease to another replica")]
    LostLeadership,
    /// A server could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A file named in the configuration could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
