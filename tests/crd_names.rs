//! Coexistence by name with Tailscale's own Kubernetes operator (group `tailscale.com`), which
//! this project promises to run beside: with both installed, `kubectl get <name>` must never
//! silently pick one of the two groups. No kind, plural, singular or short name of ours may
//! equal one of theirs (kubectl matches them case-insensitively).
//!
//! The one documented exception is `DNSConfig`: the design names the kind so, and Tailscale's
//! operator has an unrelated `DNSConfig`. Its kind, plural and singular are shared on purpose
//! (`kubectl get dnsconfigs.tailnet.ops.dev` in the docs); its short names must still differ.
use std::collections::BTreeSet;

use tailnet_operator::resources;

/// Tailscale's operator's custom resources (as of its 2026 releases): kind, plural, short names.
/// Singulars are the lowercased kinds.
const TAILSCALE_OPERATOR: &[(&str, &str, &[&str])] = &[
    ("Connector", "connectors", &["cn"]),
    ("ProxyClass", "proxyclasses", &[]),
    ("DNSConfig", "dnsconfigs", &["dc"]),
    ("ProxyGroup", "proxygroups", &["pg"]),
    ("ProxyGroupPolicy", "proxygrouppolicies", &["pgp"]),
    ("Recorder", "recorders", &["rec"]),
    ("PeerRelay", "peerrelays", &["pr"]),
    ("Tailnet", "tailnets", &["tn"]),
];

/// Names of ours allowed to equal theirs: DNSConfig's kind, plural and singular (see above).
const SHARED_ON_PURPOSE: &[&str] = &["dnsconfig", "dnsconfigs"];

fn theirs() -> BTreeSet<String> {
    TAILSCALE_OPERATOR
        .iter()
        .flat_map(|(kind, plural, shorts)| {
            [kind.to_lowercase(), plural.to_string()]
                .into_iter()
                .chain(shorts.iter().map(|s| s.to_string()))
        })
        .collect()
}

#[test]
fn no_name_of_ours_equals_one_of_tailscales_operator() {
    let theirs = theirs();
    let mut clashes = Vec::new();
    for crd in resources::crds() {
        let names = &crd.spec.names;
        let ours = [
            ("kind", names.kind.to_lowercase()),
            ("plural", names.plural.clone()),
            (
                "singular",
                names
                    .singular
                    .clone()
                    .unwrap_or_else(|| names.kind.to_lowercase()),
            ),
        ]
        .into_iter()
        .chain(
            names
                .short_names
                .iter()
                .flatten()
                .map(|s| ("short name", s.to_lowercase())),
        );
        for (what, name) in ours {
            if theirs.contains(&name) && !SHARED_ON_PURPOSE.contains(&name.as_str()) {
                clashes.push(format!("{} {what} {name:?}", names.kind));
            }
        }
    }
    assert!(
        clashes.is_empty(),
        "names that clash with Tailscale's operator (group tailscale.com): {clashes:?}"
    );
}

#[test]
fn the_check_sees_a_clash_and_the_exception_stays_narrow() {
    let theirs = theirs();
    // What this project called its connection kind before the rename: it would clash.
    for old in ["tailnet", "tailnets", "tn"] {
        assert!(theirs.contains(old), "{old} is one of theirs");
        assert!(!SHARED_ON_PURPOSE.contains(&old));
    }
    // DNSConfig's short names are ours alone.
    let dns = resources::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "DNSConfig")
        .expect("DNSConfig CRD");
    for short in dns.spec.names.short_names.iter().flatten() {
        assert!(!theirs.contains(short), "DNSConfig short name {short}");
    }
}

#[test]
fn every_kind_is_in_the_tailnetops_category() {
    for crd in resources::crds() {
        let categories = crd.spec.names.categories.clone().unwrap_or_default();
        assert!(
            categories.iter().any(|c| c == "tailnetops"),
            "{} categories {categories:?}",
            crd.spec.names.kind
        );
    }
}
