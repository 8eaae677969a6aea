//! Learning when this replica renewed its Lease: a layer on the Lease's own client (not fenced) that opens the
//! [`Fence`] with the send time of each write to the Lease that came back 2xx naming this replica its holder.
//!
//! Why the holder is read from the answer: kube-lease-manager 0.13 (`state.rs`, `LeaseState::lock`) renews with
//! a strategic-merge patch of `renewTime` and `leaseDurationSeconds` alone, without `holderIdentity` and
//! without a `resourceVersion` precondition, whenever its *cached* state says this replica holds the Lease
//! and has not expired by the wall clock (it reads the Lease again only once the cache expired, and after
//! each patch). A replica stopped between that check and the patch sends the patch when it resumes, and the
//! API server accepts it on the Lease a standby has taken meanwhile: a 2xx alone does not prove the hold. The
//! answer does: it is the Lease after the patch, whose `spec.holderIdentity` says who holds it now. The
//! acquiring patches (a server-side apply carrying `holderIdentity`, then `leaseTransitions`) answer with
//! this replica as holder too, so the fence opens when the replica starts to lead; the release patch and the
//! creation of an empty Lease (POST) name no holder and open nothing.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Either, Full};
use k8s_openapi::api::coordination::v1::Lease;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

use super::fence::{Fence, is_write};

/// The URL path of the Lease `name` in `namespace`, as kube sends it (before the cluster URL is prefixed).
pub fn lease_path(namespace: &str, name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
}

/// Whether a request of `method` to `path` may renew the Lease at `lease_path`: a write to the Lease itself.
pub fn may_renew(method: &Method, path: &str, lease_path: &str) -> bool {
    is_write(method) && path == lease_path
}

/// Whether the Lease answered by the API server (`body`) names `identity` its holder.
pub fn held_by(body: &[u8], identity: &str) -> bool {
    serde_json::from_slice::<Lease>(body)
        .ok()
        .and_then(|lease| lease.spec?.holder_identity)
        .is_some_and(|holder| holder == identity)
}

/// The layer of the Lease's client that records this replica's renewals in its [`Fence`].
#[derive(Clone, Debug)]
pub struct RenewalLayer {
    /// The fence to open.
    pub fence: Fence,
    /// The Lease's [`lease_path`].
    pub lease_path: Arc<str>,
    /// This replica's identity in the Lease.
    pub identity: Arc<str>,
}

impl<S> Layer<S> for RenewalLayer {
    type Service = RecordRenewals<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordRenewals {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service that passes every request on and records the renewals among them (see [`RenewalLayer`]). The
/// answers to writes of the Lease are read whole (a Lease is a few hundred bytes) and handed on unchanged.
#[derive(Clone, Debug)]
pub struct RecordRenewals<S> {
    inner: S,
    layer: RenewalLayer,
}

impl<S, B, RB> Service<Request<B>> for RecordRenewals<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<Either<Full<Bytes>, RB>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let renewal = may_renew(request.method(), request.uri().path(), &self.layer.lease_path);
        let sent = Instant::now();
        let answer = self.inner.call(request);
        let RenewalLayer { fence, identity, .. } = self.layer.clone();
        Box::pin(async move {
            let response = answer.await.map_err(Into::into)?;
            if !renewal || !response.status().is_success() {
                return Ok(response.map(Either::Right));
            }
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(Into::into)?.to_bytes();
            if held_by(&body, &identity) {
                fence.renewed(sent);
            }
            Ok(Response::from_parts(parts, Either::Left(Full::new(body))))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use http::StatusCode;
    use tower::{ServiceExt, service_fn};

    use super::*;

    const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/berth-system/leases/berth-controller";

    fn lease(holder: Option<&str>) -> String {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "berth-controller", "namespace": "berth-system"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
        })
        .to_string()
    }

    #[test]
    fn the_lease_path_is_the_one_kube_requests() {
        assert_eq!(lease_path("berth-system", "berth-controller"), PATH);
    }

    #[test]
    fn only_writes_to_the_lease_itself_may_renew_it() {
        assert!(may_renew(&Method::PATCH, PATH, PATH));
        assert!(may_renew(&Method::PUT, PATH, PATH));
        assert!(may_renew(&Method::POST, PATH, PATH));
        assert!(!may_renew(&Method::GET, PATH, PATH));
        assert!(!may_renew(
            &Method::PATCH,
            "/apis/coordination.k8s.io/v1/namespaces/berth-system/leases/other",
            PATH
        ));
        assert!(!may_renew(
            &Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/berth-system/leases",
            PATH
        ));
    }

    #[test]
    fn the_answer_says_who_holds_the_lease() {
        assert!(held_by(lease(Some("replica-a")).as_bytes(), "replica-a"));
        assert!(!held_by(lease(Some("replica-b")).as_bytes(), "replica-a"));
        assert!(!held_by(lease(None).as_bytes(), "replica-a"));
        assert!(!held_by(b"{\"kind\":\"Status\",\"code\":409}", "replica-a"));
        assert!(!held_by(b"not json", "replica-a"));
    }

    /// A fake API server whose answer to each request is given by `answer` from the method and path.
    fn fake_api_server(
        answer: fn(&Method, &str) -> (StatusCode, String),
    ) -> impl Service<
        Request<()>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone {
        service_fn(move |request: Request<()>| {
            let (status, body) = answer(request.method(), request.uri().path());
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            async move { Ok(response) }
        })
    }

    fn request(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(format!("{path}?fieldManager=berth-controller"))
            .body(())
            .expect("a request")
    }

    fn recorder(fence: &Fence) -> RenewalLayer {
        RenewalLayer {
            fence: fence.clone(),
            lease_path: PATH.into(),
            identity: "replica-a".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_successful_writes_of_the_lease_naming_this_replica_are_renewals() {
        let fence = Fence::default();
        let service = recorder(&fence).layer(fake_api_server(|method, path| match (method.as_str(), path) {
            ("PATCH", PATH) => (StatusCode::OK, lease(Some("replica-a"))),
            ("PUT", PATH) => (StatusCode::CONFLICT, "{\"kind\":\"Status\",\"code\":409}".into()),
            ("POST", PATH) => (StatusCode::CREATED, lease(Some("replica-b"))),
            _ => (StatusCode::OK, lease(Some("replica-a"))),
        }));
        let send = |method, path| service.clone().oneshot(request(method, path));

        // Reads of the Lease, writes elsewhere, failed writes and writes naming another holder open nothing.
        send(Method::GET, PATH).await.expect("answered");
        send(Method::PATCH, "/api/v1/namespaces/demo/pods/web-1")
            .await
            .expect("answered");
        send(Method::PUT, PATH).await.expect("answered");
        send(Method::POST, PATH).await.expect("answered");
        assert_eq!(fence.hold().renewed, None);

        // A renewal records the time it was sent, and its answer reaches the Lease manager whole.
        let sent = Instant::now();
        let answer = send(Method::PATCH, PATH).await.expect("answered");
        assert_eq!(fence.hold().renewed, Some(sent));
        let body = answer.into_body().collect().await.expect("a body").to_bytes();
        assert_eq!(body, lease(Some("replica-a")));

        tokio::time::advance(Duration::from_secs(5)).await;
        send(Method::PATCH, PATH).await.expect("answered");
        assert_eq!(fence.hold().renewed, Some(sent + Duration::from_secs(5)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_patched_onto_another_holders_lease_opens_nothing() {
        // The replica resumed after a standby took the Lease; its blind renewTime patch is accepted.
        let fence = Fence::default();
        let service =
            recorder(&fence).layer(fake_api_server(|_, _| (StatusCode::OK, lease(Some("replica-b")))));
        service
            .oneshot(request(Method::PATCH, PATH))
            .await
            .expect("answered");
        assert_eq!(fence.hold().renewed, None);
    }
}
