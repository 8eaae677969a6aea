//! Image references, pull policies and registry credentials from `imagePullSecrets`: pure
//! functions, the pulls themselves happen in [`crate::lifecycle`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cri::api::AuthConfig;

/// When to pull an image before starting a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every time a container starts.
    Always,
    /// Pull only when the runtime does not have the image.
    IfNotPresent,
    /// Never pull; fail when the image is absent.
    Never,
}

/// The effective pull policy of a container: the explicit `imagePullPolicy`, else Kubernetes'
/// default (`Always` for `:latest` or untagged references, `IfNotPresent` otherwise). A
/// reference by digest names immutable content, so it defaults to `IfNotPresent`.
pub fn pull_policy(image: &str, explicit: Option<&str>) -> PullPolicy {
    match explicit {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        _ => {
            let r = parse_reference(image);
            if r.digest.is_some() {
                PullPolicy::IfNotPresent
            } else if r.tag.as_deref().is_none_or(|t| t == "latest") {
                PullPolicy::Always
            } else {
                PullPolicy::IfNotPresent
            }
        }
    }
}

/// Whether to pull now, given the policy and whether the runtime has the image.
pub fn needs_pull(policy: PullPolicy, present: bool) -> bool {
    match policy {
        PullPolicy::Always => true,
        PullPolicy::IfNotPresent => !present,
        PullPolicy::Never => false,
    }
}

/// The parts of an image reference that matter to the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The registry host (`docker.io` when the reference names none).
    pub registry: String,
    /// The repository path within the registry.
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`sha256:...`), if any.
    pub digest: Option<String>,
}

/// Splits `registry/repo:tag@digest` following the Docker reference grammar's host rule (the
/// first component is a host when it has a `.` or `:` or is `localhost`).
pub fn parse_reference(image: &str) -> Reference {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (image, None),
    };
    let (registry, path) = match rest.split_once('/') {
        Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            (first.to_string(), path)
        }
        _ => ("docker.io".to_string(), rest),
    };
    // A ':' after the last '/' starts the tag.
    let last_slash = path.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match path[last_slash..].rfind(':') {
        Some(i) => (
            path[..last_slash + i].to_string(),
            Some(path[last_slash + i + 1..].to_string()),
        ),
        None => (path.to_string(), None),
    };
    Reference {
        registry,
        repository,
        tag,
        digest,
    }
}

/// The digest form of `image` (`registry/repo@sha256:...`) found among an image's
/// `repo_digests`, used as a container status' `imageID`.
pub fn digest_reference(image: &str, repo_digests: &[String]) -> Option<String> {
    let want = parse_reference(image);
    repo_digests
        .iter()
        .find(|d| {
            let r = parse_reference(d);
            r.registry == want.registry && r.repository == want.repository
        })
        .or_else(|| repo_digests.first())
        .cloned()
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
    #[serde(default, rename = "registrytoken")]
    registry_token: String,
}

/// The host a `.dockerconfigjson` key names (`https://index.docker.io/v1/` → `docker.io`).
fn auth_key_host(key: &str) -> String {
    let key = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// The `server_address` of CRI credentials for `registry`. containerd parses it as a URL and
/// only uses the credentials for the host it names (`10.213.0.1:5002` alone does not parse:
/// a scheme is needed). Docker Hub's pulls go to `registry-1.docker.io`, not `docker.io`:
/// left empty there, the credentials apply to the pull's own hosts.
pub fn server_address(registry: &str) -> String {
    if registry == "docker.io" {
        String::new()
    } else {
        format!("https://{registry}")
    }
}

/// Credentials for `image` from the contents of pull secrets: each item is a secret's type and
/// its `.dockerconfigjson` (or legacy `.dockercfg`) bytes. The first secret with an entry for
/// the image's registry wins, as in the kubelet. Malformed secrets are skipped.
pub fn credentials_for(image: &str, secrets: &[(String, Vec<u8>)]) -> Option<AuthConfig> {
    let registry = parse_reference(image).registry;
    for (kind, data) in secrets {
        let auths: BTreeMap<String, DockerAuth> = if kind == "kubernetes.io/dockercfg" {
            serde_json::from_slice(data).unwrap_or_default()
        } else {
            serde_json::from_slice::<DockerConfig>(data)
                .map(|c| c.auths)
                .unwrap_or_default()
        };
        if let Some((_, a)) = auths.into_iter().find(|(k, _)| auth_key_host(k) == registry) {
            return Some(AuthConfig {
                username: a.username,
                password: a.password,
                auth: a.auth,
                server_address: server_address(&registry),
                identity_token: a.identity_token,
                registry_token: a.registry_token,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:5c781959d5a0da4087a385b36fe5e7a955aaa9ff03201cd3c3f9578cabab617f";

    #[test]
    fn parses_references() {
        let r = parse_reference("10.213.0.1:5000/berth/demo:v1");
        assert_eq!(r.registry, "10.213.0.1:5000");
        assert_eq!(r.repository, "berth/demo");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let r = parse_reference(&format!("10.213.0.1:5000/berth/demo@{DIGEST}"));
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
        assert_eq!(r.tag, None);
        let r = parse_reference("busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "busybox")
        );
        let r = parse_reference("localhost/x/y:1");
        assert_eq!(r.registry, "localhost");
    }

    #[test]
    fn default_pull_policies() {
        assert_eq!(pull_policy("r:5000/a/b:v1", None), PullPolicy::IfNotPresent);
        assert_eq!(pull_policy("r:5000/a/b", None), PullPolicy::Always);
        assert_eq!(pull_policy("r:5000/a/b:latest", None), PullPolicy::Always);
        assert_eq!(
            pull_policy(&format!("r:5000/a/b@{DIGEST}"), None),
            PullPolicy::IfNotPresent
        );
        assert_eq!(pull_policy("r:5000/a/b:v1", Some("Always")), PullPolicy::Always);
        assert_eq!(pull_policy("r:5000/a/b:v1", Some("Never")), PullPolicy::Never);
        assert!(needs_pull(PullPolicy::Always, true));
        assert!(!needs_pull(PullPolicy::IfNotPresent, true));
        assert!(needs_pull(PullPolicy::IfNotPresent, false));
        assert!(!needs_pull(PullPolicy::Never, false));
    }

    #[test]
    fn credentials_from_pull_secrets() {
        let json = br#"{"auths":{"https://other.example/v1/":{"username":"x","password":"y"},
            "10.213.0.1:5000":{"username":"robot","password":"s3cret","auth":"cm9ib3Q6czNjcmV0"}}}"#;
        let secrets = vec![
            ("kubernetes.io/dockerconfigjson".to_string(), b"not json".to_vec()),
            ("kubernetes.io/dockerconfigjson".to_string(), json.to_vec()),
        ];
        let a = credentials_for("10.213.0.1:5000/berth/demo:v1", &secrets).expect("found");
        assert_eq!(a.username, "robot");
        assert_eq!(a.password, "s3cret");
        assert_eq!(a.server_address, "https://10.213.0.1:5000");
        assert_eq!(
            server_address("docker.io"),
            "",
            "Docker Hub: any host of the pull"
        );
        assert!(credentials_for("quay.io/a/b:1", &secrets).is_none());
        let legacy = vec![(
            "kubernetes.io/dockercfg".to_string(),
            br#"{"https://index.docker.io/v1/":{"auth":"eDp5"}}"#.to_vec(),
        )];
        assert_eq!(
            credentials_for("busybox:1", &legacy).expect("docker.io").auth,
            "eDp5"
        );
    }

    #[test]
    fn image_id_is_the_matching_repo_digest() {
        let digests = vec![
            format!("elsewhere.io/x/y@{DIGEST}"),
            format!("10.213.0.1:5000/berth/demo@{DIGEST}"),
        ];
        assert_eq!(
            digest_reference("10.213.0.1:5000/berth/demo:v1", &digests).as_deref(),
            Some(digests[1].as_str())
        );
    }
}
