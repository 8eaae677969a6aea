//! Azure Container Registry's webhooks: one event per request, shaped as one event of the distribution
//! envelope (`action`, `target.repository`, `target.tag`, `target.digest`, `request.host`, the registry's
//! login server `name.azurecr.io`). Only `push` is taken; `delete`, `chart_push`, `quarantine` and the
//! webhook's `ping` match nothing.

use serde::Deserialize;

use super::Pushed;

#[derive(Debug, Deserialize)]
struct Event {
    action: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    request: Option<Request>,
}

#[derive(Debug, Deserialize)]
struct Target {
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Request {
    #[serde(default)]
    host: Option<String>,
}

/// The push of an ACR event.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Pushed>, String> {
    let event: Event = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if event.action != "push" {
        return Ok(Vec::new());
    }
    let target = event.target.ok_or("a push without target")?;
    let Some(tag) = target.tag.filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let repository = target.repository.ok_or("a push without target.repository")?;
    let host = event
        .request
        .and_then(|r| r.host)
        .filter(|h| !h.is_empty())
        .ok_or("a push without request.host (the registry's login server)")?;
    Ok(vec![Pushed::parse(
        &format!("{host}/{repository}"),
        &tag,
        target.digest.as_deref(),
    )?])
}
