//! Status conditions (`Ready`, `Synced`, `Drifted`), kept the way Kubernetes tools expect:
//! `lastTransitionTime` changes only when the status flips, the list order is stable, and every
//! update says whether anything changed so callers can skip no-op status writes.
//!
//! The conditions are `k8s_openapi`'s `meta/v1` `Condition`, so `kstatus`, Argo CD health checks
//! and `kubectl wait --for=condition=Ready` read them as they read any built-in resource.
use std::fmt;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::error::Category;

/// The condition types every kind reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The tailnet holds the desired state (or, for `ManagedTailnet`, the connection works).
    Ready,
    /// The last reconcile reached the Tailscale API and finished (whatever it found).
    Synced,
    /// The live tailnet differs from what this operator last applied.
    Drifted,
    /// ManagedTailnet only: a webhook warned within the last day that a subnet router or exit
    /// node does not forward IP traffic.
    IpForwardingNotEnabled,
}

impl ConditionType {
    pub const ALL: [ConditionType; 3] = [
        ConditionType::Ready,
        ConditionType::Synced,
        ConditionType::Drifted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Synced => "Synced",
            ConditionType::Drifted => "Drifted",
            ConditionType::IpForwardingNotEnabled => "IPForwardingNotEnabled",
        }
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition's status. Kubernetes spells it as a string: `True`, `False` or `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Condition reasons (CamelCase, as Kubernetes requires). Error reasons are the error
/// [`Category`] names, so a failed reconcile's reason, event reason and metric label agree.
pub mod reason {
    use crate::error::Category;

    /// The desired state is applied.
    pub const RECONCILED: &str = "Reconciled";
    /// The live state matches what was last applied.
    pub const IN_SYNC: &str = "InSync";
    /// The live state differs from what was last applied.
    pub const DRIFTED: &str = "Drifted";
    /// `spec.suspend` is set: observing only.
    pub const SUSPENDED: &str = "Suspended";
    /// A post-apply check failed and the previous good revision was re-applied.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// The break-glass annotation pins a revision.
    pub const PINNED: &str = "Pinned";
    /// Nothing observed yet (first reconcile in progress).
    pub const PENDING: &str = "Pending";
    /// The tailnet's credentials work.
    pub const CREDENTIALS_VALID: &str = "CredentialsValid";

    // One per error category, spelled as `Category::as_str` spells it (a test checks).
    pub const AUTH: &str = "Auth";
    pub const RATE_LIMITED: &str = "RateLimited";
    pub const CONFLICT: &str = "Conflict";
    pub const INVALID: &str = "Invalid";
    pub const NOT_FOUND: &str = "NotFound";
    pub const TRANSIENT: &str = "Transient";
    pub const INTERNAL: &str = "Internal";

    /// The reason for a failure of `category`.
    pub fn for_category(category: Category) -> &'static str {
        category.as_str()
    }
}

/// Messages longer than this are cut (with `…`) so a status stays readable in `kubectl get -o
/// yaml` and well under the API server's 32 KiB limit for a condition message.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// One condition's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

impl Verdict {
    pub fn new(status: ConditionStatus, reason: &str, message: impl Into<String>) -> Verdict {
        Verdict {
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// Sets condition `type_` in `conditions`, returning whether anything changed.
///
/// - An existing condition is updated in place (the list order never changes); a new one is
///   appended.
/// - `lastTransitionTime` is set to `now` only when the condition is new or its status flips;
///   a changed reason, message or generation with the same status keeps the old time, so tools
///   that measure "Ready for how long" stay right.
/// - The message is capped at [`MAX_MESSAGE_CHARS`].
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let message = cap_message(message);
    let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_.as_str()) else {
        conditions.push(Condition {
            type_: type_.as_str().to_owned(),
            status: status.as_str().to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation,
            last_transition_time: now.clone(),
        });
        return true;
    };
    let flipped = existing.status != status.as_str();
    let unchanged = !flipped
        && existing.reason == reason
        && existing.message == message
        && existing.observed_generation == observed_generation;
    if unchanged {
        return false;
    }
    if flipped {
        existing.status = status.as_str().to_owned();
        existing.last_transition_time = now.clone();
    }
    existing.reason = reason.to_owned();
    existing.message = message;
    existing.observed_generation = observed_generation;
    true
}

/// The condition of `type_`, if set.
pub fn find(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Whether condition `type_` is set and `True`.
pub fn is_true(conditions: &[Condition], type_: ConditionType) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// Whether condition `type_` is `True` and reflects `generation` (not an older spec).
pub fn is_true_for(conditions: &[Condition], type_: ConditionType, generation: i64) -> bool {
    find(conditions, type_).is_some_and(|c| {
        c.status == ConditionStatus::True.as_str() && c.observed_generation == Some(generation)
    })
}

/// A Kubernetes `Time` for a chrono timestamp (the rest of the crate uses chrono; Kubernetes
/// types use jiff). Sub-second precision is kept in memory; the wire form has seconds.
pub fn time_from(at: DateTime<Utc>) -> Time {
    let nanos = i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0);
    // Out of jiff's range only for dates beyond ±9999 years; fall back to the epoch rather than
    // panic in a status write.
    Time(Timestamp::new(at.timestamp(), nanos).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The current time as a Kubernetes `Time`.
pub fn now() -> Time {
    time_from(Utc::now())
}

/// The reason for a reconcile that failed with `category`.
pub fn failure_reason(category: Category) -> &'static str {
    reason::for_category(category)
}

fn cap_message(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message.to_owned();
    }
    let mut capped: String = message.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    capped.push('…');
    capped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn set(
        conditions: &mut Vec<Condition>,
        type_: ConditionType,
        status: bool,
        reason: &str,
        message: &str,
        generation: i64,
        now: i64,
    ) -> bool {
        set_condition(
            conditions,
            type_,
            status.into(),
            reason,
            message,
            Some(generation),
            &at(now),
        )
    }

    #[test]
    fn a_new_condition_is_appended_with_the_transition_time_now() {
        let mut conditions = Vec::new();
        assert!(set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Reconciled",
            "ok",
            1,
            100
        ));
        assert_eq!(conditions.len(), 1);
        let ready = &conditions[0];
        assert_eq!(ready.type_, "Ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason, "Reconciled");
        assert_eq!(ready.message, "ok");
        assert_eq!(ready.observed_generation, Some(1));
        assert_eq!(ready.last_transition_time, at(100));
    }

    #[test]
    fn setting_the_same_condition_again_changes_nothing() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Reconciled",
            "ok",
            1,
            100,
        );
        let before = conditions.clone();
        assert!(!set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Reconciled",
            "ok",
            1,
            200
        ));
        assert_eq!(conditions, before);
    }

    #[test]
    fn same_status_with_a_new_message_keeps_the_transition_time() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Reconciled",
            "rev 1",
            1,
            100,
        );
        assert!(set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Reconciled",
            "rev 2",
            2,
            200
        ));
        assert_eq!(conditions[0].message, "rev 2");
        assert_eq!(conditions[0].observed_generation, Some(2));
        assert_eq!(conditions[0].last_transition_time, at(100));
    }

    #[test]
    fn a_flip_moves_the_transition_time() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Reconciled",
            "ok",
            1,
            100,
        );
        assert!(set(
            &mut conditions,
            ConditionType::Ready,
            false,
            "Conflict",
            "x",
            1,
            200
        ));
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].reason, "Conflict");
        assert_eq!(conditions[0].last_transition_time, at(200));
        // And back.
        assert!(set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Reconciled",
            "ok",
            1,
            300
        ));
        assert_eq!(conditions[0].last_transition_time, at(300));
    }

    #[test]
    fn order_is_stable_across_updates() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            ConditionType::Synced,
            true,
            "Reconciled",
            "",
            1,
            1,
        );
        set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Reconciled",
            "",
            1,
            1,
        );
        set(
            &mut conditions,
            ConditionType::Drifted,
            false,
            "InSync",
            "",
            1,
            1,
        );
        set(
            &mut conditions,
            ConditionType::Ready,
            false,
            "Invalid",
            "bad",
            2,
            2,
        );
        set(
            &mut conditions,
            ConditionType::Synced,
            false,
            "Invalid",
            "bad",
            2,
            2,
        );
        let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Synced", "Ready", "Drifted"]);
    }

    #[test]
    fn unknown_is_distinct_from_false() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionType::Ready,
            ConditionStatus::Unknown,
            reason::PENDING,
            "",
            None,
            &at(1),
        );
        assert!(!is_true(&conditions, ConditionType::Ready));
        assert!(set(
            &mut conditions,
            ConditionType::Ready,
            false,
            "Auth",
            "",
            1,
            2
        ));
        assert_eq!(conditions[0].last_transition_time, at(2));
    }

    #[test]
    fn is_true_reads_the_status_and_the_generation() {
        let mut conditions = Vec::new();
        assert!(!is_true(&conditions, ConditionType::Ready));
        set(
            &mut conditions,
            ConditionType::Ready,
            true,
            "Reconciled",
            "",
            3,
            1,
        );
        set(
            &mut conditions,
            ConditionType::Drifted,
            false,
            "InSync",
            "",
            3,
            1,
        );
        assert!(is_true(&conditions, ConditionType::Ready));
        assert!(!is_true(&conditions, ConditionType::Drifted));
        assert!(!is_true(&conditions, ConditionType::Synced));
        assert!(is_true_for(&conditions, ConditionType::Ready, 3));
        assert!(!is_true_for(&conditions, ConditionType::Ready, 4));
    }

    #[test]
    fn long_messages_are_capped_and_a_capped_repeat_is_a_no_op() {
        let mut conditions = Vec::new();
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        set(
            &mut conditions,
            ConditionType::Ready,
            false,
            "Invalid",
            &long,
            1,
            1,
        );
        let message = &conditions[0].message;
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(message.ends_with('…'));
        assert!(!set(
            &mut conditions,
            ConditionType::Ready,
            false,
            "Invalid",
            &long,
            1,
            2
        ));
    }

    #[test]
    fn failure_reasons_are_category_names() {
        assert_eq!(failure_reason(Category::RateLimited), "RateLimited");
        let constants = [
            reason::AUTH,
            reason::RATE_LIMITED,
            reason::CONFLICT,
            reason::INVALID,
            reason::NOT_FOUND,
            reason::TRANSIENT,
            reason::INTERNAL,
        ];
        let names: Vec<_> = Category::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(constants.as_slice(), names.as_slice());
        for category in Category::ALL {
            assert_eq!(reason::for_category(category), category.as_str());
        }
    }

    #[test]
    fn chrono_times_convert_exactly() {
        let at_chrono = DateTime::parse_from_rfc3339("2026-11-21T10:20:30.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let time = time_from(at_chrono);
        assert_eq!(time.0.as_second(), at_chrono.timestamp());
        assert_eq!(time.0.subsec_nanosecond(), 500_000_000);
        assert_eq!(
            serde_json::to_value(&time).unwrap(),
            serde_json::json!("2026-11-21T10:20:30Z")
        );
    }
}
