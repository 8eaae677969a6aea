//! Keeps the [`Index`] current: watches the Services and Endpoints of every namespace and
//! publishes a new index, at most every [`REBUILD_EVERY`], after they change. Until Services
//! are listed every name of the domain is SERVFAIL; until Endpoints are (or while the agent
//! may not list them), headless Services are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use tokio::sync::watch;
use tracing::{info, warn};

use super::records::{EndpointsEntry, Index, Key, ServiceEntry, endpoints_entry, key, service_entry};

/// The least time between two rebuilds of the index.
pub const REBUILD_EVERY: Duration = Duration::from_millis(200);

/// One watched kind's objects, kept as what they contribute to DNS.
#[derive(Debug)]
pub struct Objects<E> {
    current: BTreeMap<Key, E>,
    relist: Option<BTreeMap<Key, E>>,
    synced: bool,
}

impl<E> Default for Objects<E> {
    fn default() -> Self {
        Objects {
            current: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }
}

impl<E: PartialEq> Objects<E> {
    /// Applies a watch event (`entry` turns an object into what it contributes); true when
    /// what the index is built from changed.
    pub fn apply<K: Resource>(&mut self, event: Event<K>, entry: impl Fn(&K) -> Option<E>) -> bool {
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(obj) => {
                if let (Some(relist), Some(k)) = (self.relist.as_mut(), key(obj.meta())) {
                    relist.extend(entry(&obj).map(|e| (k, e)));
                }
                false
            }
            Event::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                let changed = !self.synced || listed != self.current;
                self.current = listed;
                self.synced = true;
                changed
            }
            Event::Apply(obj) => {
                let Some(k) = key(obj.meta()) else { return false };
                match entry(&obj) {
                    Some(e) if self.current.get(&k) == Some(&e) => false,
                    Some(e) => {
                        self.current.insert(k, e);
                        true
                    }
                    None => self.current.remove(&k).is_some(),
                }
            }
            Event::Delete(obj) => key(obj.meta()).is_some_and(|k| self.current.remove(&k).is_some()),
        }
    }

    /// The objects, once listed.
    pub fn listed(&self) -> Option<&BTreeMap<Key, E>> {
        self.synced.then_some(&self.current)
    }
}

/// The index of what is known: unsynced until Services are listed.
pub fn index_of(
    zone: &Name,
    services: &Objects<ServiceEntry>,
    endpoints: &Objects<EndpointsEntry>,
    serial: u32,
) -> Index {
    match services.listed() {
        Some(s) => Index::build(zone, s, endpoints.listed(), serial),
        None => Index::unsynced(zone),
    }
}

/// One event of either watch (boxed: a Service is large).
enum Change {
    Service(Box<Result<Event<Service>, watcher::Error>>),
    Endpoints(Box<Result<Event<Endpoints>, watcher::Error>>),
}

/// Watches until the process ends, sending each new index to `tx`.
pub async fn run(client: Client, zone: Name, tx: watch::Sender<Arc<Index>>) {
    let services = watcher::watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map(|e| Change::Service(Box::new(e)))
        .boxed();
    let endpoints = watcher::watcher(Api::<Endpoints>::all(client), watcher::Config::default())
        .default_backoff()
        .map(|e| Change::Endpoints(Box::new(e)))
        .boxed();
    let mut changes = futures::stream::select(services, endpoints);
    let mut svc = Objects::<ServiceEntry>::default();
    let mut eps = Objects::<EndpointsEntry>::default();
    let mut due: Option<tokio::time::Instant> = None;
    let mut announced = false;
    loop {
        let change = tokio::select! {
            change = changes.next() => change,
            () = sleep_until(due) => {
                due = None;
                tx.send_replace(Arc::new(index_of(&zone, &svc, &eps, serial())));
                if !announced && svc.listed().is_some() {
                    announced = true;
                    info!(services = svc.current.len(), endpoints_listed = eps.listed().is_some(), "cluster DNS: answering the cluster's names");
                }
                continue;
            }
        };
        let changed = match change {
            None => return,
            Some(Change::Service(e)) => match *e {
                Ok(e) => svc.apply(e, service_entry),
                Err(e) => {
                    warn!(error = %e, "cluster DNS: Service watch failed; retrying");
                    false
                }
            },
            Some(Change::Endpoints(e)) => match *e {
                Ok(e) => eps.apply(e, |e| Some(endpoints_entry(e))),
                Err(e) => {
                    warn!(error = %e, "cluster DNS: Endpoints watch failed (the agent needs list and watch on endpoints); headless Services answer SERVFAIL until it works");
                    false
                }
            },
        };
        if changed && due.is_none() {
            due = Some(tokio::time::Instant::now() + REBUILD_EVERY);
        }
    }
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The SOA serial: seconds since the epoch (as CoreDNS's, from the last change).
fn serial() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    u32::try_from(secs % u64::from(u32::MAX)).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_dns::fixtures::{endpoints, name, services, zone};
    use crate::cluster_dns::records::Lookup;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::A;

    fn web() -> Service {
        services()
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some("web"))
            .expect("web")
    }

    #[test]
    fn a_relist_replaces_the_objects_and_reports_a_change_only_when_there_is_one() {
        let mut objects = Objects::<ServiceEntry>::default();
        assert!(objects.listed().is_none());
        assert!(!objects.apply(Event::Init, service_entry));
        for s in services() {
            assert!(
                !objects.apply(Event::InitApply(s), service_entry),
                "buffered until InitDone"
            );
        }
        assert!(
            objects.apply(Event::InitDone, service_entry),
            "the first listing is a change"
        );
        assert_eq!(objects.listed().map(BTreeMap::len), Some(8));

        // The same listing again changes nothing; one without `web` does.
        objects.apply(Event::Init, service_entry);
        for s in services() {
            objects.apply(Event::InitApply(s), service_entry);
        }
        assert!(!objects.apply(Event::InitDone, service_entry));
        objects.apply(Event::Init, service_entry);
        for s in services()
            .into_iter()
            .filter(|s| s.metadata.name.as_deref() != Some("web"))
        {
            objects.apply(Event::InitApply(s), service_entry);
        }
        assert!(objects.apply(Event::InitDone, service_entry));
        assert!(
            !objects
                .listed()
                .expect("listed")
                .contains_key(&("shop".into(), "web".into()))
        );
    }

    #[test]
    fn updates_and_deletes_change_the_index() {
        let mut svc = Objects::<ServiceEntry>::default();
        let mut eps = Objects::<EndpointsEntry>::default();
        let web_name = name("web.shop.svc.cluster.local.");
        assert_eq!(
            index_of(&zone(), &svc, &eps, 1).lookup(&web_name),
            Lookup::Pending
        );

        svc.apply(Event::Init, service_entry);
        svc.apply(Event::InitDone, service_entry);
        assert!(svc.apply(Event::Apply(web()), service_entry));
        assert!(
            !svc.apply(Event::Apply(web()), service_entry),
            "an unchanged object is no change"
        );
        assert!(matches!(
            index_of(&zone(), &svc, &eps, 1).lookup(&web_name),
            Lookup::Records(_)
        ));

        let mut moved = web();
        if let Some(spec) = moved.spec.as_mut() {
            spec.cluster_ip = Some("10.215.0.99".into());
            spec.cluster_ips = None;
        }
        assert!(svc.apply(Event::Apply(moved), service_entry));
        let index = index_of(&zone(), &svc, &eps, 1);
        let ip = "10.215.0.99".parse().expect("an address");
        assert_eq!(index.lookup(&web_name), Lookup::Records(vec![RData::A(A(ip))]));

        for e in endpoints() {
            eps.apply(Event::Apply(e), |e| Some(endpoints_entry(e)));
        }
        assert!(
            eps.listed().is_none(),
            "endpoints are not listed until their InitDone"
        );
        assert!(svc.apply(Event::Delete(web()), service_entry));
        assert_eq!(
            index_of(&zone(), &svc, &eps, 1).lookup(&web_name),
            Lookup::Missing
        );
    }
}
