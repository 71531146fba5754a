//! The FunnelExposure planner (pure: no I/O, the clock passed in): where the exposure is in its
//! window, which prerequisites hold, what it contributes to the policy, the key it mints (a
//! KeyRotationPolicy-style [`KeyInput`], so minting, marking and sweeping are the key-rotation
//! code), and the proxy objects it runs (built here as manifests; the controller applies them).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::key_rotation::{KeyInput, marker};
use crate::policy::compose::Contribution;
use crate::resources::funnel_exposure::{
    DEFAULT_PROXY_IMAGE, FunnelExposure, Phase, Prerequisite, ProxyDevice, Window,
};
use crate::resources::key_rotation_policy::{
    KEY_ID_ANNOTATION, KeyRotationPolicySpec, KeyType, SecretKeys,
};
use crate::resources::{ManagedTailnet, TailnetScoped};
use crate::tailscale::{Device, DnsPreferences, TailnetSettings};

/// How long the proxy's auth key lives: long enough for a pod to be scheduled, pull the image
/// and join; it is single-use and revoked once the proxy joined.
pub const KEY_EXPIRY: &str = "1h";
/// The data key of the auth key in its Secret.
pub const AUTH_KEY_FIELD: &str = "authkey";
/// Where the serve config is mounted in the proxy.
pub const SERVE_CONFIG_PATH: &str = "/config/serve.json";
/// Label on every object the exposure creates.
pub const EXPOSURE_LABEL: &str = "tailnet.ops.dev/funnel-exposure";

/// Where `now` is in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// Not yet: nothing is deployed until `start`.
    Before(DateTime<Utc>),
    /// On, until `end` (`None`: no end).
    Open(Option<DateTime<Utc>>),
    /// Over since `end`: everything is torn down.
    Ended(DateTime<Utc>),
}

impl WindowState {
    pub fn at(window: Window, now: DateTime<Utc>) -> WindowState {
        match (window.start, window.end) {
            (Some(start), _) if now < start => WindowState::Before(start),
            (_, Some(end)) if now >= end => WindowState::Ended(end),
            (_, end) => WindowState::Open(end),
        }
    }

    /// The next boundary after `now`, when the controller must look again.
    pub fn next_boundary(self) -> Option<DateTime<Utc>> {
        match self {
            WindowState::Before(start) => Some(start),
            WindowState::Open(end) => end,
            WindowState::Ended(_) => None,
        }
    }
}

/// `FunnelExposure/<namespace>/<name>`, the contribution's source.
pub fn source_name(obj: &FunnelExposure) -> String {
    format!("FunnelExposure/{}", obj.owner_key())
}

/// The `funnel` node attribute for the proxy tags, contributed while the exposure's phase
/// exposes (Provisioning, Active) with every prerequisite met, and it is not being deleted
/// with `deletionPolicy: Delete`.
pub fn contributions(obj: &FunnelExposure) -> Vec<Contribution> {
    let exposes = obj.status.as_ref().is_some_and(|s| {
        s.phase.is_some_and(Phase::exposes) && s.prerequisites.iter().all(|p| p.met)
    });
    let leaving = obj.metadata.deletion_timestamp.is_some() && obj.common().deletes_on_removal();
    if !exposes || leaving {
        return Vec::new();
    }
    vec![node_attr(obj)]
}

/// The node attribute entry itself (shown in plans before the exposure exposes).
pub fn node_attr(obj: &FunnelExposure) -> Contribution {
    Contribution {
        source: source_name(obj),
        section: "nodeAttrs".to_owned(),
        value: json!({"target": obj.proxy_tags(), "attr": ["funnel"]}),
    }
}

/// The contributions of every FunnelExposure of one tailnet, in `namespace/name` order.
pub fn tailnet_contributions<'a>(
    exposures: impl IntoIterator<Item = &'a FunnelExposure>,
) -> Vec<Contribution> {
    let mut exposures: Vec<&FunnelExposure> = exposures.into_iter().collect();
    exposures.sort_by_key(|e| e.owner_key());
    exposures.into_iter().flat_map(contributions).collect()
}

/// Whether the live policy grants `funnel` to every proxy tag.
pub fn policy_grants_funnel(policy: &Value, tags: &[String]) -> bool {
    let attrs = policy
        .get("nodeAttrs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    tags.iter().all(|tag| {
        attrs.iter().any(|entry| {
            let has = |field: &str, want: &str| {
                entry
                    .get(field)
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(want)))
            };
            has("target", tag) && has("attr", "funnel")
        })
    })
}

/// What the live tailnet offers, for [`prerequisites`].
pub struct Tailnet<'a> {
    pub settings: &'a TailnetSettings,
    pub dns: &'a DnsPreferences,
    /// The live policy, parsed.
    pub policy: &'a Value,
    /// The ManagedTailnet (its `spec.settings` says whether HTTPS is being turned on).
    pub connection: Option<&'a ManagedTailnet>,
}

/// HTTPS certificates, MagicDNS and tag ownership, each with what was found and the fix.
pub fn prerequisites(obj: &FunnelExposure, tailnet: &Tailnet<'_>) -> Vec<Prerequisite> {
    let name = obj.tailnet_ref();
    let managed_https = tailnet
        .connection
        .and_then(|t| t.spec.settings.as_ref())
        .and_then(|s| s.https_enabled);
    let https = match (tailnet.settings.https_enabled, managed_https) {
        (Some(true), _) => met("httpsEnabled", "HTTPS certificates are enabled"),
        (_, Some(true)) => unmet(
            "httpsEnabled",
            format!(
                "HTTPS certificates are off; ManagedTailnet {name} sets spec.settings.httpsEnabled: \
                 true, waiting for it to be applied"
            ),
        ),
        _ => unmet(
            "httpsEnabled",
            format!(
                "HTTPS certificates are off: set spec.settings.httpsEnabled: true on ManagedTailnet \
                 {name} (its credential needs the networking_settings scope), or enable HTTPS in \
                 the admin console (DNS → HTTPS Certificates)"
            ),
        ),
    };
    let magic_dns = if tailnet.dns.magic_dns {
        met("magicDNS", "MagicDNS is on")
    } else {
        unmet(
            "magicDNS",
            "MagicDNS is off (HTTPS certificates need it): set spec.magicDNS: true in the \
             tailnet's DNSConfig, or turn it on in the admin console",
        )
    };
    let owners = tailnet.policy.get("tagOwners").and_then(Value::as_object);
    let unowned: Vec<String> = obj
        .proxy_tags()
        .into_iter()
        .filter(|tag| owners.is_none_or(|o| !o.contains_key(tag)))
        .collect();
    let tags = if unowned.is_empty() {
        met("tagOwners", "the proxy tags are in tagOwners")
    } else {
        unmet(
            "tagOwners",
            format!(
                "{} not in the policy's tagOwners: add {} to the Base TailnetPolicy's tagOwners, \
                 owned by the operator's credential (e.g. [\"tag:k8s-operator\"])",
                unowned.join(", "),
                if unowned.len() == 1 { "it" } else { "them" }
            ),
        )
    };
    vec![https, magic_dns, tags]
}

fn met(name: &str, message: &str) -> Prerequisite {
    Prerequisite {
        name: name.to_owned(),
        met: true,
        message: message.to_owned(),
    }
}

fn unmet(name: &str, message: impl Into<String>) -> Prerequisite {
    Prerequisite {
        name: name.to_owned(),
        met: false,
        message: message.into(),
    }
}

/// The key the proxy joins with, as a KeyRotationPolicy input: single-use, pre-authorized,
/// tagged, short-lived, marked with this exposure's marker (so a sweep finds every key it
/// ever minted, including one minted just before a crash).
pub fn key_input(obj: &FunnelExposure, scope: &str) -> KeyInput {
    let key = format!("funnel/{}", obj.owner_key());
    KeyInput {
        marker: marker(scope, &key),
        key,
        generation: obj.metadata.generation,
        spec: KeyRotationPolicySpec {
            key_type: KeyType::Auth,
            reusable: false,
            ephemeral: false,
            preauthorized: true,
            tags: obj.proxy_tags(),
            expiry: Some(KEY_EXPIRY.to_owned()),
            // The Secret key the proxy's TS_AUTHKEY reads (proxy_objects).
            secret_keys: SecretKeys {
                auth_key: AUTH_KEY_FIELD.to_owned(),
                ..SecretKeys::default()
            },
            ..serde_json::from_value(json!({})).expect("an empty spec deserializes")
        },
        status: Default::default(),
        rotate_now: None,
        secret_name: names(obj).auth_secret,
    }
}

/// The proxy device: the newest device with the exposure's hostname and every proxy tag.
pub fn find_device<'a>(devices: &'a [Device], obj: &FunnelExposure) -> Option<&'a Device> {
    let tags = obj.proxy_tags();
    devices
        .iter()
        .filter(|d| d.hostname == obj.spec.hostname && tags.iter().all(|t| d.tags.contains(t)))
        .max_by_key(|d| d.created)
}

/// `https://<device name>[:port]` (443 is implied).
pub fn public_url(device: &ProxyDevice, port: u16) -> String {
    let host = device.name.trim_end_matches('.');
    match port {
        443 => format!("https://{host}"),
        port => format!("https://{host}:{port}"),
    }
}

/// The names of the objects an exposure creates (all in its namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The Deployment, ServiceAccount, Role and RoleBinding.
    pub proxy: String,
    pub serve_config: String,
    pub auth_secret: String,
    /// tailscaled's state (`TS_KUBE_SECRET`): a restarted pod keeps its device.
    pub state_secret: String,
}

pub fn names(obj: &FunnelExposure) -> Names {
    let base = format!(
        "{}-funnel",
        obj.metadata.name.as_deref().unwrap_or_default()
    );
    Names {
        serve_config: format!("{base}-serve"),
        auth_secret: format!("{base}-authkey"),
        state_secret: format!("{base}-state"),
        proxy: base,
    }
}

/// The serve config: HTTPS on the public port, path handlers proxying to the Service's cluster
/// DNS name, and Funnel allowed on `${TS_CERT_DOMAIN}:<port>` (containerboot substitutes the
/// node's name).
pub fn serve_config(obj: &FunnelExposure) -> Value {
    let namespace = obj.metadata.namespace.as_deref().unwrap_or("default");
    let service = &obj.spec.service;
    let host = format!("{}.{namespace}.svc.cluster.local", service.name);
    let mut paths = obj.spec.paths.clone();
    if paths.is_empty() {
        paths.insert("/".to_owned(), service.port);
    }
    let handlers: BTreeMap<String, Value> = paths
        .into_iter()
        .map(|(path, port)| (path, json!({"Proxy": format!("http://{host}:{port}")})))
        .collect();
    let port = obj.spec.public_port;
    let site = format!("${{TS_CERT_DOMAIN}}:{port}");
    json!({
        "TCP": {port.to_string(): {"HTTPS": true}},
        "Web": {site.clone(): {"Handlers": handlers}},
        "AllowFunnel": {site: true},
    })
}

/// Every object of the proxy, as server-side-apply manifests owned by the exposure, in the
/// order they are applied (the Deployment last, once what it mounts exists). `key_id` goes on
/// the pod template: a new key restarts the pod, which reads the key at start.
pub fn proxy_objects(obj: &FunnelExposure, owner: &Value, key_id: Option<&str>) -> Vec<Value> {
    let n = names(obj);
    let namespace = obj.metadata.namespace.clone().unwrap_or("default".into());
    let meta = |name: &str| {
        json!({
            "name": name,
            "namespace": namespace,
            "labels": {EXPOSURE_LABEL: obj.metadata.name, "app.kubernetes.io/managed-by": "tailnet-operator"},
            "ownerReferences": [owner],
        })
    };
    let proxy = &obj.spec.proxy;
    let image = proxy.image.clone().unwrap_or(DEFAULT_PROXY_IMAGE.into());
    let env = json!([
        {"name": "TS_AUTHKEY", "valueFrom": {"secretKeyRef": {"name": n.auth_secret, "key": AUTH_KEY_FIELD, "optional": true}}},
        {"name": "TS_KUBE_SECRET", "value": n.state_secret},
        {"name": "TS_HOSTNAME", "value": obj.spec.hostname},
        {"name": "TS_USERSPACE", "value": "true"},
        {"name": "TS_SERVE_CONFIG", "value": SERVE_CONFIG_PATH},
        {"name": "TS_SOCKET", "value": "/tmp/tailscaled.sock"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]);
    let mut pod_spec = json!({
        "serviceAccountName": n.proxy,
        "securityContext": {
            "runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{
            "name": "tailscale",
            "image": image,
            "env": env,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "serve-config", "mountPath": "/config", "readOnly": true},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }],
        "volumes": [
            {"name": "serve-config", "configMap": {"name": n.serve_config}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    });
    if let Some(resources) = &proxy.resources {
        pod_spec["containers"][0]["resources"] = json!(resources);
    }
    if !proxy.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(proxy.node_selector);
    }
    if !proxy.tolerations.is_empty() {
        pod_spec["tolerations"] = json!(proxy.tolerations);
    }
    let selector = json!({EXPOSURE_LABEL: obj.metadata.name});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(&n.proxy)}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(&n.state_secret), "type": "Opaque"}),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(&n.proxy),
            // Only its own state Secret: tailscaled keeps its node key there.
            "rules": [{"apiGroups": [""], "resources": ["secrets"],
                       "resourceNames": [n.state_secret], "verbs": ["get", "update", "patch"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(&n.proxy),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n.proxy},
            "subjects": [{"kind": "ServiceAccount", "name": n.proxy, "namespace": namespace}],
        }),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&n.serve_config),
            "data": {"serve.json": serde_json::to_string_pretty(&serve_config(obj)).unwrap_or_default()},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(&n.proxy),
            "spec": {
                // One replica, replaced (never two at once: they would share one device state).
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {
                        "labels": selector,
                        "annotations": {KEY_ID_ANNOTATION: key_id.unwrap_or_default()},
                    },
                    "spec": pod_spec,
                },
            },
        }),
    ]
}

/// A digest of the proxy objects, to rewrite them only when they change.
pub fn digest(objects: &[Value]) -> String {
    let mut hasher = Sha256::new();
    for object in objects {
        hasher.update(object.to_string().as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::funnel_exposure::FunnelExposureStatus;
    use chrono::TimeZone;

    fn exposure(extra: Value) -> FunnelExposure {
        let mut spec = json!({"tailnetRef": "default", "service": {"name": "web", "port": 8080},
            "hostname": "demo"});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            spec[k] = v;
        }
        let mut e = FunnelExposure::new("demo", serde_json::from_value(spec).unwrap());
        e.metadata.namespace = Some("apps".into());
        e
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, h, 0, 0).unwrap()
    }

    #[test]
    fn the_window_says_what_to_do_and_when_to_look_again() {
        let window = Window {
            start: Some(at(10)),
            end: Some(at(12)),
        };
        assert_eq!(WindowState::at(window, at(9)), WindowState::Before(at(10)));
        assert_eq!(WindowState::at(window, at(9)).next_boundary(), Some(at(10)));
        assert_eq!(
            WindowState::at(window, at(10)),
            WindowState::Open(Some(at(12)))
        );
        assert_eq!(WindowState::at(window, at(12)), WindowState::Ended(at(12)));
        let forever = Window {
            start: None,
            end: None,
        };
        assert_eq!(WindowState::at(forever, at(9)).next_boundary(), None);
    }

    #[test]
    fn the_serve_config_proxies_to_the_service_and_allows_funnel_on_the_port() {
        let config = serve_config(&exposure(json!({"publicPort": 8443})));
        assert_eq!(config["TCP"]["8443"]["HTTPS"], json!(true));
        let site = "${TS_CERT_DOMAIN}:8443";
        assert_eq!(
            config["Web"][site]["Handlers"]["/"]["Proxy"],
            json!("http://web.apps.svc.cluster.local:8080")
        );
        assert_eq!(config["AllowFunnel"][site], json!(true));
        let paths = serve_config(&exposure(json!({"paths": {"/api": 9090, "/": 8080}})));
        let handlers = &paths["Web"]["${TS_CERT_DOMAIN}:443"]["Handlers"];
        assert_eq!(
            handlers["/api"]["Proxy"],
            json!("http://web.apps.svc.cluster.local:9090")
        );
    }

    #[test]
    fn the_node_attribute_is_contributed_only_while_exposing() {
        let mut e = exposure(json!({}));
        assert!(contributions(&e).is_empty(), "no phase yet");
        for (phase, expected) in [
            (Phase::Scheduled, 0),
            (Phase::Provisioning, 1),
            (Phase::Active, 1),
            (Phase::Expired, 0),
            (Phase::Failed, 0),
        ] {
            e.status = Some(FunnelExposureStatus {
                phase: Some(phase),
                ..Default::default()
            });
            assert_eq!(contributions(&e).len(), expected, "{phase:?}");
        }
        e.status.as_mut().unwrap().phase = Some(Phase::Active);
        e.status.as_mut().unwrap().prerequisites = vec![Prerequisite {
            name: "httpsEnabled".into(),
            met: false,
            message: String::new(),
        }];
        assert!(contributions(&e).is_empty(), "a prerequisite is missing");
        e.status.as_mut().unwrap().prerequisites.clear();
        let c = contributions(&e);
        assert_eq!(c[0].section, "nodeAttrs");
        assert_eq!(
            c[0].value,
            json!({"target": ["tag:funnel"], "attr": ["funnel"]})
        );
        assert_eq!(c[0].source, "FunnelExposure/apps/demo");
        assert!(policy_grants_funnel(
            &json!({"nodeAttrs": [c[0].value]}),
            &e.proxy_tags()
        ));
        assert!(!policy_grants_funnel(&json!({}), &e.proxy_tags()));
    }

    #[test]
    fn each_prerequisite_names_its_fix() {
        let e = exposure(json!({}));
        let settings = TailnetSettings::default();
        let dns = DnsPreferences::default();
        let policy = json!({"tagOwners": {"tag:k8s": []}});
        let found = prerequisites(
            &e,
            &Tailnet {
                settings: &settings,
                dns: &dns,
                policy: &policy,
                connection: None,
            },
        );
        assert!(found.iter().all(|p| !p.met), "{found:?}");
        assert!(
            found[0]
                .message
                .contains("spec.settings.httpsEnabled: true")
        );
        assert!(found[1].message.contains("magicDNS"));
        assert!(
            found[2]
                .message
                .contains("tag:funnel not in the policy's tagOwners")
        );
    }

    #[test]
    fn the_proxy_keeps_its_state_runs_restricted_and_is_owned() {
        let e = exposure(json!({"proxy": {"nodeSelector": {"pool": "edge"}}}));
        let owner = json!({"kind": "FunnelExposure", "name": "demo"});
        let objects = proxy_objects(&e, &owner, Some("kKEY1CNTRL"));
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "Secret",
                "Role",
                "RoleBinding",
                "ConfigMap",
                "Deployment"
            ]
        );
        assert!(
            objects
                .iter()
                .all(|o| o["metadata"]["ownerReferences"][0] == owner)
        );
        let deployment = &objects[5];
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(deployment["spec"]["replicas"], json!(1));
        let env = pod["containers"][0]["env"].as_array().unwrap();
        let value = |name: &str| env.iter().find(|e| e["name"] == name).cloned().unwrap();
        assert_eq!(value("TS_KUBE_SECRET")["value"], json!("demo-funnel-state"));
        assert_eq!(
            value("TS_AUTHKEY")["valueFrom"]["secretKeyRef"]["name"],
            json!("demo-funnel-authkey")
        );
        assert_eq!(value("TS_SERVE_CONFIG")["value"], json!(SERVE_CONFIG_PATH));
        assert_eq!(
            pod["containers"][0]["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert_eq!(pod["nodeSelector"]["pool"], json!("edge"));
        let role = &objects[2]["rules"][0];
        assert_eq!(role["resourceNames"], json!(["demo-funnel-state"]));
        assert_ne!(digest(&objects), digest(&objects[..5]));
        let template = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(
            template[KEY_ID_ANNOTATION],
            json!("kKEY1CNTRL"),
            "a new key rolls the pod"
        );
    }

    #[test]
    fn the_key_is_single_use_preauthorized_tagged_and_marked() {
        let e = exposure(json!({"tags": ["tag:demo"]}));
        let input = key_input(&e, "ops/default");
        assert!(!input.spec.reusable && input.spec.preauthorized);
        assert_eq!(input.spec.tags, vec!["tag:demo"]);
        assert!(input.marker.starts_with("tnop "));
        assert_ne!(
            input.marker,
            key_input(&exposure(json!({})), "ops/other").marker
        );
        assert_eq!(input.secret_name, "demo-funnel-authkey");
        assert_eq!(
            input.spec.secret_keys.auth_key, AUTH_KEY_FIELD,
            "where TS_AUTHKEY reads"
        );
    }

    #[test]
    fn the_url_omits_443() {
        let device = ProxyDevice {
            id: "n1".into(),
            name: "demo.tail1a2b.ts.net.".into(),
        };
        assert_eq!(public_url(&device, 443), "https://demo.tail1a2b.ts.net");
        assert_eq!(
            public_url(&device, 10000),
            "https://demo.tail1a2b.ts.net:10000"
        );
    }
}
