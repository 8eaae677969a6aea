//! The webhook's limits: body size and time, request rate, connections at once.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Service;
use tracing::warn;

use crate::metrics::{Metrics, ResultLabels};

/// The limits of the webhook. The defaults are what `run` serves with.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// The largest body taken (413 past it): 1 MiB.
    pub max_body: usize,
    /// How long a body may take to arrive (408 past it): 10 s.
    pub body_timeout: Duration,
    /// Connections served at once; the next ones get 503 and are closed: 64.
    pub max_connections: usize,
    /// Requests per second taken over all senders (429 past it): 20.
    pub requests_per_second: f64,
    /// Requests taken at once after a quiet period: 50.
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: super::MAX_BODY,
            body_timeout: Duration::from_secs(10),
            max_connections: 64,
            requests_per_second: 20.0,
            burst: 50,
        }
    }
}

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyError {
    TooLarge,
    TimedOut,
    Unreadable,
}

/// Reads a body of at most `limits.max_body` bytes within `limits.body_timeout`; a Content-Length over the
/// cap is refused before anything is read.
pub(super) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<Vec<u8>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_body as u64) {
        return Err(BodyError::TooLarge);
    }
    let max = limits.max_body;
    let read = async move {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
            if buf.len() + chunk.len() > max {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    tokio::time::timeout(limits.body_timeout, read)
        .await
        .map_err(|_| BodyError::TimedOut)?
}

/// A token bucket: `rate` per second, at most `burst` at once.
#[derive(Debug)]
pub(super) struct Bucket {
    state: Mutex<(f64, Instant)>,
    rate: f64,
    burst: f64,
}

impl Bucket {
    pub(super) fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            state: Mutex::new((burst, Instant::now())),
            rate: rate.max(0.0),
            burst,
        }
    }

    /// Takes one token if there is one.
    pub(super) fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The make-service `axum::serve` runs: one [`Connection`] per accepted connection, holding one of
/// `max_connections` slots until the connection closes. A connection accepted with no slot free is answered
/// 503 with `Connection: close`.
#[derive(Clone)]
pub struct ConnectionLimit {
    router: Router,
    slots: Arc<Semaphore>,
    metrics: Metrics,
}

impl ConnectionLimit {
    /// Serves `router` on at most `max_connections` connections at once.
    pub fn new(router: Router, max_connections: usize, metrics: Metrics) -> Self {
        Self {
            router,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            metrics,
        }
    }
}

impl<L: Listener> Service<IncomingStream<'_, L>> for ConnectionLimit {
    type Response = Connection;
    type Error = Infallible;
    type Future = Ready<Result<Connection, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _stream: IncomingStream<'_, L>) -> Self::Future {
        let slot = self.slots.clone().try_acquire_owned().ok().map(Arc::new);
        if slot.is_none() {
            self.metrics
                .notifications
                .get_or_create(&ResultLabels {
                    result: "busy".to_owned(),
                })
                .inc();
            warn!("refused a webhook connection: all connection slots are taken");
        }
        ready(Ok(Connection {
            router: self.router.clone(),
            slot,
        }))
    }
}

/// One connection's service: the webhook's routes while it holds a slot, else 503.
#[derive(Clone)]
pub struct Connection {
    router: Router,
    slot: Option<Arc<OwnedSemaphorePermit>>,
}

impl Service<Request> for Connection {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.slot.is_none() {
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections to the webhook; retry later\n",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Box::pin(ready(Ok(response)));
        }
        Box::pin(self.router.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_takes_a_burst_then_refuses() {
        let bucket = Bucket::new(0.0, 3);
        assert!((0..3).all(|_| bucket.take()));
        assert!(!bucket.take());
    }

    #[tokio::test]
    async fn bodies_are_capped_by_length_and_by_what_arrives() {
        let limits = Limits {
            max_body: 4,
            ..Limits::default()
        };
        let mut headers = HeaderMap::new();
        assert_eq!(
            read_body(Body::from("1234"), &headers, &limits).await,
            Ok(b"1234".to_vec())
        );
        assert_eq!(
            read_body(Body::from("12345"), &headers, &limits).await,
            Err(BodyError::TooLarge)
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(
            read_body(Body::from("1"), &headers, &limits).await,
            Err(BodyError::TooLarge)
        );
    }
}
