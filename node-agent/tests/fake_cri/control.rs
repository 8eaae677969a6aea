//! How tests drive and inspect [`FakeCri`]: serving it (and restarting it as containerd is
//! restarted), container exits, exec answers, sandbox IPs, and queries of its state.

use std::collections::HashMap;
use std::path::Path;

use berth_agent::cri::api::*;

use super::{FakeCri, FakeState, matches, now};

impl FakeCri {
    /// Serves a new fake on `dir/cri.sock`; returns it and its endpoint (`unix://...`).
    pub async fn start(dir: &Path) -> (FakeCri, String) {
        let fake = FakeCri {
            socket: dir.join("cri.sock"),
            ..Default::default()
        };
        fake.serve();
        let endpoint = format!("unix://{}", fake.socket.display());
        (fake, endpoint)
    }

    fn serve(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let listener = tokio::net::UnixListener::bind(&self.socket).expect("binding the fake CRI socket");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(runtime_service_server::RuntimeServiceServer::new(self.clone()))
            .add_service(image_service_server::ImageServiceServer::new(self.clone()))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::UnixListenerStream::new(listener), async {
                let _ = stopped.await;
            });
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, task));
    }

    /// The runtime restarts, as containerd killed and started again: the server stops (its
    /// connections drop), then serves the same state on the same socket. With
    /// `lose_network`, the sandboxes that run keep running but `PodSandboxStatus` reports no
    /// IP for them, as containerd once the netns mount it made is gone from its new mount
    /// namespace.
    pub async fn restart(&self, lose_network: bool) {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        {
            let mut s = self.record("Restart".into());
            if lose_network {
                let ids: Vec<String> = s.sandboxes.keys().cloned().collect();
                s.network_lost.extend(ids);
            }
        }
        self.serve();
    }

    /// The next sandbox gets `ip` (tests that probe it use a loopback address).
    pub fn assign_ip(&self, ip: &str) {
        self.lock().next_ip = Some(ip.to_string());
    }

    /// A copy of the state.
    pub fn snapshot(&self) -> FakeState {
        self.lock().clone()
    }

    /// The CRI calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Lets `ExecSync` of `command` (joined by spaces) succeed.
    pub fn exec_succeeds(&self, command: &str) {
        self.lock().exec_ok.insert(command.to_string());
    }

    /// Makes `ExecSync` of `command` fail again.
    pub fn exec_fails(&self, command: &str) {
        self.lock().exec_ok.remove(command);
    }

    /// Container `id`'s process exits with `code`, having started `ran_s` seconds before it
    /// ended `ago_s` seconds ago (so tests can put it past its restart back-off).
    pub fn exit(&self, id: &str, code: i32, ran_s: i64, ago_s: i64) {
        let mut s = self.lock();
        if let Some(c) = s.containers.get_mut(id) {
            let end = now() - ago_s * 1_000_000_000;
            c.state = ContainerState::ContainerExited as i32;
            c.exit_code = code;
            c.finished_at = end;
            c.started_at = end - ran_s * 1_000_000_000;
            c.created_at = c.created_at.min(c.started_at);
        }
    }

    /// The containers of pod `uid`: (id, name, attempt, state).
    pub fn containers_of(&self, uid: &str) -> Vec<(String, String, u32, i32)> {
        let sel = HashMap::from([(berth_agent::cri::labels::POD_UID.to_string(), uid.to_string())]);
        self.lock()
            .containers
            .iter()
            .filter(|(_, c)| matches(&c.config.labels, &sel))
            .map(|(id, c)| (id.clone(), c.name(), c.attempt(), c.state))
            .collect()
    }

    /// The number of sandboxes of pod `uid`.
    pub fn sandboxes_of(&self, uid: &str) -> usize {
        let sel = HashMap::from([(berth_agent::cri::labels::POD_UID.to_string(), uid.to_string())]);
        self.lock()
            .sandboxes
            .values()
            .filter(|s| matches(&s.config.labels, &sel))
            .count()
    }

    /// The runtime holds `image` (a reference), of `size` bytes, as if pulled.
    pub fn add_image(&self, image: &str, size: u64) {
        let mut s = self.lock();
        s.images.insert(image.to_string());
        s.image_sizes.insert(image.to_string(), size);
    }

    /// The fake's image id of reference `image`.
    pub fn image_id(image: &str) -> String {
        super::digest(image)
    }

    /// The images it holds (references).
    pub fn images(&self) -> Vec<String> {
        self.lock().images.iter().cloned().collect()
    }

    /// The bytes its images take (what `ImageFsInfo` reports as used).
    pub fn image_bytes(&self) -> u64 {
        let s = self.lock();
        s.images.iter().map(|i| super::images::size(&s, i)).sum()
    }

    /// Its verbose `Status` reports `image` as the sandbox image, as containerd.
    pub fn set_sandbox_image(&self, image: &str) {
        self.lock().sandbox_image = Some(image.to_string());
    }
}
