//! Wiring: connect, check, elect a leader, start the shared watches, the controllers and the servers.

use std::future::ready;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_api::image::{ImageStream, ImageStreamTag};
use futures::{FutureExt, StreamExt, channel::mpsc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use tracing::{info, warn};

use crate::caches;
use crate::config::Config;
use crate::context::{Context, Push};
use crate::error::{Error, Result};
use crate::followers::live::LiveIndex;
use crate::followers::{self, TagKey};
use crate::import::schedule::Pacing;
use crate::leader::fence::Fence;
use crate::metrics::reconciles::Reconciles;
use crate::metrics::{Metrics, Phase};
use crate::registry::{RateLimit, RegistryPolicy, Resolver, ResolverConfig, WindowConfig};
use crate::webhook::Webhook;
use crate::{import, leader, streams};

/// Reads the registry policy file named by `--registry-policy`.
fn read_policy(path: &std::path::Path) -> Result<RegistryPolicy> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let policy = RegistryPolicy::parse(&text).map_err(|detail| Error::RegistryPolicy {
        path: path.to_owned(),
        detail,
    })?;
    info!(path = %path.display(), ?policy, "registry policy");
    Ok(policy)
}

/// The API clients of this replica (see [`leader`]), both naming it in their user agent
/// ([`config::user_agent`](crate::config::user_agent)).
pub struct Clients {
    /// The controllers' client: reads always, writes only while `fence` is open.
    pub api: Client,
    /// The leader election's client, which opens `fence` at each renewal of the Lease.
    pub lease: Client,
    /// This replica's write fence.
    pub fence: Fence,
}

/// Connects to the API server as the replica `identity`, failing in one line when it does not answer; writes
/// refused by the fence are counted in `refused`.
pub async fn connect(config: &Config, identity: &str, refused: Counter) -> Result<Clients> {
    let mut kube_config = kube::Config::infer().await?;
    kube_config
        .headers
        .push((http::header::USER_AGENT, crate::config::user_agent(identity)));
    let url = kube_config.cluster_url.to_string();
    let fence = Fence::default();
    let clients = Clients {
        api: leader::api_client(kube_config.clone(), &fence, refused)?,
        lease: leader::lease_client(kube_config, config, identity, &fence)?,
        fence,
    };
    match tokio::time::timeout(config.connect_timeout, clients.api.apiserver_version()).await {
        Ok(Ok(version)) => {
            info!(%url, version = %version.git_version, identity, "connected");
            Ok(clients)
        }
        Ok(Err(e)) => Err(Error::Unreachable {
            url,
            detail: causes(&e),
        }),
        Err(_) => Err(Error::Unreachable {
            url,
            detail: format!("no answer within {:?}", config.connect_timeout),
        }),
    }
}

/// An error and its causes in one line, each said once.
fn causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}

/// Fails when the API server does not serve Berth's resources.
async fn check_crds(client: &Client) -> Result<()> {
    let tags: Api<ImageStreamTag> = Api::all(client.clone());
    match tags.list_metadata(&ListParams::default().limit(1)).await {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Err(Error::CrdsMissing("imagestreamtags.image.berth.dev"))
        }
        Err(e) => Err(Error::kube("list ImageStreamTags")(e)),
        Ok(_) => Ok(()),
    }
}

async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })
}

fn read_token(config: &Config) -> Result<Option<Arc<str>>> {
    if let Some(path) = &config.webhook_token_file {
        let token = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.clone(),
            source,
        })?;
        return Ok(Some(token.trim().into()));
    }
    Ok(config.webhook_token.as_deref().map(|t| t.trim().into()))
}

/// A cache of the pull secrets of one type.
fn pull_secrets(client: &Client, type_: &str) -> (Store<Secret>, impl std::future::Future<Output = ()>) {
    caches::cache(
        Api::all(client.clone()),
        watcher::Config::default().fields(&format!("type={type_}")),
    )
}

/// Runs the controller until it fails, loses the lease, or is asked to stop.
pub async fn run(config: Config) -> Result<()> {
    let identity = config.identity();
    let metrics = Metrics::default();
    let Clients {
        api: client,
        lease: lease_client,
        fence,
    } = connect(&config, &identity, metrics.fenced_writes.clone()).await?;
    check_crds(&client).await?;
    let token = read_token(&config)?;
    let health = axum::serve(listen(config.metrics_addr).await?, metrics.router());
    let health = tokio::spawn(health.into_future());
    info!(addr = %config.metrics_addr, "serving /metrics, /healthz and /readyz");

    let mut stop = std::pin::pin!(stop_signal());
    let mut leadership = tokio::select! {
        leadership = leader::acquire(lease_client, &fence, &config, &identity, &metrics) => leadership?,
        signal = &mut stop => { info!(signal, "stopping"); return Ok(()) }
    };

    let (tags, tag_subs, tags_watch) = caches::shared(Api::<ImageStreamTag>::all(client.clone()), 6);
    // One subscriber of the shared tag watch per consumer.
    let Ok(
        [
            tags_for_import,
            tags_for_followers,
            tags_for_alias_index,
            tags_for_streams,
            tags_for_workloads,
            tags_for_triggers,
        ],
    ) = <[_; 6]>::try_from(tag_subs)
    else {
        unreachable!("caches::shared made 6 subscribers")
    };
    // Which aliases follow each tag, kept from the same watch.
    let (aliases, aliases_watch) = LiveIndex::new(tags.clone(), tags_for_alias_index, followers::alias_of);
    let (streams_store, stream_subs, streams_watch) =
        caches::shared(Api::<ImageStream>::all(client.clone()), 2);
    let Ok([streams_for_streams, streams_for_workloads]) = <[_; 2]>::try_from(stream_subs) else {
        unreachable!("caches::shared made 2 subscribers")
    };
    let (json_secrets, json_watch) = pull_secrets(&client, "kubernetes.io/dockerconfigjson");
    let (cfg_secrets, cfg_watch) = pull_secrets(&client, "kubernetes.io/dockercfg");

    let resolver_config = ResolverConfig {
        platform: config.platform.parse()?,
        rate_limit: RateLimit {
            per_second: config.registry_qps,
            burst: config.registry_burst,
        },
        concurrency: WindowConfig {
            max: config.registry_max_concurrency,
            ..WindowConfig::default()
        },
        extra_ca_pem: match &config.registry_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| Error::ReadFile {
                path: path.clone(),
                source,
            })?),
            None => None,
        },
        policy: match &config.registry_policy {
            Some(path) => read_policy(path)?,
            None => RegistryPolicy::default(),
        },
        ..ResolverConfig::default()
    };
    let resolver = Resolver::new(resolver_config)?
        .with_observer(Arc::new(metrics.clone()))
        .with_load_observer(Arc::new(metrics.clone()));
    let reporter = Reporter {
        controller: "berth-controller".into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        tags.clone(),
        streams_store.clone(),
        vec![json_secrets.clone(), cfg_secrets.clone()],
        resolver,
        Recorder::new(client.clone(), reporter),
        Pacing {
            interval: config.import_interval,
            retry: config.import_retry,
            retry_lasting: config.import_retry_lasting,
        },
        metrics.clone(),
    ));

    let (push_tx, push_rx) = mpsc::unbounded::<ObjectRef<ImageStreamTag>>();
    let webhook = match token {
        Some(token) => {
            let ctx = ctx.clone();
            let hook = Webhook {
                token,
                tags: tags.clone(),
                on_push: Arc::new(move |tag, digest| {
                    ctx.request_push_import(
                        tag.clone(),
                        Push {
                            digest,
                            attempts: 0,
                            received: Some(std::time::Instant::now()),
                        },
                    );
                    let _ = push_tx.unbounded_send(tag);
                }),
                metrics: metrics.clone(),
            };
            info!(addr = %config.webhook_addr, path = crate::webhook::PATH, "taking registry notifications");
            axum::serve(listen(config.webhook_addr).await?, hook.router())
                .into_future()
                .boxed()
        }
        None => {
            warn!("no webhook token (BERTH_WEBHOOK_TOKEN_FILE): registry notifications are not taken");
            futures::future::pending().boxed()
        }
    };

    // Every tag the watch delivers passes by the context first: a deleted one cancels its import under way.
    let tags_for_import = {
        let ctx = ctx.clone();
        tags_for_import.inspect(move |tag| ctx.tag_seen(tag))
    };
    let importer = Controller::for_shared_stream(tags_for_import, tags.clone())
        .watches_shared_stream(tags_for_followers, move |tag: Arc<ImageStreamTag>| {
            aliases.followers(&TagKey::of(&tag))
        })
        .reconcile_on(push_rx)
        .run(
            import::reconcile::reconcile,
            import::reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|_| ready(()));
    let stream_reconciler = Controller::for_shared_stream(streams_for_streams, streams_store.clone())
        .watches_shared_stream(tags_for_streams, |tag: Arc<ImageStreamTag>| {
            tag.namespace()
                .map(|ns| ObjectRef::new(&tag.spec.stream).within(&ns))
        })
        .run(streams::reconcile, streams::error_policy, ctx.clone())
        .for_each(|_| ready(()));

    let workloads = crate::workloads::run(
        ctx.clone(),
        tags_for_workloads,
        streams_for_workloads,
        config.node_grace,
    );
    let annotation_triggers =
        crate::triggers::controller::run(client.clone(), tags_for_triggers, ctx.clone());

    let ready_when_synced = {
        let metrics = metrics.clone();
        async move {
            let synced = futures::future::join4(
                tags.wait_until_ready(),
                streams_store.wait_until_ready(),
                json_secrets.wait_until_ready(),
                cfg_secrets.wait_until_ready(),
            )
            .await;
            if matches!(synced, (Ok(()), Ok(()), Ok(()), Ok(()))) {
                info!("caches synced; ready");
                metrics.set_phase(Phase::Ready);
            }
            futures::future::pending::<()>().await;
        }
    };

    let result = {
        let running = async {
            tokio::select! {
                () = tags_watch => Ok(()),
                () = aliases_watch => Ok(()),
                () = streams_watch => Ok(()),
                () = json_watch => Ok(()),
                () = cfg_watch => Ok(()),
                () = importer => Ok(()),
                () = stream_reconciler => Ok(()),
                () = workloads => Ok(()),
                () = annotation_triggers => Ok(()),
                () = ready_when_synced => Ok(()),
                served = webhook => served.map_err(|source| Error::Listen { addr: config.webhook_addr, source }),
                lost = leadership.lost() => Err(lost),
            }
        };
        let mut running = std::pin::pin!(running);
        tokio::select! {
            result = &mut running => result,
            signal = &mut stop => {
                info!(signal, "stopping: no new reconciles; waiting for those running");
                metrics.set_phase(Phase::Stopping);
                drain(&metrics.reconciles, running, DRAIN_TIMEOUT).await
            }
        }
    };
    // Everything that imports or writes has stopped (dropped with the block): hand the Lease over.
    metrics.set_phase(Phase::Stopping);
    leadership.release().await;
    health.abort();
    result
}

/// How long a stopping leader lets running reconciles finish: ample for the API writes under way (they take
/// milliseconds); an import still waiting for a slow registry (up to its 10 s timeout per request) is dropped, as
/// it writes nothing yet, and the next leader imports it again. With [`leader::RELEASE_TIMEOUT`] for the Lease
/// after it, this stays within the 10 s `hack/` gives between SIGTERM and SIGKILL (and the kubelet's 30 s).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts no new reconcile and waits, at most `timeout`, for those running to finish, while `running` (the
/// watches and controllers that drive them) keeps going; ends early when `running` does (a lost Lease: another
/// leader may act already).
async fn drain(
    reconciles: &Reconciles,
    running: impl std::future::Future<Output = Result<()>>,
    timeout: Duration,
) -> Result<()> {
    reconciles.drain();
    let drained = async {
        tokio::select! {
            result = running => result,
            () = reconciles.drained() => {
                info!("no reconcile runs");
                Ok(())
            }
        }
    };
    match tokio::time::timeout(timeout, drained).await {
        Ok(result) => result,
        Err(_) => {
            warn!(?timeout, "reconciles still run; stopping them");
            Ok(())
        }
    }
}

/// Resolves with the signal's name on SIGINT or SIGTERM (what `kill`, `hack/down.sh` and the kubelet send):
/// the controller then starts no new reconcile, lets those running finish ([`DRAIN_TIMEOUT`]), and releases its
/// Lease instead of dying with it held. The SIGTERM
/// handler is installed at once, not on first poll.
fn stop_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate())
        .map_err(|e| warn!(error = %e, "cannot catch SIGTERM: it ends the controller with its Lease held"))
        .ok();
    async move {
        let term = async {
            match term {
                Some(mut term) => {
                    term.recv().await;
                }
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            () = term => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigterm_asks_to_stop() {
        let stop = stop_signal();
        // The handler is in place: SIGTERM no longer ends this test process, it resolves `stop`.
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let signal = tokio::time::timeout(std::time::Duration::from_secs(5), stop)
            .await
            .expect("stop resolves after SIGTERM");
        assert_eq!(signal, "SIGTERM");
    }

    fn tag() -> ObjectRef<kube::api::DynamicObject> {
        ObjectRef::<ImageStreamTag>::new("demo.v1").within("ns").erase()
    }

    /// A reconcile that runs until `finish` is sent, in its own task.
    fn running_reconcile(reconciles: &Reconciles) -> futures::channel::oneshot::Sender<()> {
        let (finish, finished) = futures::channel::oneshot::channel::<()>();
        let reconciles = reconciles.clone();
        tokio::spawn(async move {
            let reconcile = async {
                let _ = finished.await;
                Ok(kube::runtime::controller::Action::await_change())
            };
            reconciles.run("import", tag(), reconcile).await
        });
        finish
    }

    async fn started() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_waits_for_running_reconciles_while_the_controllers_go_on() {
        let metrics = Metrics::default();
        let finish = running_reconcile(&metrics.reconciles);
        started().await;
        // What keeps running meanwhile is what drives the reconcile to its end.
        let controllers = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            finish.send(()).expect("the reconcile waits");
            futures::future::pending::<Result<()>>().await
        };
        let begun = tokio::time::Instant::now();
        drain(&metrics.reconciles, controllers, DRAIN_TIMEOUT)
            .await
            .expect("drained");
        assert_eq!(begun.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_that_does_not_finish_is_stopped_after_the_timeout() {
        let metrics = Metrics::default();
        let _finish = running_reconcile(&metrics.reconciles);
        started().await;
        let begun = tokio::time::Instant::now();
        let controllers = futures::future::pending::<Result<()>>();
        drain(&metrics.reconciles, controllers, DRAIN_TIMEOUT)
            .await
            .expect("a timeout is not an error");
        assert_eq!(begun.elapsed(), DRAIN_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_lost_while_stopping_stops_at_once() {
        let metrics = Metrics::default();
        let _finish = running_reconcile(&metrics.reconciles);
        started().await;
        let controllers = async { Err(Error::LostLeadership) };
        let result = drain(&metrics.reconciles, controllers, DRAIN_TIMEOUT).await;
        assert!(matches!(result, Err(Error::LostLeadership)), "{result:?}");
    }
}
