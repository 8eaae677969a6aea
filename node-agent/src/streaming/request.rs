//! What a streaming request asks for, read from its path and query as the kubelet reads them
//! (the API server writes them: `pkg/registry/core/pod/strategy.go`, `streamParams`).

use std::fmt;

/// Which stream: a new command, the main process, or ports of the pod's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/exec/...`: a new process in a container.
    Exec,
    /// `/attach/...`: the container's main process.
    Attach,
    /// `/portForward/...`: TCP ports of the pod's sandbox.
    PortForward,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exec => "exec",
            Self::Attach => "attach",
            Self::PortForward => "portForward",
        })
    }
}

/// The pod (and container) a streaming request names, with the stream options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// exec, attach or port-forward.
    pub kind: Kind,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's uid when the path names it (`/exec/{ns}/{pod}/{uid}/{container}`): the
    /// request then applies only to that incarnation of the pod.
    pub uid: Option<String>,
    /// The container (empty for port-forward).
    pub container: String,
    /// The command of an exec (`command`, repeated, in order).
    pub command: Vec<String>,
    /// Standard input is streamed (`input=1`).
    pub stdin: bool,
    /// Standard output is streamed (`output=1`).
    pub stdout: bool,
    /// Standard error is streamed (`error=1`); never with a TTY, which merges it into stdout.
    pub stderr: bool,
    /// A terminal is allocated (`tty=1`).
    pub tty: bool,
}

/// Why a streaming request is refused before the runtime is asked (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// The path is not one of the kubelet's streaming paths.
    #[error(
        "{0}: expected /{{exec|attach}}/NAMESPACE/POD[/UID]/CONTAINER or /portForward/NAMESPACE/POD[/UID]"
    )]
    Path(String),
    /// An exec without a command.
    #[error("exec needs a command (query parameter 'command')")]
    NoCommand,
    /// None of stdin, stdout, stderr.
    #[error("you must specify at least 1 of stdin, stdout, stderr")]
    NoStreams,
}

/// Reads `path` (`/exec/ns/pod/container`, with an optional uid before the container) and the
/// raw `query`.
pub fn parse(path: &str, query: Option<&str>) -> Result<StreamRequest, BadRequest> {
    let bad = || BadRequest::Path(path.to_string());
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    let (kind, rest) = match parts.split_first() {
        Some((&"exec", rest)) => (Kind::Exec, rest),
        Some((&"attach", rest)) => (Kind::Attach, rest),
        Some((&"portForward", rest)) => (Kind::PortForward, rest),
        _ => return Err(bad()),
    };
    let (namespace, pod, uid, container) = match (kind, rest) {
        (Kind::PortForward, [ns, pod]) => (ns, pod, None, ""),
        (Kind::PortForward, [ns, pod, uid]) => (ns, pod, Some(uid), ""),
        (Kind::Exec | Kind::Attach, [ns, pod, container]) => (ns, pod, None, *container),
        (Kind::Exec | Kind::Attach, [ns, pod, uid, container]) => (ns, pod, Some(uid), *container),
        _ => return Err(bad()),
    };
    let mut req = StreamRequest {
        kind,
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        uid: uid.map(|u| u.to_string()),
        container: container.to_string(),
        command: Vec::new(),
        stdin: false,
        stdout: false,
        stderr: false,
        tty: false,
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let on = value == "1" || value == "true";
        match key.as_ref() {
            "command" => req.command.push(value.into_owned()),
            "input" => req.stdin = on,
            "output" => req.stdout = on,
            "error" => req.stderr = on,
            "tty" => req.tty = on,
            _ => {}
        }
    }
    if kind == Kind::PortForward {
        return Ok(req);
    }
    if kind == Kind::Exec && req.command.is_empty() {
        return Err(BadRequest::NoCommand);
    }
    if !(req.stdin || req.stdout || req.stderr) {
        return Err(BadRequest::NoStreams);
    }
    // As the kubelet: a terminal has no separate standard error.
    if req.tty {
        req.stderr = false;
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_as_the_api_server_writes_it() {
        let r = parse(
            "/exec/team-a/web-0/app",
            Some("command=sh&command=-c&command=echo+a%26b&input=1&output=1&error=1"),
        )
        .expect("valid");
        assert_eq!(r.kind, Kind::Exec);
        assert_eq!(
            (r.namespace.as_str(), r.pod.as_str(), r.container.as_str()),
            ("team-a", "web-0", "app")
        );
        assert_eq!(r.uid, None);
        assert_eq!(r.command, ["sh", "-c", "echo a&b"]);
        assert!(r.stdin && r.stdout && r.stderr && !r.tty);
    }

    #[test]
    fn a_uid_in_the_path_pins_the_pod() {
        let r = parse("/attach/ns/p/1234-uid/c", Some("output=1")).expect("valid");
        assert_eq!(r.kind, Kind::Attach);
        assert_eq!(r.uid.as_deref(), Some("1234-uid"));
        assert_eq!(r.container, "c");
        let r = parse("/portForward/ns/p/1234-uid", None).expect("valid");
        assert_eq!(
            (r.kind, r.uid.as_deref(), r.container.as_str()),
            (Kind::PortForward, Some("1234-uid"), "")
        );
    }

    #[test]
    fn a_tty_drops_stderr() {
        let r = parse("/exec/ns/p/c", Some("command=sh&input=1&output=1&error=1&tty=1")).expect("valid");
        assert!(r.tty && r.stdout && !r.stderr);
    }

    #[test]
    fn refusals_say_what_is_missing() {
        assert_eq!(
            parse("/exec/ns/p/c", Some("output=1")),
            Err(BadRequest::NoCommand)
        );
        assert_eq!(
            parse("/exec/ns/p/c", Some("command=ls")),
            Err(BadRequest::NoStreams)
        );
        assert_eq!(
            parse("/attach/ns/p/c", Some("input=0")),
            Err(BadRequest::NoStreams)
        );
        for path in [
            "/exec/ns/p",
            "/exec/ns//c",
            "/run/ns/p/c",
            "/portForward/ns",
            "/exec/a/b/c/d/e",
        ] {
            assert!(
                matches!(parse(path, Some("command=ls&output=1")), Err(BadRequest::Path(_))),
                "{path}"
            );
        }
        assert!(
            BadRequest::NoStreams
                .to_string()
                .contains("at least 1 of stdin, stdout, stderr")
        );
    }

    #[test]
    fn port_forward_needs_no_streams() {
        let r = parse("/portForward/ns/p", None).expect("valid");
        assert_eq!((r.namespace.as_str(), r.pod.as_str()), ("ns", "p"));
    }
}
