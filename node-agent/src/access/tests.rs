//! The decisions of [`super::Access`] against a fake reviewer that counts what it is asked.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;

use super::*;

/// A fake API server: knows token `good` as user `alice`, allows `alice` `get nodes/log` only.
#[derive(Default)]
struct FakeReviewer {
    token_reviews: AtomicUsize,
    access_reviews: AtomicUsize,
    down: Mutex<bool>,
}

impl Reviewer for FakeReviewer {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<User>, String>> {
        self.token_reviews.fetch_add(1, Ordering::SeqCst);
        let down = *self.down.lock().expect("lock");
        Box::pin(async move {
            if down {
                return Err("connection refused".into());
            }
            Ok((token == "good").then(alice))
        })
    }

    fn authorize<'a>(
        &'a self,
        user: &'a User,
        node: &'a str,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<bool, String>> {
        self.access_reviews.fetch_add(1, Ordering::SeqCst);
        let down = *self.down.lock().expect("lock");
        Box::pin(async move {
            if down {
                return Err("connection refused".into());
            }
            Ok(
                user.name == "alice"
                    && node == "berth-1"
                    && attrs.verb == "get"
                    && attrs.subresource == "log",
            )
        })
    }
}

fn alice() -> User {
    User {
        name: "alice".into(),
        groups: vec!["team".into()],
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        axum::http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("value"),
    );
    h
}

fn setup(mode: AuthorizationMode) -> (Access, Arc<FakeReviewer>) {
    let fake = Arc::new(FakeReviewer::default());
    (Access::checked("berth-1", mode, fake.clone()), fake)
}

#[tokio::test]
async fn nobody_is_unauthorized() {
    let (access, _) = setup(AuthorizationMode::Webhook);
    let none = HeaderMap::new();
    assert_eq!(
        access.check(None, &none, &Method::GET, "/logs/").await,
        Err(Denial::Unauthenticated)
    );
    assert_eq!(
        access.check(None, &bearer("bad"), &Method::GET, "/logs/").await,
        Err(Denial::Unauthenticated)
    );
}

#[tokio::test]
async fn each_request_is_reviewed_for_its_subresource_and_answers_are_kept() {
    let (access, fake) = setup(AuthorizationMode::Webhook);
    let none = HeaderMap::new();
    let user = alice();
    assert_eq!(
        access.check(Some(&user), &none, &Method::GET, "/logs/x").await,
        Ok(())
    );
    let denied = access
        .check(Some(&user), &none, &Method::POST, "/exec/ns/p/c")
        .await
        .expect_err("exec is nodes/proxy");
    assert_eq!(
        denied,
        Denial::Forbidden("Forbidden (user=alice, verb=create, resource=nodes, subresource=proxy)".into())
    );
    assert_eq!(fake.access_reviews.load(Ordering::SeqCst), 2);
    // Both answers are kept: no new review.
    assert_eq!(
        access.check(Some(&user), &none, &Method::GET, "/logs/y").await,
        Ok(())
    );
    assert!(
        access
            .check(Some(&user), &none, &Method::POST, "/exec/ns/p/c")
            .await
            .is_err()
    );
    assert_eq!(fake.access_reviews.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tokens_are_reviewed_once_and_then_authorised_like_certificates() {
    let (access, fake) = setup(AuthorizationMode::Webhook);
    assert_eq!(
        access.check(None, &bearer("good"), &Method::GET, "/logs/").await,
        Ok(())
    );
    assert_eq!(
        access.check(None, &bearer("good"), &Method::GET, "/logs/").await,
        Ok(())
    );
    assert_eq!(fake.token_reviews.load(Ordering::SeqCst), 1);
    assert!(matches!(
        access
            .check(None, &bearer("good"), &Method::GET, "/containerLogs/a/b/c")
            .await,
        Err(Denial::Forbidden(_))
    ));
}

#[tokio::test]
async fn a_certificate_wins_over_a_token() {
    let (access, fake) = setup(AuthorizationMode::Webhook);
    let user = alice();
    assert_eq!(
        access
            .check(Some(&user), &bearer("bad"), &Method::GET, "/logs/")
            .await,
        Ok(())
    );
    assert_eq!(fake.token_reviews.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_unreachable_api_server_is_an_error_not_a_yes() {
    let (access, fake) = setup(AuthorizationMode::Webhook);
    *fake.down.lock().expect("lock") = true;
    let user = alice();
    let e = access
        .check(Some(&user), &HeaderMap::new(), &Method::GET, "/logs/")
        .await
        .expect_err("no answer is no permission");
    assert!(
        matches!(&e, Denial::Unavailable(m) if m.contains("Authorization error (user=alice")),
        "{e:?}"
    );
    let e = access
        .check(None, &bearer("good"), &Method::GET, "/logs/")
        .await
        .expect_err("no answer is no user");
    assert!(
        matches!(&e, Denial::Unavailable(m) if !m.contains("good")),
        "{e:?}"
    );
    // Nothing was cached: the next answer counts.
    *fake.down.lock().expect("lock") = false;
    assert_eq!(
        access
            .check(Some(&user), &HeaderMap::new(), &Method::GET, "/logs/")
            .await,
        Ok(())
    );
}

#[tokio::test]
async fn always_allow_still_needs_a_user() {
    let (access, fake) = setup(AuthorizationMode::AlwaysAllow);
    assert_eq!(
        access
            .check(None, &HeaderMap::new(), &Method::POST, "/exec/a/b/c")
            .await,
        Err(Denial::Unauthenticated)
    );
    assert_eq!(
        access
            .check(Some(&alice()), &HeaderMap::new(), &Method::POST, "/exec/a/b/c")
            .await,
        Ok(())
    );
    assert_eq!(fake.access_reviews.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn open_serves_everyone() {
    let fake = Arc::new(FakeReviewer::default());
    let access = Access::open("berth-1", fake);
    assert_eq!(
        access
            .check(None, &HeaderMap::new(), &Method::POST, "/exec/a/b/c")
            .await,
        Ok(())
    );
}
