//! The [`TailnetView`] the access evaluator works on, built from the devices and users
//! snapshots, so the planner stays free of API types beyond these two lists.
use crate::policy::access::{DeviceView, ServiceView, TailnetView};
use crate::tailscale::{Device, User};

/// Users by login name, devices with their Tailscale addresses, owner, owner's role and tags.
/// Addresses the API sends that are not IPs are skipped (the evaluator matches addresses only).
/// Tailscale Services are added by [`with_services`] where they have been read.
pub fn tailnet_view(devices: &[Device], users: &[User]) -> TailnetView {
    let roles: std::collections::HashMap<&str, &str> = users
        .iter()
        .map(|u| (u.login_name.as_str(), u.role.as_str()))
        .collect();
    TailnetView {
        users: users.iter().map(|u| u.login_name.clone()).collect(),
        devices: devices
            .iter()
            .map(|d| DeviceView {
                hostname: d.hostname.clone(),
                addresses: d.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                user: d.user.clone(),
                tags: d.tags.clone(),
                role: roles.get(d.user.as_str()).copied().unwrap_or("").to_owned(),
            })
            .collect(),
        services: Vec::new(),
    }
}

/// `view` with the tailnet's Tailscale Services, for `svc:` destinations.
pub fn with_services(mut view: TailnetView, services: &[crate::tailscale::Service]) -> TailnetView {
    view.services = services
        .iter()
        .map(|s| ServiceView {
            name: s.name.clone(),
            addresses: s.addrs.iter().filter_map(|a| a.parse().ok()).collect(),
        })
        .collect();
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_keep_owner_tags_and_parsable_addresses() {
        let device = Device {
            hostname: "web".into(),
            addresses: vec!["100.64.0.1".into(), "not-an-ip".into()],
            user: "alice@example.com".into(),
            tags: vec!["tag:server".into()],
            ..Device::default()
        };
        let user = User {
            login_name: "alice@example.com".into(),
            ..User::default()
        };
        let view = tailnet_view(&[device], &[user]);
        assert_eq!(view.users, vec!["alice@example.com"]);
        assert_eq!(view.devices[0].addresses.len(), 1);
        assert_eq!(view.devices[0].tags, vec!["tag:server"]);
    }
}
