//! The async side of admission: a [`Window`] and a [`Queue`] per registry, shared by every resolve.
//!
//! [`Slots::acquire`] is a future that resolves to a [`Permit`] when the registry's window has room and no
//! more urgent or older request waits. Dropping it before then takes the request out of the queue at once
//! (a reconcile cancelled because its tag was deleted holds nothing); dropping it after the slot was given
//! but before it was polled hands the slot to the next in line. A [`Permit`] gives its slot back when it is
//! [finished](Permit::finish) (its answer feeds the window) or dropped (no sample).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::admission::{Priority, Queue, Signal, Window, WindowConfig};

/// One registry's load, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Requests holding a slot.
    pub in_flight: u32,
    /// The current window: how many may hold one.
    pub window: u32,
    /// Requests waiting for a slot, by [`Priority`] (in the order of [`Priority::ALL`]).
    pub queued: [usize; 3],
}

/// Sees every change of a registry's [`Load`] (e.g. to set gauges); must not block.
pub trait LoadObserver: Send + Sync {
    /// `registry` now carries `load`.
    fn load(&self, registry: &str, load: &Load);
}

#[derive(Debug)]
struct Waiting {
    waker: Option<Waker>,
    granted: bool,
}

#[derive(Debug)]
struct Host {
    window: Window,
    in_flight: u32,
    queue: Queue,
    waiters: HashMap<u64, Waiting>,
}

impl Host {
    /// Gives free slots to the next in line.
    fn dispatch(&mut self) {
        while self.in_flight < self.window.limit() {
            let Some(id) = self.queue.pop() else { break };
            if let Some(waiting) = self.waiters.get_mut(&id) {
                waiting.granted = true;
                self.in_flight += 1;
                if let Some(waker) = waiting.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    fn load(&self) -> Load {
        Load {
            in_flight: self.in_flight,
            window: self.window.limit(),
            queued: Priority::ALL.map(|p| self.queue.len(p)),
        }
    }
}

#[derive(Default)]
struct State {
    hosts: HashMap<String, Host>,
    next_id: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    observer: OnceLock<Arc<dyn LoadObserver>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on `host`'s state, then tells the observer its load.
    fn with_host<T>(&self, host: &str, f: impl FnOnce(&mut Host) -> T) -> Option<T> {
        let (out, load) = {
            let mut state = self.lock();
            let entry = state.hosts.get_mut(host)?;
            let out = f(entry);
            (out, entry.load())
        };
        if let Some(observer) = self.observer.get() {
            observer.load(host, &load);
        }
        Some(out)
    }
}

/// The slots of every registry. Cheap to clone: clones share the state.
#[derive(Clone, Default)]
pub struct Slots {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots").finish_non_exhaustive()
    }
}

impl Slots {
    /// Reports every change of load to `observer` (the first observer set stays).
    pub fn observe(&self, observer: Arc<dyn LoadObserver>) {
        let _ = self.shared.observer.set(observer);
    }

    /// Waits for a slot of `host`, whose window is made with `config` the first time the host is seen.
    pub fn acquire(&self, host: &str, config: WindowConfig, priority: Priority) -> Acquire {
        Acquire {
            shared: self.shared.clone(),
            host: host.to_owned(),
            config,
            priority,
            id: None,
            taken: false,
        }
    }

    /// `host`'s load now, if it was ever asked for a slot.
    pub fn load(&self, host: &str) -> Option<Load> {
        self.shared.lock().hosts.get(host).map(Host::load)
    }
}

/// A request waiting for a slot: see [`Slots::acquire`].
#[must_use = "a slot is only given to a polled Acquire"]
pub struct Acquire {
    shared: Arc<Shared>,
    host: String,
    config: WindowConfig,
    priority: Priority,
    id: Option<u64>,
    taken: bool,
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let this = self.get_mut();
        let ready = {
            let mut state = this.shared.lock();
            let state = &mut *state;
            let host = state.hosts.entry(this.host.clone()).or_insert_with(|| Host {
                window: Window::new(this.config),
                in_flight: 0,
                queue: Queue::default(),
                waiters: HashMap::new(),
            });
            match this.id {
                None if host.queue.is_empty() && host.in_flight < host.window.limit() => {
                    host.in_flight += 1;
                    true
                }
                None => {
                    let id = state.next_id;
                    state.next_id += 1;
                    host.queue.push(this.priority, id);
                    let waker = Some(cx.waker().clone());
                    host.waiters.insert(
                        id,
                        Waiting {
                            waker,
                            granted: false,
                        },
                    );
                    this.id = Some(id);
                    false
                }
                Some(id) => match host.waiters.get_mut(&id) {
                    Some(waiting) if waiting.granted => {
                        host.waiters.remove(&id);
                        true
                    }
                    Some(waiting) => {
                        waiting.waker = Some(cx.waker().clone());
                        false
                    }
                    None => unreachable!("a waiter leaves the map only when its Acquire takes or drops it"),
                },
            }
        };
        // Tell the observer (outside the lock) that the load changed.
        this.shared.with_host(&this.host, |_| ());
        if !ready {
            return Poll::Pending;
        }
        this.taken = true;
        Poll::Ready(Permit {
            shared: this.shared.clone(),
            host: this.host.clone(),
            finished: false,
        })
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let (Some(id), false) = (self.id, self.taken) else {
            return;
        };
        let priority = self.priority;
        self.shared
            .with_host(&self.host, |host| match host.waiters.remove(&id) {
                Some(waiting) if waiting.granted => {
                    host.in_flight -= 1;
                    host.dispatch();
                }
                Some(_) => {
                    host.queue.remove(priority, id);
                }
                None => {}
            });
    }
}

/// A slot of one registry, held for one request.
#[must_use = "a permit holds a slot until it is finished or dropped"]
pub struct Permit {
    shared: Arc<Shared>,
    host: String,
    finished: bool,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("host", &self.host).finish()
    }
}

impl Permit {
    /// Gives the slot back after a request that ended with `signal` after `latency`: the window learns from it.
    pub fn finish(mut self, signal: Signal, latency: Duration) {
        self.finished = true;
        let now = Instant::now();
        let started = now.checked_sub(latency).unwrap_or(now);
        self.shared.with_host(&self.host, |host| {
            host.window.record(signal, started, latency, host.in_flight, now);
            host.in_flight -= 1;
            host.dispatch();
        });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.with_host(&self.host, |host| {
                host.in_flight -= 1;
                host.dispatch();
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    const MS: Duration = Duration::from_millis(1);

    fn fixed(n: u32) -> WindowConfig {
        WindowConfig {
            max: n,
            initial: n,
            ..WindowConfig::default()
        }
    }

    #[tokio::test]
    async fn waiters_go_by_priority_then_in_order_as_slots_free() {
        let slots = Slots::default();
        let first = slots.acquire("r", fixed(1), Priority::Retry).await;
        let mut waiting: Vec<_> = [
            (Priority::Retry, "retry-1"),
            (Priority::Scheduled, "scheduled"),
            (Priority::Retry, "retry-2"),
            (Priority::Prompt, "prompt"),
        ]
        .into_iter()
        .map(|(p, name)| (name, Box::pin(slots.acquire("r", fixed(1), p))))
        .collect();
        for (_, acquire) in &mut waiting {
            assert!(
                acquire.as_mut().now_or_never().is_none(),
                "the only slot is taken"
            );
        }
        assert_eq!(slots.load("r").unwrap().queued, [1, 1, 2]);
        let mut permit = first;
        let mut order = Vec::new();
        while !waiting.is_empty() {
            drop(permit);
            let (at, next) = waiting
                .iter_mut()
                .enumerate()
                .find_map(|(i, (_, acquire))| acquire.as_mut().now_or_never().map(|p| (i, p)))
                .expect("one waiter got the slot");
            permit = next;
            order.push(waiting.remove(at).0);
        }
        assert_eq!(order, ["prompt", "scheduled", "retry-1", "retry-2"]);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue_at_once_and_holds_nothing() {
        let slots = Slots::default();
        let held = slots.acquire("r", fixed(1), Priority::Prompt).await;
        let mut gone = Box::pin(slots.acquire("r", fixed(1), Priority::Prompt));
        assert!(gone.as_mut().now_or_never().is_none());
        let mut next = Box::pin(slots.acquire("r", fixed(1), Priority::Retry));
        assert!(next.as_mut().now_or_never().is_none());
        assert_eq!(slots.load("r").unwrap().queued, [1, 0, 1]);
        drop(gone);
        assert_eq!(slots.load("r").unwrap().queued, [0, 0, 1], "left at once");
        drop(held);
        // The slot went to the retry behind it, not to the dropped waiter.
        let permit = next.as_mut().now_or_never().expect("granted");
        assert_eq!(slots.load("r").unwrap().in_flight, 1);

        // A waiter dropped after it was given the slot, but before it took it, passes the slot on.
        let mut granted_then_dropped = Box::pin(slots.acquire("r", fixed(1), Priority::Prompt));
        assert!(granted_then_dropped.as_mut().now_or_never().is_none());
        let mut last = Box::pin(slots.acquire("r", fixed(1), Priority::Prompt));
        assert!(last.as_mut().now_or_never().is_none());
        drop(permit);
        drop(granted_then_dropped);
        let permit = last.as_mut().now_or_never().expect("passed on");
        drop(permit);
        assert_eq!(
            slots.load("r").unwrap(),
            Load {
                in_flight: 0,
                window: 1,
                queued: [0, 0, 0]
            }
        );
    }

    #[tokio::test]
    async fn many_waiters_never_exceed_the_window() {
        let slots = Slots::default();
        let peak = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let (slots, peak) = (slots.clone(), peak.clone());
                let priority = Priority::ALL[i % 3];
                tokio::spawn(async move {
                    let permit = slots.acquire("r", fixed(8), priority).await;
                    let load = slots.load("r").unwrap();
                    peak.fetch_max(load.in_flight, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    permit.finish(Signal::Answered, MS);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 8);
        assert_eq!(slots.load("r").unwrap().in_flight, 0);
        assert_eq!(slots.load("r").unwrap().queued, [0, 0, 0]);
    }

    #[tokio::test]
    async fn answers_shape_the_window_of_their_host_only() {
        let slots = Slots::default();
        let config = WindowConfig {
            max: 16,
            initial: 8,
            ..WindowConfig::default()
        };
        let permits: Vec<_> =
            futures::future::join_all((0..8).map(|_| slots.acquire("a", config, Priority::Prompt))).await;
        let _other = slots.acquire("b", config, Priority::Prompt).await;
        for permit in permits {
            permit.finish(Signal::Overloaded, 50 * MS);
        }
        assert_eq!(
            slots.load("a").unwrap().window,
            4,
            "halved once for the whole round trip"
        );
        assert_eq!(slots.load("b").unwrap().window, 8);
    }
}
