//! Devices: list, inspect, delete, tag, authorize, key expiry and subnet routes.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::{ApiRequest, TailscaleClient};
use super::error::Result;
use super::wire::{nullable, timestamp};

/// A device (node) as the API returns it. Every field is optional on the wire: absent
/// fields take their default, `null` lists are empty, and unset timestamps (`""`, missing)
/// are `None`. Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Device {
    /// One 100.x IPv4 and one fd7a:115c:a1e0::/48 IPv6 address.
    #[serde(deserialize_with = "nullable")]
    pub addresses: Vec<String>,
    /// Legacy numeric id; prefer `node_id`.
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub node_id: String,
    /// The registering user; the owner unless tagged.
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// MagicDNS FQDN, e.g. `host.tailXXXX.ts.net`.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Machine name.
    #[serde(deserialize_with = "nullable")]
    pub hostname: String,
    #[serde(deserialize_with = "nullable")]
    pub client_version: String,
    #[serde(deserialize_with = "nullable")]
    pub update_available: bool,
    #[serde(deserialize_with = "nullable")]
    pub os: String,
    /// Empty for devices shared in from another tailnet.
    #[serde(with = "timestamp", skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "nullable")]
    pub connected_to_control: bool,
    /// Omitted while `connected_to_control` is true.
    #[serde(with = "timestamp", skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "nullable")]
    pub key_expiry_disabled: bool,
    /// Node-key expiry.
    #[serde(with = "timestamp", skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "nullable")]
    pub authorized: bool,
    #[serde(deserialize_with = "nullable")]
    pub is_external: bool,
    /// Present (true) only while several live connections share one node key.
    #[serde(deserialize_with = "nullable")]
    pub multiple_connections: bool,
    #[serde(deserialize_with = "nullable")]
    pub machine_key: String,
    #[serde(deserialize_with = "nullable")]
    pub node_key: String,
    /// Shields-up.
    #[serde(deserialize_with = "nullable")]
    pub blocks_incoming_connections: bool,
    /// Only with `fields=all`; `None` means "not requested", not "none enabled".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_routes: Option<Vec<String>>,
    /// Only with `fields=all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_routes: Option<Vec<String>>,
    /// Only with `fields=all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_connectivity: Option<ClientConnectivity>,
    #[serde(deserialize_with = "nullable")]
    pub tags: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub tailnet_lock_error: String,
    #[serde(deserialize_with = "nullable")]
    pub tailnet_lock_key: String,
    /// Only with `fields=all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_enabled: Option<bool>,
    /// Only with `fields=all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posture_identity: Option<PostureIdentity>,
    #[serde(deserialize_with = "nullable")]
    pub is_ephemeral: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro: Option<Distro>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientConnectivity {
    #[serde(deserialize_with = "nullable")]
    pub endpoints: Vec<String>,
    #[serde(
        rename = "mappingVariesByDestIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub mapping_varies_by_dest_ip: Option<bool>,
    /// DERP region name to measured latency.
    #[serde(deserialize_with = "nullable")]
    pub latency: BTreeMap<String, DerpLatency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_supports: Option<ClientSupports>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DerpLatency {
    #[serde(deserialize_with = "nullable")]
    pub preferred: bool,
    #[serde(deserialize_with = "nullable")]
    pub latency_ms: f64,
}

/// `None` means unknown (the client has not reported it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientSupports {
    pub hair_pinning: Option<bool>,
    pub ipv6: Option<bool>,
    pub pcp: Option<bool>,
    pub pmp: Option<bool>,
    pub udp: Option<bool>,
    pub upnp: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PostureIdentity {
    #[serde(deserialize_with = "nullable")]
    pub serial_numbers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Distro {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub version: String,
    #[serde(deserialize_with = "nullable")]
    pub code_name: String,
}

/// A device's subnet routes: what it advertises and which of those are enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceRoutes {
    #[serde(deserialize_with = "nullable")]
    pub advertised_routes: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub enabled_routes: Vec<String>,
}

/// Options for [`TailscaleClient::list_devices`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceListOptions {
    /// `fields=all`: include routes, connectivity, posture identity and SSH state.
    pub all_fields: bool,
    /// Server-side filters as `<field>=<value>` query parameters: exact matches on top-level
    /// scalar or list fields, ANDed (e.g. `("tags", "tag:a")`, `("hostname", "web-1")`).
    pub filters: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct DeviceList {
    #[serde(default, deserialize_with = "nullable")]
    devices: Vec<Device>,
}

impl TailscaleClient {
    /// All devices of the tailnet (the API does not paginate).
    ///
    /// Sharp edge: some tailnets with devices shared in from other tailnets have been reported
    /// (tailscale#21721, unverified against the real API) to answer 404 to `fields=all` while
    /// the default fields work. A 404 to `fields=all` is therefore retried once with the
    /// default fields, and [`TailscaleClient::devices_lack_details`] says so until a later
    /// `fields=all` list succeeds.
    pub async fn list_devices(&self, options: &DeviceListOptions) -> Result<Vec<Device>> {
        let request = |all_fields: bool| {
            let mut request =
                with_fields(ApiRequest::get("/tailnet/{tailnet}/devices"), all_fields);
            for (name, value) in &options.filters {
                request = request.query(name.as_str(), value.as_str());
            }
            request
        };
        match self
            .call_json::<DeviceList>(request(options.all_fields))
            .await
        {
            Ok(list) => {
                if options.all_fields {
                    self.set_devices_lack_details(false);
                }
                Ok(list.devices)
            }
            Err(err) if options.all_fields && err.status == Some(404) => {
                tracing::warn!(
                    "GET /devices?fields=all answered 404 (seen on tailnets with shared-in \
                     devices); listing the default fields: connectivity details are missing"
                );
                let list = self.call_json::<DeviceList>(request(false)).await?;
                self.set_devices_lack_details(true);
                Ok(list.devices)
            }
            Err(err) => Err(err),
        }
    }

    /// One device by node id (preferred) or legacy numeric id.
    pub async fn get_device(&self, id: &str, all_fields: bool) -> Result<Device> {
        let request = with_fields(ApiRequest::get("/device/{deviceId}").param(id), all_fields);
        self.call_json(request).await
    }

    /// Removes a device from the tailnet. A device that is already gone (404) is success.
    pub async fn delete_device(&self, id: &str) -> Result<()> {
        self.call_delete(ApiRequest::delete("/device/{deviceId}").param(id))
            .await
    }

    /// Replaces the device's tag set (an empty slice removes all tags).
    pub async fn set_device_tags(&self, id: &str, tags: &[String]) -> Result<()> {
        let body = serde_json::json!({ "tags": tags });
        self.call_empty(
            ApiRequest::post("/device/{deviceId}/tags")
                .param(id)
                .json(&body)?,
        )
        .await
    }

    /// Authorizes (`true`) or de-authorizes (`false`) a device.
    pub async fn set_device_authorized(&self, id: &str, authorized: bool) -> Result<()> {
        let body = serde_json::json!({ "authorized": authorized });
        self.call_empty(
            ApiRequest::post("/device/{deviceId}/authorized")
                .param(id)
                .json(&body)?,
        )
        .await
    }

    /// Disables or re-enables node-key expiry. Re-enabling restores the original expiry time,
    /// which may already have passed.
    pub async fn set_device_key_expiry_disabled(&self, id: &str, disabled: bool) -> Result<()> {
        let body = serde_json::json!({ "keyExpiryDisabled": disabled });
        self.call_empty(
            ApiRequest::post("/device/{deviceId}/key")
                .param(id)
                .json(&body)?,
        )
        .await
    }

    pub async fn get_device_routes(&self, id: &str) -> Result<DeviceRoutes> {
        self.call_json(ApiRequest::get("/device/{deviceId}/routes").param(id))
            .await
    }

    /// Replaces the set of enabled routes (exit node: `0.0.0.0/0` and `::/0`). Routes the
    /// device does not advertise yet may be enabled; they take effect once it does.
    pub async fn set_device_routes(&self, id: &str, routes: &[String]) -> Result<DeviceRoutes> {
        let body = serde_json::json!({ "routes": routes });
        self.call_json(
            ApiRequest::post("/device/{deviceId}/routes")
                .param(id)
                .json(&body)?,
        )
        .await
    }

    /// Expires the device's node key: it must re-authenticate.
    pub async fn expire_device_key(&self, id: &str) -> Result<()> {
        self.call_empty(ApiRequest::post("/device/{deviceId}/expire").param(id))
            .await
    }
}

fn with_fields(request: ApiRequest, all_fields: bool) -> ApiRequest {
    if all_fields {
        request.query("fields", "all")
    } else {
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a real `fields=all` answer, with the quirks: an empty `created` (external
    /// device), no `lastSeen` (connected), `null` lists and fields this client does not know.
    const DEVICE_JSON: &str = r#"{
        "addresses": ["100.87.74.78", "fd7a:115c:a1e0:ac82:4843:ca90:697d:c36e"],
        "id": "92960230385",
        "nodeId": "n292kg92CNTRL",
        "user": "amelie@example.com",
        "name": "pangolin.tailfe8c.ts.net",
        "hostname": "pangolin",
        "clientVersion": "v1.36.0",
        "updateAvailable": false,
        "os": "linux",
        "created": "",
        "connectedToControl": true,
        "keyExpiryDisabled": true,
        "expires": "0001-01-01T00:00:00Z",
        "authorized": true,
        "isExternal": true,
        "machineKey": "",
        "nodeKey": "nodekey:01234567890abcdef",
        "blocksIncomingConnections": false,
        "enabledRoutes": ["10.0.0.0/16"],
        "advertisedRoutes": ["10.0.0.0/16", "192.168.1.0/24"],
        "clientConnectivity": {
            "endpoints": ["199.9.14.201:59128"],
            "mappingVariesByDestIP": false,
            "latency": {"New York City": {"preferred": true, "latencyMs": 31.3}},
            "clientSupports": {"hairPinning": null, "ipv6": false, "udp": true}
        },
        "tags": null,
        "tailnetLockError": "",
        "tailnetLockKey": "tlpub:abc",
        "sshEnabled": true,
        "postureIdentity": {"serialNumbers": ["CP74LFQJXM"], "disabled": null},
        "isEphemeral": false,
        "distro": {"name": "ubuntu", "version": "25.04", "codeName": "Plucky Puffin"},
        "someFutureField": {"nested": [1, 2, 3]}
    }"#;

    #[test]
    fn deserializes_a_realistic_device() {
        let device: Device = serde_json::from_str(DEVICE_JSON).unwrap();
        assert_eq!(device.node_id, "n292kg92CNTRL");
        assert_eq!(device.addresses.len(), 2);
        assert_eq!(device.created, None);
        assert_eq!(device.last_seen, None);
        assert_eq!(device.expires, None);
        assert!(device.tags.is_empty());
        assert!(device.authorized && device.is_external && device.key_expiry_disabled);
        assert_eq!(
            device.enabled_routes.as_deref(),
            Some(&["10.0.0.0/16".to_owned()][..])
        );
        let connectivity = device.client_connectivity.as_ref().unwrap();
        assert_eq!(connectivity.mapping_varies_by_dest_ip, Some(false));
        assert!(connectivity.latency["New York City"].preferred);
        let supports = connectivity.client_supports.as_ref().unwrap();
        assert_eq!(
            (supports.hair_pinning, supports.udp, supports.pcp),
            (None, Some(true), None)
        );
        assert_eq!(device.ssh_enabled, Some(true));
        assert_eq!(
            device.posture_identity.unwrap().serial_numbers,
            ["CP74LFQJXM"]
        );
        assert_eq!(device.distro.unwrap().code_name, "Plucky Puffin");
    }

    #[test]
    fn default_field_set_leaves_all_only_fields_unset() {
        let json = r#"{"nodeId":"n1","hostname":"h","created":"2022-12-01T05:23:30Z",
                       "lastSeen":"2022-12-01T05:23:30Z","tags":["tag:web"]}"#;
        let device: Device = serde_json::from_str(json).unwrap();
        assert_eq!(
            device.created.unwrap().to_rfc3339(),
            "2022-12-01T05:23:30+00:00"
        );
        assert_eq!(device.last_seen, device.created);
        assert_eq!(device.enabled_routes, None);
        assert_eq!(device.client_connectivity, None);
        assert_eq!(device.tags, ["tag:web"]);
    }

    #[test]
    fn serializes_with_the_spec_field_names() {
        let device: Device = serde_json::from_str(DEVICE_JSON).unwrap();
        let json = serde_json::to_value(&device).unwrap();
        assert_eq!(json["nodeId"], "n292kg92CNTRL");
        assert_eq!(json["clientConnectivity"]["mappingVariesByDestIP"], false);
        assert_eq!(
            json["clientConnectivity"]["latency"]["New York City"]["latencyMs"],
            31.3
        );
        assert!(json.get("created").is_none());
        let back: Device = serde_json::from_value(json).unwrap();
        assert_eq!(back, device);
    }

    #[test]
    fn device_lists_tolerate_null() {
        let list: DeviceList = serde_json::from_str(r#"{"devices": null}"#).unwrap();
        assert!(list.devices.is_empty());
        let routes: DeviceRoutes =
            serde_json::from_str(r#"{"advertisedRoutes":null,"enabledRoutes":["10.0.0.0/8"]}"#)
                .unwrap();
        assert!(routes.advertised_routes.is_empty());
        assert_eq!(routes.enabled_routes, ["10.0.0.0/8"]);
    }
}
