//! GitHub's `package` and `registry_package` webhook events for container packages (ghcr.io): a version
//! `published` or `updated` with `container_metadata.tag.name` pushes that tag of
//! `package_version.package_url` (`ghcr.io/owner/name:tag`). GitHub writes owners as they are spelled
//! (`Codertocat`) while image names are lower case, so the repository is lower-cased. A `ping`, other
//! events, other package types and versions pushed without a tag match nothing.

use axum::http::HeaderMap;
use serde::Deserialize;

use super::{Pushed, without_tag};

/// The header naming the event.
const EVENT: &str = "x-github-event";

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    package: Option<Package>,
    #[serde(default)]
    registry_package: Option<Package>,
}

#[derive(Debug, Deserialize)]
struct Package {
    name: String,
    #[serde(default)]
    owner: Option<Owner>,
    #[serde(default)]
    package_version: Option<Version>,
}

#[derive(Debug, Deserialize)]
struct Owner {
    login: String,
}

#[derive(Debug, Deserialize)]
struct Version {
    #[serde(default)]
    container_metadata: Option<ContainerMetadata>,
    #[serde(default)]
    package_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContainerMetadata {
    #[serde(default)]
    tag: Option<Tag>,
}

#[derive(Debug, Deserialize)]
struct Tag {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    digest: Option<String>,
}

/// The push of a GitHub package event.
pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Pushed>, String> {
    let event = headers.get(EVENT).and_then(|v| v.to_str().ok());
    if event.is_some_and(|e| e != "package" && e != "registry_package") {
        // `ping` when the webhook is created, or an event this endpoint does not take.
        return Ok(Vec::new());
    }
    let payload: Payload = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let package = match event {
        Some("registry_package") => payload.registry_package,
        Some(_) => payload.package,
        None => payload.package.or(payload.registry_package),
    }
    .ok_or("neither package nor registry_package: not a GitHub package event")?;
    if !matches!(payload.action.as_deref(), Some("published" | "updated")) {
        return Ok(Vec::new());
    }
    let Some(version) = package.package_version else {
        return Err("the package has no package_version".into());
    };
    let Some(tag) = version.container_metadata.and_then(|m| m.tag) else {
        // Not a container package (npm, Maven, ...).
        return Ok(Vec::new());
    };
    let Some(name) = tag.name.filter(|n| !n.is_empty()) else {
        // Pushed by digest only.
        return Ok(Vec::new());
    };
    let repository = match version.package_url.as_deref().map(without_tag) {
        Some(url) if !url.is_empty() => url.to_owned(),
        _ => {
            let owner = package
                .owner
                .ok_or("the package has neither package_version.package_url nor owner")?;
            format!("ghcr.io/{}/{}", owner.login, package.name)
        }
    };
    Ok(vec![Pushed::parse(
        &repository.to_ascii_lowercase(),
        &name,
        tag.digest.as_deref(),
    )?])
}
