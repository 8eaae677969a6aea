//! Which images are in use, and why: the pure matching of references (a container's image id
//! or spec, a pod's spec) to the runtime's images by id, tag or digest.

use std::collections::HashMap;

use super::plan::Keep;
use super::records::ImageInfo;
use crate::images::parse_reference;

/// What refers to images on this node.
#[derive(Clone, Debug, Default)]
pub struct Users {
    /// The image references of every container the runtime knows, in any state (its image id
    /// and the image its spec named).
    pub containers: Vec<String>,
    /// The images named by the pods bound to this node (they may be about to start).
    pub pods: Vec<String>,
    /// The pod sandbox ("pause") image.
    pub sandbox: Option<String>,
}

/// `registry/repository` with Docker Hub's `library/` for one-component names.
fn repository(reference: &str) -> (String, Option<String>, Option<String>) {
    let r = parse_reference(reference);
    let repo = if r.registry == "docker.io" && !r.repository.contains('/') {
        format!("docker.io/library/{}", r.repository)
    } else {
        format!("{}/{}", r.registry, r.repository)
    };
    (repo, r.tag, r.digest)
}

/// True when `reference` names `image`: its id (with or without `sha256:`), or one of its
/// tags (an untagged reference means `:latest`) or digests, after normalising both
/// (`busybox:1` is `docker.io/library/busybox:1`).
pub fn refers_to(reference: &str, image: &ImageInfo) -> bool {
    if reference.is_empty() {
        return false;
    }
    if reference == image.id || image.id.strip_prefix("sha256:") == Some(reference) {
        return true;
    }
    let (repo, tag, digest) = repository(reference);
    if let Some(digest) = digest {
        return image.digests.iter().any(|d| {
            let (r, _, dd) = repository(d);
            r == repo && dd.as_deref() == Some(digest.as_str())
        });
    }
    let tag = tag.unwrap_or_else(|| "latest".into());
    image.tags.iter().any(|t| {
        let (r, tt, _) = repository(t);
        r == repo && tt.as_deref().unwrap_or("latest") == tag
    })
}

/// The images that must stay, by id, with the first reason found (sandbox, pinned, a
/// container, a pod).
pub fn in_use(images: &[ImageInfo], users: &Users) -> HashMap<String, Keep> {
    let mut keep = HashMap::new();
    for image in images {
        let named = |refs: &[String]| refs.iter().any(|r| refers_to(r, image));
        let why = if users.sandbox.as_deref().is_some_and(|s| refers_to(s, image)) {
            Some(Keep::Sandbox)
        } else if image.pinned {
            Some(Keep::Pinned)
        } else if named(&users.containers) {
            Some(Keep::Container)
        } else if named(&users.pods) {
            Some(Keep::Pod)
        } else {
            None
        };
        if let Some(why) = why {
            keep.insert(image.id.clone(), why);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:5c781959d5a0da4087a385b36fe5e7a955aaa9ff03201cd3c3f9578cabab617f";

    fn busybox() -> ImageInfo {
        ImageInfo {
            id: "sha256:aaaa".into(),
            size: 10,
            tags: vec!["docker.io/library/busybox:1.28".into()],
            digests: vec![format!("docker.io/library/busybox@{D}")],
            pinned: false,
        }
    }

    #[test]
    fn references_match_by_id_tag_or_digest() {
        let b = busybox();
        assert!(refers_to("sha256:aaaa", &b));
        assert!(refers_to("aaaa", &b));
        assert!(refers_to("busybox:1.28", &b));
        assert!(refers_to("docker.io/library/busybox:1.28", &b));
        assert!(refers_to(&format!("busybox@{D}"), &b));
        assert!(
            refers_to(&format!("busybox:9@{D}"), &b),
            "the digest wins over the tag"
        );
        assert!(!refers_to("busybox", &b), "untagged means latest");
        assert!(!refers_to("busybox:1.29", &b));
        assert!(!refers_to("quay.io/busybox:1.28", &b));
        assert!(!refers_to("", &b));
        let latest = ImageInfo {
            tags: vec!["10.213.0.1:5000/berth/demo:latest".into()],
            ..busybox()
        };
        assert!(refers_to("10.213.0.1:5000/berth/demo", &latest));
    }

    #[test]
    fn in_use_says_why() {
        let mut pause = busybox();
        pause.id = "sha256:pause".into();
        pause.tags = vec!["10.213.0.1:5000/berth/pause:1".into()];
        let mut pinned = busybox();
        pinned.id = "sha256:pinned".into();
        pinned.tags = vec![];
        pinned.pinned = true;
        let mut web = busybox();
        web.id = "sha256:web".into();
        web.tags = vec!["r.test/web:1".into()];
        let mut next = busybox();
        next.id = "sha256:next".into();
        next.tags = vec!["r.test/next:1".into()];
        let mut unused = busybox();
        unused.id = "sha256:unused".into();
        unused.tags = vec!["r.test/unused:1".into()];
        let users = Users {
            containers: vec!["sha256:web".into()],
            pods: vec!["r.test/next:1".into()],
            sandbox: Some("10.213.0.1:5000/berth/pause:1".into()),
        };
        let keep = in_use(&[pause, pinned, web, next, unused], &users);
        assert_eq!(keep.get("sha256:pause"), Some(&Keep::Sandbox));
        assert_eq!(keep.get("sha256:pinned"), Some(&Keep::Pinned));
        assert_eq!(keep.get("sha256:web"), Some(&Keep::Container));
        assert_eq!(keep.get("sha256:next"), Some(&Keep::Pod));
        assert_eq!(keep.get("sha256:unused"), None);
    }
}
