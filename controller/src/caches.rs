//! Watch caches: one watch per kind, managed fields stripped, errors logged and retried with back-off.

use std::fmt::Debug;
use std::future::{Future, ready};
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

/// What a cache holds.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}
impl<K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static> Cached for K {}

fn log_errors<E: std::fmt::Display>(
    kind: &'static str,
) -> impl FnMut(Result<(), E>) -> std::future::Ready<()> {
    move |event| {
        if let Err(e) = event {
            warn!(error = %e, kind, "watch error; retrying");
        }
        ready(())
    }
}

/// A cache of what `api` and `config` select, and the future that keeps it filled.
pub fn cache<K: Cached>(api: Api<K>, config: watcher::Config) -> (Store<K>, impl Future<Output = ()>) {
    let (reader, writer) = reflector::store();
    let driver = watcher(api, config)
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .map(|event| event.map(|_| ()))
        .for_each(log_errors(std::any::type_name::<K>()));
    (reader, driver)
}

/// A subscription to a shared watch ([`shared`]): every object the watch delivers (applied, deleted, or listed
/// again after a restart), in order, as the watch delivered it.
///
/// kube's own shared reflector (`reflect_shared`, `ReflectHandle`) is not used: it carries references and
/// looks each one up in the store when polled, so a reference to an object deleted meanwhile leaves the stream
/// pending without a wake-up (a Workload controller then stopped seeing its Pods after a rolling update deleted
/// one), and it never delivers deletions (a Pod deleted at once, with no update before, woke nobody).
pub type Subscription<K> = mpsc::Receiver<Arc<K>>;

/// How many objects a subscriber may lag behind before the watch waits for it.
const BUFFER: usize = 1024;

/// A cache of every `K` shared by `subscribers` consumers (controllers that react to its changes), and the
/// future that keeps it filled and feeds them.
pub fn shared<K: Cached>(
    api: Api<K>,
    subscribers: usize,
) -> (Store<K>, Vec<Subscription<K>>, impl Future<Output = ()>) {
    let (reader, writer) = reflector::store::<K>();
    let (mut senders, receivers): (Vec<_>, Vec<_>) =
        (0..subscribers).map(|_| mpsc::channel::<Arc<K>>(BUFFER)).unzip();
    let events = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer);
    let driver = async move { fan_out(std::any::type_name::<K>(), events, &mut senders).await };
    (reader, receivers, driver)
}

/// Sends every object of `events` to every subscriber, in order, waiting for one that lags [`BUFFER`] behind.
async fn fan_out<K, E: std::fmt::Display>(
    kind: &'static str,
    events: impl futures::Stream<Item = Result<Event<K>, E>>,
    senders: &mut [mpsc::Sender<Arc<K>>],
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(Event::Apply(o) | Event::Delete(o) | Event::InitApply(o)) => Arc::new(o),
            Ok(Event::Init | Event::InitDone) => continue,
            Err(e) => {
                warn!(error = %e, kind, "watch error; retrying");
                continue;
            }
        };
        for sender in senders.iter_mut() {
            // A subscriber that is gone (its controller stopped) is no reason to stop the others.
            let _ = sender.send(object.clone()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_gets_every_object_applied_listed_or_deleted_in_order() {
        let events = futures::stream::iter([
            Ok(Event::Init),
            Ok(Event::InitApply("a")),
            Ok(Event::InitDone),
            Err("the watch broke"),
            Ok(Event::Apply("b")),
            Ok(Event::Delete("b")),
        ]);
        let (mut senders, receivers): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel(BUFFER)).unzip();
        fan_out("test", events, &mut senders).await;
        drop(senders);
        for receiver in receivers {
            let seen: Vec<&str> = receiver.map(|o| *o).collect().await;
            // The deleted object too, whether or not a store still holds it when the subscriber reads.
            assert_eq!(seen, ["a", "b", "b"]);
        }
    }
}
