//! The resolver's per-registry admission against a fake registry on 127.0.0.1 that slows down as requests in
//! flight rise, and fails (503) when too many wait in it, as a registry with a few workers and a bounded
//! queue does. The controller's adaptive window must keep what is in flight bounded, below what makes the
//! registry fail, so that no resolve fails that a sequential client would not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::Method;
use berth_controller::registry::{
    Priority, RateLimit, ResolveRequest, Resolver, ResolverConfig, WindowConfig,
};

#[path = "support/fake_registry.rs"]
mod fake_registry;
use fake_registry::{OCI_MANIFEST, answer, manifest_bytes, sha256};

/// How the fake behaves under load.
#[derive(Clone, Copy)]
struct Capacity {
    /// Requests served at once; more wait in its queue.
    workers: u32,
    /// The time one request takes to serve.
    service: Duration,
    /// Requests in it (served and queued) beyond which it answers 503 at once.
    max_in_flight: u32,
}

/// A fake registry holding one manifest under every tag, whose answers take `service × ⌈in flight /
/// workers⌉`.
struct SlowingRegistry {
    host: String,
    peak: Arc<AtomicU32>,
    unavailable: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowingRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowingRegistry {
    async fn start(capacity: Capacity) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let in_flight = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let (unavailable, served) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let digest = sha256(&manifest_bytes());
        let counters = (
            in_flight,
            Arc::clone(&peak),
            Arc::clone(&unavailable),
            Arc::clone(&served),
        );
        let app = axum::Router::new().fallback(move |request: Request| {
            let (in_flight, peak, unavailable, served) = counters.clone();
            let digest = digest.clone();
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let response = if now > capacity.max_in_flight {
                    unavailable.fetch_add(1, Ordering::SeqCst);
                    answer(503, &[], "overloaded")
                } else {
                    tokio::time::sleep(capacity.service * now.div_ceil(capacity.workers)).await;
                    served.fetch_add(1, Ordering::SeqCst);
                    let body = if request.method() == Method::HEAD {
                        axum::body::Body::empty()
                    } else {
                        manifest_bytes().into()
                    };
                    let headers = [
                        ("content-type", OCI_MANIFEST.to_string()),
                        ("docker-content-digest", digest),
                    ];
                    answer(200, &headers, body)
                };
                in_flight.fetch_sub(1, Ordering::SeqCst);
                response
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            host,
            peak,
            unavailable,
            served,
            task,
        }
    }
}

/// A registry with 4 workers, 20 ms a request, that fails beyond 48 requests in it (a window that does not
/// adapt, at 64, breaks it; one that adapts stays well below, slow start's overshoot included).
const CAPACITY: Capacity = Capacity {
    workers: 4,
    service: Duration::from_millis(20),
    max_in_flight: 48,
};

/// A rate limit that does not bind: only the window holds requests back.
const UNLIMITED: RateLimit = RateLimit {
    per_second: 100_000.0,
    burst: 100_000,
};

fn resolver(window: WindowConfig, rate_limit: RateLimit) -> Arc<Resolver> {
    Arc::new(
        Resolver::new(ResolverConfig {
            timeout: Duration::from_secs(5),
            rate_limit,
            concurrency: window,
            ..Default::default()
        })
        .expect("resolver"),
    )
}

/// What resolving `tags` tags at once gave.
struct Run {
    failures: Vec<String>,
    elapsed: Duration,
    peak: u32,
    unavailable: usize,
}

/// Resolves `tags` tags of a fresh slowing registry at once, as that many reconciles would.
async fn resolve_all(tags: usize, window: WindowConfig) -> Run {
    resolve_all_of(SlowingRegistry::start(CAPACITY).await, tags, window, UNLIMITED).await
}

async fn resolve_all_of(
    registry: SlowingRegistry,
    tags: usize,
    window: WindowConfig,
    rate_limit: RateLimit,
) -> Run {
    let resolver = resolver(window, rate_limit);
    let started = Instant::now();
    let tasks: Vec<_> = (0..tags)
        .map(|i| {
            let (resolver, host) = (resolver.clone(), registry.host.clone());
            tokio::spawn(async move {
                let request = ResolveRequest {
                    reference: format!("{host}/team/app:t{i}"),
                    insecure: true,
                    priority: Priority::ALL[i % 3],
                    ..Default::default()
                };
                resolver.resolve(&request).await.map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.expect("joined") {
            failures.push(e);
        }
    }
    assert!(registry.served.load(Ordering::SeqCst) >= tags - failures.len());
    Run {
        failures,
        elapsed: started.elapsed(),
        peak: registry.peak.load(Ordering::SeqCst),
        unavailable: registry.unavailable.load(Ordering::SeqCst),
    }
}

fn report(what: &str, tags: usize, run: &Run) {
    eprintln!(
        "{what}: {tags} tags in {:.2} s ({:.0} tags/s), peak {} in flight at the registry, {} answered 503, {} \
         resolves failed",
        run.elapsed.as_secs_f64(),
        tags as f64 / run.elapsed.as_secs_f64(),
        run.peak,
        run.unavailable,
        run.failures.len()
    );
}

/// The default window, up to 64 at once (so that only the adaptation keeps the fake below its 48).
fn adaptive() -> WindowConfig {
    WindowConfig {
        max: 64,
        ..WindowConfig::default()
    }
}

/// 64 at once whatever the registry does: what the controller did before (all at once), bounded.
fn fixed() -> WindowConfig {
    WindowConfig {
        max: 64,
        initial: 64,
        latency_tolerance: 1e9,
        ..WindowConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_keeps_a_slowing_registry_below_its_breaking_point() {
    let tags = 400;
    let run = resolve_all(tags, adaptive()).await;
    report("adaptive window", tags, &run);
    assert!(
        run.failures.is_empty(),
        "{:?}",
        &run.failures[..run.failures.len().min(3)]
    );
    assert_eq!(run.unavailable, 0, "the registry never had to refuse");
    assert!(run.peak <= CAPACITY.max_in_flight, "peak {}", run.peak);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_adaptation_the_same_registry_fails_requests() {
    // The measure of the test above: the same load with a window that does not adapt breaks the fake.
    let tags = 400;
    let run = resolve_all(tags, fixed()).await;
    report("fixed window of 64", tags, &run);
    assert!(
        run.unavailable > 0,
        "the fake is not overloaded: the test above proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berths_own_rate_limit_orders_requests_instead_of_failing_them() {
    // 25 a second and a window of up to 64: the last of 64 slot holders waits 2.56 s for its token, longer
    // than `max_rate_wait` (2 s), and 100 requests take 3.8 s; none fails `RateLimited` for Berth's own limit.
    let roomy = SlowingRegistry::start(Capacity {
        workers: 1_000,
        service: Duration::from_millis(1),
        max_in_flight: 10_000,
    })
    .await;
    let rate = RateLimit {
        per_second: 25.0,
        burst: 5,
    };
    let tags = 100;
    let run = resolve_all_of(roomy, tags, adaptive(), rate).await;
    report("rate limited to 25/s", tags, &run);
    assert!(
        run.failures.is_empty(),
        "{:?}",
        &run.failures[..run.failures.len().min(3)]
    );
    assert!(run.elapsed >= Duration::from_millis(3_500), "{:?}", run.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_imports_overtake_retries_waiting_for_the_same_registry() {
    let registry = SlowingRegistry::start(Capacity {
        workers: 1,
        service: Duration::from_millis(20),
        max_in_flight: 1_000,
    })
    .await;
    // One request at a time: everything else waits in the registry's queue.
    let resolver = resolver(
        WindowConfig {
            max: 1,
            initial: 1,
            ..WindowConfig::default()
        },
        UNLIMITED,
    );
    let done = Arc::new(std::sync::Mutex::new(Vec::new()));
    let spawn = |i: usize, priority: Priority| {
        let (resolver, host, done) = (resolver.clone(), registry.host.clone(), done.clone());
        tokio::spawn(async move {
            let request = ResolveRequest {
                reference: format!("{host}/team/app:{priority:?}-{i}"),
                insecure: true,
                priority,
                ..Default::default()
            };
            resolver.resolve(&request).await.expect("resolved");
            done.lock().unwrap().push(priority);
        })
    };
    let mut tasks: Vec<_> = (0..10).map(|i| spawn(i, Priority::Retry)).collect();
    // The first imports come once a retry is at the registry (the others in line, or about to be).
    while registry.peak.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tasks.extend((0..10).map(|i| spawn(i, Priority::Prompt)));
    for task in tasks {
        task.await.expect("joined");
    }
    let order = done.lock().unwrap().clone();
    let retries_first = order[..12].iter().filter(|p| **p == Priority::Retry).count();
    assert!(retries_first <= 2, "{order:?}");
}

/// How many tags a second resolve against the slowing fake, adaptive and fixed: printed, not asserted.
/// `cargo test -p berth-controller --test registry_admission -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints figures"]
async fn bench_tags_per_second_against_the_slowing_registry() {
    for tags in [1_000, 4_000] {
        report("adaptive window", tags, &resolve_all(tags, adaptive()).await);
        report("fixed window of 64", tags, &resolve_all(tags, fixed()).await);
    }
    // A sequential client, for scale.
    report(
        "one at a time",
        200,
        &resolve_all(
            200,
            WindowConfig {
                max: 1,
                initial: 1,
                ..WindowConfig::default()
            },
        )
        .await,
    );
}
