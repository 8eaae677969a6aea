//! Quay's "Repository Push" notification (webhook method): `updated_tags` of `docker_url` (`quay.io/ns/repo`,
//! or the host of a self-hosted Quay). Quay sends no digest.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Pushed;

#[derive(Debug, Deserialize)]
struct Payload {
    /// `quay.io/namespace/repository`: the pull spec of the repository.
    docker_url: String,
    updated_tags: Tags,
}

/// The tags pushed: a list today; a map of tag to image id in Quay's older payloads.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Tags {
    List(Vec<String>),
    Map(BTreeMap<String, serde_json::Value>),
}

/// The pushes of a Quay repository push payload.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Pushed>, String> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let repository = payload
        .docker_url
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let tags: Vec<String> = match payload.updated_tags {
        Tags::List(tags) => tags,
        Tags::Map(tags) => tags.into_keys().collect(),
    };
    tags.iter()
        .map(|tag| Pushed::parse(repository, tag, None))
        .collect()
}
