//! The write fence: a leader that has not renewed its Lease within [`RENEW_DEADLINE`] stops writing.
//!
//! A leader paused past its Lease (SIGSTOP, a long stall, a network cut) resumes believing it leads, and its
//! reconcilers may write before its Lease task notices that a standby took over. The fence closes that hole on
//! this side of the wire: the [`FenceLayer`] on the controllers' API client refuses every write (any method but
//! GET, HEAD and OPTIONS) locally, without sending it, unless the last renewal that found this replica holding
//! the Lease was *sent* less than [`RENEW_DEADLINE`] ago. The renewals are learnt from the Lease's own client
//! ([`super::renewals`]). A write asks the fence when it is called and again at every poll of its answer, so a
//! request admitted and then held up (waiting for a pooled connection or a TLS handshake when the process was
//! stopped) is dropped unsent if it is next polled after the deadline (e2e/tests/fencing.rs caught such a
//! write when the fence was asked only once). Times are monotonic ([`tokio::time::Instant`], CLOCK_MONOTONIC on Linux, which counts
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
    type Future = FencedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let write = is_write(request.method()).then(|| Write {
            layer: self.layer.clone(),
            method: request.method().clone(),
            path: request.uri().path().into(),
        });
        // Asked before the request reaches the inner service (which may queue it), and again at each poll.
        if let Some(Err(e)) = write.as_ref().map(Write::admit) {
            return FencedFuture {
                write: None,
                state: Err(Some(e)),
            };
        }
        FencedFuture {
            write,
            state: Ok(Box::pin(self.inner.call(request))),
        }
    }
}

/// A write's request and the fence it must pass.
struct Write {
    layer: FenceLayer,
    method: Method,
    path: Box<str>,
}

impl Write {
    /// Asks the fence now; a refusal is counted and the first of its period logged.
    fn admit(&self) -> Result<(), BoxError> {
        let FenceLayer {
            fence,
            deadline,
            refused,
        } = &self.layer;
        fence.admit(Instant::now(), *deadline).map_err(|(fenced, first)| {
            refused.inc();
            if first {
                warn!(method = %self.method, path = %self.path, error = %fenced,
                    "refusing every write until this replica renews its leader Lease");
            }
            fenced.into()
        })
    }
}

/// The answer of a [`FencedService`]. A write asks the fence at *every* poll, before its request makes any
/// progress: a request that passed the fence and then waited (for a connection of the pool, a TLS handshake, a
/// process stopped between the two) is dropped unsent when it is polled again after the deadline, so the time
/// between the last check and the bytes leaving is one poll, not the wait.
pub struct FencedFuture<F> {
    write: Option<Write>,
    /// The request under way, or the refusal not yet returned.
    state: Result<std::pin::Pin<Box<F>>, Option<BoxError>>,
}

impl<F, T, E> std::future::Future for FencedFuture<F>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(Err(e)) = self.write.as_ref().map(Write::admit) {
            // The request under way is dropped here, before it makes any more progress.
            self.write = None;
            self.state = Err(None);
            return Poll::Ready(Err(e));
        }
        match &mut self.state {
            Ok(inner) => inner.as_mut().poll(cx).map_err(Into::into),
            Err(refused) => Poll::Ready(Err(refused
                .take()
                .unwrap_or_else(|| "fenced: polled after it was refused".into()))),
        }
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

    /// A fake API server whose answers are sent (recorded) only when first polled, as hyper's client
    /// dispatches a request only once its future is polled past the pool and the handshake.
    fn fake_lazy_api_server() -> (
        impl Service<Request<()>, Response = http::Response<()>, Error = Infallible, Future: Send> + Clone,
        Sent,
    ) {
        let sent = Sent::default();
        let recorded = sent.clone();
        let service = service_fn(move |request: Request<()>| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push(request.method().clone());
                Ok(http::Response::new(()))
            }
        });
        (service, sent)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_admitted_but_held_up_past_the_deadline_is_dropped_unsent() {
        let (api_server, sent) = fake_lazy_api_server();
        let layer = FenceLayer {
            fence: Fence::default(),
            deadline: DEADLINE,
            refused: Counter::default(),
        };
        layer.fence.renewed(Instant::now());
        let mut service = layer.layer(api_server);
        // Admitted while the fence is open, then held up (a stopped process, a slow handshake) past it.
        let held_up = service.call(request(Method::PATCH));
        let read = service.call(request(Method::GET));
        tokio::time::advance(Duration::from_secs(11)).await;
        let refused = held_up.await.expect_err("fenced when it is finally polled");
        assert!(refused.to_string().contains("deadline 10 s"), "{refused}");
        read.await.expect("a read held up the same way still goes");
        assert_eq!(*sent.lock().unwrap(), [Method::GET], "the PATCH never left");
        assert_eq!(layer.refused.get(), 1);
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
