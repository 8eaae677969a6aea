//! `kubectl exec`, `attach` and `port-forward` on the kubelet's paths (`/exec`, `/attach`,
//! `/portForward`): the pod and container are found on this node, the runtime is asked for a
//! streaming URL (CRI `Exec`, `Attach`, `PortForward`) and the client's upgraded connection
//! is proxied to it ([`proxy`]). Who may do this is decided before, by [`crate::access`]
//! (`nodes/proxy`).

pub mod proxy;
pub mod request;

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::info;

use crate::cri::{api, labels};
use crate::pods;
use crate::server::AppState;
use request::{Kind, StreamRequest};

/// CRI `ContainerState::CONTAINER_RUNNING`.
const CONTAINER_RUNNING: i32 = 1;
/// CRI `PodSandboxState::SANDBOX_READY`.
const SANDBOX_READY: i32 = 0;

/// Serves every streaming path.
pub async fn handle(State(state): State<AppState>, req: Request<Body>) -> Response {
    // Refused before the runtime is asked: an exec URL the client never uses is a wasted session.
    if !proxy::is_upgrade(req.headers()) {
        return (StatusCode::BAD_REQUEST, "Upgrade request required").into_response();
    }
    let parsed = match request::parse(req.uri().path(), req.uri().query()) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let url = match runtime_url(&state, &parsed).await {
        Ok(url) => url,
        Err((status, msg)) => return (status, msg).into_response(),
    };
    info!(kind = %parsed.kind, namespace = %parsed.namespace, pod = %parsed.pod,
        container = %parsed.container, tty = parsed.tty, "stream");
    proxy::upgrade(req, &url).await
}

type Refusal = (StatusCode, String);

/// Asks the runtime for the URL of the stream `req` names.
async fn runtime_url(state: &AppState, req: &StreamRequest) -> Result<String, Refusal> {
    let (ns, name) = (&req.namespace, &req.pod);
    let pod = pods::find(&state.pods, ns, name)
        .filter(|p| req.uid.is_none() || p.metadata.uid == req.uid)
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{name} is not on this node"),
            )
        })?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let internal = |e: crate::error::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    if req.kind == Kind::PortForward {
        let selector = HashMap::from([(labels::POD_UID.to_string(), uid)]);
        let sandboxes = state.cri.list_pod_sandboxes(selector).await.map_err(internal)?;
        let sandbox = sandboxes
            .iter()
            .find(|s| s.state == SANDBOX_READY)
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    format!("pod {ns}/{name} has no running sandbox"),
                )
            })?;
        return state.cri.port_forward_url(&sandbox.id).await.map_err(internal);
    }
    let containers = pods::containers_named(&state.cri, &uid, &req.container)
        .await
        .map_err(internal)?;
    let container = containers
        .iter()
        .find(|c| c.state == CONTAINER_RUNNING)
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("container {} is not running in pod {ns}/{name}", req.container),
            )
        })?;
    let id = container.id.clone();
    let url = if req.kind == Kind::Exec {
        let exec = api::ExecRequest {
            container_id: id,
            cmd: req.command.clone(),
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        };
        state.cri.exec_url(exec).await
    } else {
        let attach = api::AttachRequest {
            container_id: id,
            stdin: req.stdin,
            tty: req.tty,
            stdout: req.stdout,
            stderr: req.stderr,
        };
        state.cri.attach_url(attach).await
    };
    url.map_err(internal)
}
