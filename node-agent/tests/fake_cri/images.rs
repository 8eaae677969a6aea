//! The image half of [`FakeCri`]: pulls (an image whose name contains `missing` fails),
//! image status by reference or by id, removal, and the image filesystem's usage (the sum of
//! the images' sizes, on the mountpoint [`IMAGE_FS`]).

use berth_agent::cri::api::*;
use tonic::{Request, Response, Status};

use super::{FakeCri, FakeState, R};

/// The mountpoint `ImageFsInfo` reports.
pub const IMAGE_FS: &str = "/fake/containerd/images";

/// The size of an image whose size a test did not set.
pub const DEFAULT_SIZE: u64 = 1_000_000;

/// The size of `image` in `s`.
pub(super) fn size(s: &FakeState, image: &str) -> u64 {
    s.image_sizes.get(image).copied().unwrap_or(DEFAULT_SIZE)
}

/// A stable fake digest of an image reference.
pub(super) fn digest(image: &str) -> String {
    let sum = image
        .bytes()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("sha256:{sum:064x}")
}

fn image_record(image: &str, size: u64) -> Image {
    let repo = image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or(image, |(r, _)| r);
    Image {
        id: digest(image),
        repo_tags: vec![image.to_string()],
        repo_digests: vec![format!("{repo}@{}", digest(image))],
        size,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl image_service_server::ImageService for FakeCri {
    async fn pull_image(&self, r: Request<PullImageRequest>) -> R<PullImageResponse> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        let mut s = self.record(format!("PullImage {image}"));
        if image.contains("missing") {
            return Err(Status::not_found(format!("{image}: not found")));
        }
        s.images.insert(image.clone());
        Ok(Response::new(PullImageResponse {
            image_ref: digest(&image),
        }))
    }

    async fn image_status(&self, r: Request<ImageStatusRequest>) -> R<ImageStatusResponse> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        let s = self.lock();
        let found = s.images.iter().find(|i| **i == image || digest(i) == image);
        Ok(Response::new(ImageStatusResponse {
            image: found.map(|i| image_record(i, size(&s, i))),
            ..Default::default()
        }))
    }

    async fn list_images(&self, _: Request<ListImagesRequest>) -> R<ListImagesResponse> {
        let s = self.lock();
        Ok(Response::new(ListImagesResponse {
            images: s.images.iter().map(|i| image_record(i, size(&s, i))).collect(),
        }))
    }

    async fn remove_image(&self, r: Request<RemoveImageRequest>) -> R<RemoveImageResponse> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        let mut s = self.record(format!("RemoveImage {image}"));
        let found = s
            .images
            .iter()
            .find(|i| **i == image || digest(i) == image)
            .cloned();
        let Some(found) = found else {
            return Err(Status::not_found(format!("image {image}")));
        };
        s.images.remove(&found);
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> R<ImageFsInfoResponse> {
        let s = self.lock();
        let used: u64 = s.images.iter().map(|i| size(&s, i)).sum();
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![FilesystemUsage {
                timestamp: super::now(),
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: IMAGE_FS.into(),
                }),
                used_bytes: Some(UInt64Value { value: used }),
                inodes_used: Some(UInt64Value {
                    value: s.images.len() as u64,
                }),
            }],
        }))
    }
}
