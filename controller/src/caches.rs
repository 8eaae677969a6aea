//! Watch caches: one watch per kind, managed fields stripped, errors logged and retried with back-off.

use std::fmt::Debug;
use std::future::{Future, ready};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ReflectHandle, Store};
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

/// A cache of every `K` shared by `subscribers` consumers (controllers that react to its changes), and the
/// future that keeps it filled.
pub fn shared<K: Cached>(
    api: Api<K>,
    subscribers: usize,
) -> (Store<K>, Vec<ReflectHandle<K>>, impl Future<Output = ()>) {
    let (reader, writer) = reflector::store_shared::<K>(1024);
    let subs = (0..subscribers)
        .map(|_| writer.subscribe().expect("a shared store"))
        .collect();
    let driver = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect_shared(writer)
        .map(|event| event.map(|_| ()))
        .for_each(log_errors(std::any::type_name::<K>()));
    (reader, subs, driver)
}
