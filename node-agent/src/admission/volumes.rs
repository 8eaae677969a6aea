//! The decisions about the pod's volumes, by volume type.

use k8s_openapi::api::core::v1::Volume;

use super::{NodePolicy, Review, Why};
use crate::volumes::layout::{self, Kind};

pub(super) fn review(volumes: &[Volume], policy: &NodePolicy, r: &mut Review) {
    for v in volumes {
        let field = format!("spec.volumes[{}]", v.name);
        let Volume {
            name: _,
            // Types the agent implements (crate::volumes): configMap, secret, downwardAPI and
            // projected (with service-account tokens, so the kube-api-access-* volume too),
            // emptyDir (disk; Memory as a tmpfs of sizeLimit), hostPath when the node allows it.
            config_map: _,
            downward_api: _,
            secret: _,
            empty_dir,
            projected,
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
        if empty_dir.is_some()
            && let Kind::Refused(why) = layout::kind(v, policy.allow_host_path)
        {
            // Honoured but for unknown media and non-positive limits; a disk-backed sizeLimit
            // is enforced by eviction (crate::volumes::over_limit), a Memory one is the tmpfs size.
            r.refuse(format!("{field}.emptyDir"), Why::Unsupported, why);
        }
        if projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .any(|s| s.cluster_trust_bundle.is_some())
        {
            r.refuse(
                format!("{field}.projected"),
                Why::Unsupported,
                "clusterTrustBundle projections are not implemented",
            );
        }
        if host_path.is_some() {
            match layout::kind(v, policy.allow_host_path) {
                Kind::HostPath(_) => {}
                Kind::Refused(why) if !policy.allow_host_path => {
                    r.refuse(format!("{field}.hostPath"), Why::Forbidden, why)
                }
                Kind::Refused(why) => r.refuse(format!("{field}.hostPath"), Why::Unsupported, why),
                _ => {}
            }
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
}
