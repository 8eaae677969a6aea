//! A revision (the template with its resolved images) and the Pods made from it.
//!
//! Pod names are `WORKLOAD-HASH-N` with the lowest free `N`: a controller that restarts half-way through a
//! rollout creates a name that already exists, which the API server refuses, so no duplicates arise.

use std::collections::BTreeMap;

use berth_api::apps::{AGENT_KEY, ContainerImage, REVISION_LABEL, SCHEDULER_NAME, WORKLOAD_LABEL, Workload};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

/// The hash that names a revision: the template with its images.
pub fn revision_hash(workload: &Workload, images: &[ContainerImage]) -> String {
    let text = serde_json::to_string(&(&workload.spec.template, images)).expect("serialisable");
    hex::encode(&Sha256::digest(text.as_bytes())[..5])
}

/// The name of the `index`th Pod of revision `hash`.
pub fn pod_name(workload: &str, hash: &str, index: usize) -> String {
    format!("{workload}-{hash}-{index}")
}

/// The lowest `count` pod names of revision `hash` not in `taken`.
pub fn free_names<'a>(
    workload: &str,
    hash: &str,
    taken: impl IntoIterator<Item = &'a str> + Clone,
    count: usize,
) -> Vec<String> {
    (0..)
        .map(|i| pod_name(workload, hash, i))
        .filter(|name| !taken.clone().into_iter().any(|t| t == name))
        .take(count)
        .collect()
}

/// A Pod of revision `hash` of `workload`, named `name`, not yet bound to a node.
pub fn pod(workload: &Workload, hash: &str, images: &[ContainerImage], name: &str) -> Pod {
    let template = &workload.spec.template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels;
    labels.insert(WORKLOAD_LABEL.to_owned(), workload.name_any());
    labels.insert(REVISION_LABEL.to_owned(), hash.to_owned());
    let containers = template
        .spec
        .containers
        .iter()
        .map(|c| Container {
            name: c.name.clone(),
            image: images
                .iter()
                .find(|i| i.container == c.name)
                .map(|i| i.image.clone()),
            image_pull_policy: c.image_pull_policy.map(|p| format!("{p:?}")),
            command: (!c.command.is_empty()).then(|| c.command.clone()),
            args: (!c.args.is_empty()).then(|| c.args.clone()),
            env: (!c.env.is_empty()).then(|| c.env.clone()),
            working_dir: c.working_dir.clone(),
            ports: (!c.ports.is_empty()).then(|| c.ports.clone()),
            resources: c.resources.clone(),
            readiness_probe: c.readiness_probe.clone(),
            liveness_probe: c.liveness_probe.clone(),
            ..Container::default()
        })
        .collect();
    let mut tolerations = template.spec.tolerations.clone();
    tolerations.push(Toleration {
        key: Some(AGENT_KEY.to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some("NoSchedule".to_owned()),
        ..Toleration::default()
    });
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: workload.namespace(),
            labels: Some(labels),
            annotations: (!meta.annotations.is_empty()).then_some(meta.annotations),
            owner_references: workload.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers,
            node_selector: (!template.spec.node_selector.is_empty())
                .then(|| template.spec.node_selector.clone()),
            tolerations: Some(tolerations),
            image_pull_secrets: (!template.spec.image_pull_secrets.is_empty())
                .then(|| template.spec.image_pull_secrets.clone()),
            termination_grace_period_seconds: template.spec.termination_grace_period_seconds,
            restart_policy: Some("Always".to_owned()),
            scheduler_name: Some(SCHEDULER_NAME.to_owned()),
            enable_service_links: Some(false),
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::apps::{PodTemplate, WorkloadSpec};

    fn workload() -> Workload {
        let mut wl = Workload::new(
            "web",
            WorkloadSpec {
                replicas: 2,
                template: PodTemplate {
                    metadata: None,
                    spec: berth_api::apps::PodSpec {
                        containers: vec![berth_api::apps::Container {
                            name: "app".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                },
                ..Default::default()
            },
        );
        wl.metadata.namespace = Some("ns".into());
        wl.metadata.uid = Some("wl-uid".into());
        wl
    }

    fn image(digest: &str) -> Vec<ContainerImage> {
        vec![ContainerImage {
            container: "app".into(),
            from: None,
            image: format!("reg/app@{digest}"),
        }]
    }

    #[test]
    fn a_new_digest_is_a_new_revision_and_the_same_is_the_same() {
        let wl = workload();
        assert_eq!(
            revision_hash(&wl, &image("sha256:1")),
            revision_hash(&wl, &image("sha256:1"))
        );
        assert_ne!(
            revision_hash(&wl, &image("sha256:1")),
            revision_hash(&wl, &image("sha256:2"))
        );
        assert_eq!(revision_hash(&wl, &image("sha256:1")).len(), 10);
    }

    #[test]
    fn pods_carry_labels_owner_image_toleration_and_scheduler() {
        let wl = workload();
        let p = pod(&wl, "abc", &image("sha256:1"), "web-abc-0");
        let labels = p.labels();
        assert_eq!(
            (labels[WORKLOAD_LABEL].as_str(), labels[REVISION_LABEL].as_str()),
            ("web", "abc")
        );
        assert_eq!(p.owner_references()[0].uid, "wl-uid");
        let spec = p.spec.unwrap();
        assert_eq!(spec.containers[0].image.as_deref(), Some("reg/app@sha256:1"));
        assert_eq!(spec.scheduler_name.as_deref(), Some(SCHEDULER_NAME));
        assert!(spec.node_name.is_none());
        assert!(
            spec.tolerations
                .unwrap()
                .iter()
                .any(|t| t.key.as_deref() == Some(AGENT_KEY))
        );
    }

    #[test]
    fn names_fill_the_lowest_free_slots() {
        let taken = ["web-h-0", "web-h-2"];
        assert_eq!(free_names("web", "h", taken, 2), vec!["web-h-1", "web-h-3"]);
    }
}
