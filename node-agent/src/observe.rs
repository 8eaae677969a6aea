//! What the runtime holds for one pod, in plain types the decision functions take, and the
//! code that reads it from CRI by the labels carrying the pod's uid.

use std::collections::HashMap;

use crate::cri::CriClient;
use crate::cri::api::{ContainerState, PodSandboxState};
use crate::cri::labels;
use crate::error::Result;

/// A pod sandbox as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// Runtime id.
    pub id: String,
    /// CRI attempt (0 for the first sandbox of a pod).
    pub attempt: u32,
    /// True when the sandbox is ready (running).
    pub ready: bool,
    /// Its IP, when it has a network.
    pub ip: Option<String>,
}

/// A container's runtime state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// The runtime does not know.
    Unknown,
}

/// A container as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// Runtime id.
    pub id: String,
    /// The container's name in the pod spec.
    pub name: String,
    /// CRI attempt: how many times this container was restarted before this one.
    pub attempt: u32,
    /// The sandbox it runs in.
    pub sandbox_id: String,
    /// Its state.
    pub state: State,
    /// Exit code (exited containers).
    pub exit_code: i32,
    /// Runtime's reason (`Completed`, `Error`, `OOMKilled`).
    pub reason: String,
    /// Runtime's message.
    pub message: String,
    /// Creation time, Unix nanoseconds.
    pub created_at: i64,
    /// Start time, Unix nanoseconds (0 if never started).
    pub started_at: i64,
    /// Finish time, Unix nanoseconds (0 if not finished).
    pub finished_at: i64,
    /// The image the pod spec named when it was created.
    pub spec_image: String,
    /// The runtime's image reference (image id).
    pub image_ref: String,
    /// Its log file.
    pub log_path: String,
}

/// Everything the runtime holds for one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Sandboxes, newest attempt first.
    pub sandboxes: Vec<Sandbox>,
    /// Containers, per name newest attempt first.
    pub containers: Vec<Container>,
}

impl Observed {
    /// The newest ready sandbox.
    pub fn ready_sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.iter().find(|s| s.ready)
    }

    /// The containers named `name`, newest attempt first.
    pub fn attempts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Container> + 'a {
        self.containers.iter().filter(move |c| c.name == name)
    }

    /// The newest container named `name`.
    pub fn latest(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// True when a container runs or is created.
    pub fn any_live_container(&self) -> bool {
        self.containers
            .iter()
            .any(|c| matches!(c.state, State::Running | State::Created | State::Unknown))
    }
}

/// The label selector of everything of pod `uid`.
pub fn pod_selector(uid: &str) -> HashMap<String, String> {
    HashMap::from([(labels::POD_UID.to_string(), uid.to_string())])
}

/// Reads what the runtime holds for pod `uid`.
pub async fn observe(cri: &CriClient, uid: &str) -> Result<Observed> {
    let mut sandboxes = Vec::new();
    for sb in cri.list_pod_sandboxes(pod_selector(uid)).await? {
        let ready = sb.state == PodSandboxState::SandboxReady as i32;
        let ip = if ready {
            cri.pod_sandbox_status(&sb.id)
                .await?
                .and_then(|s| s.network)
                .map(|n| n.ip)
                .filter(|ip| !ip.is_empty())
        } else {
            None
        };
        sandboxes.push(Sandbox {
            id: sb.id,
            attempt: sb.metadata.map_or(0, |m| m.attempt),
            ready,
            ip,
        });
    }
    sandboxes.sort_by(|a, b| b.attempt.cmp(&a.attempt).then(b.ready.cmp(&a.ready)));

    let mut containers = Vec::new();
    for c in cri.list_containers(pod_selector(uid)).await? {
        let Some(st) = cri.container_status(&c.id).await? else {
            continue; // removed meanwhile
        };
        let state = match ContainerState::try_from(st.state) {
            Ok(ContainerState::ContainerCreated) => State::Created,
            Ok(ContainerState::ContainerRunning) => State::Running,
            Ok(ContainerState::ContainerExited) => State::Exited,
            _ => State::Unknown,
        };
        containers.push(Container {
            name: c
                .labels
                .get(labels::CONTAINER_NAME)
                .cloned()
                .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
                .unwrap_or_default(),
            attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
            sandbox_id: c.pod_sandbox_id,
            state,
            exit_code: st.exit_code,
            reason: st.reason,
            message: st.message,
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            spec_image: c
                .annotations
                .get(labels::ANNOTATION_SPEC_IMAGE)
                .cloned()
                .unwrap_or_default(),
            image_ref: st.image_ref,
            log_path: st.log_path,
            id: c.id,
        });
    }
    containers.sort_by(|a, b| a.name.cmp(&b.name).then(b.attempt.cmp(&a.attempt)));
    Ok(Observed {
        sandboxes,
        containers,
    })
}
