//! The demo tailnet: a realistic, deterministic (per seed) tailnet of people, servers, CI
//! runners, a subnet router, an exit node, Kubernetes proxies and a shared-in device, plus as
//! many generated devices as asked for.
//!
//! Everything random comes from one `fastrand::Rng` seeded with `SimConfig::seed`; times are
//! relative to the moment the tailnet is created (so "stale" and "expiring soon" stay true).
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::policy::access::Policy;
use crate::secret::Secret;

use super::render::render_hujson;
use super::state::{
    Device, Distro, DnsConfig, DnsPreferences, DnsResolver, Key, PolicyState, Service, Settings,
    State, User, Webhook, policy_etag, random_alnum,
};

/// The newest client version in the demo tailnet; anything older has `updateAvailable`.
pub const LATEST_CLIENT: &str = "1.90.6";
/// The organisation domain of the demo users.
pub const DOMAIN: &str = "example.com";
/// Tags of the sim's OAuth client: OAuth-derived tokens may apply these tags and the tags they
/// own in `tagOwners`.
pub const OAUTH_CLIENT_TAGS: &[&str] = &["tag:k8s-operator"];

/// Ids and secrets derived from the seed.
pub struct Identity {
    pub tailnet_id: String,
    pub dns_suffix: String,
    pub api_key: Secret,
    pub api_key_id: String,
    pub oauth_client_id: String,
    pub oauth_client_secret: Secret,
}

impl Identity {
    pub fn derive(seed: u64) -> Identity {
        // A separate stream from the tailnet's, so adding seed data never changes credentials.
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_c0de_cafe_f00d);
        let tailnet_id = format!("T{}CNTRL", random_alnum(&mut rng, 7));
        let dns_suffix = format!("tail{:04x}.ts.net", rng.u16(..));
        let api_key_id = format!("k{}CNTRL", random_alnum(&mut rng, 7));
        let api_key = Secret::new(format!(
            "tskey-api-{api_key_id}-{}",
            random_alnum(&mut rng, 32)
        ));
        let oauth_client_id = format!("k{}CNTRL", random_alnum(&mut rng, 7));
        let oauth_client_secret = Secret::new(format!(
            "tskey-client-{oauth_client_id}-{}",
            random_alnum(&mut rng, 32)
        ));
        Identity {
            tailnet_id,
            dns_suffix,
            api_key,
            api_key_id,
            oauth_client_id,
            oauth_client_secret,
        }
    }
}

fn login(name: &str) -> String {
    format!("{name}@{DOMAIN}")
}

/// The demo policy: groups, tag owners, hosts, acls, grants, ssh, nodeAttrs, autoApprovers and
/// tests that pass against the demo devices.
pub fn demo_policy_doc() -> Value {
    json!({
        "groups": {
            "group:admins": [login("alice")],
            "group:eng": [login("alice"), login("bob"), login("carol"), login("frank")],
            "group:sre": [login("bob"), login("dave")],
            "group:security": [login("erin")],
        },
        "tagOwners": {
            "tag:k8s-operator": ["group:admins"],
            "tag:k8s": ["tag:k8s-operator"],
            "tag:server": ["group:sre", "tag:k8s-operator"],
            "tag:prod": ["group:sre", "tag:k8s-operator"],
            "tag:ci": ["group:eng", "tag:k8s-operator"],
            "tag:subnet-router": ["group:sre", "tag:k8s-operator"],
            "tag:exit-node": ["group:sre", "tag:k8s-operator"],
            "tag:funnel": ["tag:k8s-operator"],
            "tag:monitoring": ["group:sre", "tag:k8s-operator"],
            "tag:security-scanner": ["group:security"],
        },
        "hosts": {
            "corp-net": "10.10.0.0/16",
            "db-primary": "10.10.1.20",
        },
        "acls": [
            {"action": "accept", "src": ["group:eng"], "dst": ["tag:server:22,80,443", "tag:ci:*"]},
            {"action": "accept", "src": ["group:sre"], "dst": ["tag:prod:*", "tag:server:*", "corp-net:*"]},
            {"action": "accept", "src": ["tag:ci"], "dst": ["tag:server:443"]},
            {"action": "accept", "src": ["tag:security-scanner"], "dst": ["*:*"]},
            {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]},
        ],
        "grants": [
            {"src": ["tag:monitoring"], "dst": ["tag:server", "tag:prod"], "ip": ["tcp:9100"]},
            {"src": ["group:eng"], "dst": ["tag:k8s"], "ip": ["tcp:443"]},
        ],
        "ssh": [
            {"action": "check", "src": ["group:sre"], "dst": ["tag:server", "tag:prod"], "users": ["root", "ubuntu"]},
            {"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot", "root"]},
        ],
        "nodeAttrs": [
            {"target": ["tag:funnel"], "attr": ["funnel"]},
        ],
        "autoApprovers": {
            "routes": {
                "10.10.0.0/16": ["tag:subnet-router"],
                "10.20.0.0/16": ["tag:subnet-router"],
            },
            "exitNode": ["tag:exit-node"],
            "services": {"svc:grafana": ["tag:k8s"]},
        },
        "tests": [
            {"src": login("carol"), "accept": ["tag:server:22", "tag:server:443"], "deny": ["tag:prod:5432", "db-primary:5432"]},
            {"src": login("bob"), "accept": ["tag:prod:5432", "db-primary:5432"]},
            {"src": "tag:ci", "accept": ["tag:server:443"], "deny": ["tag:server:22"]},
        ],
    })
}

const DEMO_POLICY_COMMENTS: &[(&str, &str)] = &[
    (
        "",
        "Policy for the simulated demo tailnet.\nEdit with care: the tests at the bottom run on every save.",
    ),
    ("/groups", "Teams. Membership is by login name."),
    (
        "/tagOwners",
        "Who may apply each tag. The operator's OAuth client is tag:k8s-operator.",
    ),
    (
        "/tagOwners/tag:security-scanner",
        "Not owned by the operator: its OAuth client cannot apply this tag.",
    ),
    ("/hosts", "Names for addresses behind the subnet router."),
    (
        "/acls",
        "Network access. Everything not accepted is denied.",
    ),
    (
        "/acls/0",
        "Engineers reach servers over SSH and HTTP(S), and CI runners.",
    ),
    ("/acls/1", "SRE reach production and the corporate network."),
    ("/acls/4", "Everyone reaches their own devices."),
    ("/grants", "Newer-style rules."),
    ("/ssh", "Tailscale SSH."),
    ("/nodeAttrs", "Funnel for the public ingress proxies."),
    (
        "/autoApprovers",
        "Routes, exit nodes and services approved without a human.",
    ),
    (
        "/tests",
        "Policy tests: a save that breaks these is rejected.",
    ),
];

/// The demo policy as commented HuJSON, with its parsed form.
pub fn demo_policy() -> PolicyState {
    let doc = demo_policy_doc();
    let text = render_hujson(&doc, DEMO_POLICY_COMMENTS);
    policy_state(text, doc, false)
}

/// Tailscale's default policy (allow everything), what an empty `POST /acl` restores.
pub fn default_policy() -> PolicyState {
    let doc = json!({
        "acls": [
            {"action": "accept", "src": ["*"], "dst": ["*:*"]},
        ],
        "ssh": [
            {"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot", "root"]},
        ],
    });
    let text = render_hujson(
        &doc,
        &[
            ("", "Example/default ACLs for unrestricted connections."),
            (
                "/acls/0",
                "Match absolutely everything.\nComment this section out if you want to define specific restrictions.",
            ),
            (
                "/ssh",
                "Allow users to SSH into their own devices in check mode.",
            ),
        ],
    );
    policy_state(text, doc, true)
}

fn policy_state(text: String, doc: Value, is_default: bool) -> PolicyState {
    PolicyState {
        etag: policy_etag(&text),
        compiled: Policy::compile(&doc).ok(),
        text,
        doc,
        is_default,
    }
}

/// One hand-written demo device.
struct Spec {
    host: &'static str,
    os: &'static str,
    user: &'static str,
    tags: &'static [&'static str],
    version: &'static str,
    /// `None` = connected now; `Some(h)` = last seen `h` hours ago.
    seen_hours_ago: Option<i64>,
    /// Node-key expiry relative to now, in hours.
    expires_in_hours: i64,
    key_expiry_disabled: bool,
    authorized: bool,
    ephemeral: bool,
    advertised: &'static [&'static str],
    enabled: &'static [&'static str],
}

const fn spec(host: &'static str, os: &'static str, user: &'static str) -> Spec {
    Spec {
        host,
        os,
        user,
        tags: &[],
        version: LATEST_CLIENT,
        seen_hours_ago: None,
        expires_in_hours: 24 * 120,
        key_expiry_disabled: false,
        authorized: true,
        ephemeral: false,
        advertised: &[],
        enabled: &[],
    }
}

const WEEK: i64 = 24 * 7;

/// The hand-written part of the demo tailnet.
fn demo_specs() -> Vec<Spec> {
    let server = |host: &'static str, tags: &'static [&'static str]| Spec {
        tags,
        key_expiry_disabled: true,
        ..spec(host, "linux", "bob")
    };
    vec![
        spec("alice-mbp", "macOS", "alice"),
        spec("alice-iphone", "iOS", "alice"),
        Spec {
            seen_hours_ago: Some(3),
            ..spec("bob-thinkpad", "linux", "bob")
        },
        Spec {
            version: "1.58.2",
            seen_hours_ago: Some(6 * WEEK),
            ..spec("bob-pixel", "android", "bob")
        },
        Spec {
            expires_in_hours: 2 * 24,
            ..spec("carol-xps", "windows", "carol")
        },
        Spec {
            seen_hours_ago: Some(5 * WEEK),
            version: "1.76.1",
            ..spec("carol-ipad", "iOS", "carol")
        },
        Spec {
            version: "1.84.2",
            ..spec("dave-mbp", "macOS", "dave")
        },
        Spec {
            authorized: false,
            seen_hours_ago: Some(20),
            ..spec("dave-desktop", "windows", "dave")
        },
        Spec {
            expires_in_hours: 30,
            ..spec("erin-laptop", "linux", "erin")
        },
        Spec {
            authorized: false,
            ..spec("frank-surface", "windows", "frank")
        },
        Spec {
            version: "1.62.1",
            seen_hours_ago: Some(9 * WEEK),
            expires_in_hours: -3 * 24,
            ..spec("grace-chromebook", "android", "grace")
        },
        spec("guest-macbook", "macOS", "guest"),
        server("prod-web-1", &["tag:server", "tag:prod"]),
        server("prod-web-2", &["tag:server", "tag:prod"]),
        server("prod-db-1", &["tag:server", "tag:prod"]),
        Spec {
            version: "1.80.3",
            ..server("staging-web-1", &["tag:server"])
        },
        Spec {
            ephemeral: true,
            ..server("ci-runner-1", &["tag:ci"])
        },
        Spec {
            ephemeral: true,
            seen_hours_ago: Some(4 * WEEK),
            version: "1.70.0",
            ..server("ci-runner-2", &["tag:ci"])
        },
        Spec {
            tags: &["tag:ci"],
            expires_in_hours: 20,
            ..spec("build-mac-mini", "macOS", "frank")
        },
        Spec {
            // Subnet router: two routes approved, one waiting for an admin.
            advertised: &["10.10.0.0/16", "10.20.0.0/16", "192.168.50.0/24"],
            enabled: &["10.10.0.0/16", "10.20.0.0/16"],
            ..server("subnet-router-1", &["tag:subnet-router"])
        },
        Spec {
            advertised: &["0.0.0.0/0", "::/0"],
            enabled: &["0.0.0.0/0", "::/0"],
            ..server("exit-node-fra", &["tag:exit-node"])
        },
        server("k8s-operator", &["tag:k8s-operator"]),
        server("ts-ingress-grafana", &["tag:k8s"]),
        server("ts-ingress-api", &["tag:k8s", "tag:funnel"]),
        server("monitoring-1", &["tag:monitoring"]),
        Spec {
            version: "1.44.0",
            seen_hours_ago: Some(11 * WEEK),
            key_expiry_disabled: false,
            expires_in_hours: 5 * 24,
            ..server("old-nas", &[])
        },
        Spec {
            version: "1.66.4",
            seen_hours_ago: Some(3 * WEEK),
            expires_in_hours: 4 * 24,
            ..spec("bob-raspberrypi", "linux", "bob")
        },
        Spec {
            user: "erin",
            ..server("security-scanner", &["tag:security-scanner"])
        },
    ]
}

fn distro_for(os: &str, rng: &mut fastrand::Rng) -> Option<Distro> {
    if os != "linux" {
        return None;
    }
    let (name, version, code) = [
        ("ubuntu", "24.04", "Noble Numbat"),
        ("ubuntu", "22.04", "Jammy Jellyfish"),
        ("debian", "12", "bookworm"),
        ("fedora", "41", ""),
    ][rng.usize(..4)];
    Some(Distro {
        name: name.into(),
        version: version.into(),
        code_name: code.into(),
    })
}

/// Is `version` older than the latest client?
fn outdated(version: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    parse(version) < parse(LATEST_CLIENT)
}

fn new_device(state: &mut State, spec: &Spec, now: DateTime<Utc>) -> Device {
    let (v4, v6) = state.ips.allocate();
    let created = now - Duration::days(30 + state.rng.i64(0..400));
    let last_seen = spec.seen_hours_ago.map(|h| now - Duration::hours(h));
    let node_id = loop {
        let id = format!("n{}CNTRL", state.alnum(10));
        if state.device_index(&id).is_err() {
            break id;
        }
    };
    let legacy_id = state.rng.u64(1_000_000_000_000_000..9_999_999_999_999_999);
    let derp = ["New York City", "Frankfurt", "San Francisco", "London"][state.rng.usize(..4)];
    let latency = 5.0 + f64::from(state.rng.u32(0..9000)) / 100.0;
    let distro = distro_for(spec.os, &mut state.rng);
    let machine_key = format!("mkey:{}", state.hex(64));
    let node_key = format!("nodekey:{}", state.hex(64));
    let tailnet_lock_key = format!("nlpub:{}", state.hex(64));
    let endpoint = format!(
        "{}.{}.{}.{}:41641",
        state.rng.u8(1..224),
        state.rng.u8(..),
        state.rng.u8(..),
        state.rng.u8(1..255)
    );
    let serial = matches!(spec.os, "macOS" | "windows").then(|| state.alnum(10).to_uppercase());
    Device {
        id: legacy_id.to_string(),
        node_id,
        user: login(spec.user),
        name: format!("{}.{}", spec.host, state.dns_suffix),
        hostname: spec.host.to_owned(),
        addresses: vec![v4, v6],
        client_version: spec.version.to_owned(),
        update_available: outdated(spec.version),
        os: spec.os.to_owned(),
        distro,
        created: Some(created),
        connected: spec.seen_hours_ago.is_none(),
        last_seen: last_seen.or(Some(now)),
        key_expiry_disabled: spec.key_expiry_disabled,
        expires: Some(now + Duration::hours(spec.expires_in_hours)),
        authorized: spec.authorized,
        is_external: false,
        multiple_connections: false,
        machine_key,
        node_key,
        blocks_incoming: false,
        advertised_routes: spec.advertised.iter().map(|s| s.to_string()).collect(),
        enabled_routes: spec.enabled.iter().map(|s| s.to_string()).collect(),
        endpoints: vec![endpoint],
        derp: (derp.to_owned(), latency),
        tags: spec.tags.iter().map(|s| s.to_string()).collect(),
        tailnet_lock_key,
        tailnet_lock_error: String::new(),
        ssh_enabled: spec.os == "linux",
        serial,
        is_ephemeral: spec.ephemeral,
    }
}

/// Tailscale's hello service, shared into every tailnet: external, with `""` timestamps.
fn hello_device(state: &mut State) -> Device {
    let (v4, v6) = state.ips.allocate();
    Device {
        id: state.rng.u64(1_000_000_000..9_999_999_999).to_string(),
        node_id: "nhelloTSCNTRL".into(),
        user: "services@tailscale.com".into(),
        name: "hello.ts.net".into(),
        hostname: "hello".into(),
        addresses: vec![v4, v6],
        client_version: String::new(),
        update_available: false,
        os: "linux".into(),
        distro: None,
        created: None,
        connected: false,
        last_seen: None,
        key_expiry_disabled: false,
        expires: None,
        authorized: true,
        is_external: true,
        multiple_connections: false,
        machine_key: String::new(),
        node_key: format!("nodekey:{}", state.hex(64)),
        blocks_incoming: false,
        advertised_routes: vec![],
        enabled_routes: vec![],
        endpoints: vec![],
        derp: ("San Francisco".into(), 12.0),
        tags: vec![],
        tailnet_lock_key: String::new(),
        tailnet_lock_error: String::new(),
        ssh_enabled: false,
        serial: None,
        is_ephemeral: false,
    }
}

fn users(now: DateTime<Utc>, rng: &mut fastrand::Rng) -> Vec<User> {
    let people = [
        ("alice", "Alice Admin", "owner", "member", "active", 0),
        ("bob", "Bob Builder", "admin", "member", "active", 0),
        ("carol", "Carol Coder", "member", "member", "active", 1),
        ("dave", "Dave Ops", "network-admin", "member", "active", 0),
        ("erin", "Erin Auditor", "auditor", "member", "active", 2),
        ("frank", "Frank Newhire", "member", "member", "active", 0),
        ("grace", "Grace Away", "it-admin", "member", "idle", 63),
    ];
    let mut users: Vec<User> = people
        .iter()
        .map(|(name, display, role, kind, status, days)| User {
            id: format!("u{}CNTRL", random_alnum(rng, 10)),
            display_name: (*display).into(),
            login_name: login(name),
            created: now - Duration::days(500 - 30 * i64::from(rng.u8(0..10))),
            user_type: (*kind).into(),
            role: (*role).into(),
            status: (*status).into(),
            last_seen: now - Duration::days(*days),
            currently_connected: *days == 0,
        })
        .collect();
    users.push(User {
        id: format!("u{}CNTRL", random_alnum(rng, 10)),
        display_name: "Guest Contractor".into(),
        login_name: "guest@partner.example".into(),
        created: now - Duration::days(40),
        user_type: "shared".into(),
        role: "member".into(),
        status: "active".into(),
        last_seen: now - Duration::days(2),
        currently_connected: false,
    });
    users
}

fn auth_key(
    state: &mut State,
    now: DateTime<Utc>,
    description: &str,
    create: Value,
    age_days: i64,
    expiry_days: i64,
    user_id: &str,
) -> Key {
    let created = now - Duration::days(age_days);
    Key {
        description: description.into(),
        expires: Some(created + Duration::days(expiry_days)),
        expiry_seconds: Some(expiry_days * 86_400),
        capabilities: Some(json!({"devices": {"create": create}})),
        user_id: user_id.into(),
        ..Key::new(format!("k{}CNTRL", state.alnum(7)), "auth", created)
    }
}

fn keys(state: &mut State, identity: &Identity, now: DateTime<Utc>) -> Vec<Key> {
    let alice = state.users[0].id.clone();
    let trust = |id: &str, key_type: &str, description: &str, scopes: Vec<String>, tags| Key {
        description: description.into(),
        scopes,
        tags,
        ..Key::new(id.into(), key_type, now - Duration::days(60))
    };
    let mut api = trust(
        &identity.api_key_id,
        "api",
        "demo api token",
        vec![],
        vec![],
    );
    api.user_id = alice.clone();
    api.expires = Some(now + Duration::days(60));
    api.expiry_seconds = Some(90 * 86_400);
    let oauth = trust(
        &identity.oauth_client_id,
        "client",
        "tailnet-operator",
        vec!["all".into()],
        OAUTH_CLIENT_TAGS.iter().map(|t| t.to_string()).collect(),
    );
    vec![
        api,
        oauth,
        auth_key(
            state,
            now,
            "ci runners",
            json!({"reusable": true, "ephemeral": true, "preauthorized": true, "tags": ["tag:ci"]}),
            20,
            90,
            &alice,
        ),
        auth_key(
            state,
            now,
            "laptop onboarding",
            json!({"reusable": false, "ephemeral": false, "preauthorized": false}),
            3,
            30,
            &alice,
        ),
        // Minted by the operator's OAuth client (no user), about to expire.
        auth_key(
            state,
            now,
            "k8s proxies",
            json!({"reusable": true, "ephemeral": false, "preauthorized": true, "tags": ["tag:k8s"]}),
            88,
            90,
            "",
        ),
    ]
}

fn services(state: &State) -> Vec<Service> {
    let node = |host: &str| {
        state
            .devices
            .iter()
            .find(|d| d.hostname == host)
            .map(|d| d.node_id.clone())
            .unwrap_or_default()
    };
    vec![
        Service {
            name: "svc:grafana".into(),
            addrs: vec![],
            comment: "Grafana dashboards".into(),
            ports: vec!["tcp:443".into()],
            tags: vec!["tag:k8s".into()],
            // Served by Tailscale's own Kubernetes operator (an Ingress proxy), which marks it.
            annotations: Some(
                json!({"tailscale.com/owner-references": "{\"ownerRefs\":[{\"operatorID\":\"nk8sop1CNTRL\"}]}"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            hosts: vec![node("ts-ingress-grafana")],
            approvals: HashMap::new(),
        },
        Service {
            name: "svc:api".into(),
            addrs: vec![],
            comment: "Public API".into(),
            ports: vec!["tcp:443".into(), "tcp:8443".into()],
            tags: vec!["tag:k8s".into()],
            annotations: None,
            hosts: vec![node("ts-ingress-api")],
            approvals: HashMap::new(),
        },
    ]
}

fn demo_dns() -> DnsConfig {
    let mut split_dns = std::collections::BTreeMap::new();
    split_dns.insert(
        "corp.example.com".to_owned(),
        vec![DnsResolver::new("10.10.0.53")],
    );
    split_dns.insert(
        "svc.cluster.local".to_owned(),
        vec![DnsResolver::new("10.20.0.10")],
    );
    DnsConfig {
        nameservers: vec![DnsResolver::new("1.1.1.1"), DnsResolver::new("9.9.9.9")],
        split_dns,
        search_paths: vec!["corp.example.com".into()],
        preferences: DnsPreferences {
            override_local_dns: true,
            magic_dns: true,
        },
    }
}

fn demo_settings() -> Settings {
    Settings {
        acls_externally_managed_on: Some(false),
        acls_external_link: Some("https://github.com/example/tailnet-policy".into()),
        devices_approval_on: Some(true),
        devices_auto_updates_on: Some(false),
        devices_key_duration_days: Some(180),
        users_approval_on: Some(false),
        users_role_allowed_to_join_external_tailnets: Some("admin".into()),
        network_flow_logging_on: Some(false),
        regional_routing_on: Some(false),
        posture_identity_collection_on: Some(true),
        https_enabled: Some(true),
    }
}

const GENERATED_OSES: &[&str] = &[
    "linux", "linux", "linux", "macOS", "windows", "iOS", "android",
];
const GENERATED_ROLES: &[(&str, &[&str])] = &[
    ("web", &["tag:server"]),
    ("api", &["tag:server", "tag:prod"]),
    ("worker", &["tag:k8s"]),
    ("ci", &["tag:ci"]),
    ("laptop", &[]),
    ("desktop", &[]),
    ("phone", &[]),
];
const OLD_VERSIONS: &[&str] = &["1.58.2", "1.66.4", "1.76.1", "1.84.2"];
const MEMBERS: &[&str] = &["alice", "bob", "carol", "dave", "erin", "frank", "grace"];

/// Adds `n` generated devices: a mix of OSes, owners and tags, some stale, outdated,
/// unauthorized or about to expire. Linear in `n`.
fn add_generated(state: &mut State, n: usize, now: DateTime<Utc>) {
    state.devices.reserve(n);
    for i in 0..n {
        let os = GENERATED_OSES[state.rng.usize(..GENERATED_OSES.len())];
        let (role, tags) = GENERATED_ROLES[state.rng.usize(..GENERATED_ROLES.len())];
        let tags: &'static [&'static str] = if matches!(os, "iOS" | "android") {
            &[]
        } else {
            tags
        };
        let roll = state.rng.u32(0..100);
        let version = if roll < 15 {
            OLD_VERSIONS[state.rng.usize(..OLD_VERSIONS.len())]
        } else {
            LATEST_CLIENT
        };
        // Static names keep `Spec` borrow-free; the real hostname is set after creation.
        let mut spec = spec("generated", os, MEMBERS[i % MEMBERS.len()]);
        spec.tags = tags;
        spec.version = version;
        spec.seen_hours_ago = match state.rng.u32(0..100) {
            0..=59 => None,
            60..=89 => Some(i64::from(state.rng.u32(1..72))),
            _ => Some(i64::from(state.rng.u32(2..12)) * WEEK),
        };
        spec.authorized = state.rng.u32(0..100) >= 3;
        spec.key_expiry_disabled = !tags.is_empty();
        spec.expires_in_hours = if state.rng.u32(0..100) < 5 {
            i64::from(state.rng.u32(1..96))
        } else {
            24 * i64::from(state.rng.u32(10..180))
        };
        spec.ephemeral = role == "ci";
        let mut device = new_device(state, &spec, now);
        device.hostname = format!("{role}-{i:05}");
        device.name = format!("{}.{}", device.hostname, state.dns_suffix);
        state.add_device(device);
    }
}

/// Builds the demo tailnet with `generated` extra devices.
pub fn build(seed: u64, generated: usize, identity: &Identity, now: DateTime<Utc>) -> State {
    let mut state = State::new(
        identity.tailnet_id.clone(),
        identity.dns_suffix.clone(),
        demo_policy(),
        seed,
    );
    state.api_key_owner = login("alice");
    state.oauth_client_tags = OAUTH_CLIENT_TAGS.iter().map(|t| t.to_string()).collect();
    state.users = users(now, &mut state.rng);
    for spec in demo_specs() {
        let device = new_device(&mut state, &spec, now);
        state.add_device(device);
    }
    let hello = hello_device(&mut state);
    state.add_device(hello);
    let guest = state
        .devices
        .iter_mut()
        .find(|d| d.hostname == "guest-macbook");
    if let Some(d) = guest {
        d.user = "guest@partner.example".into();
    }
    add_generated(&mut state, generated, now);
    state.keys = keys(&mut state, identity, now);
    let mut services = services(&state);
    for service in &mut services {
        let (v4, v6) = state.ips.allocate();
        service.addrs = vec![v4, v6];
    }
    state.services = services;
    // A monitoring host already runs `tailscale serve --service=svc:grafana-eng`: the example
    // TailscaleService (examples/tailscale-service.yaml) defines that service.
    if let Some(node) = state
        .devices
        .iter()
        .find(|d| d.hostname == "monitoring-1")
        .map(|d| d.node_id.clone())
    {
        state
            .pending_hosts
            .insert("svc:grafana-eng".to_owned(), vec![node]);
    }
    state.dns = demo_dns();
    state.settings = demo_settings();
    let created = now - Duration::days(45);
    let secret = Secret::new(format!("tskey-webhook-{}", state.alnum(32)));
    state.webhooks = vec![Webhook {
        endpoint_id: state.alnum(12),
        endpoint_url: "https://hooks.example.com/tailscale".into(),
        provider_type: Some("slack".into()),
        creator_login_name: login("alice"),
        created,
        last_modified: created,
        subscriptions: vec![
            "nodeCreated".into(),
            "nodeNeedsApproval".into(),
            "policyUpdate".into(),
        ],
        secret,
    }];
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::render::strip_rendered;

    #[test]
    fn policy_texts_carry_comments_and_match_their_parsed_form() {
        for policy in [demo_policy(), default_policy()] {
            assert!(policy.text.starts_with("// "));
            let plain: Value = serde_json::from_str(&strip_rendered(&policy.text)).unwrap();
            assert_eq!(plain, policy.doc);
            assert_eq!(policy.etag, policy_etag(&policy.text));
        }
        assert!(default_policy().is_default);
        assert!(!demo_policy().is_default);
    }

    #[test]
    fn every_seeded_tag_is_defined_in_tag_owners() {
        let identity = Identity::derive(3);
        let state = build(3, 200, &identity, Utc::now());
        let owners = state.policy.doc["tagOwners"].as_object().unwrap();
        let device_tags = state.devices.iter().flat_map(|d| d.tags.iter());
        let service_tags = state.services.iter().flat_map(|s| s.tags.iter());
        let key_tags = state.keys.iter().flat_map(|k| {
            k.tags.iter().cloned().chain(
                k.capabilities
                    .as_ref()
                    .and_then(|c| c.pointer("/devices/create/tags"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned)),
            )
        });
        for tag in device_tags.chain(service_tags).cloned().chain(key_tags) {
            assert!(owners.contains_key(&tag), "{tag} is not in tagOwners");
        }
    }

    #[test]
    fn policy_tests_and_groups_name_seeded_users() {
        let identity = Identity::derive(3);
        let state = build(3, 0, &identity, Utc::now());
        let logins: Vec<&str> = state.users.iter().map(|u| u.login_name.as_str()).collect();
        let doc = &state.policy.doc;
        let members = doc["groups"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|m| m.as_array().unwrap());
        let test_sources = doc["tests"].as_array().unwrap().iter().map(|t| &t["src"]);
        for who in members.chain(test_sources).filter_map(Value::as_str) {
            assert!(who.starts_with("tag:") || logins.contains(&who), "{who}");
        }
        // Services and hosts resolve to seeded devices.
        for service in &state.services {
            assert_eq!(service.addrs.len(), 2);
            for host in &service.hosts {
                assert!(state.device(host).is_ok(), "{host}");
            }
        }
    }

    #[test]
    fn credentials_depend_only_on_the_seed() {
        let (a, b, c) = (
            Identity::derive(1),
            Identity::derive(1),
            Identity::derive(2),
        );
        assert_eq!(a.api_key, b.api_key);
        assert_eq!(a.oauth_client_secret, b.oauth_client_secret);
        assert_ne!(a.api_key, c.api_key);
        assert!(a.api_key.expose().starts_with("tskey-api-"));
        assert!(a.oauth_client_secret.expose().starts_with("tskey-client-"));
    }
}
