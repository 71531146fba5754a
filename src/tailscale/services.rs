//! Tailscale Services (`svc:<name>`, "VIP services"), their hosts and host approval.
//!
//! spec vs clients: the spec documents `/tailnet/{tailnet}/services…`, while Tailscale's Go
//! client, Terraform provider and k8s operator call `/tailnet/{tailnet}/vip-services…`. We
//! follow the spec.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::client::{ApiRequest, TailscaleClient};
use super::error::Result;
use super::wire::nullable;

const SERVICES: &str = "/tailnet/{tailnet}/services";
const SERVICE: &str = "/tailnet/{tailnet}/services/{serviceName}";
const APPROVAL: &str = "/tailnet/{tailnet}/services/{serviceName}/device/{deviceId}/approved";

/// A Service (the spec's `VIPServiceInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Service {
    /// `svc:<dns-label>`; must not collide with a machine name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// `[IPv4, IPv6]` once allocated. Leave empty to create; an update must repeat the
    /// current addresses (the IPv6 one cannot change).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub comment: String,
    /// e.g. `tcp:443`; only TCP is supported.
    #[serde(deserialize_with = "nullable")]
    pub ports: Vec<String>,
    /// The Service's ACL identity.
    #[serde(deserialize_with = "nullable")]
    pub tags: Vec<String>,
    /// spec vs clients: not in the spec's `VIPServiceInfo`, but the `/vip-services` JSON
    /// carries it and Tailscale's own operator marks ownership with it
    /// (`tailscale.com/owner-references`), so it is read when present and sent when set.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// A device hosting a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceHost {
    #[serde(rename = "stableNodeID", deserialize_with = "nullable")]
    pub stable_node_id: String,
    /// `not-approved`, `approved:auto` or `approved:manual`.
    #[serde(deserialize_with = "nullable")]
    pub approval_level: String,
    /// Configuration state on the host, e.g. `ready`.
    #[serde(deserialize_with = "nullable")]
    pub configured: String,
}

/// Whether a device may host a Service, and whether that came from `autoApprovers`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceApproval {
    #[serde(deserialize_with = "nullable")]
    pub approved: bool,
    #[serde(deserialize_with = "nullable")]
    pub auto_approved: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceList {
    #[serde(default, deserialize_with = "nullable")]
    vip_services: Vec<Service>,
}

#[derive(Deserialize)]
struct HostList {
    #[serde(default, deserialize_with = "nullable")]
    hosts: Vec<ServiceHost>,
}

impl TailscaleClient {
    pub async fn list_services(&self) -> Result<Vec<Service>> {
        Ok(self
            .call_json::<ServiceList>(ApiRequest::get(SERVICES))
            .await?
            .vip_services)
    }

    pub async fn get_service(&self, name: &str) -> Result<Service> {
        self.call_json(ApiRequest::get(SERVICE).param(name)).await
    }

    /// Creates or updates the Service named `service.name` (an upsert). To update an
    /// existing Service, send back its current `addrs`.
    pub async fn put_service(&self, service: &Service) -> Result<Service> {
        let request = ApiRequest::put(SERVICE)
            .param(service.name.as_str())
            .json(service)?;
        self.call_json(request).await
    }

    /// Deletes a Service. One that is already gone (404) is success.
    pub async fn delete_service(&self, name: &str) -> Result<()> {
        self.call_delete(ApiRequest::delete(SERVICE).param(name))
            .await
    }

    /// The devices advertising the Service, with their approval state.
    pub async fn list_service_hosts(&self, name: &str) -> Result<Vec<ServiceHost>> {
        let request =
            ApiRequest::get("/tailnet/{tailnet}/services/{serviceName}/devices").param(name);
        Ok(self.call_json::<HostList>(request).await?.hosts)
    }

    pub async fn get_service_host_approval(
        &self,
        name: &str,
        device_id: &str,
    ) -> Result<ServiceApproval> {
        self.call_json(ApiRequest::get(APPROVAL).param(name).param(device_id))
            .await
    }

    /// Approves (or revokes approval of) a device as a host of the Service.
    pub async fn set_service_host_approval(
        &self,
        name: &str,
        device_id: &str,
        approved: bool,
    ) -> Result<ServiceApproval> {
        let request = ApiRequest::post(APPROVAL)
            .param(name)
            .param(device_id)
            .json(&serde_json::json!({ "approved": approved }))?;
        self.call_json(request).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn services_decode_from_the_list_shape() {
        let list: ServiceList = serde_json::from_value(json!({"vipServices": [{
            "name": "svc:web", "addrs": ["100.100.1.1", "fd7a:115c:a1e0::1"], "comment": "",
            "ports": ["tcp:443"], "tags": ["tag:web"],
            "annotations": {"tailscale.com/owner-references": "{}"}, "newField": 1
        }]}))
        .unwrap();
        let service = &list.vip_services[0];
        assert_eq!(service.addrs.len(), 2);
        assert!(
            service
                .annotations
                .contains_key("tailscale.com/owner-references")
        );
    }

    #[test]
    fn new_services_are_sent_without_addresses_or_annotations() {
        let service = Service {
            name: "svc:web".into(),
            ports: vec!["tcp:443".into()],
            tags: vec!["tag:web".into()],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&service).unwrap(),
            json!({"name": "svc:web", "comment": "", "ports": ["tcp:443"], "tags": ["tag:web"]})
        );
    }

    #[test]
    fn hosts_and_approvals_use_the_spec_names() {
        let hosts: HostList = serde_json::from_value(json!({"hosts": [
            {"stableNodeID": "n1", "approvalLevel": "approved:auto", "configured": "ready"}]}))
        .unwrap();
        assert_eq!(hosts.hosts[0].stable_node_id, "n1");
        let approval: ServiceApproval =
            serde_json::from_value(json!({"approved": true, "autoApproved": true})).unwrap();
        assert!(approval.approved && approval.auto_approved);
    }
}
