//! What pulls need from the API server and the runtime: credentials from the pod's
//! `imagePullSecrets`, and the digest references (`imageID`) of the images containers run.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use tracing::warn;

use crate::images;
use crate::lifecycle;
use crate::observe::Observed;
use crate::sync::{Memory, Shared};

/// Credentials for `image` from the pod's `imagePullSecrets` (unreadable secrets are skipped).
pub(crate) async fn pull_credentials(
    shared: &Shared,
    pod: &Pod,
    image: &str,
) -> Option<crate::cri::api::AuthConfig> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let names: Vec<String> = pod
        .spec
        .as_ref()?
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    if names.is_empty() {
        return None;
    }
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), ns);
    let mut secrets = Vec::new();
    for name in names {
        match api.get_opt(&name).await {
            Ok(Some(s)) => {
                let kind = s.type_.clone().unwrap_or_default();
                let key = if kind == "kubernetes.io/dockercfg" {
                    ".dockercfg"
                } else {
                    ".dockerconfigjson"
                };
                if let Some(data) = s.data.as_ref().and_then(|d| d.get(key)) {
                    secrets.push((kind, data.0.clone()));
                }
            }
            Ok(None) => warn!(secret = %name, "image pull secret not found"),
            Err(e) => warn!(secret = %name, error = %e, "reading image pull secret"),
        }
    }
    images::credentials_for(image, &secrets)
}

/// Fills `imageID`s (the digest reference) for containers (app and init) whose image changed.
pub(crate) async fn refresh_image_ids(shared: &Shared, pod: &Pod, obs: &Observed, mem: &mut Memory) {
    let inits = lifecycle::spec_init_containers(pod);
    for (name, image) in lifecycle::spec_containers(pod).into_iter().chain(inits) {
        let Some(c) = obs.latest(name) else { continue };
        let key = format!("{}|{}", c.image_ref, image);
        if mem.image_ids.get(&format!("{name}#key")) == Some(&key) {
            continue;
        }
        if let Ok(Some(img)) = shared.cri.image_status(&c.image_ref).await
            && let Some(id) = images::digest_reference(image, &img.repo_digests)
        {
            mem.image_ids.insert(name.to_string(), id);
            mem.image_ids.insert(format!("{name}#key"), key);
        }
    }
}
