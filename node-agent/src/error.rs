//! The one error type of the agent crate.

/// What failed in the agent. Each variant says what was being done and carries its source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CRI endpoint string is not `unix:///path/to/socket`.
    #[error("invalid CRI endpoint '{endpoint}': {reason}")]
    InvalidCriEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },

    /// Connecting to the container runtime failed.
    #[error("cannot reach the container runtime at {endpoint}: {source}")]
    CriConnect {
        /// The endpoint that was dialled.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },

    /// A CRI call returned an error.
    #[error("CRI {op} failed: {code:?}: {message}")]
    Cri {
        /// The CRI operation (`RunPodSandbox`, `PullImage`, ...).
        op: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },

    /// A CRI answer lacked a field the protocol promises.
    #[error("CRI {op} answered without {field}")]
    CriIncomplete {
        /// The CRI operation.
        op: &'static str,
        /// The missing field.
        field: &'static str,
    },

    /// A call to the Kubernetes API server failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done (`registering node berth-1`, ...).
        what: String,
        /// The client error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Reading or writing a local file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The agent's configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A round of image garbage collection failed ([`crate::image_gc`]).
    #[error("{0}")]
    ImageGc(String),

    /// The serving certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
}

impl Error {
    /// Wraps a CRI status for operation `op`.
    pub fn cri(op: &'static str, status: tonic::Status) -> Self {
        Error::Cri {
            op,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// Wraps a Kubernetes client error with what was being done.
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// True when a CRI call failed because the object does not exist.
    pub fn is_cri_not_found(&self) -> bool {
        matches!(
            self,
            Error::Cri {
                code: tonic::Code::NotFound,
                ..
            }
        )
    }
}

/// The agent's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
