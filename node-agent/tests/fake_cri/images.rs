//! The image half of [`FakeCri`]: pulls (an image whose name contains `missing` fails) and
//! image status by reference or by id.

use berth_agent::cri::api::*;
use tonic::{Request, Response, Status};

use super::{FakeCri, R};

/// A stable fake digest of an image reference.
pub(super) fn digest(image: &str) -> String {
    let sum = image
        .bytes()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("sha256:{sum:064x}")
}

fn image_record(image: &str) -> Image {
    let repo = image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or(image, |(r, _)| r);
    Image {
        id: digest(image),
        repo_tags: vec![image.to_string()],
        repo_digests: vec![format!("{repo}@{}", digest(image))],
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
            image: found.map(|i| image_record(i)),
            ..Default::default()
        }))
    }

    async fn list_images(&self, _: Request<ListImagesRequest>) -> R<ListImagesResponse> {
        let s = self.lock();
        Ok(Response::new(ListImagesResponse {
            images: s.images.iter().map(|i| image_record(i)).collect(),
        }))
    }

    async fn remove_image(&self, _: Request<RemoveImageRequest>) -> R<RemoveImageResponse> {
        Err(Status::unimplemented("FakeCri: remove_image"))
    }

    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> R<ImageFsInfoResponse> {
        Err(Status::unimplemented("FakeCri: image_fs_info"))
    }
}
