//! What a request to the kubelet port asks to do, in the terms of the API server's
//! authorization: the kubelet's mapping (`pkg/kubelet/server/auth.go`), so a ClusterRole
//! written for kubelets (`system:kubelet-api-admin`) grants the same on Berth nodes.

use axum::http::Method;

/// The resource attributes of one request: verb `verb` on `nodes/<subresource>` named for
/// this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// `get`, `create`, `update`, `patch` or `delete`, from the HTTP method.
    pub verb: &'static str,
    /// `proxy`, `log`, `stats`, `metrics` or `spec`, from the path.
    pub subresource: &'static str,
}

/// The attributes of `method` on `path`, as the kubelet maps them: `/stats/...` is
/// `nodes/stats`, `/metrics...` `nodes/metrics`, `/logs/...` `nodes/log`, `/spec/...`
/// `nodes/spec`, everything else (container logs, exec, attach, port-forward, health)
/// `nodes/proxy`.
pub fn attributes(method: &Method, path: &str) -> Attributes {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let subresource = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else if under("/spec") {
        "spec"
    } else {
        "proxy"
    };
    Attributes { verb, subresource }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_as_the_kubelets() {
        let a = |m: Method, p: &str| {
            let x = attributes(&m, p);
            (x.verb, x.subresource)
        };
        assert_eq!(a(Method::GET, "/containerLogs/ns/p/c"), ("get", "proxy"));
        assert_eq!(a(Method::POST, "/exec/ns/p/c"), ("create", "proxy"));
        assert_eq!(a(Method::GET, "/exec/ns/p/c"), ("get", "proxy"));
        assert_eq!(a(Method::POST, "/portForward/ns/p"), ("create", "proxy"));
        assert_eq!(a(Method::GET, "/metrics"), ("get", "metrics"));
        assert_eq!(a(Method::GET, "/metrics/cadvisor"), ("get", "metrics"));
        assert_eq!(a(Method::GET, "/metricsX"), ("get", "proxy"));
        assert_eq!(a(Method::GET, "/stats/summary"), ("get", "stats"));
        assert_eq!(a(Method::GET, "/logs/"), ("get", "log"));
        assert_eq!(a(Method::GET, "/spec/"), ("get", "spec"));
        assert_eq!(a(Method::GET, "/healthz"), ("get", "proxy"));
        assert_eq!(a(Method::DELETE, "/x"), ("delete", "proxy"));
        assert_eq!(a(Method::PUT, "/x"), ("update", "proxy"));
        assert_eq!(a(Method::PATCH, "/x"), ("patch", "proxy"));
        assert_eq!(a(Method::HEAD, "/healthz"), ("get", "proxy"));
    }
}
