//! The write fence: a leader that has not renewed its Lease within [`RENEW_DEADLINE`] stops writing.
//!
//! A leader paused past its Lease (SIGSTOP, a long stall, a network cut) resumes believing it leads, and its
//! reconcilers may write before its Lease task notices that a standby took over. The fence closes that hole on
//! this side of the wire: the [`FenceLayer`] on the controllers' API client refuses every write (any method but
//! GET, HEAD and OPTIONS) locally, without sending it, unless the last renewal that found this replica holding
//! the Lease was *sent* less than [`RENEW_DEADLINE`] ago. The renewals are learnt from the Lease's own client
//! ([`super::renewals`]). Times are monotonic ([`tokio::time::Instant`], CLOCK_MONOTONIC on Linux, which counts
//! while the process is stopped), so a stopped process finds its renewal old when it resumes. Reads stay
//! allowed: the watches and caches keep going.
//!
//! What a fence cannot do: a write sent just before the deadline and delayed on the way may still land after
//! a standby took over; the margin between [`RENEW_DEADLINE`] and the Lease's duration (5 s) is what covers it,
//! with the clock skew between replicas.
//!
//! [`RENEW_DEADLINE`]: super::RENEW_DEADLINE

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::TryFutureExt;
use futures::future::{Either, ErrInto, Ready, ready};
use http::{Method, Request};
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};
use tracing::warn;

/// What the fence knows of this replica's hold on the Lease.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hold {
    /// When the last renewal that found this replica holding the Lease was sent; `None` before the first.
    pub renewed: Option<Instant>,
    /// The replica lost the Lease or gave it up: no renewal opens the fence again (the process exits).
    pub revoked: bool,
}

/// Why a write is refused: the error a fenced request fails with (as `kube::Error::Service`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    /// No renewal has found this replica holding the Lease since it started.
    #[error(
        "fenced: this replica has not renewed the leader Lease since it started; not writing until it leads"
    )]
    NotLeading,
    /// The last renewal is older than the deadline.
    #[error(
        "fenced: this replica has not renewed its leader Lease for {:.1} s (deadline {} s); not writing until it leads again",
        .since.as_secs_f64(), .deadline.as_secs()
    )]
    Stale {
        /// How long ago the last renewal was sent.
        since: Duration,
        /// The renew deadline.
        deadline: Duration,
    },
    /// The replica lost or released the Lease.
    #[error("fenced: this replica no longer holds the leader Lease; not writing")]
    Revoked,
}

/// Whether this replica may write at `now`, holding `hold`, with renewals due within `deadline`.
pub fn check(hold: Hold, now: Instant, deadline: Duration) -> Result<(), Fenced> {
    if hold.revoked {
        return Err(Fenced::Revoked);
    }
    let renewed = hold.renewed.ok_or(Fenced::NotLeading)?;
    let since = now.saturating_duration_since(renewed);
    if since < deadline {
        Ok(())
    } else {
        Err(Fenced::Stale { since, deadline })
    }
}

/// Whether a request of `method` changes something: anything but GET, HEAD and OPTIONS (POST, PUT, PATCH,
/// DELETE; a SubjectAccessReview, a POST, counts too: what a fenced replica would decide from it is a write).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a refusal opens a new fenced period, to be logged: the first refusal after the hold changed
/// (`warned` is the hold of the last period logged).
pub fn opens_period(warned: Option<Hold>, hold: Hold) -> bool {
    warned != Some(hold)
}

#[derive(Debug, Default)]
struct State {
    hold: Hold,
    warned: Option<Hold>,
}

/// This replica's fence, shared by the Lease's client (which opens it at each renewal) and the controllers'
/// client (which asks it before every write). Closed until the first renewal. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Fence {
    state: Arc<Mutex<State>>,
}

impl Fence {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a renewal that found this replica holding the Lease, sent at `sent`.
    pub fn renewed(&self, sent: Instant) {
        let mut state = self.state();
        state.hold.renewed = Some(state.hold.renewed.map_or(sent, |last| last.max(sent)));
    }

    /// Closes the fence for good: the Lease was lost or is being released.
    pub fn revoke(&self) {
        self.state().hold.revoked = true;
    }

    /// This replica's hold as the fence knows it.
    pub fn hold(&self) -> Hold {
        self.state().hold
    }

    /// Whether a write may be sent at `now`; a refusal also says whether it is the first of its period.
    fn admit(&self, now: Instant, deadline: Duration) -> Result<(), (Fenced, bool)> {
        let mut state = self.state();
        let hold = state.hold;
        check(hold, now, deadline).map_err(|fenced| {
            let first = opens_period(state.warned, hold);
            state.warned = Some(hold);
            (fenced, first)
        })
    }
}

/// The layer of the controllers' API client that refuses writes while the [`Fence`] is closed, counting them
/// in `refused` (`berth_fenced_writes_total`) and logging the first of each fenced period.
#[derive(Clone, Debug)]
pub struct FenceLayer {
    /// The fence asked before each write.
    pub fence: Fence,
    /// How long after its last renewal the leader may write.
    pub deadline: Duration,
    /// Counts the refused writes.
    pub refused: Counter,
}

impl<S> Layer<S> for FenceLayer {
    type Service = FencedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FencedService {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service that sends reads always and writes only while the fence is open (see [`FenceLayer`]).
#[derive(Clone, Debug)]
pub struct FencedService<S> {
    inner: S,
    layer: FenceLayer,
}

impl<S, B> Service<Request<B>> for FencedService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<Ready<Result<S::Response, BoxError>>, ErrInto<S::Future, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if is_write(request.method()) {
            let FenceLayer {
                fence,
                deadline,
                refused,
            } = &self.layer;
            if let Err((fenced, first)) = fence.admit(Instant::now(), *deadline) {
                refused.inc();
                if first {
                    warn!(method = %request.method(), path = request.uri().path(), error = %fenced,
                        "refusing every write until this replica renews its leader Lease");
                }
                return Either::Left(ready(Err(fenced.into())));
            }
        }
        Either::Right(self.inner.call(request).err_into())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{ServiceExt, service_fn};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn renewed_at(at: Instant) -> Hold {
        Hold {
            renewed: Some(at),
            revoked: false,
        }
    }

    #[test]
    fn the_fence_is_open_only_within_the_deadline_of_the_last_renewal() {
        let t = Instant::now();
        assert_eq!(check(renewed_at(t), t, DEADLINE), Ok(()));
        assert_eq!(
            check(renewed_at(t), t + Duration::from_millis(9_999), DEADLINE),
            Ok(())
        );
        assert_eq!(
            check(renewed_at(t), t + DEADLINE, DEADLINE),
            Err(Fenced::Stale {
                since: DEADLINE,
                deadline: DEADLINE
            })
        );
        // A clock read before the renewal was recorded counts as no time at all.
        assert_eq!(check(renewed_at(t + DEADLINE), t, DEADLINE), Ok(()));
    }

    #[test]
    fn the_fence_is_closed_before_the_first_renewal_and_after_the_lease_is_lost() {
        let t = Instant::now();
        assert_eq!(check(Hold::default(), t, DEADLINE), Err(Fenced::NotLeading));
        let lost = Hold {
            revoked: true,
            ..renewed_at(t)
        };
        assert_eq!(check(lost, t, DEADLINE), Err(Fenced::Revoked));
    }

    #[test]
    fn the_refusal_says_how_stale_the_lease_is() {
        let fenced = Fenced::Stale {
            since: Duration::from_millis(17_230),
            deadline: DEADLINE,
        };
        assert_eq!(
            fenced.to_string(),
            "fenced: this replica has not renewed its leader Lease for 17.2 s (deadline 10 s); \
             not writing until it leads again"
        );
    }

    #[test]
    fn only_get_head_and_options_are_reads() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!is_write(&method), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(is_write(&method), "{method}");
        }
    }

    #[test]
    fn a_fenced_period_is_logged_once_until_the_hold_changes() {
        let t = Instant::now();
        let stale = renewed_at(t);
        assert!(opens_period(None, stale));
        assert!(!opens_period(Some(stale), stale));
        assert!(opens_period(Some(stale), renewed_at(t + DEADLINE)));
        let lost = Hold {
            revoked: true,
            ..stale
        };
        assert!(opens_period(Some(stale), lost));
    }

    /// What a fake API server was sent.
    type Sent = Arc<Mutex<Vec<Method>>>;

    /// A fake API server that answers 200 to everything and records what it was sent.
    fn fake_api_server() -> (
        impl Service<Request<()>, Response = http::Response<()>, Error = Infallible, Future: Send> + Clone,
        Sent,
    ) {
        let sent = Sent::default();
        let recorded = sent.clone();
        let service = service_fn(move |request: Request<()>| {
            recorded.lock().unwrap().push(request.method().clone());
            async { Ok(http::Response::new(())) }
        });
        (service, sent)
    }

    fn request(method: Method) -> Request<()> {
        Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/demo/pods/web-1")
            .body(())
            .expect("a request")
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_not_sent_while_the_fence_is_closed_and_reads_always_are() {
        let (api_server, sent) = fake_api_server();
        let layer = FenceLayer {
            fence: Fence::default(),
            deadline: DEADLINE,
            refused: Counter::default(),
        };
        let service = layer.layer(api_server);
        let send = |method| service.clone().oneshot(request(method));

        // Not leading yet: the PATCH is refused, the GET goes.
        let refused = send(Method::PATCH).await.expect_err("fenced");
        assert_eq!(refused.to_string(), Fenced::NotLeading.to_string());
        send(Method::GET).await.expect("a read passes");
        assert_eq!(*sent.lock().unwrap(), [Method::GET]);

        // Renewed: writes go.
        layer.fence.renewed(Instant::now());
        send(Method::PATCH).await.expect("a write passes");
        send(Method::DELETE).await.expect("a write passes");

        // Stopped past the deadline: writes are refused again, reads still go.
        tokio::time::advance(Duration::from_millis(17_200)).await;
        let refused = send(Method::POST).await.expect_err("fenced");
        assert!(
            refused.to_string().contains("for 17.2 s (deadline 10 s)"),
            "{refused}"
        );
        send(Method::GET).await.expect("a read passes");
        assert_eq!(
            *sent.lock().unwrap(),
            [Method::GET, Method::PATCH, Method::DELETE, Method::GET]
        );
        assert_eq!(layer.refused.get(), 2);

        // Lost: nothing reopens it.
        layer.fence.revoke();
        layer.fence.renewed(Instant::now());
        assert!(send(Method::PUT).await.is_err());
        assert_eq!(layer.refused.get(), 3);
    }

    #[tokio::test]
    async fn a_fenced_write_fails_in_the_kube_client_with_the_reason() {
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::api::{Api, Patch, PatchParams};

        let (api_server, sent) = fake_api_server();
        let api_server = api_server.map_request(|r: Request<kube::client::Body>| r.map(|_| ()));
        let api_server =
            api_server.map_response(|r: http::Response<()>| r.map(|()| kube::client::Body::empty()));
        let layer = FenceLayer {
            fence: Fence::default(),
            deadline: DEADLINE,
            refused: Counter::default(),
        };
        let client = kube::client::ClientBuilder::new(api_server, "demo")
            .with_layer(&layer)
            .build();
        let maps: Api<ConfigMap> = Api::namespaced(client, "demo");
        let patch = Patch::Merge(serde_json::json!({"data": {"a": "b"}}));
        let error = maps
            .patch("settings", &PatchParams::default(), &patch)
            .await
            .expect_err("fenced");
        assert!(
            error
                .to_string()
                .contains("fenced: this replica has not renewed the leader Lease since it started"),
            "{error}"
        );
        assert!(sent.lock().unwrap().is_empty());
    }
}
