//! The decisions about the pod's volumes, by volume type.

use k8s_openapi::api::core::v1::{PodSpec, Volume};

use super::container::is_service_account_volume;
use super::{NodePolicy, Review, Why};

pub(super) fn review(volumes: &[Volume], spec: &PodSpec, policy: &NodePolicy, r: &mut Review) {
    for v in volumes {
        let field = format!("spec.volumes[{}]", v.name);
        if is_service_account_volume(&v.name) {
            // Fewer credentials, not less isolation: the pod runs without its token.
            r.ignore(field, "the service-account token is not mounted yet");
            continue;
        }
        let Volume {
            name: _,
            // Types the agent implements: none yet but the service-account token above.
            config_map,
            downward_api,
            empty_dir,
            projected,
            secret,
            host_path,
            // Storage the node does not attach.
            aws_elastic_block_store,
            azure_disk,
            azure_file,
            cephfs,
            cinder,
            csi,
            ephemeral,
            fc,
            flex_volume,
            flocker,
            gce_persistent_disk,
            git_repo,
            glusterfs,
            image,
            iscsi,
            nfs,
            persistent_volume_claim,
            photon_persistent_disk,
            portworx_volume,
            quobyte,
            rbd,
            scale_io,
            storageos,
            vsphere_volume,
        } = v;
        let kinds = [
            (config_map.is_some(), "configMap"),
            (downward_api.is_some(), "downwardAPI"),
            (empty_dir.is_some(), "emptyDir"),
            (projected.is_some(), "projected"),
            (secret.is_some(), "secret"),
        ];
        for (_, kind) in kinds.iter().filter(|(set, _)| *set) {
            r.refuse(format!("{field}.{kind}"), Why::Unsupported, "this volume type is not implemented yet");
        }
        if host_path.is_some() {
            let why = if policy.allow_host_path { Why::Unsupported } else { Why::Forbidden };
            r.refuse(
                format!("{field}.hostPath"),
                why,
                "this node does not allow hostPath volumes (berth-agent --allow-host-path)",
            );
        }
        let storage = [
            aws_elastic_block_store.is_some(),
            azure_disk.is_some(),
            azure_file.is_some(),
            cephfs.is_some(),
            cinder.is_some(),
            csi.is_some(),
            ephemeral.is_some(),
            fc.is_some(),
            flex_volume.is_some(),
            flocker.is_some(),
            gce_persistent_disk.is_some(),
            git_repo.is_some(),
            glusterfs.is_some(),
            image.is_some(),
            iscsi.is_some(),
            nfs.is_some(),
            persistent_volume_claim.is_some(),
            photon_persistent_disk.is_some(),
            portworx_volume.is_some(),
            quobyte.is_some(),
            rbd.is_some(),
            scale_io.is_some(),
            storageos.is_some(),
            vsphere_volume.is_some(),
        ];
        if storage.into_iter().any(|s| s) {
            r.refuse(
                field,
                Why::Unsupported,
                "this node attaches no storage (persistent volumes, CSI and network filesystems are not implemented)",
            );
        }
    }
    let _ = spec;
}
