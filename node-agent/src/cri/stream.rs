//! The CRI streaming calls: `Exec`, `Attach` and `PortForward` answer with the URL of the
//! runtime's streaming server, where the stream itself is served (the agent proxies to it,
//! see [`crate::streaming`]).

use std::time::Duration;

use super::api;
use super::client::{CriClient, request};
use crate::error::{Error, Result};

/// How long the runtime may take to hand out a streaming URL.
const STREAM_URL_TIMEOUT: Duration = Duration::from_secs(30);

impl CriClient {
    /// The streaming URL of a command in container `id` (CRI `Exec`).
    pub async fn exec_url(&self, req: api::ExecRequest) -> Result<String> {
        let resp = self
            .runtime_service()
            .exec(request(req, STREAM_URL_TIMEOUT))
            .await
            .map_err(|s| Error::cri("Exec", s))?;
        Ok(resp.into_inner().url)
    }

    /// The streaming URL of the main process of container `id` (CRI `Attach`).
    pub async fn attach_url(&self, req: api::AttachRequest) -> Result<String> {
        let resp = self
            .runtime_service()
            .attach(request(req, STREAM_URL_TIMEOUT))
            .await
            .map_err(|s| Error::cri("Attach", s))?;
        Ok(resp.into_inner().url)
    }

    /// The streaming URL of port forwarding into sandbox `sandbox_id` (CRI `PortForward`); the
    /// ports travel in the stream's own headers.
    pub async fn port_forward_url(&self, sandbox_id: &str) -> Result<String> {
        let req = api::PortForwardRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            port: Vec::new(),
        };
        let resp = self
            .runtime_service()
            .port_forward(request(req, STREAM_URL_TIMEOUT))
            .await
            .map_err(|s| Error::cri("PortForward", s))?;
        Ok(resp.into_inner().url)
    }
}
