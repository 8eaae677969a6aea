//! Workloads: which images they run (`images`), their revisions and Pods (`pods`), rolling updates
//! (`rollout`), status and Events (`status`), and the reconciler around them. `run` starts it with the two
//! loops its Pods need: Berth's scheduler ([`crate::scheduling`]) and node lifecycle
//! ([`crate::node_lifecycle`]), over one watch of each kind they share.

pub mod images;
pub mod pods;
pub mod reconcile;
pub mod rollout;
pub mod status;

#[cfg(test)]
mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use berth_api::apps::Workload;
use berth_api::image::{ImageStream, ImageStreamTag};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};

use crate::caches::{self, Subscription};
use crate::context::Context;
use crate::followers::live::LiveIndex;
use crate::followers::{self, TagKey};
use crate::node_lifecycle::NodeLifecycle;
use crate::scheduling::Scheduler;
use reconcile::WorkloadContext;

/// The Workload controller, the scheduler and the node lifecycle, with the caches they need: runs until the
/// process stops. `tags` and `streams` are subscriptions to the shared watches of those kinds.
pub async fn run(
    ctx: Arc<Context>,
    tags: Subscription<ImageStreamTag>,
    streams: Subscription<ImageStream>,
    node_grace: Duration,
) {
    let client: Client = ctx.client.clone();
    // One watch of every Pod: the Workloads' own Pods trigger their reconciles, and every change wakes the
    // scheduler.
    let (pods, pod_subs, pods_watch) = caches::shared(Api::<Pod>::all(client.clone()), 2);
    let Ok([pods_for_workloads, pods_for_scheduler]) = <[_; 2]>::try_from(pod_subs) else {
        unreachable!("caches::shared made 2 subscribers")
    };
    let (nodes, nodes_watch) = caches::cache(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let (leases, leases_watch) = caches::cache(
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
        watcher::Config::default().any_semantic(),
    );

    // One watch of every Workload: the controller's trigger, and the index of the tags they follow.
    let (workloads, workload_subs, workloads_watch) = caches::shared(Api::<Workload>::all(client.clone()), 2);
    let Ok([workloads_for_controller, workloads_for_index]) = <[_; 2]>::try_from(workload_subs) else {
        unreachable!("caches::shared made 2 subscribers")
    };
    let (following, following_watch) = LiveIndex::new(
        workloads.clone(),
        workloads_for_index,
        followers::workload_follows,
    );
    let (health_tx, health_rx) = tokio::sync::watch::channel(Arc::default());
    let lifecycle = NodeLifecycle {
        ctx: ctx.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        leases,
        workloads: workloads.clone(),
        grace: node_grace,
        observations: Default::default(),
        evicted: Default::default(),
        pacing: Default::default(),
    };
    let scheduler = Scheduler {
        ctx: ctx.clone(),
        pods: pods.clone(),
        nodes,
        health: health_rx,
        assumed: Default::default(),
    };
    let wctx = Arc::new(WorkloadContext { ctx, pods });

    // The Workloads that follow a tag that changed ([`followers::workload_follows`]).
    let by_tag = following.clone();
    let follows = move |tag: Arc<ImageStreamTag>| by_tag.followers(&TagKey::of(&tag));
    // The Workloads of a stream's namespace that follow one of its tags (its lookup policy may have changed
    // what their short names mean): every tag of the stream the tag cache knows.
    let tags_cache = wctx.ctx.tags.clone();
    let in_stream = move |stream: Arc<ImageStream>| {
        let (namespace, name) = (stream.namespace(), stream.name_any());
        let mut found: Vec<ObjectRef<Workload>> = tags_cache
            .state()
            .iter()
            .filter(|t| t.namespace() == namespace && t.spec.stream == name)
            .flat_map(|t| following.followers(&TagKey::of(t)))
            .collect();
        found.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        found.dedup();
        found
    };
    let controller = Controller::for_shared_stream(workloads_for_controller, workloads.clone());
    let reconciler = controller
        .owns_shared_stream(pods_for_workloads)
        .watches_shared_stream(tags, follows)
        .watches_shared_stream(streams, in_stream)
        .run(reconcile::reconcile, reconcile::error_policy, wctx)
        .for_each(|_| std::future::ready(()));
    tokio::select! {
        () = pods_watch => {}
        () = workloads_watch => {}
        () = following_watch => {}
        () = nodes_watch => {}
        () = leases_watch => {}
        () = reconciler => {}
        () = scheduler.run(pods_for_scheduler) => {}
        () = lifecycle.run(health_tx) => {}
    }
}
