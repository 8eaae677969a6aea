//! The controller's errors, classified for the requeue decision: [`classify`] says whether a failed reconcile
//! is tried again soon, later with back-off, or given up and reported; [`retry`] says when.

pub mod retry;

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
    #[error("Kubernetes API: {what}: {source}")]
    Kube {
        /// Which call: the verb and the resource (`patch ImageStreamTag status`).
        what: &'static str,
        /// What the client or the server said.
        source: kube::Error,
    },
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
    /// A decision needed more cross-namespace grants than it can (answers expired while others were asked).
    #[error("the cross-namespace grants of this decision could not all be asked within {0} rounds")]
    GrantsUnsettled(usize),
    /// The registry policy file does not read.
    #[error("registry policy {path}: {detail}")]
    RegistryPolicy {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
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

impl Error {
    /// The error of the API call `what`, to use as `.map_err(Error::kube("delete Pod"))`.
    pub fn kube(what: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| Self::Kube { what, source }
    }

    /// The API call that failed (`none` for an error that is not one), for logs and metric labels.
    pub fn call(&self) -> &'static str {
        match self {
            Self::Kube { what, .. } => what,
            _ => "none",
        }
    }
}

/// An API error from a caller that does not yet say which call failed; prefer [`Error::kube`].
impl From<kube::Error> for Error {
    fn from(source: kube::Error) -> Self {
        Self::Kube {
            what: "API call",
            source,
        }
    }
}

/// What to do after a failed reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// The failure says only that the object read was not the latest (409 Conflict): look again at once, the
    /// watch brings the newer version.
    RetrySoon,
    /// The server or the way to it is busy or down (429, 5xx, timeouts, refused connections): look again later,
    /// backing off while it lasts.
    RetryLater,
    /// Trying again cannot help until something changes (400, 403, 404, 422, an object without a name, a
    /// request that cannot be built): report it once and wait for a change of the object, or a long interval.
    GiveUp,
}

impl Class {
    /// The label value of the class (`retry_soon`, `retry_later`, `give_up`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetrySoon => "retry_soon",
            Self::RetryLater => "retry_later",
            Self::GiveUp => "give_up",
        }
    }
}

/// Classifies an error for the requeue decision.
pub fn classify(error: &Error) -> Class {
    match error {
        Error::Kube { source, .. } => classify_kube(source),
        Error::Unreachable { .. } | Error::Lease(_) | Error::GrantsUnsettled(_) => Class::RetryLater,
        Error::KubeConfig(_)
        | Error::CrdsMissing(_)
        | Error::Incomplete(_)
        | Error::Transport(_)
        | Error::Platform(_)
        | Error::LostLeadership
        | Error::Listen { .. }
        | Error::ReadFile { .. }
        | Error::RegistryPolicy { .. } => Class::GiveUp,
    }
}

/// Classifies an error of the Kubernetes client: by the status code the server answered, else by what failed
/// on the way (a failure to connect or a timeout is transient; a request that cannot be built is not).
pub fn classify_kube(error: &kube::Error) -> Class {
    match error {
        kube::Error::Api(status) => match status.code {
            409 => Class::RetrySoon,
            // 401: a token that expired is read again; 408 and 429: the server asks to come back later.
            401 | 408 | 429 | 500..=599 => Class::RetryLater,
            400..=499 => Class::GiveUp,
            _ => Class::RetryLater,
        },
        kube::Error::BuildRequest(_)
        | kube::Error::HttpError(_)
        | kube::Error::InferConfig(_)
        | kube::Error::InferKubeconfig(_)
        | kube::Error::Discovery(_)
        | kube::Error::ProxyProtocolUnsupported { .. }
        | kube::Error::ProxyProtocolDisabled { .. }
        | kube::Error::TlsRequired => Class::GiveUp,
        // Connections refused or reset, timeouts (the client's timeout layer answers as a service error),
        // streams cut short, responses that do not decode, credentials being refreshed.
        _ => Class::RetryLater,
    }
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> Error {
        let status = kube::core::Status::failure("the server said no", reason).with_code(code);
        Error::kube("patch ImageStreamTag status")(kube::Error::Api(status.boxed()))
    }

    #[test]
    fn a_conflict_is_retried_soon() {
        assert_eq!(classify(&api(409, "Conflict")), Class::RetrySoon);
    }

    #[test]
    fn a_busy_or_failing_server_is_retried_later() {
        for (code, reason) in [
            (429, "TooManyRequests"),
            (500, "InternalError"),
            (503, "ServiceUnavailable"),
            (504, "Timeout"),
            (408, "Timeout"),
            (401, "Unauthorized"),
        ] {
            assert_eq!(classify(&api(code, reason)), Class::RetryLater, "{code}");
        }
    }

    #[test]
    fn timeouts_and_connection_errors_are_retried_later() {
        for kind in [
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::ConnectionReset,
        ] {
            let e = Error::kube("delete Pod")(kube::Error::Service(Box::new(std::io::Error::from(kind))));
            assert_eq!(classify(&e), Class::RetryLater, "{kind:?}");
        }
        let cut = Error::kube("list Pods")(kube::Error::ReadEvents(std::io::ErrorKind::UnexpectedEof.into()));
        assert_eq!(classify(&cut), Class::RetryLater);
        assert_eq!(
            classify(&Error::Unreachable {
                url: "https://api".into(),
                detail: "refused".into()
            }),
            Class::RetryLater
        );
    }

    #[test]
    fn invalid_objects_and_refusals_are_given_up_and_reported() {
        for (code, reason) in [
            (400, "BadRequest"),
            (403, "Forbidden"),
            (404, "NotFound"),
            (422, "Invalid"),
        ] {
            assert_eq!(classify(&api(code, reason)), Class::GiveUp, "{code}");
        }
        assert_eq!(classify(&Error::Incomplete("Workload")), Class::GiveUp);
        assert_eq!(
            classify(&Error::CrdsMissing("imagestreamtags.image.berth.dev")),
            Class::GiveUp
        );
        let unbuildable = kube::Error::BuildRequest(kube::core::request::Error::Validation("no name".into()));
        assert_eq!(classify(&Error::kube("get Pod")(unbuildable)), Class::GiveUp);
    }

    #[test]
    fn an_api_error_says_which_call_failed() {
        let e = api(422, "Invalid");
        assert_eq!(e.call(), "patch ImageStreamTag status");
        let text = e.to_string();
        assert!(
            text.starts_with("Kubernetes API: patch ImageStreamTag status: ApiError: the server said no"),
            "{text}"
        );
        assert_eq!(Error::Incomplete("Workload").call(), "none");
        assert_eq!(Class::RetryLater.as_str(), "retry_later");
    }
}
