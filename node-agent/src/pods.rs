//! Watches the Pods bound to this node (`spec.nodeName=<node>`) and keeps one worker per pod;
//! after the initial list, removes runtime objects of pods the API server no longer has.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cri::labels;
use crate::sync::{self, Shared};

/// The pods bound to this node, by uid; shared with the log server.
pub type PodIndex = Arc<RwLock<HashMap<String, Arc<Pod>>>>;

/// Finds a pod of the index by namespace and name.
pub fn find(index: &PodIndex, namespace: &str, name: &str) -> Option<Arc<Pod>> {
    let pods = index.read().ok()?;
    pods.values()
        .find(|p| {
            p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(name)
        })
        .cloned()
}

/// The runtime's containers (every attempt) of container `name` of the pod with uid `uid`.
pub async fn containers_named(
    cri: &crate::cri::CriClient,
    uid: &str,
    name: &str,
) -> crate::Result<Vec<crate::cri::api::Container>> {
    let selector = HashMap::from([
        (crate::cri::labels::POD_UID.to_string(), uid.to_string()),
        (crate::cri::labels::CONTAINER_NAME.to_string(), name.to_string()),
    ]);
    cri.list_containers(selector).await
}

/// Runs the watch and the workers until the watch stream ends.
pub async fn run(shared: Arc<Shared>, node_name: String, index: PodIndex) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut stream = watcher::watcher(api, config).boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut initial: Option<HashMap<String, Arc<Pod>>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => initial = Some(HashMap::new()),
            Ok(Event::InitApply(pod)) => {
                if let (Some(init), Some(uid)) = (initial.as_mut(), pod.metadata.uid.clone()) {
                    init.insert(uid, Arc::new(strip(pod)));
                }
            }
            Ok(Event::InitDone) => {
                let pods = initial.take().unwrap_or_default();
                if let Ok(mut idx) = index.write() {
                    *idx = pods;
                }
                dispatch(&shared, &index, &mut workers);
                sweep_orphans(&shared, &index, &workers).await;
            }
            Ok(Event::Apply(pod)) => {
                if let Some(uid) = pod.metadata.uid.clone()
                    && let Ok(mut idx) = index.write()
                {
                    idx.insert(uid, Arc::new(strip(pod)));
                }
                dispatch(&shared, &index, &mut workers);
            }
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.as_ref()
                    && let Ok(mut idx) = index.write()
                {
                    idx.remove(uid);
                }
                dispatch(&shared, &index, &mut workers);
            }
            Err(e) => warn!(error = %e, "pod watch error; the watcher retries"),
        }
    }
}

/// Drops managed fields: the agent never reads them.
fn strip(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    pod
}

/// Hands every pod to its worker (starting new ones) and tells workers of vanished pods.
fn dispatch(
    shared: &Arc<Shared>,
    index: &PodIndex,
    workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
) {
    let pods: HashMap<String, Arc<Pod>> = index.read().map(|p| p.clone()).unwrap_or_default();
    shared.metrics.set_pods(pods.len());
    for (uid, pod) in &pods {
        match workers.get(uid) {
            Some(tx) if !tx.is_closed() => {
                tx.send_replace(Some(pod.clone()));
            }
            _ => {
                workers.insert(uid.clone(), sync::spawn_worker(shared.clone(), pod.clone()));
            }
        }
    }
    workers.retain(|uid, tx| {
        if pods.contains_key(uid) {
            return !tx.is_closed();
        }
        tx.send_replace(None);
        false
    });
}

/// Removes sandboxes and volume directories of pods that are neither in the index nor
/// handled by a worker (pods deleted while the agent was down).
async fn sweep_orphans(
    shared: &Shared,
    index: &PodIndex,
    workers: &HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
) {
    let selector = HashMap::from([(
        labels::MANAGED_BY.to_string(),
        labels::MANAGED_BY_AGENT.to_string(),
    )]);
    let sandboxes = match shared.cri.list_pod_sandboxes(selector).await {
        Ok(s) => s,
        Err(e) => return warn!(error = %e, "listing sandboxes for orphans"),
    };
    let known: HashSet<String> = index
        .read()
        .map(|i| i.keys().cloned().collect())
        .unwrap_or_default();
    let orphans: HashSet<String> = sandboxes
        .iter()
        .filter_map(|s| s.labels.get(labels::POD_UID))
        .filter(|uid| !known.contains(*uid) && !workers.contains_key(*uid))
        .cloned()
        .collect();
    let mut failed = HashSet::new();
    for uid in orphans {
        info!(%uid, "removing the runtime objects of a pod the API server no longer has");
        if let Err(e) = sync::remove_all(&shared.cri, &uid).await {
            warn!(%uid, error = %e, "removing an orphaned pod");
            failed.insert(uid);
        }
    }
    // Volume directories of pods gone while the agent was down (kept while their runtime
    // objects could not be removed: a container may still use them).
    let mut keep: HashSet<String> = known;
    keep.extend(workers.keys().cloned());
    keep.extend(failed);
    crate::volumes::sweep(&shared.volumes, &keep);
}
