//! The Bearer token exchange of a session: the challenge's realm is checked against the registry policy
//! ([`token_realm`](crate::registry::token_realm)), then asked for `repository:<repo>:pull` with
//! `service`, with the credentials (HTTP Basic) only when the realm may have them.
//!
//! Done here with `reqwest` rather than by `oci_client::Client::auth`, which requests `/v2/` again and
//! sends the credentials to whatever realm that answer names. The token request follows no redirects (a
//! redirect could lead to a host the policy was not asked about), its answer is read up to
//! [`MAX_TOKEN_ANSWER_BYTES`], and neither the credentials, the token nor the answer's body reach an error
//! or a log.

use std::time::Instant;

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tracing::debug;

use super::{Session, describe, retry_after};
use crate::registry::challenge::Challenge;
use crate::registry::error::ResolveError;
use crate::registry::token_realm::{self, RealmDecision, RegistryEnd};
use crate::registry::transport::{BodyError, read_limited};

/// The largest token service answer read (tokens are a few KiB at most).
pub const MAX_TOKEN_ANSWER_BYTES: u64 = 64 * 1024;

/// The token service's answer: the distribution spec's `token`, or OAuth 2's `access_token`.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// What came back from the token service within the timeout.
type Answer = Result<(StatusCode, HeaderMap, Result<Vec<u8>, BodyError>), reqwest::Error>;

/// The token in an answer's body, if there is a usable one: visible ASCII, as a header value needs.
pub(super) fn token_from(body: &[u8]) -> Option<String> {
    let answer: TokenAnswer = serde_json::from_slice(body).ok()?;
    [answer.token, answer.access_token]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
}

impl Session<'_> {
    /// A token for the repository from the token service `challenge` names, if the registry policy lets
    /// Berth ask it.
    pub(super) async fn fetch_token(&mut self, challenge: &Challenge) -> Result<String, ResolveError> {
        let Some(realm) = challenge.param("realm") else {
            return Err(self.unauthorized(
                "the registry asked for a token but its challenge names no token service (realm)",
            ));
        };
        let reference = self.reference;
        let end = RegistryEnd {
            registry: reference.registry(),
            api_host: reference.api_host(),
            scheme: self.scheme,
            insecure: self.insecure,
            with_credentials: self.credentials.is_some(),
        };
        let send_credentials = match token_realm::decide(&end, realm, self.ctx.policy) {
            RealmDecision::SendCredentials => true,
            RealmDecision::Anonymous { why } => {
                if self.credentials.is_some() {
                    debug!(%why, "asking the token service for a token without the pull secret");
                    self.withheld = Some(why);
                }
                false
            }
            RealmDecision::Refuse { why, by_policy: true } => {
                return Err(ResolveError::RegistryNotAllowed {
                    registry: reference.registry().into(),
                    detail: why,
                });
            }
            RealmDecision::Refuse {
                why,
                by_policy: false,
            } => return Err(self.unauthorized(&why)),
        };
        let mut url = token_realm::realm_url(realm).map_err(|problem| self.unauthorized(&problem))?;
        // The registry's own host is reached as the registry is (unverified TLS for an insecure registry);
        // another host always with verified TLS.
        let verified = !(self.insecure && token_realm::is_registry_host(&end, &url));
        add_query(&mut url, challenge.param("service"), reference.repository());
        let mut request = self
            .ctx
            .transport
            .token_http(verified)
            .get(url)
            .timeout(self.ctx.timeout);
        if send_credentials && let Some(c) = self.credentials {
            request = request.basic_auth(c.username(), Some(c.password()));
        }
        let started = Instant::now();
        let answer: Result<Answer, _> = tokio::time::timeout(self.ctx.timeout, async {
            let response = request.send().await?;
            let (status, headers) = (response.status(), response.headers().clone());
            let body = if status.is_success() {
                read_limited(response, MAX_TOKEN_ANSWER_BYTES).await
            } else {
                Ok(Vec::new())
            };
            Ok((status, headers, body))
        })
        .await;
        self.latency += started.elapsed();
        self.requests += 1;
        let Ok(answer) = answer else {
            return Err(self.unavailable("the token request timed out".into(), None));
        };
        let (status, headers, body) = answer.map_err(|e| {
            self.unavailable(
                format!("token request failed: {}", describe(&e, self.ctx.timeout)),
                None,
            )
        })?;
        if !status.is_success() {
            return Err(self.token_status_error(status, &headers));
        }
        let body = body.map_err(|e| match e {
            BodyError::TooLarge { .. } => self.unauthorized(&format!(
                "the token service's answer is larger than {} KiB",
                MAX_TOKEN_ANSWER_BYTES / 1024
            )),
            BodyError::Read(e) => self.unavailable(
                format!(
                    "reading the token service's answer failed: {}",
                    describe(&e, self.ctx.timeout)
                ),
                None,
            ),
        })?;
        token_from(&body).ok_or_else(|| self.unauthorized("the token service's answer is not a token"))
    }

    /// The error for a token service's HTTP error status; its body is not read.
    fn token_status_error(&self, status: StatusCode, headers: &HeaderMap) -> ResolveError {
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                self.unauthorized(&format!("the token service refused the request (HTTP {status})"))
            }
            s if s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT =>
            {
                self.unavailable(
                    format!("the token service answered HTTP {s}"),
                    retry_after(headers),
                )
            }
            s if s.is_redirection() => self.unauthorized(&format!(
                "the token service answered HTTP {s}; Berth does not follow a token service's redirects"
            )),
            s => self.unauthorized(&format!("the token service answered HTTP {s}")),
        }
    }
}

/// Adds `service` (when the challenge names one) and `scope=repository:<repository>:pull` to the realm's
/// query. The challenge's own `scope` is not used: Berth only ever pulls.
pub(super) fn add_query(url: &mut Url, service: Option<&str>, repository: &str) {
    let mut query = url.query_pairs_mut();
    if let Some(service) = service {
        query.append_pair("service", service);
    }
    query.append_pair("scope", &format!("repository:{repository}:pull"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_either_field() {
        assert_eq!(
            token_from(br#"{"token":"abc","expires_in":300}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(token_from(br#"{"access_token":"xyz"}"#).as_deref(), Some("xyz"));
        assert_eq!(
            token_from(br#"{"token":"","access_token":"xyz"}"#).as_deref(),
            Some("xyz")
        );
        for bad in [
            &br#"{"token":"a b"}"#[..],
            br#"{"token":"a\nb"}"#,
            br#"{"expires_in":3}"#,
            b"<html>",
            br#"{"token":7}"#,
        ] {
            assert_eq!(token_from(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_query_asks_for_pull_only() {
        let mut url = Url::parse("https://auth.example/token?client=berth").unwrap();
        add_query(&mut url, Some("registry.example"), "team/app");
        assert_eq!(
            url.as_str(),
            "https://auth.example/token?client=berth&service=registry.example&scope=repository%3Ateam%2Fapp%3Apull"
        );
        let mut url = Url::parse("https://auth.example/token").unwrap();
        add_query(&mut url, None, "app");
        assert_eq!(url.query(), Some("scope=repository%3Aapp%3Apull"));
    }
}
