//! Docker Hub's repository webhook: one push per request, `push_data.tag` of `repository.repo_name` on
//! Docker Hub (`docker.io`). Docker Hub sends no digest.

use serde::Deserialize;

use super::Pushed;

#[derive(Debug, Deserialize)]
struct Payload {
    push_data: PushData,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct PushData {
    tag: String,
}

#[derive(Debug, Deserialize)]
struct Repository {
    /// `namespace/name`.
    repo_name: String,
}

/// The push of a Docker Hub payload.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Pushed>, String> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let repository = format!("docker.io/{}", payload.repository.repo_name);
    Ok(vec![Pushed::parse(&repository, &payload.push_data.tag, None)?])
}
