//! The operator's Prometheus metrics (`docs/metrics.md`), registered once in their own [`Registry`] (not
//! the process-global default one, so tests can run several managers in one process).
//!
//! Label sets are bounded:
//! - `kind` is a resource kind, `result` is `ok`/`error`, `category` one of the seven error
//!   categories, `phase` one of the ChangeProposal phases;
//! - `name` (drift gauge only) is a resource name whose series is removed when the resource
//!   goes away ([`Metrics::forget_drift`]);
//! - `tailnet` is a `ManagedTailnet` resource's name; its series go with it ([`Metrics::forget_tailnet`]);
//! - API metrics use the client's templated endpoint (`/tailnet/{tailnet}/devices`, never a
//!   device id) and the status code (or `error` when no answer came);
//! - devices are counted by normalized OS (a fixed list, else `other`) and connectivity; no
//!   device id or host name is ever a label;
//! - key expiry carries `key_id` (the key's public id, not the secret) for each live key with an
//!   expiry: bounded by the tailnet's live keys, and replaced at every observation so revoked
//!   and deleted keys disappear.
//!
//! Counters of every kind in [`crate::resources::crds`] start at 0, so `rate()` and alerts work
//! before the first event and every metric an alert names is always exposed.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::error::Category;
use crate::resources::change_proposal::ProposalPhase;
use crate::tailscale::{AttemptEvent, Device, Key, RequestObserver};

/// Seconds; reconciles of this operator mostly wait on one or two API calls.
const DURATION_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0];
/// Seconds; one Tailscale API request.
const API_BUCKETS: [f64; 9] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// A device not seen for longer than this is stale (as `tailnet-operator audit` says by default).
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);
/// Every ChangeProposal phase, for the proposals gauge.
pub const PROPOSAL_PHASES: [ProposalPhase; 6] = [
    ProposalPhase::Pending,
    ProposalPhase::Approved,
    ProposalPhase::Applied,
    ProposalPhase::Failed,
    ProposalPhase::Stale,
    ProposalPhase::Rejected,
];
/// OS labels kept as they are; anything else counts as `other`.
const KNOWN_OS: [&str; 10] = [
    "linux", "windows", "macOS", "iOS", "android", "tvOS", "freebsd", "openbsd", "illumos", "plan9",
];
/// Key types kept as they are; anything else counts as `other`.
const KNOWN_KEY_TYPES: [&str; 4] = ["auth", "api", "client", "federated"];

/// Every metric the manager and its controllers publish.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    drifted: IntGaugeVec,
    drift_events: IntCounterVec,
    drift_corrections: IntCounterVec,
    rollbacks: IntCounterVec,
    leader: IntGauge,
    api_requests: IntCounterVec,
    api_duration: HistogramVec,
    api_retries: IntCounterVec,
    devices: IntGaugeVec,
    devices_update_available: IntGaugeVec,
    devices_stale: IntGaugeVec,
    key_expiry: GaugeVec,
    rotation_expiry: GaugeVec,
    rotation_next: GaugeVec,
    funnel_since: GaugeVec,
    webhook_deliveries: IntCounterVec,
    webhook_events: IntCounterVec,
    funnel_expiry: GaugeVec,
    rotation_failures: IntCounterVec,
    proposals: IntGaugeVec,
    /// Per tailnet, the label values of its device and key-expiry series, so an observation
    /// replaces them all (series that are gone are removed, not left at their last value).
    tailnet_series: Mutex<HashMap<String, TailnetSeries>>,
}

#[derive(Debug, Default)]
struct TailnetSeries {
    devices: Vec<[String; 2]>,
    keys: Vec<[String; 2]>,
    /// Method, endpoint and code of the API series (removed with the ManagedTailnet).
    api: HashSet<[String; 3]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("static metric definition")
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::new(),
            reconciles: counter(
                "tailnet_operator_reconciles_total",
                "Reconciles finished, by kind and result (ok or error).",
                &["kind", "result"],
            ),
            duration: histogram(
                "tailnet_operator_reconcile_duration_seconds",
                "How long reconciles took, by kind.",
                &DURATION_BUCKETS,
                &["kind"],
            ),
            errors: counter(
                "tailnet_operator_reconcile_errors_total",
                "Failed reconciles, by kind and error category.",
                &["kind", "category"],
            ),
            drifted: gauge(
                "tailnet_operator_resource_drifted",
                "1 when a resource's live tailnet state differs from what it applied, else 0.",
                &["kind", "name"],
            ),
            drift_events: counter(
                "tailnet_operator_drift_events_total",
                "Times a resource was found drifted (its drift gauge went from 0 to 1), by kind.",
                &["kind"],
            ),
            drift_corrections: counter(
                "tailnet_operator_drift_corrections_total",
                "Drift corrected by re-applying the desired state (driftPolicy: Correct), by kind.",
                &["kind"],
            ),
            rollbacks: counter(
                "tailnet_operator_rollbacks_total",
                "Applied changes rolled back after a failed post-apply check, by kind.",
                &["kind"],
            ),
            leader: IntGauge::new(
                "tailnet_operator_leader",
                "1 while this replica holds the leader Lease and runs the controllers, else 0.",
            )
            .expect("static metric definition"),
            api_requests: counter(
                "tailscale_api_requests_total",
                "Tailscale API HTTP attempts (retries included), by tailnet, method, templated \
                 endpoint and status code (`error` when no response arrived).",
                &["tailnet", "method", "endpoint", "code"],
            ),
            api_duration: histogram(
                "tailscale_api_request_duration_seconds",
                "Latency of Tailscale API HTTP attempts, by tailnet, method and templated endpoint.",
                &API_BUCKETS,
                &["tailnet", "method", "endpoint"],
            ),
            api_retries: counter(
                "tailscale_api_retries_total",
                "Tailscale API attempts that were retries of an earlier failed attempt.",
                &["tailnet", "method", "endpoint"],
            ),
            devices: gauge(
                "tailnet_operator_devices",
                "Devices in the tailnet, by OS and connectivity (connected to the control plane).",
                &["tailnet", "os", "connectivity"],
            ),
            devices_update_available: gauge(
                "tailnet_operator_devices_update_available",
                "Devices whose Tailscale client has an update available.",
                &["tailnet"],
            ),
            devices_stale: gauge(
                "tailnet_operator_devices_stale",
                "Disconnected devices not seen for more than 30 days.",
                &["tailnet"],
            ),
            key_expiry: GaugeVec::new(
                Opts::new(
                    "tailnet_operator_auth_key_expiry_timestamp_seconds",
                    "When each live (not revoked, not invalid) key of the tailnet expires, as a \
                     Unix timestamp, by key type (auth, api, client, federated) and key id.",
                ),
                &["tailnet", "key_type", "key_id"],
            )
            .expect("static metric definition"),
            rotation_expiry: GaugeVec::new(
                Opts::new(
                    "tailnet_operator_key_rotation_expiry_timestamp_seconds",
                    "When the current credential of each KeyRotationPolicy expires (an OAuth \
                     client: when its policy's expiry runs out), as a Unix timestamp.",
                ),
                &["namespace", "name"],
            )
            .expect("static metric definition"),
            rotation_next: GaugeVec::new(
                Opts::new(
                    "tailnet_operator_key_rotation_next_timestamp_seconds",
                    "When each KeyRotationPolicy renews its credential, as a Unix timestamp.",
                ),
                &["namespace", "name"],
            )
            .expect("static metric definition"),
            funnel_since: GaugeVec::new(
                Opts::new(
                    "tailnet_operator_funnel_exposure_active_since_timestamp_seconds",
                    "When each active FunnelExposure's proxy joined (the Service became public), \
                     as a Unix timestamp. Only active exposures have a series.",
                ),
                &["namespace", "name"],
            )
            .expect("static metric definition"),
            funnel_expiry: GaugeVec::new(
                Opts::new(
                    "tailnet_operator_funnel_exposure_expiry_timestamp_seconds",
                    "When each active FunnelExposure ends, as a Unix timestamp; 0 when it has no \
                     end (spec.expiresAt and spec.activeWindow unset).",
                ),
                &["namespace", "name"],
            )
            .expect("static metric definition"),
            webhook_deliveries: counter(
                "tailnet_operator_webhook_deliveries_total",
                "Tailscale webhook deliveries received, by tailnet and result (accepted, \
                 unauthorized: a missing, malformed, stale or wrong signature, malformed: not a \
                 JSON array of events, standby: not the leader, answered 503 so Tailscale \
                 retries). Bodies over 1 MiB are refused (413) before they are counted.",
                &["tailnet", "result"],
            ),
            webhook_events: counter(
                "tailnet_operator_webhook_events_total",
                "Events in accepted webhook deliveries, by tailnet and type (unknown types \
                 counted as unknown and ignored).",
                &["tailnet", "type"],
            ),
            rotation_failures: counter(
                "tailnet_operator_key_rotation_failures_total",
                "KeyRotationPolicy passes that failed (minting, writing the Secret, revoking).",
                &["namespace", "name"],
            ),
            proposals: gauge(
                "tailnet_operator_change_proposals",
                "ChangeProposals by phase.",
                &["phase"],
            ),
            tailnet_series: Mutex::default(),
        };
        metrics.register_all();
        metrics.initialize_kinds();
        metrics
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 23] = [
            Box::new(self.reconciles.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.drifted.clone()),
            Box::new(self.drift_events.clone()),
            Box::new(self.drift_corrections.clone()),
            Box::new(self.rollbacks.clone()),
            Box::new(self.leader.clone()),
            Box::new(self.api_requests.clone()),
            Box::new(self.api_duration.clone()),
            Box::new(self.api_retries.clone()),
            Box::new(self.devices.clone()),
            Box::new(self.devices_update_available.clone()),
            Box::new(self.devices_stale.clone()),
            Box::new(self.key_expiry.clone()),
            Box::new(self.rotation_expiry.clone()),
            Box::new(self.rotation_next.clone()),
            Box::new(self.funnel_since.clone()),
            Box::new(self.funnel_expiry.clone()),
            Box::new(self.webhook_deliveries.clone()),
            Box::new(self.webhook_events.clone()),
            Box::new(self.rotation_failures.clone()),
            Box::new(self.proposals.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("metric names are unique in a fresh registry");
        }
    }

    /// Zero series for every kind's counters and every proposal phase.
    fn initialize_kinds(&self) {
        for crd in crate::resources::crds() {
            let kind = crd.spec.names.kind.as_str();
            for result in ["ok", "error"] {
                self.reconciles.with_label_values(&[kind, result]);
            }
            for category in Category::ALL {
                self.errors.with_label_values(&[kind, category.as_str()]);
            }
            self.drift_events.with_label_values(&[kind]);
            self.drift_corrections.with_label_values(&[kind]);
            self.rollbacks.with_label_values(&[kind]);
        }
        for phase in PROPOSAL_PHASES {
            self.set_proposals(phase, 0);
        }
    }

    /// A KeyRotationPolicy's schedule: when its credential expires and when it is renewed.
    pub fn set_key_rotation(&self, namespace: &str, name: &str, expires: f64, next: f64) {
        self.rotation_expiry
            .with_label_values(&[namespace, name])
            .set(expires);
        self.rotation_next
            .with_label_values(&[namespace, name])
            .set(next);
    }

    /// An active FunnelExposure: since when, and until when (`None`: no end, exported as 0).
    pub fn set_funnel_exposure(&self, namespace: &str, name: &str, since: f64, until: Option<f64>) {
        let labels = [namespace, name];
        self.funnel_since.with_label_values(&labels).set(since);
        self.funnel_expiry
            .with_label_values(&labels)
            .set(until.unwrap_or(0.0));
    }

    /// Drops a FunnelExposure's series (it is not active any more, or deleted).
    pub fn forget_funnel_exposure(&self, namespace: &str, name: &str) {
        let _ = self.funnel_since.remove_label_values(&[namespace, name]);
        let _ = self.funnel_expiry.remove_label_values(&[namespace, name]);
    }

    /// Counts a failed KeyRotationPolicy pass (the series starts at 0 on the first pass).
    pub fn record_key_rotation_failure(&self, namespace: &str, name: &str, failed: bool) {
        let counter = self.rotation_failures.with_label_values(&[namespace, name]);
        if failed {
            counter.inc();
        }
    }

    /// Drops a deleted KeyRotationPolicy's series.
    pub fn forget_key_rotation(&self, namespace: &str, name: &str) {
        let _ = self.rotation_expiry.remove_label_values(&[namespace, name]);
        let _ = self.rotation_next.remove_label_values(&[namespace, name]);
        let _ = self
            .rotation_failures
            .remove_label_values(&[namespace, name]);
    }

    /// Records one finished reconcile of `kind` taking `seconds`; `failed` with its category.
    pub fn record_reconcile(&self, kind: &str, seconds: f64, failure: Option<Category>) {
        let result = if failure.is_some() { "error" } else { "ok" };
        self.reconciles.with_label_values(&[kind, result]).inc();
        self.duration.with_label_values(&[kind]).observe(seconds);
        if let Some(category) = failure {
            self.errors
                .with_label_values(&[kind, category.as_str()])
                .inc();
        }
    }

    /// Sets the drift gauge of resource `name` of `kind` (for the kinds that apply state). A
    /// change from not drifted (or unknown) to drifted also counts one drift event.
    pub fn set_drifted(&self, kind: &str, name: &str, drifted: bool) {
        let gauge = self.drifted.with_label_values(&[kind, name]);
        if drifted && gauge.get() == 0 {
            self.drift_events.with_label_values(&[kind]).inc();
        }
        gauge.set(i64::from(drifted));
    }

    /// Removes the drift series of a deleted resource, keeping the label set bounded.
    pub fn forget_drift(&self, kind: &str, name: &str) {
        // Absent series are fine: the resource may never have reported drift.
        let _ = self.drifted.remove_label_values(&[kind, name]);
    }

    /// Counts one drift correction (the desired state re-applied over a console edit).
    pub fn record_drift_correction(&self, kind: &str) {
        self.drift_corrections.with_label_values(&[kind]).inc();
    }

    /// Counts one rollback (a failed post-apply check restored an earlier state).
    pub fn record_rollback(&self, kind: &str) {
        self.rollbacks.with_label_values(&[kind]).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Whether this replica leads (runs the controllers).
    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// Counts one webhook delivery for `tailnet` (a ManagedTailnet's name, or `unknown`) by
    /// result: `accepted`, `unauthorized`, `malformed`, `standby`.
    pub fn record_webhook_delivery(&self, tailnet: &str, result: &str) {
        self.webhook_deliveries
            .with_label_values(&[tailnet, result])
            .inc();
    }

    /// Counts one webhook event by type (`unknown` for types the operator does not know).
    pub fn record_webhook_event(&self, tailnet: &str, event_type: &str) {
        self.webhook_events
            .with_label_values(&[tailnet, event_type])
            .inc();
    }

    /// Sets how many ChangeProposals are in `phase` (the ChangeProposal controller sets every
    /// phase after each pass over its store).
    pub fn set_proposals(&self, phase: ProposalPhase, count: usize) {
        self.proposals
            .with_label_values(&[phase_label(phase)])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Records one Tailscale API attempt of the client of `tailnet`.
    pub fn record_api_attempt(&self, tailnet: &str, event: &AttemptEvent<'_>) {
        let (method, endpoint) = event
            .endpoint
            .split_once(' ')
            .unwrap_or(("", event.endpoint));
        let code = event
            .status
            .map(|status| status.to_string())
            .unwrap_or_else(|| "error".to_owned());
        self.api_requests
            .with_label_values(&[tailnet, method, endpoint, &code])
            .inc();
        self.api_duration
            .with_label_values(&[tailnet, method, endpoint])
            .observe(event.elapsed.as_secs_f64());
        // The series exists (at 0) from an endpoint's first attempt, so `rate()` and the
        // dashboard see "no retries" rather than no data.
        let retries = self
            .api_retries
            .with_label_values(&[tailnet, method, endpoint]);
        if event.attempt > 1 {
            retries.inc();
        }
        let labels = [method.to_owned(), endpoint.to_owned(), code];
        let mut series = self.series();
        let entry = series.entry(tailnet.to_owned()).or_default();
        if !entry.api.contains(&labels) {
            entry.api.insert(labels);
        }
    }

    /// A [`RequestObserver`] for the client of `tailnet`, feeding the `tailscale_api_*` metrics.
    pub fn api_observer(self: &Arc<Self>, tailnet: &str) -> Arc<dyn RequestObserver> {
        Arc::new(ApiMetrics {
            metrics: Arc::clone(self),
            tailnet: tailnet.to_owned(),
        })
    }

    /// Replaces the device gauges of `tailnet` with counts over `devices` (a snapshot read at
    /// `now`).
    pub fn observe_devices(&self, tailnet: &str, devices: &[Device], now: DateTime<Utc>) {
        let mut counts: HashMap<[String; 2], i64> = HashMap::new();
        let (mut updates, mut stale) = (0i64, 0i64);
        for device in devices {
            let connectivity = if device.connected_to_control {
                "connected"
            } else {
                "disconnected"
            };
            *counts
                .entry([os_label(&device.os).to_owned(), connectivity.to_owned()])
                .or_default() += 1;
            updates += i64::from(device.update_available);
            stale += i64::from(is_stale(device, now));
        }
        let mut series = self.series();
        let entry = series.entry(tailnet.to_owned()).or_default();
        for old in entry.devices.drain(..) {
            if !counts.contains_key(&old) {
                let _ =
                    self.devices
                        .remove_label_values(&[tailnet, old[0].as_str(), old[1].as_str()]);
            }
        }
        for (labels, count) in &counts {
            self.devices
                .with_label_values(&[tailnet, labels[0].as_str(), labels[1].as_str()])
                .set(*count);
        }
        entry.devices = counts.into_keys().collect();
        self.devices_update_available
            .with_label_values(&[tailnet])
            .set(updates);
        self.devices_stale.with_label_values(&[tailnet]).set(stale);
    }

    /// Replaces the key-expiry gauges of `tailnet` with the live keys in `keys` that expire.
    pub fn observe_keys(&self, tailnet: &str, keys: &[Key]) {
        let live: Vec<([String; 2], f64)> = keys
            .iter()
            .filter(|key| key.revoked.is_none() && !key.invalid)
            .filter_map(|key| {
                let expires = key.expires?;
                let labels = [key_type_label(&key.key_type).to_owned(), key.id.clone()];
                Some((labels, expires.timestamp() as f64))
            })
            .collect();
        let mut series = self.series();
        let entry = series.entry(tailnet.to_owned()).or_default();
        for old in entry.keys.drain(..) {
            if !live.iter().any(|(labels, _)| *labels == old) {
                let _ = self.key_expiry.remove_label_values(&[
                    tailnet,
                    old[0].as_str(),
                    old[1].as_str(),
                ]);
            }
        }
        for (labels, expires) in &live {
            self.key_expiry
                .with_label_values(&[tailnet, labels[0].as_str(), labels[1].as_str()])
                .set(*expires);
        }
        entry.keys = live.into_iter().map(|(labels, _)| labels).collect();
    }

    /// Removes every series of a deleted ManagedTailnet (devices, keys, API metrics).
    pub fn forget_tailnet(&self, tailnet: &str) {
        let removed = self.series().remove(tailnet).unwrap_or_default();
        for labels in removed.devices {
            let _ = self.devices.remove_label_values(&[
                tailnet,
                labels[0].as_str(),
                labels[1].as_str(),
            ]);
        }
        for labels in removed.keys {
            let _ = self.key_expiry.remove_label_values(&[
                tailnet,
                labels[0].as_str(),
                labels[1].as_str(),
            ]);
        }
        let _ = self
            .devices_update_available
            .remove_label_values(&[tailnet]);
        let _ = self.devices_stale.remove_label_values(&[tailnet]);
        for [method, endpoint, code] in &removed.api {
            let (method, endpoint) = (method.as_str(), endpoint.as_str());
            let _ =
                self.api_requests
                    .remove_label_values(&[tailnet, method, endpoint, code.as_str()]);
            let _ = self
                .api_duration
                .remove_label_values(&[tailnet, method, endpoint]);
            let _ = self
                .api_retries
                .remove_label_values(&[tailnet, method, endpoint]);
        }
    }

    /// Reconciles of `kind` with `result` (`ok` or `error`) so far.
    pub fn reconciles(&self, kind: &str, result: &str) -> u64 {
        self.reconciles.with_label_values(&[kind, result]).get()
    }

    /// The text exposition format (`text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }

    fn series(&self) -> MutexGuard<'_, HashMap<String, TailnetSeries>> {
        // Label bookkeeping cannot be left half-updated; a poisoned lock is still usable.
        self.tailnet_series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Feeds one client's attempts into [`Metrics`].
struct ApiMetrics {
    metrics: Arc<Metrics>,
    tailnet: String,
}

impl RequestObserver for ApiMetrics {
    fn on_attempt(&self, event: &AttemptEvent<'_>) {
        self.metrics.record_api_attempt(&self.tailnet, event);
    }
}

fn phase_label(phase: ProposalPhase) -> &'static str {
    match phase {
        ProposalPhase::Pending => "Pending",
        ProposalPhase::Approved => "Approved",
        ProposalPhase::Applied => "Applied",
        ProposalPhase::Failed => "Failed",
        ProposalPhase::Stale => "Stale",
        ProposalPhase::Rejected => "Rejected",
    }
}

/// The API's OS name, from a fixed list (case-insensitive), else `other`.
fn os_label(os: &str) -> &'static str {
    KNOWN_OS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(os))
        .copied()
        .unwrap_or("other")
}

fn key_type_label(key_type: &str) -> &'static str {
    KNOWN_KEY_TYPES
        .iter()
        .find(|known| **known == key_type)
        .copied()
        .unwrap_or("other")
}

/// Disconnected and not seen for more than [`STALE_AFTER`].
fn is_stale(device: &Device, now: DateTime<Utc>) -> bool {
    let Some(last_seen) = device.last_seen else {
        return false;
    };
    let idle = now.signed_duration_since(last_seen);
    !device.connected_to_control && idle.to_std().is_ok_and(|idle| idle > STALE_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reconciles_errors_and_gauges_show_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.record_reconcile("ManagedTailnet", 0.02, None);
        metrics.record_reconcile("ManagedTailnet", 0.5, Some(Category::Auth));
        metrics.set_drifted("TailnetPolicy", "base", true);
        metrics.set_leader(true);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"tailnet_operator_reconciles_total{kind="ManagedTailnet",result="ok"} 1"#
            )
        );
        assert!(text.contains(
            r#"tailnet_operator_reconciles_total{kind="ManagedTailnet",result="error"} 1"#
        ));
        assert!(text.contains(
            r#"tailnet_operator_reconcile_errors_total{category="Auth",kind="ManagedTailnet"} 1"#
        ));
        assert!(text.contains(
            r#"tailnet_operator_reconcile_duration_seconds_count{kind="ManagedTailnet"} 2"#
        ));
        assert!(
            text.contains(
                r#"tailnet_operator_resource_drifted{kind="TailnetPolicy",name="base"} 1"#
            )
        );
        assert!(text.contains("tailnet_operator_leader 1"));
        assert_eq!(metrics.reconciles("ManagedTailnet", "ok"), 1);
    }

    #[test]
    fn drift_events_count_transitions_to_drifted_only() {
        let metrics = Metrics::new();
        metrics.set_drifted("TailnetPolicy", "base", false);
        metrics.set_drifted("TailnetPolicy", "base", true);
        metrics.set_drifted("TailnetPolicy", "base", true);
        metrics.set_drifted("TailnetPolicy", "base", false);
        metrics.set_drifted("TailnetPolicy", "base", true);
        metrics.record_drift_correction("TailnetPolicy");
        metrics.record_rollback("TailnetPolicy");
        let text = metrics.encode();
        assert!(text.contains(r#"tailnet_operator_drift_events_total{kind="TailnetPolicy"} 2"#));
        assert!(
            text.contains(r#"tailnet_operator_drift_corrections_total{kind="TailnetPolicy"} 1"#)
        );
        assert!(text.contains(r#"tailnet_operator_rollbacks_total{kind="TailnetPolicy"} 1"#));
    }

    #[test]
    fn every_kind_and_phase_starts_at_zero() {
        let text = Metrics::new().encode();
        for crd in crate::resources::crds() {
            let kind = crd.spec.names.kind;
            for line in [
                format!(r#"tailnet_operator_reconciles_total{{kind="{kind}",result="error"}} 0"#),
                format!(r#"tailnet_operator_drift_events_total{{kind="{kind}"}} 0"#),
                format!(r#"tailnet_operator_rollbacks_total{{kind="{kind}"}} 0"#),
            ] {
                assert!(text.contains(&line), "{line} missing");
            }
        }
        assert!(text.contains(r#"tailnet_operator_change_proposals{phase="Pending"} 0"#));
    }

    #[test]
    fn proposals_are_set_per_phase() {
        let metrics = Metrics::new();
        metrics.set_proposals(ProposalPhase::Pending, 3);
        metrics.set_proposals(ProposalPhase::Applied, 1);
        metrics.set_proposals(ProposalPhase::Pending, 2);
        let text = metrics.encode();
        assert!(text.contains(r#"tailnet_operator_change_proposals{phase="Pending"} 2"#));
        assert!(text.contains(r#"tailnet_operator_change_proposals{phase="Applied"} 1"#));
    }

    fn attempt(endpoint: &str, attempt: u32, status: Option<u16>) -> AttemptEvent<'_> {
        AttemptEvent {
            endpoint,
            attempt,
            status,
            elapsed: Duration::from_millis(30),
        }
    }

    #[test]
    fn api_attempts_count_by_templated_endpoint_code_and_retry() {
        let metrics = Arc::new(Metrics::new());
        let observer = metrics.api_observer("home");
        observer.on_attempt(&attempt("GET /tailnet/{tailnet}/devices", 1, Some(503)));
        observer.on_attempt(&attempt("GET /tailnet/{tailnet}/devices", 2, None));
        observer.on_attempt(&attempt("GET /tailnet/{tailnet}/devices", 3, Some(200)));
        let text = metrics.encode();
        let devices = r#"endpoint="/tailnet/{tailnet}/devices",method="GET",tailnet="home""#;
        for code in ["503", "error", "200"] {
            let line = format!(r#"tailscale_api_requests_total{{code="{code}",{devices}}} 1"#);
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        assert!(text.contains(&format!("tailscale_api_retries_total{{{devices}}} 2")));
        assert!(text.contains(&format!(
            "tailscale_api_request_duration_seconds_count{{{devices}}} 3"
        )));
        metrics.forget_tailnet("home");
        assert!(!metrics.encode().contains(r#"tailnet="home""#));
    }

    fn device(os: &str, connected: bool, update: bool, days_unseen: i64) -> Device {
        let now = chrono::Utc::now();
        serde_json::from_value(serde_json::json!({
            "id": "n1", "nodeId": "nodeid-secret-ish", "hostname": "laptop-of-alice",
            "os": os, "connectedToControl": connected, "updateAvailable": update,
            "lastSeen": (now - chrono::Duration::days(days_unseen)).to_rfc3339(),
        }))
        .unwrap()
    }

    #[test]
    fn devices_are_counted_by_os_and_connectivity_without_ids_and_replaced() {
        let metrics = Metrics::new();
        let now = chrono::Utc::now();
        let devices = [
            device("linux", true, false, 0),
            device("linux", true, true, 0),
            device("Windows", false, true, 40),
            device("BeOS", false, false, 2),
        ];
        metrics.observe_devices("home", &devices, now);
        let text = metrics.encode();
        for line in [
            r#"tailnet_operator_devices{connectivity="connected",os="linux",tailnet="home"} 2"#,
            r#"tailnet_operator_devices{connectivity="disconnected",os="windows",tailnet="home"} 1"#,
            r#"tailnet_operator_devices{connectivity="disconnected",os="other",tailnet="home"} 1"#,
            r#"tailnet_operator_devices_update_available{tailnet="home"} 2"#,
            r#"tailnet_operator_devices_stale{tailnet="home"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("laptop-of-alice") && !text.contains("nodeid"));
        metrics.observe_devices("home", &devices[..1], now);
        let text = metrics.encode();
        assert!(!text.contains("windows"), "gone devices leave no series");
        assert!(text.contains(r#"tailnet_operator_devices_stale{tailnet="home"} 0"#));
    }

    fn key(id: &str, key_type: &str, expires: Option<&str>, revoked: bool) -> Key {
        serde_json::from_value(serde_json::json!({
            "id": id, "keyType": key_type, "expires": expires,
            "revoked": if revoked { Some("2026-01-01T00:00:00Z") } else { None },
        }))
        .unwrap()
    }

    #[test]
    fn key_expiry_covers_live_expiring_keys_and_follows_the_snapshot() {
        let metrics = Metrics::new();
        metrics.observe_keys(
            "home",
            &[
                key("kAuth1", "auth", Some("2026-12-01T00:00:00Z"), false),
                key("kApi1", "api", Some("2027-01-01T00:00:00Z"), false),
                key("kGone", "auth", Some("2026-12-01T00:00:00Z"), true),
                key("kClient", "client", None, false),
            ],
        );
        let text = metrics.encode();
        assert!(text.contains(
            r#"tailnet_operator_auth_key_expiry_timestamp_seconds{key_id="kAuth1",key_type="auth",tailnet="home"} 1796083200"#
        ), "{text}");
        assert!(text.contains(r#"key_id="kApi1",key_type="api""#));
        assert!(!text.contains("kGone") && !text.contains("kClient"));
        metrics.observe_keys(
            "home",
            &[key("kApi1", "api", Some("2027-01-01T00:00:00Z"), false)],
        );
        assert!(
            !metrics.encode().contains("kAuth1"),
            "a deleted key's series is removed"
        );
    }

    #[test]
    fn a_forgotten_resource_leaves_no_drift_series() {
        let metrics = Metrics::new();
        metrics.set_drifted("TailnetPolicy", "gone", true);
        metrics.forget_drift("TailnetPolicy", "gone");
        metrics.forget_drift("TailnetPolicy", "never-seen");
        assert!(!metrics.encode().contains("gone"));
    }
}
