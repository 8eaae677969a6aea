//! Service-account tokens of projected volumes, from the TokenRequest API, bound to the pod
//! (`boundObjectRef`), with the audience and lifetime the volume asks; renewed as the
//! kubelet's token manager renews them: once 80% of the lifetime has passed, or after 24 h.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::error::{Error, Result};

/// The lifetime asked when the projection names none.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Tokens are renewed at least this often.
const MAX_TTL_SECONDS: i64 = 24 * 3600;

/// A token and when to renew it. Its `Debug` never shows the token.
#[derive(Clone)]
pub struct Token {
    /// The JWT.
    pub token: String,
    /// Renew at or after this Unix time, seconds.
    pub refresh_at: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(refresh_at {})", self.refresh_at)
    }
}

/// When a token issued for `expiration_seconds` and expiring at `exp` (Unix seconds) is
/// renewed: 20% of its lifetime before it expires, and no later than 24 h after issue.
pub fn refresh_at(exp: i64, expiration_seconds: i64) -> i64 {
    let ttl = expiration_seconds.max(1);
    let iat = exp - ttl;
    (exp - ttl * 20 / 100).min(iat + MAX_TTL_SECONDS)
}

/// Requests a token of the pod's service account for projection `t`.
pub async fn request(client: &Client, pod: &Pod, t: &ServiceAccountTokenProjection) -> Result<Token> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let expiration = t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: t.audience.iter().filter(|a| !a.is_empty()).cloned().collect(),
            expiration_seconds: Some(expiration),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let answer = api
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .map_err(|e| Error::kube(format!("requesting a token of service account {ns}/{sa}"), e))?;
    let status = answer.status.ok_or(Error::Config(format!(
        "the token request of service account {ns}/{sa} was answered without a status"
    )))?;
    let exp = status.expiration_timestamp.0.as_second();
    let issued_for = answer.spec.expiration_seconds.unwrap_or(expiration);
    Ok(Token {
        token: status.token,
        refresh_at: refresh_at(exp, issued_for),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewed_at_eighty_percent_or_after_a_day() {
        // An hour's token issued at 1000: renewed 48 minutes in.
        assert_eq!(refresh_at(1000 + 3600, 3600), 1000 + 2880);
        // kube-api-access asks 3607 s.
        assert_eq!(refresh_at(3607, 3607), 3607 - 721);
        // A year's token (the API server's extension): renewed after 24 h.
        let year = 365 * 24 * 3600;
        assert_eq!(refresh_at(year, year), 24 * 3600);
    }

    #[test]
    fn debug_hides_the_token() {
        let t = Token {
            token: "eyJsecret".into(),
            refresh_at: 5,
        };
        assert!(!format!("{t:?}").contains("eyJ"));
    }
}
