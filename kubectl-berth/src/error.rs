//! The one error type of `kubectl berth`, and the exit code each kind of failure gives.
//!
//! Scripts rely on three codes: 0 when the command did what it says, 1 when the server refused, an object is
//! missing, an import failed or a wait timed out (the message names the object), 2 for a usage error (clap's
//! own errors exit 2 too). Messages are one line and never hold a credential: the plugin reads no Secret, and
//! API errors are reduced to the server's message.

use std::time::Duration;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something that cannot be done as asked (exit 2).
    #[error("{0}")]
    Usage(String),

    /// An object the command needs does not exist.
    #[error("{kind} {name} not found in namespace {namespace}")]
    NotFound {
        /// What kind of object, as a person says it (`imagestreamtag`, `deployment`).
        kind: String,
        /// Its name as given on the command line (`app:live`, `web`).
        name: String,
        /// The namespace looked in.
        namespace: String,
    },

    /// The API server answered with an error.
    #[error("{action}: {message}")]
    Api {
        /// What was being done (`apply imagestreamtag app.live`).
        action: String,
        /// The server's message (or the transport's).
        message: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },

    /// No usable kubeconfig.
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),

    /// The objects as they are do not allow the command (a tag with no image to copy, nothing to roll back to,
    /// a tag defined inline in its stream, ...). The message says what to do instead.
    #[error("{0}")]
    Refused(String),

    /// An import answered with a failure.
    #[error("import of {tag} failed: {reason}: {message}")]
    ImportFailed {
        /// `STREAM:TAG`.
        tag: String,
        /// The `ImportSuccess` condition's reason.
        reason: String,
        /// Its message.
        message: String,
    },

    /// A wait ended before the controller answered.
    #[error("timed out after {}s waiting for {what}; last seen: {last}", after.as_secs())]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
        /// The last state seen.
        last: String,
    },

    /// Output could not be rendered.
    #[error("cannot render the output as {format}: {message}")]
    Render {
        /// `json` or `yaml`.
        format: &'static str,
        /// What the serialiser said.
        message: String,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Wraps a client error with what was being done; a 404 becomes [`Error::NotFound`] when `missing` says
    /// what was looked for.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| {
            let message = match &source {
                kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
                other => other.to_string(),
            };
            Error::Api {
                action,
                message: one_line(&message),
                source,
            }
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    /// A refusal.
    pub fn refused(message: impl Into<String>) -> Error {
        Error::Refused(message.into())
    }
}

/// Whether `error` is the server saying the object does not exist.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}

/// Whether `error` is the server saying the object exists already.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

/// Messages are one line: a script reads the first line of stderr.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_everything_else_1() {
        assert_eq!(Error::usage("x").exit_code(), 2);
        assert_eq!(Error::refused("x").exit_code(), 1);
        let e = Error::NotFound {
            kind: "imagestreamtag".into(),
            name: "app:live".into(),
            namespace: "ns".into(),
        };
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.to_string(), "imagestreamtag app:live not found in namespace ns");
    }

    #[test]
    fn server_messages_become_one_line() {
        let status = kube::core::Status::failure("line one\nline two", "Invalid").with_code(422);
        let e = Error::kube("apply imagestreamtag a.b")(kube::Error::Api(status.boxed()));
        assert_eq!(e.to_string(), "apply imagestreamtag a.b: line one line two");
        assert_eq!(e.exit_code(), 1);
    }
}
