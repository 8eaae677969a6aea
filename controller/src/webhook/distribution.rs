//! The CNCF distribution notification envelope (`registry:2`), also what GitLab's container registry (a fork
//! of distribution) sends: `{"events": [...]}`, each event an `action`, a `target` and the `request`.

use serde::Deserialize;

use super::Pushed;

/// The distribution notification envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// The events, in order.
    pub events: Vec<RegistryEvent>,
}

/// One event of the envelope (only the fields Berth reads).
#[derive(Debug, Deserialize)]
pub struct RegistryEvent {
    /// `push`, `pull`, `delete`, ...
    pub action: String,
    /// What was pushed.
    pub target: Target,
    /// The request that did it.
    #[serde(default)]
    pub request: Option<Request>,
}

/// The object of an event.
#[derive(Debug, Deserialize)]
pub struct Target {
    /// The repository, `berth/demo`.
    pub repository: String,
    /// The tag, for a manifest pushed by tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// The digest of what was pushed.
    #[serde(default)]
    pub digest: Option<String>,
}

/// The request of an event.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// The registry's host as the pusher addressed it, `10.213.0.1:5000`.
    #[serde(default)]
    pub host: Option<String>,
}

impl Envelope {
    /// The pushes of a tag, in order. The host and repository are kept as the registry wrote them (a
    /// registry batches events: one odd repository must not fail the others), so they match tags only when
    /// written the same way; without `request.host`, a tag of any registry matches.
    pub fn pushes(&self) -> Vec<Pushed> {
        self.events
            .iter()
            .filter(|e| e.action == "push")
            .filter_map(|e| {
                let tag = e.target.tag.as_deref().filter(|t| !t.is_empty())?;
                let host = e
                    .request
                    .as_ref()
                    .and_then(|r| r.host.as_deref())
                    .filter(|h| !h.is_empty());
                Some(Pushed {
                    registry: host.map(str::to_owned),
                    repository: e.target.repository.clone(),
                    tag: tag.to_owned(),
                    digest: e.target.digest.clone(),
                })
            })
            .collect()
    }
}

/// The pushes of an envelope.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Pushed>, String> {
    serde_json::from_slice::<Envelope>(body)
        .map(|envelope| envelope.pushes())
        .map_err(|e| e.to_string())
}
