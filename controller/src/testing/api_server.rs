//! A mocked API server that expects exact requests in order, after kube-rs/controller-rs's
//! `ApiServerVerifier`: each expected request names its method, path, query (all of it: field manager,
//! `force`, nothing else), content type and the essentials of its body, and says what to answer. A request
//! that differs, one more than expected, or one expected and never sent fails the test, with every request
//! seen listed.
//!
//! ```ignore
//! let (client, server) = api_server::mock([
//!     Expect::apply_status(PATH, FIELD_MANAGER).json("/status/digest", json!(D1)).answer(tag_json),
//!     Expect::event("ns").json("/reason", json!("Imported")),
//! ]);
//! let ctx = context(client);
//! let action = server.run(reconcile(tag, ctx)).await.expect("reconciled");
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The content type of a server-side apply.
pub const APPLY: &str = "application/apply-patch+yaml";
/// The content type of a strategic merge patch.
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";
/// The content type of a JSON body (create).
pub const JSON: &str = "application/json";

type Check = Box<dyn Fn(&Value) -> Result<(), String> + Send>;
type Answer = Box<dyn FnOnce(&Value) -> (StatusCode, Value) + Send>;

/// One request the server expects, and its answer.
pub struct Expect {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<&'static str>,
    checks: Vec<(String, Check)>,
    answer: Answer,
}

impl Expect {
    /// `method` on `path`, with no query, answered with the body it sent (what a server stores).
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: BTreeMap::new(),
            content_type: None,
            checks: Vec::new(),
            answer: Box::new(|body| (StatusCode::OK, body.clone())),
        }
    }

    /// A server-side apply of `path` (ending in `/status` for a status) under `field_manager`, forced.
    pub fn apply(path: impl Into<String>, field_manager: &str) -> Self {
        Self::new(Method::PATCH, path)
            .query("fieldManager", field_manager)
            .query("force", "true")
            .content_type(APPLY)
    }

    /// A strategic merge patch of `path` under `field_manager`.
    pub fn strategic(path: impl Into<String>, field_manager: &str) -> Self {
        Self::new(Method::PATCH, path)
            .query("fieldManager", field_manager)
            .content_type(STRATEGIC)
    }

    /// A create (POST) on the collection `path`.
    pub fn create(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path).content_type(JSON)
    }

    /// A DELETE of `path`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
            .answer(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
    }

    /// An Event published in `namespace` (events.k8s.io/v1, as kube's Recorder writes them).
    pub fn event(namespace: &str) -> Self {
        Self::create(format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"))
    }

    /// The query must hold `key=value` (and, with the others declared, nothing else).
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The request's `Content-Type`.
    pub fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = Some(content_type);
        self
    }

    /// The body holds `value` at the JSON pointer `pointer` (`/status/digest`).
    pub fn json(mut self, pointer: &str, value: Value) -> Self {
        let p = pointer.to_owned();
        self.checks.push((
            format!("{pointer} == {value}"),
            Box::new(move |body| match body.pointer(&p) {
                Some(v) if *v == value => Ok(()),
                other => Err(format!(
                    "{p} is {}",
                    other.map_or("absent".into(), Value::to_string)
                )),
            }),
        ));
        self
    }

    /// The body has nothing at `pointer`.
    pub fn absent(mut self, pointer: &str) -> Self {
        let p = pointer.to_owned();
        self.checks.push((
            format!("{pointer} absent"),
            Box::new(move |body| match body.pointer(&p) {
                None => Ok(()),
                Some(v) => Err(format!("{p} is {v}")),
            }),
        ));
        self
    }

    /// The body passes `check` (named `what` in failures).
    pub fn check(
        mut self,
        what: &str,
        check: impl Fn(&Value) -> Result<(), String> + Send + 'static,
    ) -> Self {
        self.checks.push((what.to_owned(), Box::new(check)));
        self
    }

    /// Answers 200 with `body`.
    pub fn answer(self, body: Value) -> Self {
        self.answer_with(move |_| (StatusCode::OK, body))
    }

    /// Answers 200 with `object` updated by the request's top-level fields (what a server returns after
    /// applying a status: the stored object with the new status).
    pub fn answer_merged(self, object: Value) -> Self {
        self.answer_with(move |sent| {
            let mut merged = object;
            if let (Some(m), Some(s)) = (merged.as_object_mut(), sent.as_object()) {
                for (k, v) in s {
                    m.insert(k.clone(), v.clone());
                }
            }
            (StatusCode::OK, merged)
        })
    }

    /// Answers with an error `Status` of `code` and `reason` (`Conflict`, `NotFound`).
    pub fn answer_status(self, code: u16, reason: &str) -> Self {
        let body = status(code, reason, "as the scenario says");
        self.answer_with(move |_| (StatusCode::from_u16(code).expect("a status code"), body))
    }

    /// Answers with what `f` makes of the request body.
    pub fn answer_with(mut self, f: impl FnOnce(&Value) -> (StatusCode, Value) + Send + 'static) -> Self {
        self.answer = Box::new(f);
        self
    }

    fn describe(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut line = format!("{} {}?{}", self.method, self.path, query.join("&"));
        if let Some(ct) = self.content_type {
            let _ = write!(line, " [{ct}]");
        }
        for (what, _) in &self.checks {
            let _ = write!(line, " {what};");
        }
        line
    }

    /// What differs between this expectation and the request, if anything.
    fn mismatch(&self, seen: &Seen) -> Vec<String> {
        let mut wrong = Vec::new();
        if seen.method != self.method || seen.path != self.path {
            wrong.push(format!("sent {} {}", seen.method, seen.path));
            return wrong;
        }
        if seen.query != self.query {
            wrong.push(format!("query is {:?}", seen.query));
        }
        if let Some(ct) = self.content_type
            && seen.content_type.as_deref() != Some(ct)
        {
            wrong.push(format!("content type is {:?}", seen.content_type));
        }
        for (what, check) in &self.checks {
            if let Err(e) = check(&seen.body) {
                wrong.push(format!("not {what}: {e}"));
            }
        }
        wrong
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
           "message": message, "metadata": {}})
}

/// A request as the server saw it.
#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Value,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        write!(
            f,
            "{} {}?{} {}",
            self.method,
            self.path,
            query.join("&"),
            self.body
        )
    }
}

async fn read(request: Request<Body>) -> Seen {
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.expect("a request body");
    let query = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query,
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// What the server found, when the scenario ends.
struct Report {
    seen: Vec<String>,
    failures: Vec<String>,
    missing: Vec<String>,
}

/// The server side of the mocked client: [`ApiServer::verify`] (or [`ApiServer::run`]) fails the test on any
/// difference from the expected requests.
pub struct ApiServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Report>,
}

/// A client whose API server expects exactly `expected`, in order.
pub fn mock(expected: impl IntoIterator<Item = Expect>) -> (Client, ApiServer) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (stop, mut stopped) = oneshot::channel();
    let mut expected: std::collections::VecDeque<Expect> = expected.into_iter().collect();
    let task = tokio::spawn(async move {
        let mut report = Report {
            seen: Vec::new(),
            failures: Vec::new(),
            missing: Vec::new(),
        };
        loop {
            let next = tokio::select! {
                biased;
                next = handle.next_request() => next,
                _ = &mut stopped => None,
            };
            let Some((request, respond)) = next else { break };
            let seen = read(request).await;
            let n = report.seen.len() + 1;
            report.seen.push(format!("{n}. {seen}"));
            let (code, body) = match expected.pop_front() {
                None => {
                    report
                        .failures
                        .push(format!("request {n} was not expected: {seen}"));
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        status(500, "InternalError", "not expected"),
                    )
                }
                Some(e) => {
                    let wrong = e.mismatch(&seen);
                    if wrong.is_empty() {
                        (e.answer)(&seen.body)
                    } else {
                        report.failures.push(format!(
                            "request {n}: expected {}\n    but {}",
                            e.describe(),
                            wrong.join("\n    and ")
                        ));
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            status(500, "InternalError", "not as expected"),
                        )
                    }
                }
            };
            let response = Response::builder()
                .status(code)
                .header(http::header::CONTENT_TYPE, JSON)
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("a response");
            respond.send_response(response);
        }
        report.missing = expected.iter().map(Expect::describe).collect();
        report
    });
    (Client::new(service, "default"), ApiServer { stop, task })
}

impl ApiServer {
    /// Ends the scenario: panics unless every expected request came, as expected, and nothing else.
    pub async fn verify(self) {
        let _ = self.stop.send(());
        let report = self.task.await.expect("the mocked API server ran");
        let mut problems = report.failures;
        problems.extend(
            report
                .missing
                .iter()
                .map(|m| format!("expected and never sent: {m}")),
        );
        assert!(
            problems.is_empty(),
            "the API server did not see what the scenario expects:\n  {}\nrequests seen:\n  {}",
            problems.join("\n  "),
            if report.seen.is_empty() {
                "none".to_owned()
            } else {
                report.seen.join("\n  ")
            }
        );
    }

    /// Runs `scenario` (a reconcile), then [`verify`](Self::verify)s, then hands back its output.
    pub async fn run<T>(self, scenario: impl Future<Output = T>) -> T {
        let output = scenario.await;
        self.verify().await;
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    fn config_map() -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some("c".into());
        c
    }

    const CMS: &str = "/api/v1/namespaces/ns/configmaps";

    #[tokio::test]
    async fn the_expected_requests_in_order_pass() {
        let (client, server) = mock([
            Expect::create(CMS).json("/metadata/name", json!("c")),
            Expect::apply(format!("{CMS}/c"), "me").json("/data/k", json!("v")),
        ]);
        let api: Api<ConfigMap> = Api::namespaced(client, "ns");
        server
            .run(async {
                api.create(&PostParams::default(), &config_map())
                    .await
                    .expect("created");
                let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}});
                api.patch("c", &PatchParams::apply("me").force(), &Patch::Apply(&patch))
                    .await
                    .expect("applied");
            })
            .await;
    }

    #[tokio::test]
    #[should_panic(expected = "request 2 was not expected")]
    async fn one_request_too_many_fails() {
        let (client, server) = mock([Expect::create(CMS)]);
        let api: Api<ConfigMap> = Api::namespaced(client, "ns");
        server
            .run(async {
                api.create(&PostParams::default(), &config_map())
                    .await
                    .expect("created");
                let _ = api.create(&PostParams::default(), &config_map()).await;
            })
            .await;
    }

    #[tokio::test]
    #[should_panic(expected = "expected and never sent: DELETE")]
    async fn a_request_never_sent_fails() {
        let (client, server) = mock([Expect::create(CMS), Expect::delete(format!("{CMS}/c"))]);
        let api: Api<ConfigMap> = Api::namespaced(client, "ns");
        server
            .run(async {
                api.create(&PostParams::default(), &config_map())
                    .await
                    .expect("created")
            })
            .await;
    }

    #[tokio::test]
    #[should_panic(expected = "query is {\"fieldManager\": \"someone-else\"")]
    async fn another_field_manager_fails() {
        let (client, server) = mock([Expect::apply(format!("{CMS}/c"), "me")]);
        let api: Api<ConfigMap> = Api::namespaced(client, "ns");
        let patch = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        server
            .run(async {
                let _ = api
                    .patch(
                        "c",
                        &PatchParams::apply("someone-else").force(),
                        &Patch::Apply(&patch),
                    )
                    .await;
            })
            .await;
    }

    #[tokio::test]
    #[should_panic(expected = "not /data/k == \"v\": /data/k is \"w\"")]
    async fn a_body_without_its_essentials_fails() {
        let (client, server) = mock([Expect::apply(format!("{CMS}/c"), "me").json("/data/k", json!("v"))]);
        let api: Api<ConfigMap> = Api::namespaced(client, "ns");
        let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "w"}});
        server
            .run(async {
                let _ = api
                    .patch("c", &PatchParams::apply("me").force(), &Patch::Apply(&patch))
                    .await;
            })
            .await;
    }
}
