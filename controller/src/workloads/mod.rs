//! Workloads: which images they run (`images`), their revisions and Pods (`pods`), rolling updates
//! (`rollout`), node choice (`scheduler`), status and Events (`status`), and the reconciler around them.

pub mod images;
pub mod liveness;
pub mod pods;
pub mod reconcile;
pub mod rollout;
pub mod scheduler;
pub mod status;

#[cfg(test)]
mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use berth_api::apps::Workload;
use berth_api::image::ImageStreamTag;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, ReflectHandle};
use kube::runtime::{Controller, watcher};

use crate::caches;
use crate::context::Context;
use crate::followers::{self, TagKey};
use reconcile::WorkloadContext;

/// The Workload controller, with the caches it needs: runs until the process stops.
pub async fn run(ctx: Arc<Context>, tags: ReflectHandle<ImageStreamTag>, node_grace: Duration) {
    let client: Client = ctx.client.clone();
    // One watch of every Pod: the scheduler counts what is bound anywhere, and the Workloads' own Pods
    // trigger their reconciles through the same stream.
    let (pods, mut pod_subs, pods_watch) = caches::shared(Api::<Pod>::all(client.clone()), 1);
    let (nodes, nodes_watch) = caches::cache(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let (leases, leases_watch) = caches::cache(
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
        watcher::Config::default().any_semantic(),
    );
    let wctx = Arc::new(WorkloadContext {
        ctx,
        pods,
        nodes,
        leases,
        node_grace,
        liveness: Default::default(),
        assumed: Default::default(),
    });

    let controller = Controller::new(
        Api::<Workload>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let workloads = controller.store();
    // The Workloads of the cache that follow a tag that changed ([`followers::workload_follows`]).
    let follows = move |tag: Arc<ImageStreamTag>| {
        let key = TagKey::of(&tag);
        workloads
            .state()
            .iter()
            .filter(|w| followers::workload_follows(w).contains(&key))
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect::<Vec<_>>()
    };
    let reconciler = controller
        .owns_shared_stream(pod_subs.pop().expect("one subscriber"))
        .watches_shared_stream(tags, follows)
        .run(reconcile::reconcile, reconcile::error_policy, wctx)
        .for_each(|_| std::future::ready(()));
    tokio::select! {
        () = pods_watch => {}
        () = nodes_watch => {}
        () = leases_watch => {}
        () = reconciler => {}
    }
}
