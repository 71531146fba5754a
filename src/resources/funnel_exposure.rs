//! `FunnelExposure`: a cluster Service on the public internet through Tailscale Funnel, for a
//! set time (`docs/funnel.md`). The operator checks the tailnet's prerequisites, contributes the
//! `funnel` node attribute for the proxy tag to the policy, mints a single-use key, runs a
//! `tailscale/tailscale` proxy Deployment whose serve config allows Funnel, and records the
//! proxy device and the public URL; at the end of the window (or on deletion) it undoes all of
//! it. Namespaced: the proxy runs beside the Service it exposes.
//!
//! Key material never appears in the resource: status carries the key id only.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus};
use super::device_tag_set::MAX_LIST_ITEMS;
use super::drift::DriftDiff;

/// The proxy tag when `spec.tags` is empty: a tag of its own, so the `funnel` node attribute
/// reaches only Funnel proxies (never, say, every `tag:k8s` proxy of Tailscale's operator).
pub const DEFAULT_PROXY_TAG: &str = "tag:funnel";
/// The proxy image when `spec.proxy.image` is unset.
pub const DEFAULT_PROXY_IMAGE: &str = "tailscale/tailscale:stable";
/// The ports Funnel accepts.
pub const FUNNEL_PORTS: [u16; 3] = [443, 8443, 10000];

/// A Service exposed publicly through Funnel for a time window.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "tailnet.ops.dev",
    version = "v1alpha1",
    kind = "FunnelExposure",
    plural = "funnelexposures",
    shortname = "tnfunnel",
    category = "tailnetops",
    namespaced,
    status = "FunnelExposureStatus",
    derive = "PartialEq",
    doc = "A Service of this namespace on the public internet through Tailscale Funnel, for a time window: tailnet prerequisites checked, the funnel node attribute contributed to the policy, a single-use key minted, a tailscale proxy Deployment run, the public URL recorded; at the end of the window (or on deletion) every step is undone.",
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        description = "The public URL"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Scheduled, Provisioning, Active, Expired or Failed"
    ),
    printcolumn(
        name = "Expires",
        type_ = "date",
        json_path = ".status.expires",
        description = "When the exposure ends"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the exposure is in the state its window asks for"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.activeWindow) && has(self.expiresAt))",
    "message": "set activeWindow or expiresAt, not both",
}, {
    "rule": "!has(self.activeWindow) || timestamp(self.activeWindow.start) < timestamp(self.activeWindow.end)",
    "message": "activeWindow.start must be before activeWindow.end",
}]))]
pub struct FunnelExposureSpec {
    #[serde(flatten)]
    pub common: CommonSpec,

    /// The Service of this namespace to expose.
    pub service: ServiceTarget,

    /// The proxy's machine name in the tailnet; the public URL is
    /// `https://<hostname>.<tailnet>.ts.net[:publicPort]`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub hostname: String,

    /// The public port: 443 (default), 8443 or 10000, the ports Funnel allows.
    #[serde(default = "default_public_port")]
    #[schemars(extend("enum" = [443, 8443, 10000]))]
    pub public_port: u16,

    /// The proxy device's tags. Default `tag:funnel`. Each must be owned in the policy's
    /// tagOwners by the operator's credential; the `funnel` node attribute is granted to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = 128)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(t, t.matches('^tag:[a-z0-9-]+$'))",
        "message": "tags must look like tag:name",
    }]))]
    pub tags: Vec<String>,

    /// Path prefix → port of the Service, e.g. `{"/": 8080, "/api": 9090}`. Default: `/` to
    /// `service.port`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(p, p.startsWith('/'))",
        "message": "paths must start with /",
    }]))]
    pub paths: BTreeMap<String, u16>,

    /// Exposed from `start` until `end` (RFC 3339). Before `start` nothing is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_window: Option<ActiveWindow>,

    /// Exposed from now until this time (RFC 3339). Without it or `activeWindow` the exposure
    /// has no end: an alert fires when one stays up for days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub expires_at: Option<String>,

    /// The proxy Deployment's settings.
    #[serde(default)]
    pub proxy: ProxySpec,
}

/// A Service and port of the exposure's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTarget {
    /// The Service's name.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The Service port traffic goes to.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

/// A time window (RFC 3339 timestamps).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ActiveWindow {
    /// When the exposure starts.
    #[schemars(length(max = 64))]
    pub start: String,
    /// When it ends and everything is torn down.
    #[schemars(length(max = 64))]
    pub end: String,
}

/// How the proxy runs.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// The image. Default `tailscale/tailscale:stable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Requests and limits of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector of the proxy pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the proxy pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// Where the exposure is in its life.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Before the window: nothing deployed.
    #[default]
    Scheduled,
    /// In the window, steps under way (prerequisites, policy, key, proxy, device).
    Provisioning,
    /// The proxy device is in the tailnet; the URL is public.
    Active,
    /// After the window: everything torn down.
    Expired,
    /// A step failed; what earlier steps did was undone. Retried with back-off.
    Failed,
}

impl Phase {
    /// Whether the tailnet side is (being) set up: the policy then carries the node attribute.
    pub fn exposes(self) -> bool {
        matches!(self, Phase::Provisioning | Phase::Active)
    }
}

/// One prerequisite and whether it holds.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Prerequisite {
    /// `httpsEnabled`, `magicDNS`, `tagOwners`, `service`.
    pub name: String,
    /// Whether it holds.
    pub met: bool,
    /// What was found, and the fix when it does not hold.
    pub message: String,
}

/// The proxy device.
///
/// Fields default to empty: server-side apply keeps a dropped field's parent as `{}`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyDevice {
    /// The device id.
    pub id: String,
    /// Its MagicDNS name (`<machine>.<tailnet>.ts.net`).
    pub name: String,
}

/// What the exposure is doing. Key ids only, never key material.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunnelExposureStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Scheduled, Provisioning, Active, Expired or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The public URL, once the proxy device is in the tailnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The proxy device, once it joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<ProxyDevice>,
    /// The id of the auth key minted for the proxy (single-use; revoked once it joined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// When the exposure starts (RFC 3339); absent: as soon as it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<String>,
    /// When the exposure ends (RFC 3339); absent: no end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Since when the Service is public (RFC 3339), while Active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<String>,
    /// The tailnet prerequisites, each with whether it holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prerequisites: Vec<Prerequisite>,
    /// The policy lines this exposure contributes while it exposes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<String>,
    /// Failed attempts in a row (reset once Active); the back-off grows with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    /// After a failure: when the next attempt starts (RFC 3339). A spec change retries at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
    /// A digest of the proxy objects as last applied (they are rewritten only when it changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_digest: Option<String>,
    /// Unused (the proxy objects are rewritten, not diffed); present as in every kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftDiff>,
}

impl FunnelExposureStatus {
    /// Empty objects left by server-side apply read as absent.
    pub fn normalized(mut self) -> FunnelExposureStatus {
        self.drift = self.drift.filter(|d| !d.is_empty());
        self.device = self.device.filter(|d| !d.id.is_empty());
        self
    }
}

fn default_public_port() -> u16 {
    443
}

/// When an exposure is on: from `start` (`None`: already) until `end` (`None`: no end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl FunnelExposure {
    /// The proxy tags: `spec.tags`, or [`DEFAULT_PROXY_TAG`].
    pub fn proxy_tags(&self) -> Vec<String> {
        if self.spec.tags.is_empty() {
            vec![DEFAULT_PROXY_TAG.to_owned()]
        } else {
            self.spec.tags.clone()
        }
    }

    /// `namespace/name`.
    pub fn owner_key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// The window, parsed. An unparsable timestamp names its field.
    pub fn window(&self) -> Result<Window, (&'static str, String)> {
        let parse = |field: &'static str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    (
                        field,
                        format!(
                            "{text:?} is not an RFC 3339 time ({e}); e.g. 2026-12-24T18:00:00Z"
                        ),
                    )
                })
        };
        if let Some(window) = &self.spec.active_window {
            return Ok(Window {
                start: Some(parse("spec.activeWindow.start", &window.start)?),
                end: Some(parse("spec.activeWindow.end", &window.end)?),
            });
        }
        let end = match &self.spec.expires_at {
            Some(text) => Some(parse("spec.expiresAt", text)?),
            None => None,
        };
        Ok(Window { start: None, end })
    }
}

super::tailnet_scoped_kind!(
    FunnelExposure,
    FunnelExposureStatus,
    DeleteByDefault,
    normalized
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exposure(spec: serde_json::Value) -> FunnelExposure {
        let mut spec = spec;
        spec["tailnetRef"] = json!("default");
        spec["service"] = json!({"name": "web", "port": 8080});
        spec["hostname"] = json!("demo");
        FunnelExposure::new("demo", serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn defaults_are_port_443_and_the_funnel_tag() {
        let e = exposure(json!({}));
        assert_eq!(e.spec.public_port, 443);
        assert_eq!(e.proxy_tags(), vec!["tag:funnel"]);
        assert_eq!(
            e.window().unwrap(),
            Window {
                start: None,
                end: None
            }
        );
    }

    #[test]
    fn windows_parse_and_a_bad_time_names_its_field() {
        let e = exposure(json!({"activeWindow": {"start": "2026-12-06T10:00:00Z",
            "end": "2026-12-06T12:00:00+01:00"}}));
        let w = e.window().unwrap();
        assert_eq!(w.end.unwrap().to_rfc3339(), "2026-12-06T11:00:00+00:00");
        let bad = exposure(json!({"expiresAt": "tomorrow"}));
        let (field, message) = bad.window().unwrap_err();
        assert_eq!(field, "spec.expiresAt");
        assert!(message.contains("RFC 3339"), "{message}");
    }
}
