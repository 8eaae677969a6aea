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

    let controller = Controller::new(
        Api::<Workload>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let workloads = controller.store();
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

    // The Workloads of the cache that follow a tag that changed ([`followers::workload_follows`]).
    let by_tag = workloads.clone();
    let follows = move |tag: Arc<ImageStreamTag>| {
        let key = TagKey::of(&tag);
        by_tag
            .state()
            .iter()
            .filter(|w| followers::workload_follows(w).contains(&key))
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect::<Vec<_>>()
    };
    // The Workloads of a stream's namespace that follow one of its tags (its lookup policy may have changed
    // what their short names mean).
    let by_stream = workloads;
    let in_stream = move |stream: Arc<ImageStream>| {
        let (namespace, name) = (stream.namespace().unwrap_or_default(), stream.name_any());
        by_stream
            .state()
            .iter()
            .filter(|w| {
                followers::workload_follows(w)
                    .iter()
                    .any(|k| k.namespace == namespace && k.stream == name)
            })
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect::<Vec<_>>()
    };
    let reconciler = controller
        .owns_shared_stream(pods_for_workloads)
        .watches_shared_stream(tags, follows)
        .watches_shared_stream(streams, in_stream)
        .run(reconcile::reconcile, reconcile::error_policy, wctx)
        .for_each(|_| std::future::ready(()));
    tokio::select! {
        () = pods_watch => {}
        () = nodes_watch => {}
        () = leases_watch => {}
        () = reconciler => {}
        () = scheduler.run(pods_for_scheduler) => {}
        () = lifecycle.run(health_tx) => {}
    }
}
