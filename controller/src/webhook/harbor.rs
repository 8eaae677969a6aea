//! Harbor's webhook policies (HTTP endpoint): Harbor 1.x (`"type": "pushImage"`), Harbor 2.x in the Default
//! payload format (`"type": "PUSH_ARTIFACT"`, the data in `event_data`) and in the CloudEvents format
//! (`"type": "harbor.artifact.pushed"`, the data in `data`). Each resource pushed by tag names its
//! `resource_url` (`host/project/repo:tag`), its `tag` and its `digest`. Other events (pulls, deletes, scans,
//! quotas, replication) are acknowledged and match nothing.

use serde::Deserialize;

use super::{Pushed, without_tag};

/// The event types of a push: Harbor 1.x, 2.x Default, 2.x CloudEvents.
const PUSHES: [&str; 3] = ["pushImage", "PUSH_ARTIFACT", "harbor.artifact.pushed"];

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    /// The Default format's data.
    #[serde(default)]
    event_data: Option<EventData>,
    /// The CloudEvents format's data.
    #[serde(default)]
    data: Option<EventData>,
}

#[derive(Debug, Deserialize)]
struct EventData {
    #[serde(default)]
    resources: Vec<Resource>,
}

#[derive(Debug, Deserialize)]
struct Resource {
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    resource_url: Option<String>,
}

/// The pushes of a Harbor payload.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Pushed>, String> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if !PUSHES.contains(&payload.kind.as_str()) {
        return Ok(Vec::new());
    }
    let data = payload
        .event_data
        .or(payload.data)
        .ok_or_else(|| format!("a {} event without event_data (or data)", payload.kind))?;
    data.resources
        .iter()
        .filter(|r| r.tag.as_deref().is_some_and(|t| !t.is_empty()))
        .map(|r| {
            let tag = r.tag.as_deref().unwrap_or_default();
            let url = r
                .resource_url
                .as_deref()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| format!("the resource of tag {tag:?} has no resource_url"))?;
            Pushed::parse(without_tag(url), tag, r.digest.as_deref())
        })
        .collect()
}
