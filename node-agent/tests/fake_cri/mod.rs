//! `FakeCri`: an in-process CRI runtime for tests. A tonic server implementing the
//! RuntimeService and ImageService in memory, on a unix socket in a temp dir, so the agent's
//! real [`CriClient`](berth_agent::cri::CriClient) and sync loop run against it unchanged.
//!
//! It keeps the rules of a real runtime that the agent must respect: container names are
//! reserved per (sandbox, name, attempt), containers need a ready sandbox and a present image,
//! stopping a sandbox stops its containers, removing it removes them. Tests drive it with
//! [`FakeCri::exit`] (a container's process ends) and [`FakeCri::restart`] (the runtime
//! restarts: connections drop, state stays, and sandbox IPs may be forgotten as containerd
//! does), and inspect it with [`FakeCri::snapshot`] and [`FakeCri::calls`].

#![allow(dead_code, reason = "each test binary uses a part of the fake")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use berth_agent::cri::api::{self, *};
use tonic::{Request, Response, Status};

mod control;
mod images;
#[allow(unused_imports, reason = "only the image GC suite reads it")]
pub use images::IMAGE_FS;
use images::digest;

type R<T> = Result<Response<T>, Status>;

fn now() -> i64 {
    berth_agent::sync::now_nanos()
}

/// A sandbox of the fake runtime.
#[derive(Clone, Debug)]
pub struct FakeSandbox {
    /// Its config.
    pub config: PodSandboxConfig,
    /// Ready or not.
    pub ready: bool,
    /// Creation time.
    pub created_at: i64,
    /// Its IP.
    pub ip: String,
}

/// A container of the fake runtime.
#[derive(Clone, Debug)]
pub struct FakeContainer {
    /// Its sandbox.
    pub sandbox_id: String,
    /// Its config.
    pub config: ContainerConfig,
    /// `ContainerState` as i32.
    pub state: i32,
    /// Times, Unix nanoseconds.
    pub created_at: i64,
    /// Start time.
    pub started_at: i64,
    /// Finish time.
    pub finished_at: i64,
    /// Exit code.
    pub exit_code: i32,
}

impl FakeContainer {
    /// Its name in the pod spec.
    pub fn name(&self) -> String {
        self.config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }
    /// Its attempt.
    pub fn attempt(&self) -> u32 {
        self.config.metadata.as_ref().map_or(0, |m| m.attempt)
    }
}

/// Everything the fake runtime holds.
#[derive(Clone, Debug, Default)]
pub struct FakeState {
    next: u64,
    /// Sandboxes by id.
    pub sandboxes: BTreeMap<String, FakeSandbox>,
    /// Containers by id.
    pub containers: BTreeMap<String, FakeContainer>,
    /// Pulled images (references as pulled).
    pub images: BTreeSet<String>,
    /// The CRI calls received, in order (`PullImage 10.0.0.1/x:v1`, `StartContainer c3`, ...).
    pub calls: Vec<String>,
    /// Commands that `ExecSync` answers with exit code 0; others exit 1 (`hang` never ends).
    pub exec_ok: BTreeSet<String>,
    /// The IP of the next sandbox, instead of `10.0.0.N`.
    pub next_ip: Option<String>,
    /// Sandboxes whose IP `PodSandboxStatus` no longer reports (still running).
    pub network_lost: BTreeSet<String>,
    /// Image sizes by reference (1 MB when not set).
    pub image_sizes: BTreeMap<String, u64>,
    /// The sandbox image its verbose `Status` reports (containerd's `sandboxImage`).
    pub sandbox_image: Option<String>,
}

/// The running server: how to stop it.
type Server = (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>);

/// The fake runtime; clones share the state.
#[derive(Clone, Default)]
pub struct FakeCri {
    state: Arc<Mutex<FakeState>>,
    socket: PathBuf,
    server: Arc<Mutex<Option<Server>>>,
}

fn matches(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeCri {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, call: String) -> MutexGuard<'_, FakeState> {
        let mut s = self.lock();
        s.calls.push(call);
        s
    }

    fn container_status(id: &str, c: &FakeContainer) -> api::ContainerStatus {
        api::ContainerStatus {
            id: id.to_string(),
            metadata: c.config.metadata.clone(),
            state: c.state,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: c.config.image.clone(),
            image_ref: digest(
                &c.config
                    .image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
            ),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            log_path: c.config.log_path.clone(),
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl runtime_service_server::RuntimeService for FakeCri {
    type GetContainerEventsStream =
        Pin<Box<dyn futures::Stream<Item = Result<ContainerEventResponse, Status>> + Send + 'static>>;

    async fn version(&self, _: Request<VersionRequest>) -> R<VersionResponse> {
        Ok(Response::new(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "1.0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn status(&self, r: Request<StatusRequest>) -> R<StatusResponse> {
        let verbose = r.into_inner().verbose;
        let sandbox_image = self.lock().sandbox_image.clone();
        let info = match sandbox_image {
            // containerd's verbose status: its CRI settings as JSON under `config`.
            Some(image) if verbose => HashMap::from([(
                "config".to_string(),
                serde_json::json!({"sandboxImage": image}).to_string(),
            )]),
            _ => HashMap::new(),
        };
        let cond = |t: &str| RuntimeCondition {
            r#type: t.into(),
            status: true,
            ..Default::default()
        };
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![cond("RuntimeReady"), cond("NetworkReady")],
            }),
            info,
        }))
    }

    async fn run_pod_sandbox(&self, r: Request<RunPodSandboxRequest>) -> R<RunPodSandboxResponse> {
        let config = r.into_inner().config.unwrap_or_default();
        let mut s = self.record("RunPodSandbox".into());
        s.next += 1;
        let id = format!("sb{}", s.next);
        let ip = s
            .next_ip
            .take()
            .unwrap_or_else(|| format!("10.0.0.{}", s.next % 250 + 2));
        s.sandboxes.insert(
            id.clone(),
            FakeSandbox {
                config,
                ready: true,
                created_at: now(),
                ip,
            },
        );
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(&self, r: Request<StopPodSandboxRequest>) -> R<StopPodSandboxResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let mut s = self.record(format!("StopPodSandbox {id}"));
        let Some(sb) = s.sandboxes.get_mut(&id) else {
            return Err(Status::not_found(format!("sandbox {id}")));
        };
        sb.ready = false;
        let t = now();
        for c in s.containers.values_mut().filter(|c| c.sandbox_id == id) {
            if c.state == ContainerState::ContainerRunning as i32 {
                c.state = ContainerState::ContainerExited as i32;
                c.exit_code = 137;
                c.finished_at = t;
            }
        }
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(&self, r: Request<RemovePodSandboxRequest>) -> R<RemovePodSandboxResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let mut s = self.record(format!("RemovePodSandbox {id}"));
        if s.sandboxes.remove(&id).is_none() {
            return Err(Status::not_found(format!("sandbox {id}")));
        }
        s.containers.retain(|_, c| c.sandbox_id != id);
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(&self, r: Request<PodSandboxStatusRequest>) -> R<PodSandboxStatusResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let s = self.lock();
        let sb = s
            .sandboxes
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("sandbox {id}")))?;
        let ip = if s.network_lost.contains(&id) {
            String::new()
        } else {
            sb.ip.clone()
        };
        Ok(Response::new(PodSandboxStatusResponse {
            status: Some(PodSandboxStatus {
                id,
                metadata: sb.config.metadata.clone(),
                state: if sb.ready { 0 } else { 1 },
                created_at: sb.created_at,
                network: Some(PodSandboxNetworkStatus {
                    ip,
                    ..Default::default()
                }),
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(&self, r: Request<ListPodSandboxRequest>) -> R<ListPodSandboxResponse> {
        let sel = r
            .into_inner()
            .filter
            .map(|f| f.label_selector)
            .unwrap_or_default();
        let s = self.lock();
        let items = s
            .sandboxes
            .iter()
            .filter(|(_, sb)| matches(&sb.config.labels, &sel))
            .map(|(id, sb)| PodSandbox {
                id: id.clone(),
                metadata: sb.config.metadata.clone(),
                state: if sb.ready { 0 } else { 1 },
                created_at: sb.created_at,
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(ListPodSandboxResponse { items }))
    }

    async fn create_container(&self, r: Request<CreateContainerRequest>) -> R<CreateContainerResponse> {
        let r = r.into_inner();
        let config = r.config.unwrap_or_default();
        let image = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        let mut s = self.record(format!("CreateContainer {image}"));
        if !s.sandboxes.get(&r.pod_sandbox_id).is_some_and(|sb| sb.ready) {
            return Err(Status::failed_precondition("sandbox is not ready"));
        }
        if !s.images.contains(&image) {
            return Err(Status::not_found(format!("image {image} not present")));
        }
        let meta = config.metadata.clone().unwrap_or_default();
        let taken = s.containers.values().any(|c| {
            c.sandbox_id == r.pod_sandbox_id && c.name() == meta.name && c.attempt() == meta.attempt
        });
        if taken {
            return Err(Status::already_exists(format!(
                "name {}_{} is reserved",
                meta.name, meta.attempt
            )));
        }
        s.next += 1;
        let id = format!("c{}", s.next);
        s.containers.insert(
            id.clone(),
            FakeContainer {
                sandbox_id: r.pod_sandbox_id,
                config,
                state: ContainerState::ContainerCreated as i32,
                created_at: now(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
            },
        );
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    async fn start_container(&self, r: Request<StartContainerRequest>) -> R<StartContainerResponse> {
        let id = r.into_inner().container_id;
        let mut s = self.record(format!("StartContainer {id}"));
        let c = s
            .containers
            .get_mut(&id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        c.state = ContainerState::ContainerRunning as i32;
        c.started_at = now();
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(&self, r: Request<StopContainerRequest>) -> R<StopContainerResponse> {
        let id = r.into_inner().container_id;
        let mut s = self.record(format!("StopContainer {id}"));
        let c = s
            .containers
            .get_mut(&id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        if c.state != ContainerState::ContainerExited as i32 {
            c.state = ContainerState::ContainerExited as i32;
            c.exit_code = 143;
            c.finished_at = now();
        }
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(&self, r: Request<RemoveContainerRequest>) -> R<RemoveContainerResponse> {
        let id = r.into_inner().container_id;
        let mut s = self.record(format!("RemoveContainer {id}"));
        s.containers
            .remove(&id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(&self, r: Request<ListContainersRequest>) -> R<ListContainersResponse> {
        let sel = r
            .into_inner()
            .filter
            .map(|f| f.label_selector)
            .unwrap_or_default();
        let s = self.lock();
        let containers = s
            .containers
            .iter()
            .filter(|(_, c)| matches(&c.config.labels, &sel))
            .map(|(id, c)| api::Container {
                id: id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: digest(
                    &c.config
                        .image
                        .as_ref()
                        .map(|i| i.image.clone())
                        .unwrap_or_default(),
                ),
                state: c.state,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            })
            .collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn container_status(&self, r: Request<ContainerStatusRequest>) -> R<ContainerStatusResponse> {
        let id = r.into_inner().container_id;
        let s = self.lock();
        let c = s
            .containers
            .get(&id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        Ok(Response::new(ContainerStatusResponse {
            status: Some(Self::container_status(&id, c)),
            ..Default::default()
        }))
    }

    async fn exec_sync(&self, r: Request<ExecSyncRequest>) -> R<ExecSyncResponse> {
        let r = r.into_inner();
        let cmd = r.cmd.join(" ");
        let ok = {
            let s = self.record(format!("ExecSync {} {cmd}", r.container_id));
            let running = s
                .containers
                .get(&r.container_id)
                .is_some_and(|c| c.state == ContainerState::ContainerRunning as i32);
            if !running {
                return Err(Status::not_found(format!(
                    "container {} is not running",
                    r.container_id
                )));
            }
            s.exec_ok.contains(&cmd)
        };
        if cmd == "hang" {
            // A command that outlives any test (as a probe stuck in the container).
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
        Ok(Response::new(ExecSyncResponse {
            stdout: Vec::new(),
            stderr: if ok { Vec::new() } else { b"fake: no".to_vec() },
            exit_code: if ok { 0 } else { 1 },
        }))
    }

    async fn get_container_events(&self, _: Request<GetEventsRequest>) -> R<Self::GetContainerEventsStream> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }

    async fn update_container_resources(
        &self,
        _: Request<UpdateContainerResourcesRequest>,
    ) -> R<UpdateContainerResourcesResponse> {
        Err(Status::unimplemented("FakeCri: update_container_resources"))
    }

    async fn reopen_container_log(
        &self,
        _: Request<ReopenContainerLogRequest>,
    ) -> R<ReopenContainerLogResponse> {
        Err(Status::unimplemented("FakeCri: reopen_container_log"))
    }

    async fn exec(&self, _: Request<ExecRequest>) -> R<ExecResponse> {
        Err(Status::unimplemented("FakeCri: exec"))
    }

    async fn attach(&self, _: Request<AttachRequest>) -> R<AttachResponse> {
        Err(Status::unimplemented("FakeCri: attach"))
    }

    async fn port_forward(&self, _: Request<PortForwardRequest>) -> R<PortForwardResponse> {
        Err(Status::unimplemented("FakeCri: port_forward"))
    }

    async fn container_stats(&self, _: Request<ContainerStatsRequest>) -> R<ContainerStatsResponse> {
        Err(Status::unimplemented("FakeCri: container_stats"))
    }

    async fn list_container_stats(
        &self,
        _: Request<ListContainerStatsRequest>,
    ) -> R<ListContainerStatsResponse> {
        Err(Status::unimplemented("FakeCri: list_container_stats"))
    }

    async fn pod_sandbox_stats(&self, _: Request<PodSandboxStatsRequest>) -> R<PodSandboxStatsResponse> {
        Err(Status::unimplemented("FakeCri: pod_sandbox_stats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<ListPodSandboxStatsRequest>,
    ) -> R<ListPodSandboxStatsResponse> {
        Err(Status::unimplemented("FakeCri: list_pod_sandbox_stats"))
    }

    async fn update_runtime_config(
        &self,
        _: Request<UpdateRuntimeConfigRequest>,
    ) -> R<UpdateRuntimeConfigResponse> {
        Err(Status::unimplemented("FakeCri: update_runtime_config"))
    }

    async fn checkpoint_container(
        &self,
        _: Request<CheckpointContainerRequest>,
    ) -> R<CheckpointContainerResponse> {
        Err(Status::unimplemented("FakeCri: checkpoint_container"))
    }
}
