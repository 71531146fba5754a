//! `TailscaleService`: a Tailscale Service (`svc:<name>`, a VIP service) declared as a resource
//! (`docs/tailscale-service.md`): its ports, tags and comment, which devices may host it, and
//! who may reach it (a grant contributed to the tailnet policy). Namespaced, like the cluster
//! Services it usually fronts.
//!
//! Ownership is explicit: the operator marks the services it creates (annotation
//! [`OWNER_ANNOTATION`] on the Tailscale Service), never touches a service Tailscale's own
//! operator owns ([`TAILSCALE_OPERATOR_ANNOTATION`]), and takes over an existing unmarked one
//! only with `spec.adopt: true`.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus};
use super::device_tag_set::{DeviceSelector, MAX_LIST_ITEMS};
use super::dns_config::IPV4_PATTERN;
use super::drift::DriftDiff;

/// The annotation on a Tailscale Service naming the `TailscaleService` (`namespace/name`) that
/// manages it.
pub const OWNER_ANNOTATION: &str = "tailnet.ops.dev/owner";
/// The annotation Tailscale's own Kubernetes operator puts on the services it manages: such a
/// service is never changed or deleted by this operator.
pub const TAILSCALE_OPERATOR_ANNOTATION: &str = "tailscale.com/owner-references";
/// A service name: `svc:` and a DNS label.
pub const SERVICE_NAME_PATTERN: &str = "^svc:[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// A service port: `tcp:N` or `tcp:N-M` (Tailscale Services carry only TCP).
pub const SERVICE_PORT_PATTERN: &str = "^tcp:[0-9]{1,5}(-[0-9]{1,5})?$";
/// A principal allowed in `accessFrom`.
// No backslashes: the pattern sits in a CEL string literal, where `\s` is not an escape.
pub const PRINCIPAL_PATTERN: &str =
    "^(group:[^ ]+|tag:[a-z0-9-]+|autogroup:[a-z-]+|[^ :@]+@[^ :@]+|[*])$";
/// At most this many hosts are listed in status (the counts are always exact).
pub const MAX_LISTED_HOSTS: usize = 50;

/// A Tailscale Service (`svc:<name>`): ports, tags and comment, the devices allowed to host it
/// and who may reach it.
// kube's `printcolumn(...)` repeats `name`/`type_` per column, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "tailnet.ops.dev",
    version = "v1alpha1",
    kind = "TailscaleService",
    plural = "tailscaleservices",
    shortname = "tnsvc",
    category = "tailnetops",
    namespaced,
    status = "TailscaleServiceStatus",
    derive = "PartialEq",
    doc = "A Tailscale Service (svc:<name>, a VIP service): ports, tags and comment; the devices allowed to host it (matching hosts that advertise it are approved); optionally who may reach it, as a grant contributed to the tailnet policy. Never changes a service owned by Tailscale's own operator; takes over an existing unmarked service only with spec.adopt.",
    printcolumn(
        name = "Service",
        type_ = "string",
        json_path = ".status.serviceName",
        description = "The Tailscale Service (svc:<name>)"
    ),
    printcolumn(
        name = "Address",
        type_ = "string",
        json_path = ".status.addresses[0]",
        description = "The service's IPv4 address in the tailnet"
    ),
    printcolumn(
        name = "Hosts",
        type_ = "string",
        json_path = ".status.hostsReady",
        description = "Approved and configured hosts / hosts advertising the service"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the service matches and an approved host serves it"
    ),
    printcolumn(
        name = "Drifted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Drifted\")].status",
        description = "Whether the service or a host approval was changed outside the operator"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1,
        description = "The Ready condition's reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.autoApprove) || !self.autoApprove || (has(self.hosts.tags) && size(self.hosts.tags) > 0)",
    "message": "autoApprove needs hosts.tags: autoApprovers.services approves the tags named there",
}, {
    "rule": "!has(self.accessPorts) || size(self.accessPorts) == 0 || (has(self.accessFrom) && size(self.accessFrom) > 0)",
    "message": "accessPorts needs accessFrom: name who may reach the service on those ports",
}]))]
pub struct TailscaleServiceSpec {
    #[serde(flatten)]
    pub common: CommonSpec,

    /// The Tailscale Service, `svc:<dns-label>` (e.g. `svc:grafana`). Defaults to `svc:`
    /// followed by `metadata.name`. Must not be a machine name of the tailnet. Immutable in
    /// effect: a new name is a new service (the old one is removed per `deletionPolicy` only
    /// when this resource is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 67), regex(pattern = SERVICE_NAME_PATTERN))]
    pub service_name: Option<String>,

    /// The TCP ports the service serves, `tcp:443` or a range `tcp:8000-8010`.
    #[schemars(length(min = 1, max = MAX_LIST_ITEMS), inner(length(max = 16)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": format!("self.all(p, p.matches('{SERVICE_PORT_PATTERN}'))"),
        "message": "ports must look like tcp:443 or tcp:8000-8010 (Tailscale Services carry only TCP)",
    }]))]
    pub ports: Vec<String>,

    /// The service's identity in the policy, e.g. `tag:web`. Each must be defined in the
    /// policy's `tagOwners`.
    #[serde(default)]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = 128)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(t, t.matches('^tag:[a-z0-9-]+$'))",
        "message": "tags must look like tag:name (lower-case letters, digits and dashes after `tag:`)",
    }]))]
    pub tags: Vec<String>,

    /// Shown in the admin console.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub comment: String,

    /// Pin the service's IPv4 address (e.g. `100.100.100.10`, inside the tailnet's range).
    /// Unset: Tailscale allocates one. The IPv6 address is always Tailscale's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 15), regex(pattern = IPV4_PATTERN))]
    pub address: Option<String>,

    /// The devices allowed to host the service (the selector of a DeviceTagSet). Matching
    /// devices that advertise the service are approved as its hosts.
    pub hosts: DeviceSelector,

    /// `Add` (default): matching hosts are approved; advertising hosts that do not match are
    /// left as they are. `Exact`: approval of advertising hosts that do not match is revoked.
    #[serde(default)]
    pub host_approval: HostApproval,

    /// Who may reach the service (users, `group:`, `tag:`, `autogroup:` principals): a grant
    /// to `svc:<name>` contributed to the tailnet policy (composed by the Base TailnetPolicy).
    /// Groups and tags named here must be defined in the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(min = 1, max = 320)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": format!("self.all(p, p.matches('{PRINCIPAL_PATTERN}'))"),
        "message": "accessFrom entries must be a user (alice@example.com), group:name, tag:name, autogroup:name or *",
    }]))]
    pub access_from: Vec<String>,

    /// The ports `accessFrom` may reach, as in `ports`. Unset: every port of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = 16)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": format!("self.all(p, p.matches('{SERVICE_PORT_PATTERN}'))"),
        "message": "accessPorts must look like tcp:443 or tcp:8000-8010",
    }]))]
    pub access_ports: Vec<String>,

    /// Contribute `autoApprovers.services` for `hosts.tags` to the tailnet policy, so devices
    /// with those tags are approved as hosts by Tailscale itself (`approved:auto`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_approve: bool,

    /// Take over an existing service that no TailscaleService manages yet (it is marked as
    /// this resource's from then on). Without it such a service is a `Conflict`. Never takes a
    /// service owned by Tailscale's own operator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// How host approval treats advertising devices the selector does not match.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HostApproval {
    /// Approve matching hosts; leave the others as they are.
    #[default]
    Add,
    /// Approve matching hosts; revoke the approval of the others.
    Exact,
}

/// What the operator found and did at the last reconcile. Never carries secrets.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TailscaleServiceStatus {
    /// Conditions, observed generation and last sync time, as every kind has them.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The Tailscale Service this resource manages (`svc:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The service's addresses in the tailnet: IPv4, then IPv6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// `ready/total`: hosts approved and configured / hosts advertising the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts_ready: Option<String>,
    /// The hosts advertising the service, at most 50 (by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<ServiceHostStatus>,
    /// The entries this resource contributes to the tailnet policy, one JSON line each
    /// (`grants: {...}`, `autoApprovers.services: {...}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<String>,
    /// What was last applied (written, or found already in place): drift is the live service
    /// differing from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedService>,
    /// How the live service differs from what was applied (set while `Drifted` is True).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftDiff>,
}

/// One host of the service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceHostStatus {
    /// The device's `nodeId`.
    pub node_id: String,
    /// The device's machine name (empty when the device is not in the tailnet's list).
    pub name: String,
    /// `not-approved`, `approved:auto` or `approved:manual`, as last read or written.
    pub approval_level: String,
    /// The host's configuration state, e.g. `ready`.
    pub configured: String,
    /// Whether `spec.hosts` matches the device.
    pub selected: bool,
}

/// The service as last applied.
///
/// Fields default to empty: server-side apply keeps a dropped field's parent as `{}` (see
/// [`TailscaleServiceStatus::normalized`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct AppliedService {
    pub service_name: String,
    pub ports: Vec<String>,
    pub tags: Vec<String>,
    pub comment: String,
    /// The IPv4 address, when pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Hosts (node ids) whose approval this resource set or found as wanted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approved_hosts: Vec<String>,
    /// Hosts whose approval this resource revoked or found revoked (`hostApproval: Exact`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unapproved_hosts: Vec<String>,
}

impl TailscaleServiceStatus {
    /// The status with the empty objects server-side apply leaves behind read as absent.
    pub fn normalized(mut self) -> TailscaleServiceStatus {
        self.drift = self.drift.filter(|d| !d.is_empty());
        self.applied = self.applied.filter(|a| !a.service_name.is_empty());
        self
    }
}

impl TailscaleService {
    /// The Tailscale Service this resource names: `spec.serviceName`, else `svc:<name>`.
    pub fn service_name(&self) -> String {
        self.spec
            .service_name
            .clone()
            .unwrap_or_else(|| format!("svc:{}", self.metadata.name.as_deref().unwrap_or_default()))
    }

    /// `namespace/name`: what the ownership annotation holds.
    pub fn owner_key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

super::tailnet_scoped_kind!(
    TailscaleService,
    TailscaleServiceStatus,
    DeleteByDefault,
    normalized
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> TailscaleService {
        serde_json::from_value(json!({
            "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "TailscaleService",
            "metadata": {"name": "grafana", "namespace": "monitoring"},
            "spec": value,
        }))
        .unwrap()
    }

    #[test]
    fn the_service_name_defaults_from_the_resource_name() {
        let svc = service(json!({"ports": ["tcp:443"], "hosts": {"tags": ["tag:monitoring"]}}));
        assert_eq!(svc.service_name(), "svc:grafana");
        assert_eq!(svc.owner_key(), "monitoring/grafana");
        assert_eq!(svc.spec.host_approval, HostApproval::Add);
        let named = service(json!({"serviceName": "svc:dash", "ports": ["tcp:443"],
            "hosts": {"tags": ["tag:monitoring"]}}));
        assert_eq!(named.service_name(), "svc:dash");
    }

    #[test]
    fn empty_objects_left_by_server_side_apply_read_as_absent() {
        let status: TailscaleServiceStatus =
            serde_json::from_value(json!({"drift": {}, "applied": {}})).unwrap();
        assert_eq!(status.normalized(), TailscaleServiceStatus::default());
    }
}
