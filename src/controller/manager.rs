//! The controller manager: checks the CRDs, serves the HTTP endpoints, takes part in leader
//! election and runs every kind's controller while (and only while) it leads.
//!
//! Leader election (kube-lease-manager, Lease `tailnet-operator` in the operator namespace):
//! standby replicas are ready at once and wait; the leader runs the controllers; a leader that
//! loses the Lease stops its controllers and [`Manager::wait`] returns
//! [`ManagerError::LostLeadership`], so the process exits non-zero and the pod restarts clean
//! (fail-stop, as Linkerd's policy controller does). On SIGTERM the controllers finish their
//! in-flight reconciles and the Lease is released, so a standby takes over at once.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::join_all;
use kube::Client;
use kube::api::{Api, ListParams};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::http::{self, Readiness};
use super::{Context, Controlled, KindController, Metrics, Stop};
use crate::snapshot::SnapshotRegistry;

/// The Lease's name.
pub const LEASE_NAME: &str = "tailnet-operator";

/// How the manager runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The operator's namespace: where the leader Lease lives.
    pub namespace: String,
    /// This replica's identity in the Lease and in events (the pod name).
    pub identity: String,
    /// Address of `/healthz`, `/readyz` and `/metrics` (port 0 picks a free port).
    pub metrics_listen: SocketAddr,
    /// `None` runs the controllers at once (a single replica).
    pub leader_election: Option<LeaseConfig>,
    /// How long finished ChangeProposals are kept before they are deleted.
    pub proposal_ttl: std::time::Duration,
    /// Wall-clock time for time-driven decisions (key rotation); `WallClock::system()`.
    pub clock: crate::snapshot::WallClock,
    /// Where to receive Tailscale webhooks (`POST /webhooks/<ManagedTailnet>`); `None`: no
    /// receiver, drift is found at each resync.
    pub webhook_listen: Option<SocketAddr>,
    /// How far a webhook signature's timestamp may be from now (replay protection).
    pub webhook_tolerance: std::time::Duration,
}

/// Leader election timings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub lease_name: String,
    /// How long a Lease lasts without renewal; a crashed leader is replaced after this.
    pub duration_seconds: u64,
    /// How long before expiry the holder renews.
    pub grace_seconds: u64,
}

impl Default for LeaseConfig {
    /// 15 s leases renewed 5 s before expiry, as client-go's leader election does.
    fn default() -> Self {
        LeaseConfig {
            lease_name: LEASE_NAME.to_owned(),
            duration_seconds: 15,
            grace_seconds: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(
        "the {kind} CustomResourceDefinition is not installed ({source}); install the CRDs \
         with `kubectl apply -f crds/` (or `tailnet-operator crdgen`)"
    )]
    CrdsMissing {
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the Kubernetes API refused to list {kind} ({source}): the operator's RBAC is missing \
         or wrong; apply the chart's or deploy/'s ClusterRole and its binding"
    )]
    KubeForbidden {
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "cannot reach the Kubernetes API (listing {kind}: {source}); check the kubeconfig or the \
         in-cluster service account, and that the API server is up"
    )]
    KubeUnreachable {
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error("could not listen on {addr} (--metrics-listen): {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election on Lease {namespace}/{lease}: {source}")]
    Lease {
        namespace: String,
        lease: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("leader election stopped unexpectedly (the Lease task ended)")]
    LeaseTaskEnded,
    #[error("lost the leader Lease: controllers stopped; exiting so the pod restarts as a standby")]
    LostLeadership,
    #[error("the manager task panicked; see the log above")]
    Panicked,
    #[error("HTTP endpoints: {0}")]
    Http(#[source] std::io::Error),
}

/// A started manager.
pub struct Manager {
    addr: SocketAddr,
    stop: Stop,
    metrics: Arc<Metrics>,
    snapshots: SnapshotRegistry,
    webhook_addr: Option<SocketAddr>,
    task: JoinHandle<Result<(), ManagerError>>,
}

impl Manager {
    /// Checks the CRDs, binds the endpoints and starts (election, then controllers) in the
    /// background.
    pub async fn start(client: Client, config: RunConfig) -> Result<Manager, ManagerError> {
        check_crds(&client).await?;
        let listener = TcpListener::bind(config.metrics_listen)
            .await
            .map_err(|source| ManagerError::Listen {
                addr: config.metrics_listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ManagerError::Http)?;
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::default();
        let stop = Stop::new();
        let http_task = tokio::spawn(http::serve(
            listener,
            Arc::clone(&metrics),
            readiness.clone(),
            stop.wait(),
        ));
        let mut ctx = Context::new(
            client,
            config.namespace.clone(),
            &config.identity,
            Arc::clone(&metrics),
        );
        ctx.proposal_ttl = config.proposal_ttl;
        ctx.clock = config.clock.clone();
        ctx.webhooks = Arc::new(crate::webhook::Webhooks::with_tolerance(
            config.webhook_tolerance,
        ));
        let ctx = Arc::new(ctx);
        let webhook_addr = match config.webhook_listen {
            Some(listen) => {
                let listener =
                    TcpListener::bind(listen)
                        .await
                        .map_err(|source| ManagerError::Listen {
                            addr: listen,
                            source,
                        })?;
                let bound = listener.local_addr().map_err(ManagerError::Http)?;
                let (ctx, stopped) = (Arc::clone(&ctx), stop.wait());
                tokio::spawn(async move {
                    if let Err(err) = crate::webhook::serve(listener, ctx, stopped).await {
                        tracing::error!("the webhook receiver stopped: {err}");
                    }
                });
                Some(bound)
            }
            None => None,
        };
        let snapshots = ctx.snapshots.clone();
        let task = tokio::spawn(supervise(ctx, config, stop.clone(), readiness, http_task));
        Ok(Manager {
            addr,
            stop,
            metrics,
            snapshots,
            webhook_addr,
            task,
        })
    }

    /// Where the webhook receiver listens, when started with one.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhook_addr
    }

    /// Where the HTTP endpoints listen.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The per-tailnet caches the controllers share (keyed by ManagedTailnet name).
    pub fn snapshots(&self) -> &SnapshotRegistry {
        &self.snapshots
    }

    /// Starts a graceful shutdown (what SIGTERM does); [`Manager::wait`] returns when done.
    pub fn shutdown(&self) {
        self.stop.stop();
    }

    /// Runs until `shutdown` resolves, then stops gracefully (what [`run`] does once started;
    /// for callers that need the started manager first, e.g. for its snapshot caches).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ManagerError> {
        let stop = self.stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight reconciles, releasing the Lease");
            stop.stop();
        });
        self.wait().await
    }

    /// Waits until the manager has stopped: after [`Manager::shutdown`], or on its own when
    /// leadership is lost (an error).
    pub async fn wait(self) -> Result<(), ManagerError> {
        match self.task.await {
            Ok(result) => result,
            Err(_) => Err(ManagerError::Panicked),
        }
    }
}

/// Runs the manager until `shutdown` resolves (SIGTERM / Ctrl-C in `tailnet-operator run`).
pub async fn run(
    client: Client,
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ManagerError> {
    let manager = Manager::start(client, config).await?;
    let stop = manager.stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight reconciles, releasing the Lease");
        stop.stop();
    });
    manager.wait().await
}

/// Lists each kind with `limit=1`: fails with an install hint when a CRD is missing.
async fn check_crds(client: &Client) -> Result<(), ManagerError> {
    macro_rules! probe {
        ($($kind:ident),*) => {
            $(probe_kind::<crate::resources::$kind>(client).await?;)*
        };
    }
    crate::for_each_kind!(probe);
    Ok(())
}

async fn probe_kind<K>(client: &Client) -> Result<(), ManagerError>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let probe = ListParams::default().limit(1);
    let kind = K::kind(&()).into_owned();
    match Api::<K>::all(client.clone()).list(&probe).await {
        Ok(_) => Ok(()),
        Err(source) => Err(probe_error(kind, source)),
    }
}

/// Tells a missing CRD (404) from missing RBAC (401/403) from an API server that cannot be
/// reached or answers otherwise.
fn probe_error(kind: String, source: kube::Error) -> ManagerError {
    match &source {
        kube::Error::Api(status) if status.code == 404 => {
            ManagerError::CrdsMissing { kind, source }
        }
        kube::Error::Api(status) if matches!(status.code, 401 | 403) => {
            ManagerError::KubeForbidden { kind, source }
        }
        _ => ManagerError::KubeUnreachable { kind, source },
    }
}

/// The controllers of every kind of [`crate::for_each_kind`].
fn controllers(ctx: &Arc<Context>, stop: &Stop) -> Vec<KindController> {
    macro_rules! start {
        ($($kind:ident),*) => {
            vec![$(<crate::resources::$kind as Controlled>::controller(Arc::clone(ctx), stop)),*]
        };
    }
    crate::for_each_kind!(start)
}

async fn supervise(
    ctx: Arc<Context>,
    config: RunConfig,
    stop: Stop,
    readiness: Readiness,
    http_task: JoinHandle<std::io::Result<()>>,
) -> Result<(), ManagerError> {
    let result = match &config.leader_election {
        None => {
            ctx.metrics.set_leader(true);
            run_controllers(&ctx, &stop, &readiness).await;
            ctx.metrics.set_leader(false);
            Ok(())
        }
        Some(lease) => lead(&ctx, &config, lease, &stop, &readiness).await,
    };
    // Whatever ended the run ends the HTTP server too.
    stop.stop();
    let http = match http_task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(ManagerError::Http(err)),
        Err(_) => Ok(()),
    };
    result.and(http)
}

/// Runs every controller until `stop`; `readiness` turns true once all their watches synced.
async fn run_controllers(ctx: &Arc<Context>, stop: &Stop, readiness: &Readiness) {
    let kinds = controllers(ctx, stop);
    let names: Vec<&str> = kinds.iter().map(|k| k.kind.as_str()).collect();
    tracing::info!(kinds = ?names, "starting controllers");
    let (synced, runs): (Vec<_>, Vec<_>) = kinds.into_iter().map(|k| (k.synced, k.run)).unzip();
    let runs = join_all(runs);
    tokio::pin!(runs);
    tokio::select! {
        _ = &mut runs => return,
        _ = join_all(synced) => readiness.set(true),
    }
    runs.await;
}

/// Takes part in the election; runs the controllers while leading.
async fn lead(
    ctx: &Arc<Context>,
    config: &RunConfig,
    lease: &LeaseConfig,
    stop: &Stop,
    readiness: &Readiness,
) -> Result<(), ManagerError> {
    let lease_error = |source| ManagerError::Lease {
        namespace: config.namespace.clone(),
        lease: lease.lease_name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(ctx.client.clone(), &lease.lease_name)
        .with_namespace(&config.namespace)
        .with_parameters(LeaseParams::new(
            &config.identity,
            lease.duration_seconds,
            lease.grace_seconds,
        ))
        .build()
        .await
        .map_err(lease_error)?;
    let (mut is_leader, lease_task) = manager.watch().await;
    // A standby has nothing to sync: it is ready to take over.
    readiness.set(true);
    tracing::info!(identity = %config.identity, "waiting for the leader Lease");
    let outcome = tokio::select! {
        () = stop.wait() => Ok(false),
        became = is_leader.wait_for(|leader| *leader) => {
            became.map(|_| true).map_err(|_| ManagerError::LeaseTaskEnded)
        }
    };
    let outcome = match outcome {
        Ok(true) => lead_while_holding(ctx, &mut is_leader, stop, readiness).await,
        Ok(false) => Ok(()),
        Err(err) => Err(err),
    };
    // Dropping the receiver makes the lease task release the Lease and end.
    drop(is_leader);
    match lease_task.await {
        Ok(Ok(_)) | Err(_) => {}
        Ok(Err(err)) => tracing::warn!("releasing the Lease: {err}"),
    }
    outcome
}

async fn lead_while_holding(
    ctx: &Arc<Context>,
    is_leader: &mut tokio::sync::watch::Receiver<bool>,
    stop: &Stop,
    readiness: &Readiness,
) -> Result<(), ManagerError> {
    tracing::info!("acquired the leader Lease: starting controllers");
    readiness.set(false);
    ctx.metrics.set_leader(true);
    let controllers_stop = Stop::new();
    let run = run_controllers(ctx, &controllers_stop, readiness);
    tokio::pin!(run);
    let outcome = tokio::select! {
        () = &mut run => Ok(()),
        () = stop.wait() => Ok(()),
        _ = is_leader.wait_for(|leader| !*leader) => Err(ManagerError::LostLeadership),
    };
    controllers_stop.stop();
    run.await;
    ctx.metrics.set_leader(false);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_crd_missing_rbac_and_an_unreachable_api_server_are_told_apart() {
        let api = |code: u16| {
            kube::Error::Api(
                kube::core::Status::failure("x", "y")
                    .with_code(code)
                    .boxed(),
            )
        };
        let kind = || "TailnetPolicy".to_owned();
        assert!(matches!(
            probe_error(kind(), api(404)),
            ManagerError::CrdsMissing { .. }
        ));
        assert!(matches!(
            probe_error(kind(), api(403)),
            ManagerError::KubeForbidden { .. }
        ));
        let down = kube::Error::Service(Box::new(std::io::Error::other("connection refused")));
        let err = probe_error(kind(), down);
        assert!(
            err.to_string()
                .starts_with("cannot reach the Kubernetes API"),
            "{err}"
        );
    }
}
