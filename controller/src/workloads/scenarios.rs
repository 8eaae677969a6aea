//! The Workload reconciler against a mocked API server that expects each request in order
//! ([`crate::testing::api_server`]): a Workload scaled up creates its Pods (owned, labelled, on the tag's
//! digest) and applies its status; a pending Pod is counted and left to the scheduler; a settled Workload
//! writes nothing. Binding is tested with the scheduler (`crate::scheduling`).

use std::sync::Arc;

use berth_api::apps::{ContainerImage, REVISION_LABEL, SCHEDULER_NAME, WORKLOAD_LABEL, Workload};
use berth_api::image::ImageStreamTag;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::images::resolve_images;
use super::pods::{pod, pod_name, revision_hash};
use super::reconcile::{RESYNC, WorkloadContext, reconcile};
use super::rollout::{self, PodView};
use super::status;
use crate::context::{FIELD_MANAGER, TagSnapshot};
use crate::grants::FakeGrants;
use crate::testing::api_server::{self, Expect};
use crate::testing::context;
use crate::testing::fixtures::{NS, TagFixture, container_from, digest, istag, store, workload};

const PODS: &str = "/api/v1/namespaces/ns/pods";
const STATUS: &str = "/apis/apps.berth.dev/v1alpha1/namespaces/ns/workloads/web/status";

/// Tag `app:live`, imported at digest `1`.
fn live() -> ImageStreamTag {
    istag(NS, "app", "live")
        .stored("tag-uid", 1)
        .imported(&digest('1'))
}

/// Workload `web`: `replicas` of one container following `app:live`.
fn web(replicas: i32) -> Workload {
    workload(NS, "web", replicas, vec![container_from("web", "app:live", None)])
}

/// The images and revision hash `w` rolls towards with `tags`.
fn target(w: &Workload, tags: &[ImageStreamTag]) -> (Vec<ContainerImage>, String) {
    let snapshot = TagSnapshot(tags.iter().cloned().map(Arc::new).collect());
    let images = resolve_images(
        w,
        NS,
        &snapshot,
        &store::<berth_api::image::ImageStream>([]),
        &FakeGrants::default(),
    )
    .expect("no grant needed")
    .expect("resolved");
    let hash = revision_hash(w, &images);
    (images, hash)
}

fn wctx(client: kube::Client, tags: Vec<ImageStreamTag>, pods: Vec<Pod>) -> Arc<WorkloadContext> {
    Arc::new(WorkloadContext {
        ctx: context(client, tags, vec![]),
        pods: store(pods),
    })
}

/// The create of Pod `name` of revision `hash`, owned by `web`, running `image`.
fn pod_create(name: &str, hash: &str, image: &str) -> Expect {
    Expect::create(PODS)
        .json("/metadata/name", json!(name))
        .json("/metadata/ownerReferences/0/kind", json!("Workload"))
        .json("/metadata/ownerReferences/0/name", json!("web"))
        .json("/metadata/ownerReferences/0/uid", json!("web-uid"))
        .json("/metadata/ownerReferences/0/controller", json!(true))
        .json("/spec/containers/0/image", json!(image))
        .json("/spec/schedulerName", json!(SCHEDULER_NAME))
        .absent("/spec/nodeName")
        .check("labelled with the workload and revision", {
            let hash = hash.to_owned();
            move |body: &Value| {
                let labels = &body["metadata"]["labels"];
                (labels[WORKLOAD_LABEL] == "web" && labels[REVISION_LABEL] == hash.as_str())
                    .then_some(())
                    .ok_or(format!("labels are {labels}"))
            }
        })
}

fn status_apply(w: &Workload) -> Expect {
    Expect::apply(STATUS, FIELD_MANAGER)
        .json("/kind", json!("Workload"))
        .absent("/spec")
        .answer_merged(serde_json::to_value(w).expect("json"))
}

#[tokio::test]
async fn a_workload_scaled_up_creates_owned_labelled_pods_on_the_tags_digest_then_applies_its_status() {
    let w = web(2);
    let (images, hash) = target(&w, &[live()]);
    let image = format!("reg/app@{}", digest('1'));
    assert_eq!(images[0].image, image);
    let (client, server) = api_server::mock([
        pod_create(&pod_name("web", &hash, 0), &hash, &image),
        pod_create(&pod_name("web", &hash, 1), &hash, &image),
        status_apply(&w)
            .json("/status/revision", json!(1))
            .json("/status/revisionHash", json!(hash))
            .json("/status/images/0/image", json!(image))
            .json("/status/observedGeneration", json!(1))
            .json("/status/replicas", json!(0))
            .check("Progressing=True RollingOut", |s| {
                let c = s["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"));
                c.filter(|c| c["status"] == "True" && c["reason"] == "RollingOut")
                    .map(|_| ())
                    .ok_or(format!("Progressing is {c:?}"))
            }),
    ]);
    let action = server
        .run(reconcile(Arc::new(w), wctx(client, vec![live()], vec![])))
        .await
        .expect("reconciled");
    // What happens next (the Pods created, bound, Ready) comes as events: only a resync is due.
    assert_eq!(action, Action::requeue(RESYNC));
}

/// Pod `index` of revision `hash` of `w`, as the API server stored it: bound to `node` (or not), Ready (or not).
fn stored_pod(
    w: &Workload,
    images: &[ContainerImage],
    hash: &str,
    index: usize,
    node: Option<&str>,
    ready: bool,
) -> Pod {
    let mut p = pod(w, hash, images, &pod_name("web", hash, index));
    p.metadata.uid = Some(format!("pod-uid-{index}"));
    p.metadata.creation_timestamp = Some(Time(Default::default()));
    if let Some(spec) = p.spec.as_mut() {
        spec.node_name = node.map(Into::into);
    }
    p.status = Some(PodStatus {
        phase: Some(if ready { "Running" } else { "Pending" }.into()),
        conditions: ready.then(|| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    });
    p
}

#[tokio::test]
async fn a_pending_pod_is_counted_and_left_to_the_scheduler() {
    let w = web(1);
    let (images, hash) = target(&w, &[live()]);
    let pending = stored_pod(&w, &images, &hash, 0, None, false);
    let (client, server) = api_server::mock([status_apply(&w)
        .json("/status/replicas", json!(1))
        .json("/status/updatedReplicas", json!(1))
        .json("/status/availableReplicas", json!(0))]);
    let cx = wctx(client, vec![live()], vec![pending]);
    server.run(reconcile(Arc::new(w), cx)).await.expect("reconciled");
}

/// `replicas` of `web` settled on `tags`: its Pods Ready on n1, and the status that says so.
fn settled(replicas: i32, tags: &[ImageStreamTag]) -> (Workload, Vec<Pod>) {
    let mut w = web(replicas);
    let (images, hash) = target(&w, tags);
    let pods: Vec<Pod> = (0..usize::try_from(replicas).expect("replicas"))
        .map(|i| stored_pod(&w, &images, &hash, i, Some("n1"), true))
        .collect();
    let views: Vec<PodView> = pods
        .iter()
        .map(|p| PodView {
            name: p.metadata.name.clone().unwrap_or_default(),
            revision: hash.clone(),
            ready: true,
            scheduled: true,
            created: 0,
        })
        .collect();
    let bounds = rollout::bounds(w.spec.replicas, w.spec.strategy.as_ref());
    let t = status::target(&w, hash, images);
    w.status = Some(status::compute(
        &w,
        Ok(&t),
        &views,
        bounds,
        &Time(Default::default()),
    ));
    (w, pods)
}

#[tokio::test]
async fn a_settled_workload_writes_nothing() {
    let (w, pods) = settled(2, &[live()]);
    let (client, server) = api_server::mock([]);
    let cx = wctx(client, vec![live()], pods);
    let action = server.run(reconcile(Arc::new(w), cx)).await.expect("reconciled");
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_moved_tag_starts_a_new_revision_one_surge_pod_at_a_time_and_says_so_once() {
    let (w, pods) = settled(2, &[live()]);
    let moved = istag(NS, "app", "live")
        .stored("tag-uid", 2)
        .imported(&digest('2'));
    let (_, hash) = target(&w, std::slice::from_ref(&moved));
    let image = format!("reg/app@{}", digest('2'));
    let event = |reason: &str| {
        Expect::event(NS)
            .json("/reason", json!(reason))
            .json("/type", json!("Normal"))
            .json("/action", json!("Revision2"))
            .json("/regarding/kind", json!("Workload"))
            .json("/regarding/name", json!("web"))
    };
    let (client, server) = api_server::mock([
        // 25% surge of 2 is one Pod more; 25% unavailable of 2 is none: no old Pod goes yet.
        pod_create(&pod_name("web", &hash, 0), &hash, &image),
        status_apply(&w)
            .json("/status/revision", json!(2))
            .json("/status/revisionHash", json!(hash))
            .json("/status/images/0/image", json!(image))
            .json("/status/replicas", json!(2))
            .json("/status/updatedReplicas", json!(0)),
        event("Triggered").json("/note", json!(format!("web follows ns/app:live to {image}"))),
        event("RolloutStarted").json("/note", json!("rolling out revision 2")),
    ]);
    let cx = wctx(client, vec![moved], pods);
    let action = server.run(reconcile(Arc::new(w), cx)).await.expect("reconciled");
    assert_eq!(action, Action::requeue(RESYNC));
}
