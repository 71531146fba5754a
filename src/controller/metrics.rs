//! The operator's Prometheus metrics, registered once in their own [`Registry`] (not the
//! process-global default one, so tests can run several managers in one process).
//!
//! Label sets are bounded: `kind` is a resource kind, `result` is `ok`/`error`, `category` is one
//! of the seven error categories, and `name` (drift gauge only) is a resource name whose series
//! is removed when the resource goes away ([`Metrics::forget_drift`]).
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::error::Category;

/// Seconds; reconciles of this operator mostly wait on one or two API calls.
const DURATION_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0];

/// Every metric the manager and its controllers publish.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    drifted: IntGaugeVec,
    leader: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "tailnet_operator_reconciles_total",
                "Reconciles finished, by kind and result (ok or error).",
            ),
            &["kind", "result"],
        )
        .expect("static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tailnet_operator_reconcile_duration_seconds",
                "How long reconciles took, by kind.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["kind"],
        )
        .expect("static metric definition");
        let errors = IntCounterVec::new(
            Opts::new(
                "tailnet_operator_reconcile_errors_total",
                "Failed reconciles, by kind and error category.",
            ),
            &["kind", "category"],
        )
        .expect("static metric definition");
        let drifted = IntGaugeVec::new(
            Opts::new(
                "tailnet_operator_resource_drifted",
                "1 when a resource's live tailnet state differs from what it applied, else 0.",
            ),
            &["kind", "name"],
        )
        .expect("static metric definition");
        let leader = IntGauge::new(
            "tailnet_operator_leader",
            "1 while this replica holds the leader Lease and runs the controllers, else 0.",
        )
        .expect("static metric definition");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(errors.clone()),
            Box::new(drifted.clone()),
            Box::new(leader.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique in a fresh registry");
        }
        Metrics {
            registry,
            reconciles,
            duration,
            errors,
            drifted,
            leader,
        }
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

    /// Sets the drift gauge of resource `name` of `kind` (for the kinds that apply state).
    pub fn set_drifted(&self, kind: &str, name: &str, drifted: bool) {
        self.drifted
            .with_label_values(&[kind, name])
            .set(i64::from(drifted));
    }

    /// Removes the drift series of a deleted resource, keeping the label set bounded.
    pub fn forget_drift(&self, kind: &str, name: &str) {
        // Absent series are fine: the resource may never have reported drift.
        let _ = self.drifted.remove_label_values(&[kind, name]);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_errors_and_gauges_show_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.record_reconcile("Tailnet", 0.02, None);
        metrics.record_reconcile("Tailnet", 0.5, Some(Category::Auth));
        metrics.set_drifted("TailnetPolicy", "base", true);
        metrics.set_leader(true);
        let text = metrics.encode();
        assert!(
            text.contains(r#"tailnet_operator_reconciles_total{kind="Tailnet",result="ok"} 1"#)
        );
        assert!(
            text.contains(r#"tailnet_operator_reconciles_total{kind="Tailnet",result="error"} 1"#)
        );
        assert!(text.contains(
            r#"tailnet_operator_reconcile_errors_total{category="Auth",kind="Tailnet"} 1"#
        ));
        assert!(
            text.contains(r#"tailnet_operator_reconcile_duration_seconds_count{kind="Tailnet"} 2"#)
        );
        assert!(
            text.contains(
                r#"tailnet_operator_resource_drifted{kind="TailnetPolicy",name="base"} 1"#
            )
        );
        assert!(text.contains("tailnet_operator_leader 1"));
        assert_eq!(metrics.reconciles("Tailnet", "ok"), 1);
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
