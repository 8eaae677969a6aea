//! Berth's own form, for anything that can compute an HMAC: `{"repository": "host/path", "tag": "v1",
//! "digest": "sha256:..."}` (`digest` optional), signed in `X-Berth-Signature: sha256=<hex HMAC-SHA256 of the
//! body, keyed with the webhook token>`. For example:
//!
//! ```sh
//! body='{"repository":"registry.example.com/team/app","tag":"v1"}'
//! sig=$(printf %s "$body" | openssl dgst -sha256 -hmac "$(cat token)" -r | cut -d' ' -f1)
//! curl -H "X-Berth-Signature: sha256=$sig" -d "$body" http://berth-controller:8085/registry/notifications/generic
//! ```

use berth_api::validation::is_sha256_digest;
use serde::Deserialize;

use super::Pushed;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    repository: String,
    tag: String,
    #[serde(default)]
    digest: Option<String>,
}

/// The push of a generic payload.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Pushed>, String> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some(digest) = &payload.digest
        && !is_sha256_digest(digest)
    {
        return Err(format!(
            "digest {digest:?} is not sha256: followed by 64 lower-case hex digits"
        ));
    }
    Ok(vec![Pushed::parse(
        &payload.repository,
        &payload.tag,
        payload.digest.as_deref(),
    )?])
}
