//! Image references (`registry/repository:tag`, `repository@sha256:…`) parsed into a typed value.
//!
//! The grammar and the Docker Hub defaults (`busybox` is `docker.io/library/busybox:latest`) come from
//! `oci_spec::distribution::Reference` (re-exported by `oci-client`), the same code the protocol client
//! uses. Its errors are terse ("invalid reference format"), so the common mistakes are checked first here
//! to say exactly what is wrong; and Berth accepts only sha256 digests in lower-case hex, which it does not
//! enforce.

use std::fmt;

use berth_api::validation::{is_oci_tag, is_registry_host, is_sha256_digest};

use super::error::InvalidReference;

/// The registry host that stands for Docker Hub in references and pull specs.
pub const DOCKER_HUB: &str = "docker.io";

const SHAPE: &str = "write it as [registry/]repository[:tag][@sha256:digest], e.g. quay.io/org/app:v1";

/// A parsed image reference: where the manifest lives and which one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageReference {
    /// Parses a reference. A missing registry means Docker Hub (`docker.io`, one-word repositories under
    /// `library/`); a missing tag and digest means `latest`. Only `sha256:` digests are accepted.
    pub fn parse(input: &str) -> Result<Self, InvalidReference> {
        let fail = |problem: String| InvalidReference {
            input: input.to_string(),
            problem,
        };
        if input.trim().is_empty() {
            return Err(fail(format!("the reference is empty; {SHAPE}")));
        }
        if let Some((i, c)) = input
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || c.is_control())
        {
            return Err(fail(format!(
                "it contains {c:?} at byte {i}; references have no spaces; {SHAPE}"
            )));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (input, None),
        };
        if let Some(digest) = digest {
            check_digest(digest).map_err(fail)?;
        }
        // The tag is after the last ':' that follows the last '/' (a ':' before it is a registry port).
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_and_tag[..last_slash + i],
                Some(&name_and_tag[last_slash + i + 1..]),
            ),
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag
            && !is_oci_tag(tag)
        {
            return Err(fail(format!(
                "tag {tag:?} is not valid: a tag is 1 to 128 letters, digits, '_', '.' or '-', and does not \
                 start with '.' or '-'"
            )));
        }
        let repository_part = match name.split_once('/') {
            Some((first, rest)) if is_registry_host(first) => rest,
            _ => name,
        };
        if repository_part.is_empty() {
            return Err(fail(format!("the repository name is missing; {SHAPE}")));
        }
        if repository_part.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(fail(format!(
                "repository {repository_part:?} has upper-case letters; repository names are lower case"
            )));
        }
        let parsed = oci_client::Reference::try_from(input).map_err(|e| {
            fail(format!(
                "{e}: repository path components are lower-case letters and digits separated by '.', '_', \
                 '__' or '-'; {SHAPE}"
            ))
        })?;
        Ok(Self {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            // oci-spec fills in `latest` only when there is no digest either: keep that.
            tag: parsed.tag().map(str::to_string),
            digest: parsed.digest().map(str::to_string),
        })
    }

    /// The registry as written, normalised (`docker.io` for Docker Hub), as it appears in pull specs.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host the registry API answers on (`index.docker.io` for Docker Hub), where credentials are
    /// looked up by [`registry`](Self::registry) instead.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "index.docker.io"
        } else {
            &self.registry
        }
    }

    /// The repository path, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one (`latest` when neither tag nor digest was written).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned digest, if any: always `sha256:` + 64 lower-case hex digits.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What goes in the manifest URL: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The pull spec of `digest` in this repository: `registry/repository@sha256:…`.
    pub fn pull_spec(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

/// `registry/repository:tag`, `registry/repository@digest` or both, as people read it in messages.
impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!(
            "digest {digest:?} has no algorithm; write it as sha256:<64 hex digits>"
        ));
    };
    if algorithm != "sha256" {
        return Err(format!(
            "digest algorithm {algorithm:?} is not supported; Berth accepts only sha256:<64 hex digits>"
        ));
    }
    if !is_sha256_digest(digest) {
        return Err(format!(
            "digest {digest:?} is not valid: a sha256 digest is exactly 64 lower-case hex digits (got {} \
             characters)",
            hex.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ok(input: &str) -> ImageReference {
        ImageReference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"))
    }

    #[test]
    fn registry_repository_tag() {
        let r = ok("quay.io/org/app:v1.2");
        assert_eq!(
            (r.registry(), r.repository(), r.tag(), r.digest()),
            ("quay.io", "org/app", Some("v1.2"), None)
        );
        assert_eq!(r.api_host(), "quay.io");
        assert_eq!(r.manifest_reference(), "v1.2");
        assert_eq!(r.to_string(), "quay.io/org/app:v1.2");
        assert_eq!(r.pull_spec(D), format!("quay.io/org/app@{D}"));
    }

    #[test]
    fn docker_hub_defaults() {
        let r = ok("busybox");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        assert_eq!(r.api_host(), "index.docker.io");
        let r = ok("org/app:v1");
        assert_eq!((r.registry(), r.repository()), ("docker.io", "org/app"));
        let r = ok("index.docker.io/library/busybox:1");
        assert_eq!((r.registry(), r.repository()), ("docker.io", "library/busybox"));
    }

    #[test]
    fn ports_localhost_and_digests() {
        let r = ok("127.0.0.1:5000/berth/demo:v1");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "berth/demo", Some("v1"))
        );
        let r = ok("localhost/app");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost", "app", Some("latest"))
        );
        let r = ok(&format!("127.0.0.1:5000/app@{D}"));
        assert_eq!((r.tag(), r.digest()), (None, Some(D)));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/app@{D}"));
        let r = ok(&format!("app:v1@{D}"));
        assert_eq!(
            (r.tag(), r.digest(), r.manifest_reference()),
            (Some("v1"), Some(D), D)
        );
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("quay.io/app :v1", "no spaces"),
            ("Quay.io/Org/App:v1", "upper-case"),
            ("MyApp", "upper-case"),
            ("app@sha512:abcd", "\"sha512\" is not supported"),
            ("app@sha256:abc", "64 lower-case hex digits (got 3"),
            (&format!("app@sha256:{}", "A".repeat(64)), "64 lower-case hex"),
            ("app@0123", "no algorithm"),
            ("app:-bad", "tag \"-bad\" is not valid"),
            ("quay.io/", "repository name is missing"),
            ("quay.io/a//b", "invalid reference format"),
            ("app:", "tag \"\" is not valid"),
        ];
        for (input, expected) in cases {
            let err = ImageReference::parse(input).expect_err(input);
            assert!(err.to_string().contains(expected), "{input:?}: {err}");
            assert_eq!(&err.input, input);
        }
    }
}
