//! One request, whatever its format: rate, credentials, body, signature, payload, then the same matching and
//! import as every other format.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tracing::{error, info, warn};

use super::auth::{Auth, Secret, signature};
use super::limits::{BodyError, Bucket, Limits, read_body};
use super::{PATH, Pushed, Webhook, matching_tags};

/// The payload formats the webhook takes, one path each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The CNCF distribution envelope.
    Distribution,
    /// Docker Hub's repository webhook.
    DockerHub,
    /// Quay's repository push notification.
    Quay,
    /// Harbor's webhook (1.x and 2.x, Default and CloudEvents).
    Harbor,
    /// GitHub's `package` and `registry_package` events.
    GitHub,
    /// Azure Container Registry's webhook.
    Acr,
    /// GitLab's container registry notifications (the distribution envelope).
    GitLab,
    /// Berth's signed form.
    Generic,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 8] = [
        Format::Distribution,
        Format::DockerHub,
        Format::Quay,
        Format::Harbor,
        Format::GitHub,
        Format::Acr,
        Format::GitLab,
        Format::Generic,
    ];

    /// The name in logs, paths and messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Distribution => "distribution",
            Format::DockerHub => "dockerhub",
            Format::Quay => "quay",
            Format::Harbor => "harbor",
            Format::GitHub => "github",
            Format::Acr => "acr",
            Format::GitLab => "gitlab",
            Format::Generic => "generic",
        }
    }

    /// The path the format is posted to (for [`Format::DockerHub`] and [`Format::Quay`], followed by
    /// `/<token>`).
    pub fn path(self) -> String {
        match self {
            Format::Distribution => PATH.to_owned(),
            other => format!("{PATH}/{}", other.name()),
        }
    }

    fn auth(self) -> Auth {
        match self {
            Format::Distribution | Format::Acr => Auth::Bearer,
            Format::DockerHub | Format::Quay => Auth::PathToken,
            Format::Harbor => Auth::BearerOrBare,
            Format::GitLab => Auth::Header("x-gitlab-token"),
            Format::GitHub => Auth::Signature("x-hub-signature-256"),
            Format::Generic => Auth::Signature("x-berth-signature"),
        }
    }

    /// Whether the secret comes in the path.
    pub fn path_token(self) -> bool {
        self.auth() == Auth::PathToken
    }

    fn describe(self) -> &'static str {
        match self {
            Format::Distribution => "a registry notification envelope",
            Format::DockerHub => "a Docker Hub webhook payload",
            Format::Quay => "a Quay repository push notification",
            Format::Harbor => "a Harbor webhook payload",
            Format::GitHub => "a GitHub package event",
            Format::Acr => "an Azure Container Registry webhook event",
            Format::GitLab => "a GitLab container registry notification envelope",
            Format::Generic => "a Berth notification ({\"repository\": ..., \"tag\": ..., \"digest\": ...})",
        }
    }

    /// The pushes a body of this format reports.
    pub fn parse(self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Pushed>, String> {
        match self {
            Format::Distribution | Format::GitLab => super::distribution::parse(body),
            Format::DockerHub => super::dockerhub::parse(body),
            Format::Quay => super::quay::parse(body),
            Format::Harbor => super::harbor::parse(body),
            Format::GitHub => super::github::parse(headers, body),
            Format::Acr => super::acr::parse(body),
            Format::Generic => super::generic::parse(body),
        }
    }
}

/// The routes' state.
#[derive(Clone)]
pub(super) struct Receiver {
    hook: Webhook,
    secret: Secret,
    limits: Limits,
    bucket: Arc<Bucket>,
}

/// Every format's route.
pub(super) fn routes(hook: Webhook, limits: Limits) -> Router {
    let secret = Secret::new(&hook.token);
    if !secret.is_set() {
        error!("the webhook token is blank: every registry notification will be refused");
    }
    let state = Receiver {
        bucket: Arc::new(Bucket::new(limits.requests_per_second, limits.burst)),
        hook,
        secret,
        limits,
    };
    let mut router = Router::new();
    for format in Format::ALL {
        let path = format.path();
        router = router.route(
            &path,
            post(move |State(r): State<Receiver>, headers: HeaderMap, body: Body| {
                receive(r, format, None, headers, body)
            }),
        );
        if format.path_token() {
            // An empty last segment is a missing token, 401 like the path without it.
            router = router.route(
                &format!("{path}/"),
                post(move |State(r): State<Receiver>, headers: HeaderMap, body: Body| {
                    receive(r, format, None, headers, body)
                }),
            );
            router = router.route(
                &format!("{path}/{{token}}"),
                post(
                    move |State(r): State<Receiver>,
                          Path(token): Path<String>,
                          headers: HeaderMap,
                          body: Body| { receive(r, format, Some(token), headers, body) },
                ),
            );
        }
    }
    router.with_state(state)
}

fn answer(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

async fn receive(
    r: Receiver,
    format: Format,
    path_token: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = format.name();
    if !r.bucket.take() {
        r.hook.count("rate_limited");
        warn!(
            format = name,
            "refused a registry notification: over the request rate"
        );
        let mut response = answer(
            StatusCode::TOO_MANY_REQUESTS,
            "too many registry notifications; retry later\n".into(),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let auth = format.auth();
    let unauthorized = |reason: &str| {
        r.hook.count("unauthorized");
        warn!(format = name, reason, "refused a registry notification");
        answer(StatusCode::UNAUTHORIZED, format!("{}\n", auth.requirement()))
    };
    // Credentials first: nothing is read from an unauthenticated sender.
    let signed_with = match auth {
        Auth::Signature(header_name) => match signature(&headers, header_name) {
            Some(sig) => Some(sig),
            None => return unauthorized("no signature, or not sha256=<64 hex digits>"),
        },
        _ if auth.presented(&r.secret, &headers, path_token.as_deref()) => None,
        _ => return unauthorized("no secret, or a wrong one"),
    };
    let body = match read_body(body, &headers, &r.limits).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            r.hook.count("too_large");
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("notifications are at most {} bytes\n", r.limits.max_body),
            );
        }
        Err(BodyError::TimedOut) => {
            r.hook.count("timeout");
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}\n", r.limits.body_timeout),
            );
        }
        Err(BodyError::Unreadable) => {
            r.hook.count("malformed");
            return answer(StatusCode::BAD_REQUEST, "the body could not be read\n".into());
        }
    };
    if let Some(sig) = signed_with
        && !r.secret.signed(&body, &sig)
    {
        return unauthorized("a signature that does not match the body");
    }
    let pushes = match format.parse(&headers, &body) {
        Ok(pushes) => pushes,
        Err(e) => {
            r.hook.count("malformed");
            warn!(format = name, error = %e, "refused a malformed registry notification");
            return answer(
                StatusCode::BAD_REQUEST,
                format!("not {}: {e}\n", format.describe()),
            );
        }
    };
    let matched = matching_tags(&pushes, &r.hook.tags.state());
    r.hook.count("accepted");
    info!(
        format = name,
        pushes = pushes.len(),
        matched = matched.len(),
        "registry notification"
    );
    let count = matched.len();
    for (tag, digest) in matched {
        (r.hook.on_push)(tag, digest);
    }
    answer(StatusCode::OK, format!("{{\"matched\":{count}}}\n"))
}
