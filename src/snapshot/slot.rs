//! One area's cache cell: the last good snapshot, the fetch in flight, and the counters.
//!
//! Single flight: the first accessor that finds the area stale starts one fetch, on its own
//! tokio task, and every accessor arriving before it ends waits on that same fetch through a
//! [`Shared`] future. The fetch runs on a task rather than inside the first caller so that a
//! cancelled reconcile (timeout, shutdown) neither wastes the API call nor strands the other
//! waiters. The cell's mutex is a `std` mutex held only for bookkeeping, never across an
//! `.await`, and each area has its own, so a slow fetch of one area never blocks another.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::clock::{Clock, is_fresh};
use super::{Area, AreaStats, Snapshot};
use crate::error::Category;
use crate::tailscale::ApiError;

/// What a flight yields to each of its waiters.
pub(crate) type FlightResult<T> = Result<Arc<Snapshot<T>>, ApiError>;

/// Produces one fetch of the area's data per call (the client call lives here).
pub(crate) type Fetcher<T> =
    Box<dyn Fn() -> BoxFuture<'static, Result<T, ApiError>> + Send + Sync + 'static>;

type SharedFlight<T> = Shared<BoxFuture<'static, FlightResult<T>>>;

pub(crate) struct Slot<T> {
    area: Area,
    fetch: Fetcher<T>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    state: Mutex<State<T>>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    hits: AtomicU64,
    joins: AtomicU64,
    errors: AtomicU64,
    invalidations: AtomicU64,
}

struct State<T> {
    /// The last successful snapshot and the epoch it was fetched in.
    current: Option<(Arc<Snapshot<T>>, u64)>,
    /// Bumped by every invalidation: data fetched in an older epoch may predate a write.
    epoch: u64,
    /// The fetch in flight for the current epoch, if any.
    flight: Option<Flight<T>>,
    /// The version given to the last fetch started.
    last_version: u64,
}

struct Flight<T> {
    version: u64,
    started_at: Instant,
    result: SharedFlight<T>,
}

enum Lookup<T> {
    Hit(Arc<Snapshot<T>>),
    Wait(SharedFlight<T>),
}

impl<T: Send + Sync + 'static> Slot<T> {
    pub(crate) fn new(
        area: Area,
        fetch: Fetcher<T>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Arc<Slot<T>> {
        Arc::new(Slot {
            area,
            fetch,
            clock,
            interval,
            state: Mutex::new(State {
                current: None,
                epoch: 0,
                flight: None,
                last_version: 0,
            }),
            counters: Counters::default(),
        })
    }

    /// The area's snapshot: the cached one while fresh, else the result of the one fetch in
    /// flight (started here if there is none). Errors go to every waiter of the failed flight
    /// and are not cached.
    pub(crate) async fn get(self: &Arc<Self>) -> FlightResult<T> {
        match self.lookup() {
            Lookup::Hit(snapshot) => Ok(snapshot),
            Lookup::Wait(flight) => flight.await,
        }
    }

    fn lookup(self: &Arc<Self>) -> Lookup<T> {
        let mut state = self.lock();
        if let Some(snapshot) = self.fresh(&state) {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Hit(snapshot);
        }
        if let Some(flight) = &state.flight {
            self.counters.joins.fetch_add(1, Ordering::Relaxed);
            return Lookup::Wait(flight.result.clone());
        }
        Lookup::Wait(self.start(&mut state))
    }

    fn fresh(&self, state: &State<T>) -> Option<Arc<Snapshot<T>>> {
        let (snapshot, epoch) = state.current.as_ref()?;
        let fresh =
            *epoch == state.epoch && is_fresh(snapshot.fetched_at, self.clock.now(), self.interval);
        fresh.then(|| Arc::clone(snapshot))
    }

    /// Starts a fetch on its own task and records it as the area's flight. Called with the
    /// lock held; spawning does not block.
    fn start(self: &Arc<Self>, state: &mut State<T>) -> SharedFlight<T> {
        state.last_version += 1;
        let version = state.last_version;
        let epoch = state.epoch;
        // The request leaves after this instant, so the data is at least this fresh.
        let started_at = self.clock.now();
        let started_at_utc = self.clock.now_utc();
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);

        let request = (self.fetch)();
        let slot = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            // Clears the flight even if the fetch panics, so the area is not wedged.
            let _clear = ClearFlight {
                slot: slot.clone(),
                version,
            };
            let result = request.await.map(|data| {
                Arc::new(Snapshot {
                    data,
                    version,
                    fetched_at: started_at,
                    fetched_at_utc: started_at_utc,
                })
            });
            if let Some(slot) = slot.upgrade() {
                slot.finish(version, epoch, &result);
            }
            result
        });
        let area = self.area;
        let result = async move {
            task.await
                .unwrap_or_else(|join_error| Err(lost_flight(area, &join_error)))
        }
        .boxed()
        .shared();
        state.flight = Some(Flight {
            version,
            started_at,
            result: result.clone(),
        });
        result
    }

    /// Records a finished fetch: a success is cached unless the area was invalidated while it
    /// was in flight (it may predate the write); an error is only counted.
    fn finish(&self, version: u64, epoch: u64, result: &FlightResult<T>) {
        let mut state = self.lock();
        if state.flight.as_ref().is_some_and(|f| f.version == version) {
            state.flight = None;
        }
        match result {
            Ok(snapshot) if epoch == state.epoch => {
                state.current = Some((Arc::clone(snapshot), epoch));
            }
            Ok(_) => {}
            Err(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn invalidate_locked(&self, state: &mut State<T>) {
        state.epoch += 1;
        state.flight = None;
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The type-independent controls of a cell, so the cache can address areas by [`Area`].
pub(crate) trait SlotControl: Send + Sync {
    fn invalidate(&self);
    fn refresh_if_older_than(&self, at: Instant) -> bool;
    fn stats(&self) -> AreaStats;
}

impl<T: Send + Sync + 'static> SlotControl for Slot<T> {
    /// The next access refetches. A fetch in flight is detached: its waiters still get its
    /// result, but it is not cached and later accessors do not join it, since it may have read
    /// the state before the write that caused this invalidation.
    fn invalidate(&self) {
        self.invalidate_locked(&mut self.lock());
    }

    /// Invalidates unless the cached snapshot, or the fetch in flight, started at or after
    /// `at`. Returns whether it invalidated.
    fn refresh_if_older_than(&self, at: Instant) -> bool {
        let mut state = self.lock();
        let satisfied = match (&state.flight, &state.current) {
            (Some(flight), _) => flight.started_at >= at,
            (None, Some((snapshot, epoch))) => *epoch != state.epoch || snapshot.fetched_at >= at,
            // Nothing cached: the next access fetches anyway.
            (None, None) => true,
        };
        if !satisfied {
            self.invalidate_locked(&mut state);
        }
        !satisfied
    }

    fn stats(&self) -> AreaStats {
        let state = self.lock();
        let cached = state.current.as_ref().map(|(snapshot, _)| snapshot);
        AreaStats {
            fetches: self.counters.fetches.load(Ordering::Relaxed),
            hits: self.counters.hits.load(Ordering::Relaxed),
            joins: self.counters.joins.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
            invalidations: self.counters.invalidations.load(Ordering::Relaxed),
            in_flight: state.flight.is_some(),
            cached_version: cached.map(|s| s.version),
            cached_at_utc: cached.map(|s| s.fetched_at_utc),
        }
    }
}

/// Drop guard of a fetch task: forgets the flight if it is still the current one.
struct ClearFlight<T> {
    slot: Weak<Slot<T>>,
    version: u64,
}

impl<T> Drop for ClearFlight<T> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.upgrade() else {
            return;
        };
        let mut state = slot
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state
            .flight
            .as_ref()
            .is_some_and(|f| f.version == self.version)
        {
            state.flight = None;
        }
    }
}

/// The error waiters get when the fetch task ended without a result.
fn lost_flight(area: Area, join_error: &tokio::task::JoinError) -> ApiError {
    let why = if join_error.is_panic() {
        "panicked"
    } else {
        "was cancelled (runtime shutting down?)"
    };
    ApiError::new(
        Category::Internal,
        area.endpoint(),
        format!("the {area} snapshot fetch {why}; the next access retries"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ManualClock;
    use std::sync::atomic::AtomicU32;
    use tokio::sync::Semaphore;

    const INTERVAL: Duration = Duration::from_secs(60);

    /// A fetcher that counts its calls; call `n` answers `outcomes[n]` (the last one repeats)
    /// once gate `n` is opened, so a test decides when, and in which order, flights land.
    struct Source {
        calls: Arc<AtomicU32>,
        gates: Arc<Vec<Semaphore>>,
    }

    impl Source {
        fn open(&self, n: usize) {
            self.gates[n].add_permits(1);
        }

        fn open_all(&self) {
            for gate in self.gates.iter() {
                gate.add_permits(1_000);
            }
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn source(outcomes: Vec<Result<u32, &'static str>>) -> (Fetcher<u32>, Source) {
        let calls = Arc::new(AtomicU32::new(0));
        let gates: Arc<Vec<Semaphore>> =
            Arc::new(outcomes.iter().map(|_| Semaphore::new(0)).collect());
        let (c, g) = (Arc::clone(&calls), Arc::clone(&gates));
        let fetch: Fetcher<u32> = Box::new(move || {
            let n = (c.fetch_add(1, Ordering::SeqCst) as usize).min(outcomes.len() - 1);
            let outcome = outcomes[n];
            let gates = Arc::clone(&g);
            async move {
                gates[n].acquire().await.expect("gate open").forget();
                match outcome {
                    Ok(v) => Ok(v),
                    Err("panic") => panic!("fetch panicked on purpose"),
                    Err(m) => Err(ApiError::new(Category::Transient, "GET /test", m)),
                }
            }
            .boxed()
        });
        (fetch, Source { calls, gates })
    }

    fn slot(fetch: Fetcher<u32>, clock: &ManualClock) -> Arc<Slot<u32>> {
        Slot::new(Area::Devices, fetch, Arc::new(clock.clone()), INTERVAL)
    }

    /// Polls `n` accessors once each, so they all register before any flight can land.
    fn accessors(
        slot: &Arc<Slot<u32>>,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<FlightResult<u32>>> {
        (0..n)
            .map(|_| {
                let slot = Arc::clone(slot);
                tokio::spawn(async move { slot.get().await })
            })
            .collect()
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn concurrent_accessors_share_one_fetch() {
        let clock = ManualClock::new();
        let (fetch, src) = source(vec![Ok(7)]);
        let slot = slot(fetch, &clock);
        let waiters = accessors(&slot, 50);
        settle().await;
        src.open(0);
        for w in waiters {
            let snap = w.await.unwrap().expect("value");
            assert_eq!((snap.data, snap.version), (7, 1));
        }
        let stats = slot.stats();
        assert_eq!(src.calls(), 1);
        assert_eq!((stats.fetches, stats.joins, stats.hits), (1, 49, 0));
        assert!(!stats.in_flight);
        assert_eq!(stats.cached_version, Some(1));
    }

    #[tokio::test]
    async fn fresh_data_is_served_without_a_fetch_until_the_interval_passes() {
        let clock = ManualClock::new();
        let (fetch, src) = source(vec![Ok(1), Ok(2)]);
        src.open_all();
        let slot = slot(fetch, &clock);
        assert_eq!(slot.get().await.unwrap().data, 1);
        clock.advance(INTERVAL - Duration::from_millis(1));
        assert_eq!(slot.get().await.unwrap().data, 1);
        clock.advance(Duration::from_millis(1));
        let again = slot.get().await.unwrap();
        assert_eq!((again.data, again.version), (2, 2));
        assert_eq!(src.calls(), 2);
        assert_eq!(slot.stats().hits, 1);
    }

    #[tokio::test]
    async fn an_error_reaches_every_waiter_and_is_not_cached() {
        let clock = ManualClock::new();
        let (fetch, src) = source(vec![Err("boom"), Ok(5)]);
        let slot = slot(fetch, &clock);
        let waiters = accessors(&slot, 10);
        settle().await;
        src.open(0);
        for w in waiters {
            let err = w.await.unwrap().expect_err("the flight failed");
            assert_eq!(err.message, "boom");
        }
        src.open(1);
        let snap = slot.get().await.expect("the next access retries");
        assert_eq!((snap.data, snap.version), (5, 2));
        let stats = slot.stats();
        assert_eq!((stats.fetches, stats.errors), (2, 1));
    }

    #[tokio::test]
    async fn invalidation_during_a_flight_detaches_it() {
        let clock = ManualClock::new();
        let (fetch, src) = source(vec![Ok(1), Ok(2)]);
        let slot = slot(fetch, &clock);
        let before_write = accessors(&slot, 3);
        settle().await;
        slot.invalidate();
        let after_write = accessors(&slot, 3);
        settle().await;
        assert_eq!(src.calls(), 2, "a new flight after the write");
        // The post-write flight lands first, the detached pre-write one last.
        src.open(1);
        for w in after_write {
            assert_eq!(w.await.unwrap().unwrap().version, 2);
        }
        src.open(0);
        for w in before_write {
            assert_eq!(w.await.unwrap().unwrap().version, 1);
        }
        // The detached flight's older data did not replace the post-write snapshot.
        assert_eq!(slot.stats().cached_version, Some(2));
        assert_eq!(slot.get().await.unwrap().data, 2);
        assert_eq!(slot.stats().fetches, 2);
    }

    #[tokio::test]
    async fn a_flight_survives_its_cancelled_waiters() {
        let clock = ManualClock::new();
        let (fetch, src) = source(vec![Ok(9)]);
        let slot = slot(fetch, &clock);
        let waiter = accessors(&slot, 1).remove(0);
        settle().await;
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        src.open(0);
        assert_eq!(slot.get().await.unwrap().data, 9);
        assert_eq!(src.calls(), 1);
    }

    #[tokio::test]
    async fn a_panicking_fetch_fails_its_waiters_and_does_not_wedge_the_area() {
        let clock = ManualClock::new();
        let (fetch, src) = source(vec![Err("panic"), Ok(3)]);
        let slot = slot(fetch, &clock);
        src.open_all();
        let err = slot.get().await.expect_err("the fetch panicked");
        assert_eq!(err.category, Category::Internal);
        assert!(err.message.contains("panicked"), "{err}");
        assert_eq!(slot.get().await.unwrap().data, 3);
    }

    #[tokio::test]
    async fn refresh_if_older_than_invalidates_only_older_data() {
        let clock = ManualClock::new();
        let (fetch, src) = source(vec![Ok(1), Ok(2), Ok(3)]);
        let slot = slot(fetch, &clock);
        // Nothing cached: nothing to do, the next access fetches anyway.
        assert!(!slot.refresh_if_older_than(clock.now()));
        src.open(0);
        slot.get().await.unwrap();
        let fetched = clock.now();
        clock.advance(Duration::from_secs(1));
        assert!(!slot.refresh_if_older_than(fetched), "data as new as asked");
        assert!(
            slot.refresh_if_older_than(clock.now()),
            "an event after the fetch"
        );
        // A flight started after the event satisfies it; another event refreshes nothing more.
        let waiter = accessors(&slot, 1).remove(0);
        settle().await;
        assert!(!slot.refresh_if_older_than(clock.now()));
        clock.advance(Duration::from_secs(1));
        assert!(
            slot.refresh_if_older_than(clock.now()),
            "an event after the flight started"
        );
        src.open(1);
        src.open(2);
        assert_eq!(waiter.await.unwrap().unwrap().version, 2);
        assert_eq!(slot.get().await.unwrap().version, 3);
        assert_eq!(slot.stats().invalidations, 2);
    }
}
