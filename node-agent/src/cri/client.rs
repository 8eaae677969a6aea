//! [`CriClient`]: the CRI calls the agent makes, over a unix socket.

use std::collections::HashMap;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::api::{
    self, AuthConfig, ContainerConfig, ContainerFilter, ImageSpec, PodSandboxConfig, PodSandboxFilter,
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
};
use crate::error::{Error, Result};

/// The largest gRPC message the client sends or accepts (16 MiB, as the kubelet).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The deadline of ordinary calls (the kubelet's runtime request timeout).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The deadline of an image pull.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// A connected CRI client: the runtime and image services on one channel.
///
/// Cloning is cheap and clones share the connection.
#[derive(Clone, Debug)]
pub struct CriClient {
    endpoint: String,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// Builds a request with a deadline.
pub(super) fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(timeout);
    req
}

/// Turns `NotFound` into `Ok(None)`, for idempotent stop/remove and status lookups.
fn found<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_cri_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl CriClient {
    /// Connects to `endpoint` (`unix:///run/containerd/containerd.sock`) and checks that the
    /// runtime answers `Version`.
    pub async fn connect(endpoint: &str) -> Result<Self> {
        let path = endpoint
            .strip_prefix("unix://")
            .ok_or_else(|| Error::InvalidCriEndpoint {
                endpoint: endpoint.to_string(),
                reason: "only unix:///path sockets are supported".into(),
            })?;
        if !path.starts_with('/') {
            return Err(Error::InvalidCriEndpoint {
                endpoint: endpoint.to_string(),
                reason: "the socket path must be absolute".into(),
            });
        }
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|source| Error::CriConnect {
                endpoint: endpoint.to_string(),
                source,
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|source| Error::CriConnect {
                endpoint: endpoint.to_string(),
                source,
            })?;
        let client = Self::from_channel(endpoint, channel);
        client.version().await?;
        Ok(client)
    }

    /// Wraps an already connected channel (used by tests with an in-process server).
    pub fn from_channel(endpoint: &str, channel: Channel) -> Self {
        CriClient {
            endpoint: endpoint.to_string(),
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        }
    }

    /// The runtime service (a cheap clone sharing the connection).
    pub(super) fn runtime_service(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The runtime's name and versions.
    pub async fn version(&self) -> Result<api::VersionResponse> {
        let req = api::VersionRequest { version: "v1".into() };
        let resp = self.runtime.clone().version(request(req, CALL_TIMEOUT)).await;
        resp.map(|r| r.into_inner()).map_err(|s| Error::cri("Version", s))
    }

    /// The runtime's conditions (`RuntimeReady`, `NetworkReady`).
    pub async fn status(&self) -> Result<api::RuntimeStatus> {
        let req = api::StatusRequest { verbose: false };
        let resp = self.runtime.clone().status(request(req, CALL_TIMEOUT)).await;
        let resp = resp.map_err(|s| Error::cri("Status", s))?.into_inner();
        resp.status.ok_or(Error::CriIncomplete {
            op: "Status",
            field: "status",
        })
    }

    /// Pulls `image` (a tag or digest reference) with optional credentials; returns the image
    /// reference the runtime stored (for containerd, the image id `sha256:...`).
    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String> {
        let req = api::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config,
        };
        let resp = self.images.clone().pull_image(request(req, PULL_TIMEOUT)).await;
        Ok(resp
            .map_err(|s| Error::cri("PullImage", s))?
            .into_inner()
            .image_ref)
    }

    /// The image as the runtime knows it, or `None` when it is not present.
    pub async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        let req = api::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let resp = self.images.clone().image_status(request(req, CALL_TIMEOUT)).await;
        Ok(resp.map_err(|s| Error::cri("ImageStatus", s))?.into_inner().image)
    }

    /// Every image the runtime holds.
    pub async fn list_images(&self) -> Result<Vec<api::Image>> {
        let req = api::ListImagesRequest { filter: None };
        let resp = self.images.clone().list_images(request(req, CALL_TIMEOUT)).await;
        Ok(resp.map_err(|s| Error::cri("ListImages", s))?.into_inner().images)
    }

    /// Removes an image (by id, tag or digest); a missing image is not an error.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let req = api::RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        let resp = self.images.clone().remove_image(request(req, CALL_TIMEOUT)).await;
        found(resp.map(|_| ()).map_err(|s| Error::cri("RemoveImage", s))).map(|_| ())
    }

    /// The filesystems holding images: their mountpoints and the bytes the images use there.
    pub async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        let req = api::ImageFsInfoRequest {};
        let resp = self
            .images
            .clone()
            .image_fs_info(request(req, CALL_TIMEOUT))
            .await;
        Ok(resp
            .map_err(|s| Error::cri("ImageFsInfo", s))?
            .into_inner()
            .image_filesystems)
    }

    /// The runtime's verbose status information (containerd: `config`, a JSON document of its
    /// CRI settings, among them the sandbox image).
    pub async fn status_info(&self) -> Result<HashMap<String, String>> {
        let req = api::StatusRequest { verbose: true };
        let resp = self.runtime.clone().status(request(req, CALL_TIMEOUT)).await;
        Ok(resp.map_err(|s| Error::cri("Status", s))?.into_inner().info)
    }

    /// Creates and starts a pod sandbox; returns its id.
    pub async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String> {
        let req = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let resp = self
            .runtime
            .clone()
            .run_pod_sandbox(request(req, CALL_TIMEOUT))
            .await;
        Ok(resp
            .map_err(|s| Error::cri("RunPodSandbox", s))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// Stops a sandbox and its containers; a missing sandbox is not an error.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        let resp = self
            .runtime
            .clone()
            .stop_pod_sandbox(request(req, CALL_TIMEOUT))
            .await;
        found(resp.map(|_| ()).map_err(|s| Error::cri("StopPodSandbox", s))).map(|_| ())
    }

    /// Removes a sandbox and its containers; a missing sandbox is not an error.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        let resp = self
            .runtime
            .clone()
            .remove_pod_sandbox(request(req, CALL_TIMEOUT))
            .await;
        found(resp.map(|_| ()).map_err(|s| Error::cri("RemovePodSandbox", s))).map(|_| ())
    }

    /// The sandbox's status (state, network), or `None` when it does not exist.
    pub async fn pod_sandbox_status(&self, id: &str) -> Result<Option<api::PodSandboxStatus>> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: false,
        };
        let resp = self
            .runtime
            .clone()
            .pod_sandbox_status(request(req, CALL_TIMEOUT))
            .await;
        let resp = found(resp.map_err(|s| Error::cri("PodSandboxStatus", s)))?;
        Ok(resp.and_then(|r| r.into_inner().status))
    }

    /// The sandboxes whose labels include all of `labels`.
    pub async fn list_pod_sandboxes(&self, labels: HashMap<String, String>) -> Result<Vec<api::PodSandbox>> {
        let req = api::ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: labels,
                ..Default::default()
            }),
        };
        let resp = self
            .runtime
            .clone()
            .list_pod_sandbox(request(req, CALL_TIMEOUT))
            .await;
        Ok(resp
            .map_err(|s| Error::cri("ListPodSandbox", s))?
            .into_inner()
            .items)
    }

    /// Creates a container in a sandbox; returns its id.
    pub async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let resp = self
            .runtime
            .clone()
            .create_container(request(req, CALL_TIMEOUT))
            .await;
        Ok(resp
            .map_err(|s| Error::cri("CreateContainer", s))?
            .into_inner()
            .container_id)
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let req = api::StartContainerRequest {
            container_id: id.to_string(),
        };
        let resp = self
            .runtime
            .clone()
            .start_container(request(req, CALL_TIMEOUT))
            .await;
        resp.map(|_| ()).map_err(|s| Error::cri("StartContainer", s))
    }

    /// Stops a container, sending SIGKILL after `timeout` (SIGTERM first); a missing container
    /// is not an error.
    pub async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let req = api::StopContainerRequest {
            container_id: id.to_string(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        let resp = self
            .runtime
            .clone()
            .stop_container(request(req, CALL_TIMEOUT + timeout))
            .await;
        found(resp.map(|_| ()).map_err(|s| Error::cri("StopContainer", s))).map(|_| ())
    }

    /// Removes a container; a missing container is not an error.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let req = api::RemoveContainerRequest {
            container_id: id.to_string(),
        };
        let resp = self
            .runtime
            .clone()
            .remove_container(request(req, CALL_TIMEOUT))
            .await;
        found(resp.map(|_| ()).map_err(|s| Error::cri("RemoveContainer", s))).map(|_| ())
    }

    /// The containers whose labels include all of `labels`.
    pub async fn list_containers(&self, labels: HashMap<String, String>) -> Result<Vec<api::Container>> {
        let req = api::ListContainersRequest {
            filter: Some(ContainerFilter {
                label_selector: labels,
                ..Default::default()
            }),
        };
        let resp = self
            .runtime
            .clone()
            .list_containers(request(req, CALL_TIMEOUT))
            .await;
        Ok(resp
            .map_err(|s| Error::cri("ListContainers", s))?
            .into_inner()
            .containers)
    }

    /// The container's status, or `None` when it does not exist.
    pub async fn container_status(&self, id: &str) -> Result<Option<api::ContainerStatus>> {
        let req = api::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        };
        let resp = self
            .runtime
            .clone()
            .container_status(request(req, CALL_TIMEOUT))
            .await;
        let resp = found(resp.map_err(|s| Error::cri("ContainerStatus", s)))?;
        Ok(resp.and_then(|r| r.into_inner().status))
    }
}

impl CriClient {
    /// Runs `cmd` in container `id` and waits for it (CRI `ExecSync`), at most `timeout`;
    /// returns the exit code and the combined output.
    pub async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: Duration) -> Result<(i32, String)> {
        let req = api::ExecSyncRequest {
            container_id: id.to_string(),
            cmd,
            timeout: i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX),
        };
        let resp = self
            .runtime
            .clone()
            .exec_sync(request(req, timeout + Duration::from_secs(5)))
            .await
            .map_err(|s| Error::cri("ExecSync", s))?
            .into_inner();
        let mut out = String::from_utf8_lossy(&resp.stdout).into_owned();
        out.push_str(&String::from_utf8_lossy(&resp.stderr));
        Ok((resp.exit_code, out))
    }
}

/// An image spec naming `image`.
fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
