//! What every reconcile goes through, whichever controller runs it: it is timed
//! (`berth_reconcile_duration_seconds{controller}`), its failure is classified, counted
//! (`berth_reconcile_errors_total{controller,class,call}`), logged and backed off per object, and once the
//! controller stops no new one starts while those running finish.
//!
//! It lives in [`Metrics`](super::Metrics) because that is what every controller's context already carries.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::retry::Streaks;
use crate::error::{Class, Error, Result, classify};

/// Labels of a reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The controller: `import`, `streams`, `workloads`, `triggers`.
    pub controller: &'static str,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The controller.
    pub controller: &'static str,
    /// `retry_soon`, `retry_later` or `give_up`.
    pub class: &'static str,
    /// The API call that failed (`apply Workload status`), or `none`.
    pub call: &'static str,
}

/// Whether reconciles may start, and how many run.
#[derive(Clone, Copy, Debug, Default)]
struct Gate {
    draining: bool,
    running: usize,
}

/// Whose streak: the controller's and the object's.
type StreakKey = (&'static str, ObjectRef<DynamicObject>);

/// The bookkeeping of every reconcile. Cheap to clone: what is inside is shared.
#[derive(Clone)]
pub struct Reconciles {
    duration: Family<ControllerLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    streaks: Arc<Mutex<Streaks<StreakKey>>>,
    gate: watch::Sender<Gate>,
}

impl Reconciles {
    /// The reconcile metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        // 1 ms to 33 s: a reconcile that writes nothing takes microseconds, an import waits for its registry.
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time reconciles took, by controller",
            duration.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by controller, class (retry_soon, retry_later, give_up) and failed API call",
            errors.clone(),
        );
        Self {
            duration,
            errors,
            streaks: Arc::default(),
            gate: watch::Sender::new(Gate::default()),
        }
    }

    /// Runs `reconcile` of `object` for `controller`: times it and, when it succeeds, resets the object's
    /// back-off. Once [`Reconciles::drain`] was called it is not started (the process is stopping; the next
    /// leader reconciles every object anyway).
    pub async fn run(
        &self,
        controller: &'static str,
        object: ObjectRef<DynamicObject>,
        reconcile: impl Future<Output = Result<Action>>,
    ) -> Result<Action> {
        let Some(_running) = self.enter() else {
            debug!(controller, object = %object, "stopping: not starting a reconcile");
            return Ok(Action::await_change());
        };
        let start = Instant::now();
        let result = reconcile.await;
        self.duration
            .get_or_create(&ControllerLabels { controller })
            .observe(start.elapsed().as_secs_f64());
        if result.is_ok() {
            self.streaks
                .lock()
                .expect("not poisoned")
                .succeeded(&(controller, object));
        }
        result
    }

    /// The error policy of every controller: classifies `error`, counts it, logs it (a given-up error once)
    /// and says when to try `object` again (see [`crate::error::retry`]).
    pub fn error_policy(
        &self,
        controller: &'static str,
        object: ObjectRef<DynamicObject>,
        error: &Error,
    ) -> Action {
        let class = classify(error);
        let call = error.call();
        self.errors
            .get_or_create(&ErrorLabels {
                controller,
                class: class.as_str(),
                call,
            })
            .inc();
        let message = error.to_string();
        let retry = self.streaks.lock().expect("not poisoned").failed(
            (controller, object.clone()),
            class,
            &message,
            Instant::now(),
        );
        let (class, failures, retry_in) = (class.as_str(), retry.failures, retry.after);
        match retry.class {
            Class::RetrySoon => {
                info!(controller, %object, class, call, failures, ?retry_in, error = %message, "reconcile conflicted; retrying soon")
            }
            Class::RetryLater => {
                warn!(controller, %object, class, call, failures, ?retry_in, error = %message, "reconcile failed; retrying")
            }
            Class::GiveUp if retry.report => {
                warn!(controller, %object, class, call, ?retry_in, error = %message, "reconcile failed; giving up until the object changes")
            }
            Class::GiveUp => {
                debug!(controller, %object, class, call, failures, error = %message, "reconcile failed again; given up")
            }
        }
        Action::requeue(retry.after)
    }

    /// Starts no more reconciles; those running go on ([`Reconciles::drained`] says when they are done).
    pub fn drain(&self) {
        self.gate.send_modify(|g| g.draining = true);
    }

    /// Resolves when no reconcile runs.
    pub async fn drained(&self) {
        let mut gate = self.gate.subscribe();
        // The sender is `self`: it cannot close while this waits.
        let _ = gate.wait_for(|g| g.running == 0).await;
    }

    /// Counts a reconcile as running, unless draining.
    fn enter(&self) -> Option<Running> {
        let mut entered = false;
        self.gate.send_if_modified(|g| {
            entered = !g.draining;
            g.running += usize::from(entered);
            entered
        });
        entered.then(|| Running(self.gate.clone()))
    }
}

/// A running reconcile; dropped when it ends, or is cancelled.
struct Running(watch::Sender<Gate>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|g| g.running -= 1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use berth_api::image::ImageStreamTag;
    use futures::FutureExt;

    use super::super::Metrics;
    use super::*;

    fn tag(name: &str) -> ObjectRef<DynamicObject> {
        ObjectRef::<ImageStreamTag>::new(name).within("ns").erase()
    }

    fn api(code: u16) -> Error {
        let status = kube::core::Status::failure("no", "").with_code(code);
        Error::kube("apply ImageStreamTag status")(kube::Error::Api(status.boxed()))
    }

    #[tokio::test]
    async fn reconciles_are_timed_and_failures_counted_by_class_and_call() {
        let m = Metrics::default();
        let r = &m.reconciles;
        r.run("import", tag("a"), async { Ok(Action::await_change()) })
            .await
            .unwrap();
        let failed = r.run("import", tag("b"), async { Err(api(422)) }).await;
        r.error_policy("import", tag("b"), &failed.unwrap_err());
        r.error_policy("streams", tag("c"), &api(503));
        let text = m.encode();
        for line in [
            r#"berth_reconcile_duration_seconds_count{controller="import"} 2"#,
            r#"berth_reconcile_errors_total{controller="import",class="give_up",call="apply ImageStreamTag status"} 1"#,
            r#"berth_reconcile_errors_total{controller="streams",class="retry_later",call="apply ImageStreamTag status"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[tokio::test]
    async fn the_error_policy_backs_off_per_object_until_a_success() {
        let r = Metrics::default().reconciles;
        let requeues: Vec<_> = (0..3)
            .map(|_| r.error_policy("import", tag("a"), &api(503)))
            .collect();
        let secs = |s| Action::requeue(Duration::from_secs(s));
        assert_eq!(requeues, [secs(1), secs(2), secs(4)]);
        // Another object, or the same one in another controller, has its own streak.
        assert_eq!(r.error_policy("import", tag("b"), &api(503)), secs(1));
        assert_eq!(r.error_policy("streams", tag("a"), &api(503)), secs(1));
        assert_eq!(
            r.error_policy("import", tag("a"), &api(409)),
            Action::requeue(Duration::from_millis(40))
        );
        assert_eq!(r.error_policy("import", tag("a"), &api(403)), secs(15 * 60));
        r.run("import", tag("a"), async { Ok(Action::await_change()) })
            .await
            .unwrap();
        assert_eq!(r.error_policy("import", tag("a"), &api(503)), secs(1));
    }

    #[test]
    fn objects_of_other_kinds_with_the_same_name_back_off_apart() {
        // What the triggers controller passes: a DynamicObject keyed with its ApiResource.
        let r = Metrics::default().reconciles;
        let kind = |kind: &str| kube::api::ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
        };
        let (deployment, stateful_set) = (kind("Deployment"), kind("StatefulSet"));
        let web = |ar: &kube::api::ApiResource| DynamicObject::new("web", ar).within("ns");
        let key = |ar: &kube::api::ApiResource| ObjectRef::from_obj_with(&web(ar), ar.clone());
        let secs = |s| Action::requeue(Duration::from_secs(s));
        assert_eq!(r.error_policy("triggers", key(&deployment), &api(500)), secs(1));
        assert_eq!(r.error_policy("triggers", key(&deployment), &api(500)), secs(2));
        assert_eq!(r.error_policy("triggers", key(&stateful_set), &api(500)), secs(1));
    }

    #[tokio::test]
    async fn draining_starts_no_reconcile_and_waits_for_those_running() {
        let r = Metrics::default().reconciles;
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let r = r.clone();
            async move {
                r.run("workloads", tag("a"), async {
                    finished.await.unwrap();
                    Ok(Action::requeue(Duration::from_secs(10)))
                })
                .await
            }
        });
        while r.gate.borrow().running == 0 {
            tokio::task::yield_now().await;
        }
        r.drain();
        let started = AtomicBool::new(false);
        let skipped = r
            .run("workloads", tag("b"), async {
                started.store(true, Ordering::Relaxed);
                Ok(Action::requeue(Duration::from_secs(1)))
            })
            .await;
        assert_eq!(skipped.unwrap(), Action::await_change());
        assert!(
            !started.load(Ordering::Relaxed),
            "a reconcile started while draining"
        );
        let mut drained = std::pin::pin!(r.drained());
        assert!(
            (&mut drained).now_or_never().is_none(),
            "one reconcile still runs"
        );
        finish.send(()).unwrap();
        drained.await;
        let done = running.await.unwrap().unwrap();
        assert_eq!(done, Action::requeue(Duration::from_secs(10)));
    }

    #[tokio::test]
    async fn a_cancelled_reconcile_is_not_counted_as_running() {
        let r = Metrics::default().reconciles;
        let pending = r.run("import", tag("a"), futures::future::pending());
        assert!(pending.now_or_never().is_none()); // polled once, then dropped
        r.drain();
        r.drained().now_or_never().expect("nothing runs");
    }
}
