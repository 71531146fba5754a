//! Per-tailnet snapshots of tailnet state, shared by every resource of the tailnet.
//!
//! docs/architecture.md, "Snapshots, not per-resource polling": one observation of each area of a tailnet
//! (devices, policy with its ETag, DNS, keys, services, settings, users) per resync interval
//! serves every resource of that tailnet, and writes invalidate the area they changed. Steady
//! state therefore costs a constant number of API reads per tailnet per interval, whatever the
//! number of custom resources.
//!
//! Semantics of each area (see `docs/architecture.md`, "Snapshots"):
//! - The first access fetches. Later accesses within `resync_interval` of that fetch's start
//!   return the same snapshot with no API call. The first access after it refetches.
//! - **Single flight**: accessors that find the area stale while a fetch is in flight wait for
//!   that fetch instead of starting another; all of them get its result, error included.
//! - **Errors are not cached**: a failed fetch leaves the area as it was (the previous
//!   snapshot, if any, stays stale), so the next access tries again. Back-off is the caller's
//!   business (the reconcile error policy), not the cache's.
//! - [`TailnetSnapshots::invalidate`] (alias [`TailnetSnapshots::record_write`]) after a write
//!   makes the next access refetch; a fetch already in flight is not reused by later accessors
//!   and not cached, because it may have read the state from before the write.
//! - Each snapshot has a `version`, strictly increasing per area with every fetch started
//!   (failed fetches leave gaps), so a reconciler can tell fresh data from data it has seen.
//!
//! The client sits at the edge: each area is a cell (`slot.rs`) holding a fetch function, so
//! the caching and single-flight logic is tested without HTTP.
mod clock;
mod registry;
mod slot;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;

pub use clock::{Clock, ManualClock, SystemClock, WallClock};
pub use registry::SnapshotRegistry;

use crate::tailscale::{
    ApiError, Device, DeviceListOptions, DnsConfiguration, Key, PolicyFile, Service,
    TailnetSettings, TailscaleClient, User,
};
use slot::{Fetcher, Slot, SlotControl};

/// An area of tailnet state, read with one API call and cached as one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    /// `GET /tailnet/{tailnet}/devices?fields=all`.
    Devices,
    /// `GET /tailnet/{tailnet}/acl` as raw HuJSON with its ETag.
    Policy,
    /// `GET /tailnet/{tailnet}/dns/configuration`.
    Dns,
    /// `GET /tailnet/{tailnet}/keys?all=true`: every auth key, API token and OAuth client.
    Keys,
    /// `GET /tailnet/{tailnet}/services`.
    Services,
    /// `GET /tailnet/{tailnet}/settings`.
    Settings,
    /// `GET /tailnet/{tailnet}/users` (the API's default filter: members).
    Users,
}

impl Area {
    pub const ALL: [Area; 7] = [
        Area::Devices,
        Area::Policy,
        Area::Dns,
        Area::Keys,
        Area::Services,
        Area::Settings,
        Area::Users,
    ];

    /// A lower-case name, usable as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Devices => "devices",
            Area::Policy => "policy",
            Area::Dns => "dns",
            Area::Keys => "keys",
            Area::Services => "services",
            Area::Settings => "settings",
            Area::Users => "users",
        }
    }

    /// The read's endpoint label, in the client's [`ApiError::endpoint`] form.
    pub fn endpoint(self) -> &'static str {
        match self {
            Area::Devices => "GET /tailnet/{tailnet}/devices",
            Area::Policy => "GET /tailnet/{tailnet}/acl",
            Area::Dns => "GET /tailnet/{tailnet}/dns/configuration",
            Area::Keys => "GET /tailnet/{tailnet}/keys",
            Area::Services => "GET /tailnet/{tailnet}/services",
            Area::Settings => "GET /tailnet/{tailnet}/settings",
            Area::Users => "GET /tailnet/{tailnet}/users",
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One observation of an area. Shared (`Arc`) by every accessor that got it; never mutated.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<T> {
    pub data: T,
    /// Per area, strictly increasing with every fetch started (gaps where a fetch failed).
    pub version: u64,
    /// When the fetch started (by the cache's clock): the data is at least this fresh.
    pub fetched_at: Instant,
    /// The same moment in UTC, for status and views.
    pub fetched_at_utc: DateTime<Utc>,
}

impl<T> Snapshot<T> {
    /// How old the snapshot is at `now` (zero if `now` is earlier).
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.fetched_at)
    }
}

pub type DevicesSnapshot = Snapshot<Vec<Device>>;
pub type PolicySnapshot = Snapshot<PolicyFile>;
pub type DnsSnapshot = Snapshot<DnsConfiguration>;
pub type KeysSnapshot = Snapshot<Vec<Key>>;
pub type ServicesSnapshot = Snapshot<Vec<Service>>;
pub type SettingsSnapshot = Snapshot<TailnetSettings>;
pub type UsersSnapshot = Snapshot<Vec<User>>;

/// Counters and state of one area, for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaStats {
    /// API reads started.
    pub fetches: u64,
    /// Accesses served from a fresh cached snapshot.
    pub hits: u64,
    /// Accesses that waited for a fetch another accessor had started.
    pub joins: u64,
    /// Fetches that failed.
    pub errors: u64,
    /// Invalidations (writes, `invalidate_all`, effective `refresh_if_older_than`).
    pub invalidations: u64,
    pub in_flight: bool,
    /// Version and time of the last successful snapshot, fresh or not.
    pub cached_version: Option<u64>,
    pub cached_at_utc: Option<DateTime<Utc>>,
}

/// The snapshot cache of ONE tailnet. Cheap to clone; clones share the cache.
///
/// Accessors need a tokio runtime: fetches run on their own task (see the module docs).
#[derive(Clone)]
pub struct TailnetSnapshots {
    inner: Arc<Inner>,
}

struct Inner {
    client: TailscaleClient,
    clock: Arc<dyn Clock>,
    resync_interval: Duration,
    devices: Arc<Slot<Vec<Device>>>,
    policy: Arc<Slot<PolicyFile>>,
    dns: Arc<Slot<DnsConfiguration>>,
    keys: Arc<Slot<Vec<Key>>>,
    services: Arc<Slot<Vec<Service>>>,
    settings: Arc<Slot<TailnetSettings>>,
    users: Arc<Slot<Vec<User>>>,
}

impl fmt::Debug for TailnetSnapshots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailnetSnapshots")
            .field("tailnet", &self.inner.client.tailnet())
            .field("resync_interval", &self.inner.resync_interval)
            .finish_non_exhaustive()
    }
}

impl TailnetSnapshots {
    /// A cache on the system clock.
    pub fn new(client: TailscaleClient, resync_interval: Duration) -> TailnetSnapshots {
        TailnetSnapshots::with_clock(client, resync_interval, Arc::new(SystemClock))
    }

    /// A cache on `clock` (a [`ManualClock`] in tests).
    pub fn with_clock(
        client: TailscaleClient,
        resync_interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> TailnetSnapshots {
        let cell = CellFactory {
            client: &client,
            clock: &clock,
            interval: resync_interval,
        };
        let inner = Inner {
            devices: cell.make(Area::Devices, |c| async move {
                let all = DeviceListOptions {
                    all_fields: true,
                    filters: Vec::new(),
                };
                c.list_devices(&all).await
            }),
            policy: cell.make(Area::Policy, |c| async move { c.get_policy().await }),
            dns: cell.make(
                Area::Dns,
                |c| async move { c.get_dns_configuration().await },
            ),
            keys: cell.make(Area::Keys, |c| async move { c.list_keys(true).await }),
            services: cell.make(Area::Services, |c| async move { c.list_services().await }),
            settings: cell.make(Area::Settings, |c| async move { c.get_settings().await }),
            users: cell.make(Area::Users, |c| async move { c.list_users().await }),
            client,
            clock,
            resync_interval,
        };
        TailnetSnapshots {
            inner: Arc::new(inner),
        }
    }

    /// The client the snapshots are read with; write through it, then [`Self::record_write`].
    pub fn client(&self) -> &TailscaleClient {
        &self.inner.client
    }

    /// The tailnet the client is bound to (`-` or an id).
    pub fn tailnet(&self) -> &str {
        self.inner.client.tailnet()
    }

    pub fn resync_interval(&self) -> Duration {
        self.inner.resync_interval
    }

    /// The cache's current time, e.g. to stamp an event for [`Self::refresh_if_older_than`].
    pub fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// All devices, with every field (`fields=all`).
    pub async fn devices(&self) -> Result<Arc<DevicesSnapshot>, ApiError> {
        self.inner.devices.get().await
    }

    /// The policy file as raw HuJSON with the ETag it was read at.
    pub async fn policy(&self) -> Result<Arc<PolicySnapshot>, ApiError> {
        self.inner.policy.get().await
    }

    pub async fn dns(&self) -> Result<Arc<DnsSnapshot>, ApiError> {
        self.inner.dns.get().await
    }

    /// Every key of the tailnet (`all=true`).
    pub async fn keys(&self) -> Result<Arc<KeysSnapshot>, ApiError> {
        self.inner.keys.get().await
    }

    pub async fn services(&self) -> Result<Arc<ServicesSnapshot>, ApiError> {
        self.inner.services.get().await
    }

    pub async fn settings(&self) -> Result<Arc<SettingsSnapshot>, ApiError> {
        self.inner.settings.get().await
    }

    pub async fn users(&self) -> Result<Arc<UsersSnapshot>, ApiError> {
        self.inner.users.get().await
    }

    /// The next access to `area` refetches. A fetch in flight is neither reused nor cached.
    pub fn invalidate(&self, area: Area) {
        self.slot(area).invalidate();
    }

    /// Call after writing to `area` (same as [`Self::invalidate`]), whether the write succeeded
    /// or not: a failed write may still have changed the state.
    pub fn record_write(&self, area: Area) {
        self.invalidate(area);
    }

    pub fn invalidate_all(&self) {
        for area in Area::ALL {
            self.invalidate(area);
        }
    }

    /// For change notifications (webhooks): makes the next access to `area` refetch unless
    /// the cached snapshot, or the fetch in flight, started at or after `at`. A burst of
    /// events therefore costs one read. Returns whether it invalidated.
    pub fn refresh_if_older_than(&self, area: Area, at: Instant) -> bool {
        self.slot(area).refresh_if_older_than(at)
    }

    pub fn stats(&self, area: Area) -> AreaStats {
        self.slot(area).stats()
    }

    /// API reads started for `area`.
    pub fn fetches(&self, area: Area) -> u64 {
        self.stats(area).fetches
    }

    /// Accesses to `area` served from the cache without an API call or a wait.
    pub fn hits(&self, area: Area) -> u64 {
        self.stats(area).hits
    }

    fn slot(&self, area: Area) -> &dyn SlotControl {
        let inner = &*self.inner;
        match area {
            Area::Devices => &*inner.devices,
            Area::Policy => &*inner.policy,
            Area::Dns => &*inner.dns,
            Area::Keys => &*inner.keys,
            Area::Services => &*inner.services,
            Area::Settings => &*inner.settings,
            Area::Users => &*inner.users,
        }
    }
}

/// Builds the cells of one cache, each with its own clone of the client.
struct CellFactory<'a> {
    client: &'a TailscaleClient,
    clock: &'a Arc<dyn Clock>,
    interval: Duration,
}

impl CellFactory<'_> {
    fn make<T, F, Fut>(&self, area: Area, read: F) -> Arc<Slot<T>>
    where
        T: Send + Sync + 'static,
        F: Fn(TailscaleClient) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let client = self.client.clone();
        let fetch: Fetcher<T> = Box::new(move || read(client.clone()).boxed());
        Slot::new(area, fetch, Arc::clone(self.clock), self.interval)
    }
}
