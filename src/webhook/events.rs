//! Webhook deliveries: a JSON array of events, and what each event type means for the
//! operator: which snapshot areas to refresh, or a warning to surface.
use serde::Deserialize;
use serde_json::Value;

use crate::snapshot::Area;

/// One event of a delivery.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// When it happened (RFC 3339).
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub version: Value,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub tailnet: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub data: Value,
}

/// What an event asks of the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Re-read this area of the tailnet and wake the resources that read it.
    Refresh(Area),
    /// A device forwards no IP traffic although it routes: a Warning event on the ManagedTailnet.
    ForwardingWarning,
    /// Not an event type the operator knows: counted and ignored.
    Unknown,
}

/// The event types Tailscale sends (reference §8), which the operator knows (their metric
/// label; anything else is `unknown`).
pub const KNOWN: &[&str] = &[
    "policyUpdate",
    "nodeCreated",
    "nodeApproved",
    "nodeNeedsApproval",
    "nodeDeleted",
    "nodeKeyExpiringInOneDay",
    "nodeKeyExpired",
    "nodeSigned",
    "nodeNeedsSignature",
    "userCreated",
    "userNeedsApproval",
    "userSuspended",
    "userRestored",
    "userDeleted",
    "userApproved",
    "userRoleUpdated",
    "subnetIPForwardingNotEnabled",
    "exitNodeIPForwardingNotEnabled",
];

/// The subscriptions a managed endpoint asks for: every event with an effect.
pub fn subscriptions() -> Vec<String> {
    KNOWN.iter().map(|s| s.to_string()).collect()
}

pub fn effect(event_type: &str) -> Effect {
    match event_type {
        "policyUpdate" => Effect::Refresh(Area::Policy),
        "subnetIPForwardingNotEnabled" | "exitNodeIPForwardingNotEnabled" => {
            Effect::ForwardingWarning
        }
        t if t.starts_with("node") && KNOWN.contains(&t) => Effect::Refresh(Area::Devices),
        t if t.starts_with("user") && KNOWN.contains(&t) => Effect::Refresh(Area::Users),
        _ => Effect::Unknown,
    }
}

/// The metric label of an event type: itself when known, else `unknown` (labels stay bounded
/// whatever a sender puts in `type`).
pub fn label(event_type: &str) -> &str {
    KNOWN
        .iter()
        .find(|k| **k == event_type)
        .copied()
        .unwrap_or("unknown")
}

/// Parses a delivery body: a JSON array of events (a single object is taken as one event).
pub fn parse(body: &[u8]) -> Result<Vec<Event>, serde_json::Error> {
    let value: Value = serde_json::from_slice(body)?;
    match value {
        Value::Array(_) => serde_json::from_value(value),
        object => Ok(vec![serde_json::from_value(object)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_map_to_areas_and_unknown_ones_are_ignored() {
        assert_eq!(effect("policyUpdate"), Effect::Refresh(Area::Policy));
        assert_eq!(effect("nodeCreated"), Effect::Refresh(Area::Devices));
        assert_eq!(effect("nodeKeyExpired"), Effect::Refresh(Area::Devices));
        assert_eq!(effect("userRoleUpdated"), Effect::Refresh(Area::Users));
        assert_eq!(
            effect("exitNodeIPForwardingNotEnabled"),
            Effect::ForwardingWarning
        );
        assert_eq!(effect("nodeTeleported"), Effect::Unknown);
        assert_eq!(label("nodeTeleported"), "unknown");
        assert_eq!(label("nodeCreated"), "nodeCreated");
    }

    #[test]
    fn a_delivery_is_an_array_of_events() {
        let body = br#"[{"timestamp":"2026-12-06T12:00:00Z","version":1,"type":"policyUpdate",
            "tailnet":"example.com","message":"Tailnet policy file updated","data":{"actor":"x"}},
            {"type":"nodeCreated"}]"#;
        let events = parse(body).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].type_, "policyUpdate");
        assert_eq!(events[1].timestamp, "");
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"[{"no":"type"}]"#).is_err());
    }
}
