//! Behaviour tests for the access evaluator, written against Tailscale's documented semantics.
use std::net::IpAddr;

use serde_json::json;

use super::*;
use crate::policy::hujson::parse_strict;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";

fn dev(hostname: &str, addrs: &[&str], user: &str, tags: &[&str]) -> DeviceView {
    DeviceView {
        hostname: hostname.into(),
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        user: user.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        // alice administers the tailnet; everyone else is a member.
        role: match user {
            ALICE => "admin".into(),
            "" => String::new(),
            _ => "member".into(),
        },
    }
}

/// alice has a laptop and a phone, bob a laptop; web-1 was alice's until she tagged it.
fn view() -> TailnetView {
    TailnetView {
        users: vec![ALICE.into(), BOB.into(), CAROL.into()],
        devices: vec![
            dev(
                "alice-laptop",
                &["100.64.0.1", "fd7a:115c:a1e0::1"],
                ALICE,
                &[],
            ),
            dev(
                "alice-phone",
                &["100.64.0.2", "fd7a:115c:a1e0::2"],
                ALICE,
                &[],
            ),
            dev("bob-laptop", &["100.64.0.3", "fd7a:115c:a1e0::3"], BOB, &[]),
            dev(
                "web-1",
                &["100.64.0.10", "fd7a:115c:a1e0::10"],
                ALICE,
                &["tag:web"],
            ),
            dev("db-1", &["100.64.0.20"], BOB, &["tag:db"]),
            dev("prod-db", &["100.64.0.21"], "", &["tag:prod", "tag:db"]),
        ],
        services: vec![ServiceView {
            name: "svc:grafana".into(),
            addresses: vec!["100.100.0.9".parse().unwrap()],
        }],
    }
}

fn device(name: &str) -> Endpoint {
    let d = view()
        .devices
        .into_iter()
        .find(|d| d.hostname == name)
        .unwrap();
    Endpoint::Device(d)
}

fn user(login: &str) -> Endpoint {
    Endpoint::User(login.into())
}

fn tag(t: &str) -> Endpoint {
    Endpoint::Tag(t.into())
}

fn ip(a: &str) -> Endpoint {
    Endpoint::Ip(a.parse::<IpAddr>().unwrap())
}

fn cidr(p: &str) -> Endpoint {
    Endpoint::Prefix(IpPrefix::parse(p).unwrap())
}

/// Compiles a HuJSON policy with the usual tag owners and groups prepended.
fn policy(body: &str) -> Policy {
    let text = format!(
        r#"{{
          "tagOwners": {{"tag:web": ["{ALICE}"], "tag:db": ["group:eng"], "tag:prod": ["autogroup:admin"]}},
          "groups": {{"group:eng": ["{ALICE}"], "group:ops": ["{ALICE}", "{BOB}"]}},
          "hosts": {{"corp-net": "10.0.0.0/8", "db-vip": "100.64.0.20"}},
          {body}
        }}"#
    );
    let doc = parse_strict(&text).unwrap_or_else(|e| panic!("bad HuJSON: {e}\n{text}"));
    Policy::compile(&doc).unwrap_or_else(|e| panic!("compile failed: {e}"))
}

fn compile_err(doc: serde_json::Value) -> String {
    match Policy::compile(&doc) {
        Ok(_) => panic!("expected a compile error for {doc}"),
        Err(e) => e.message,
    }
}

fn allows(p: &Policy, src: &Endpoint, dst: &Endpoint, port: u16, proto: Proto) -> bool {
    p.allows(src, dst, port, proto, &view())
}

// ---- defaults and basic matching ----------------------------------------------------------

#[test]
fn default_deny_without_rules() {
    let p = policy(r#""acls": []"#);
    assert!(!allows(
        &p,
        &user(ALICE),
        &device("bob-laptop"),
        22,
        Proto::TCP
    ));
    let empty = Policy::compile(&json!({})).unwrap();
    assert!(!empty.allows(
        &device("alice-laptop"),
        &device("bob-laptop"),
        22,
        Proto::TCP,
        &view()
    ));
    assert!(empty.access_pairs(&view()).is_empty());
}

#[test]
fn user_to_tag_single_port() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "dst": ["tag:web:80"]}}]"#
    ));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 80, Proto::TCP));
    assert!(allows(
        &p,
        &device("alice-phone"),
        &device("web-1"),
        80,
        Proto::TCP
    ));
    // No proto: UDP is covered too.
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 80, Proto::UDP));
    // Port outside the rule.
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 81, Proto::TCP));
    // Other users and other destinations.
    assert!(!allows(&p, &user(BOB), &tag("tag:web"), 80, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:db"), 80, Proto::TCP));
    // Directional: the destination cannot connect back.
    assert!(!allows(&p, &tag("tag:web"), &user(ALICE), 80, Proto::TCP));
}

#[test]
fn port_lists_and_ranges() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "dst": ["tag:web:22,80,443", "tag:db:8000-8999"]}}]"#
    ));
    for port in [22, 80, 443] {
        assert!(
            allows(&p, &user(ALICE), &tag("tag:web"), port, Proto::TCP),
            "{port}"
        );
    }
    for port in [21, 23, 79, 444, 8000] {
        assert!(
            !allows(&p, &user(ALICE), &tag("tag:web"), port, Proto::TCP),
            "{port}"
        );
    }
    assert!(allows(&p, &user(ALICE), &tag("tag:db"), 8000, Proto::TCP));
    assert!(allows(&p, &user(ALICE), &tag("tag:db"), 8999, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:db"), 7999, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:db"), 9000, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:db"), 22, Proto::TCP));
}

#[test]
fn explicit_proto_excludes_other_protocols() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "proto": "tcp", "dst": ["tag:web:443"]}}]"#
    ));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 443, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 443, Proto::UDP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 443, Proto::SCTP));
    // Numeric protocol spelling is equivalent.
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "proto": "17", "dst": ["tag:web:53"]}}]"#
    ));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 53, Proto::UDP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 53, Proto::TCP));
}

#[test]
fn icmp_needs_all_ports() {
    let p = policy(&format!(
        r#""acls": [
          {{"action": "accept", "src": ["{ALICE}"], "dst": ["tag:web:22"]}},
          {{"action": "accept", "src": ["{BOB}"], "dst": ["tag:web:*"]}},
          {{"action": "accept", "src": ["{CAROL}"], "proto": "icmp", "dst": ["tag:web:*"]}},
        ]"#
    ));
    // Default protocols include ICMP, but a port-specific rule grants no ICMP.
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 0, Proto::ICMP));
    assert!(allows(&p, &user(BOB), &tag("tag:web"), 0, Proto::ICMP));
    assert!(allows(&p, &user(BOB), &tag("tag:web"), 0, Proto::ICMPV6));
    assert!(!allows(&p, &user(BOB), &tag("tag:web"), 0, Proto::SCTP));
    // proto icmp: ICMP only.
    assert!(allows(&p, &user(CAROL), &tag("tag:web"), 0, Proto::ICMP));
    assert!(!allows(&p, &user(CAROL), &tag("tag:web"), 22, Proto::TCP));
}

#[test]
fn wildcard_src_and_dst() {
    let p = policy(r#""acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]"#);
    assert!(allows(
        &p,
        &device("web-1"),
        &device("alice-laptop"),
        5555,
        Proto::TCP
    ));
    assert!(allows(&p, &user(CAROL), &tag("tag:prod"), 1, Proto::UDP));
    assert!(allows(&p, &user(BOB), &ip("8.8.8.8"), 443, Proto::TCP));
    assert!(allows(
        &p,
        &ip("192.168.1.5"),
        &device("db-1"),
        5432,
        Proto::TCP
    ));
    // Without "proto" only TCP, UDP and ICMP(v6) are covered, even by "*:*".
    assert!(!allows(&p, &user(BOB), &device("db-1"), 0, Proto(47)));
}

// ---- identities ---------------------------------------------------------------------------

#[test]
fn tagged_device_is_no_longer_its_former_owners() {
    let p = policy(&format!(
        r#""acls": [
          {{"action": "accept", "src": ["{ALICE}"], "dst": ["*:*"]}},
          {{"action": "accept", "src": ["group:ops"], "dst": ["{ALICE}:22"]}},
        ]"#
    ));
    // web-1's recorded user is alice, but it is tagged: alice's rules do not cover it as a source...
    assert!(allows(
        &p,
        &device("alice-laptop"),
        &device("bob-laptop"),
        22,
        Proto::TCP
    ));
    assert!(!allows(
        &p,
        &device("web-1"),
        &device("bob-laptop"),
        22,
        Proto::TCP
    ));
    // ...nor as a destination named by alice's login.
    assert!(allows(
        &p,
        &user(BOB),
        &device("alice-phone"),
        22,
        Proto::TCP
    ));
    assert!(!allows(&p, &user(BOB), &device("web-1"), 22, Proto::TCP));
    // The user endpoint covers only untagged devices.
    assert!(allows(&p, &user(BOB), &user(ALICE), 22, Proto::TCP));
}

#[test]
fn autogroup_self_reaches_only_own_untagged_devices() {
    let p = policy(
        r#""acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}]"#,
    );
    assert!(allows(
        &p,
        &device("alice-laptop"),
        &device("alice-phone"),
        22,
        Proto::TCP
    ));
    assert!(allows(&p, &user(ALICE), &user(ALICE), 8080, Proto::UDP));
    assert!(!allows(
        &p,
        &device("alice-laptop"),
        &device("bob-laptop"),
        22,
        Proto::TCP
    ));
    assert!(!allows(&p, &user(BOB), &user(ALICE), 22, Proto::TCP));
    // A tagged device formerly alice's is not "self" for alice, and tagged sources have no self.
    assert!(!allows(
        &p,
        &device("alice-laptop"),
        &device("web-1"),
        22,
        Proto::TCP
    ));
    assert!(!allows(
        &p,
        &device("web-1"),
        &device("alice-laptop"),
        22,
        Proto::TCP
    ));
    // autogroup:self as a source is a compile error.
    let e = compile_err(
        json!({"acls": [{"action": "accept", "src": ["autogroup:self"], "dst": ["*:*"]}]}),
    );
    assert!(e.contains("acls[0].src[0] \"autogroup:self\""), "{e}");
}

#[test]
fn autogroup_member_and_tagged() {
    let p = policy(
        r#""acls": [
          {"action": "accept", "src": ["autogroup:member"], "dst": ["tag:web:443"]},
          {"action": "accept", "src": ["autogroup:tagged"], "dst": ["autogroup:member:9100"]},
        ]"#,
    );
    assert!(allows(
        &p,
        &device("bob-laptop"),
        &device("web-1"),
        443,
        Proto::TCP
    ));
    assert!(!allows(
        &p,
        &device("db-1"),
        &device("web-1"),
        443,
        Proto::TCP
    ));
    assert!(allows(
        &p,
        &device("db-1"),
        &device("alice-laptop"),
        9100,
        Proto::TCP
    ));
    assert!(!allows(
        &p,
        &device("db-1"),
        &device("prod-db"),
        9100,
        Proto::TCP
    ));
    assert!(!allows(
        &p,
        &device("bob-laptop"),
        &device("alice-laptop"),
        9100,
        Proto::TCP
    ));
}

#[test]
fn group_members_and_non_members() {
    let p =
        policy(r#""acls": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:db:5432"]}]"#);
    assert!(allows(&p, &user(ALICE), &tag("tag:db"), 5432, Proto::TCP));
    assert!(allows(
        &p,
        &device("alice-phone"),
        &device("prod-db"),
        5432,
        Proto::TCP
    ));
    assert!(!allows(&p, &user(BOB), &tag("tag:db"), 5432, Proto::TCP));
    assert!(!allows(
        &p,
        &device("bob-laptop"),
        &device("db-1"),
        5432,
        Proto::TCP
    ));
    // A group endpoint needs every member: bob is in group:ops but not in group:eng.
    let v = view();
    assert_eq!(
        p.check(
            &Endpoint::Group("group:eng".into()),
            &tag("tag:db"),
            5432,
            None,
            &v
        )
        .unwrap(),
        Verdict::Accept
    );
    assert!(matches!(
        p.check(
            &Endpoint::Group("group:ops".into()),
            &tag("tag:db"),
            5432,
            None,
            &v
        )
        .unwrap(),
        Verdict::Partial { .. }
    ));
}

#[test]
fn tag_identity_without_devices_is_still_evaluated() {
    let p = policy(r#""acls": [{"action": "accept", "src": ["tag:prod"], "dst": ["tag:web:80"]}]"#);
    let empty = TailnetView::default();
    assert!(p.allows(&tag("tag:prod"), &tag("tag:web"), 80, Proto::TCP, &empty));
    assert!(!p.allows(&tag("tag:db"), &tag("tag:web"), 80, Proto::TCP, &empty));
    // A tag missing from tagOwners cannot be evaluated.
    assert!(
        p.check(&tag("tag:nope"), &tag("tag:web"), 80, None, &empty)
            .is_err()
    );
}

// ---- addresses ----------------------------------------------------------------------------

#[test]
fn host_alias_cidr_containment() {
    let p =
        policy(r#""acls": [{"action": "accept", "src": ["group:eng"], "dst": ["corp-net:22"]}]"#);
    assert!(allows(&p, &user(ALICE), &ip("10.1.2.3"), 22, Proto::TCP));
    assert!(allows(
        &p,
        &user(ALICE),
        &ip("10.255.255.255"),
        22,
        Proto::TCP
    ));
    assert!(!allows(&p, &user(ALICE), &ip("11.0.0.1"), 22, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &ip("10.1.2.3"), 23, Proto::TCP));
    assert!(allows(
        &p,
        &user(ALICE),
        &cidr("10.20.0.0/16"),
        22,
        Proto::TCP
    ));
    let v = view();
    // A wider prefix is only partly covered.
    assert!(matches!(
        p.check(&user(ALICE), &cidr("10.0.0.0/7"), 22, None, &v)
            .unwrap(),
        Verdict::Partial { .. }
    ));
    assert_eq!(
        p.check(&user(ALICE), &cidr("192.168.0.0/16"), 22, None, &v)
            .unwrap(),
        Verdict::Drop
    );
}

#[test]
fn ip_selectors_match_device_addresses() {
    let p = policy(
        r#""acls": [
          {"action": "accept", "src": ["100.64.0.3"], "dst": ["db-vip:5432", "fd7a:115c:a1e0::1:22", "[fd7a:115c:a1e0::2]:80", "100.64.0.0/30:9000"]},
        ]"#,
    );
    // bob-laptop holds 100.64.0.3; db-vip is db-1's address.
    assert!(allows(
        &p,
        &device("bob-laptop"),
        &device("db-1"),
        5432,
        Proto::TCP
    ));
    // tag:db also covers prod-db, which the IP rule does not.
    assert!(!allows(
        &p,
        &ip("100.64.0.3"),
        &tag("tag:db"),
        5432,
        Proto::TCP
    ));
    assert!(allows(
        &p,
        &ip("100.64.0.3"),
        &ip("100.64.0.20"),
        5432,
        Proto::TCP
    ));
    // The device's IPv6 source address is not in the rule.
    assert!(!allows(
        &p,
        &ip("fd7a:115c:a1e0::3"),
        &ip("100.64.0.20"),
        5432,
        Proto::TCP
    ));
    // IPv6 destinations, bare (split at the last colon) and bracketed.
    assert!(allows(
        &p,
        &device("bob-laptop"),
        &device("alice-laptop"),
        22,
        Proto::TCP
    ));
    assert!(allows(
        &p,
        &device("bob-laptop"),
        &ip("fd7a:115c:a1e0::1"),
        22,
        Proto::TCP
    ));
    assert!(!allows(
        &p,
        &device("bob-laptop"),
        &ip("100.64.0.1"),
        22,
        Proto::TCP
    ));
    assert!(allows(
        &p,
        &device("bob-laptop"),
        &device("alice-phone"),
        80,
        Proto::TCP
    ));
    // CIDR destination: 100.64.0.0/30 holds alice-laptop (0.1) and alice-phone (0.2).
    assert!(allows(
        &p,
        &device("bob-laptop"),
        &user(ALICE),
        9000,
        Proto::TCP
    ));
    assert!(!allows(
        &p,
        &device("bob-laptop"),
        &device("web-1"),
        9000,
        Proto::TCP
    ));
    // Another device is not the listed source.
    assert!(!allows(
        &p,
        &device("alice-laptop"),
        &device("db-1"),
        5432,
        Proto::TCP
    ));
}

#[test]
fn autogroup_internet_matches_only_public_addresses() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "dst": ["autogroup:internet:*"]}}]"#
    ));
    assert!(allows(&p, &user(ALICE), &ip("8.8.8.8"), 443, Proto::TCP));
    assert!(allows(
        &p,
        &user(ALICE),
        &ip("2606:4700::1111"),
        443,
        Proto::UDP
    ));
    assert!(!allows(&p, &user(ALICE), &ip("10.0.0.1"), 443, Proto::TCP));
    assert!(!allows(
        &p,
        &user(ALICE),
        &device("bob-laptop"),
        443,
        Proto::TCP
    ));
    assert!(!allows(&p, &user(BOB), &ip("8.8.8.8"), 443, Proto::TCP));
}

#[test]
fn ipsets_add_and_remove() {
    let p = policy(
        r#""ipsets": {
            "ipset:office": ["add 192.168.0.0/16", "remove 192.168.99.0/24"],
            "ipset:all-sites": ["ipset:office", "corp-net"],
          },
          "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["ipset:all-sites:22"]}]"#,
    );
    assert!(allows(&p, &user(ALICE), &ip("192.168.1.1"), 22, Proto::TCP));
    assert!(allows(&p, &user(ALICE), &ip("10.9.9.9"), 22, Proto::TCP));
    assert!(!allows(
        &p,
        &user(ALICE),
        &ip("192.168.99.1"),
        22,
        Proto::TCP
    ));
}

// ---- grants -------------------------------------------------------------------------------

#[test]
fn grant_with_tcp_only_denies_udp() {
    let p = policy(&format!(
        r#""grants": [{{"src": ["{ALICE}"], "dst": ["tag:web"], "ip": ["tcp:443"]}}]"#
    ));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 443, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 443, Proto::UDP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 80, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 0, Proto::ICMP));
}

#[test]
fn grant_ip_forms() {
    let p = policy(&format!(
        r#""grants": [
          {{"src": ["{ALICE}"], "dst": ["tag:web"], "ip": ["22", "udp:53", "tcp:8000-8100", "icmp:*"]}},
          {{"src": ["{BOB}"], "dst": ["tag:db"], "ip": ["*"]}},
        ]"#
    ));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 22, Proto::TCP));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 22, Proto::UDP));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 53, Proto::UDP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 53, Proto::TCP));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 8050, Proto::TCP));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 0, Proto::ICMP));
    assert!(allows(&p, &user(BOB), &tag("tag:db"), 31337, Proto(47)));
    assert!(!allows(&p, &user(BOB), &tag("tag:web"), 22, Proto::TCP));
}

#[test]
fn app_only_grant_gives_no_network_access() {
    let p = policy(&format!(
        r#""grants": [{{"src": ["{ALICE}"], "dst": ["tag:web"], "app": {{"tailscale.com/cap/webui": [{{}}]}}}}]"#
    ));
    assert_eq!(p.rule_count(), 0);
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 443, Proto::TCP));
}

#[test]
fn acls_and_grants_combine_as_a_union() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "dst": ["tag:web:22"]}}],
           "grants": [{{"src": ["{ALICE}"], "dst": ["tag:web"], "ip": ["tcp:443"]}}]"#
    ));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 22, Proto::TCP));
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 443, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 80, Proto::TCP));
    assert_eq!(
        p.matching_rules(&user(ALICE), &tag("tag:web"), 443, Proto::TCP, &view()),
        ["grants[0]"]
    );
    assert_eq!(
        p.matching_rules(&user(ALICE), &tag("tag:web"), 22, Proto::TCP, &view()),
        ["acls[0]"]
    );
}

// ---- syntax variants ----------------------------------------------------------------------

#[test]
fn legacy_field_names_and_key_case() {
    let doc = json!({
        "TagOwners": {"tag:web": [ALICE]},
        "ACLs": [{"Action": "accept", "Users": [ALICE], "Ports": ["tag:web:80"]}],
    });
    let p = Policy::compile(&doc).unwrap();
    assert!(allows(&p, &user(ALICE), &tag("tag:web"), 80, Proto::TCP));
    assert!(!allows(&p, &user(ALICE), &tag("tag:web"), 81, Proto::TCP));
    let e = compile_err(
        json!({"acls": [{"action": "accept", "src": ["*"], "users": ["*"], "dst": ["*:*"]}]}),
    );
    assert!(
        e.contains("acls[0]: both \"src\" and its legacy name \"users\" are set"),
        "{e}"
    );
}

#[test]
fn hujson_policy_end_to_end() {
    let text = r#"
    // Example policy with comments and trailing commas.
    {
      "groups": {"group:sre": ["alice@example.com",],},
      "tagOwners": {"tag:web": ["group:sre"],},
      "acls": [
        /* SRE may reach the web tier over HTTPS */
        {"action": "accept", "src": ["group:sre"], "dst": ["tag:web:443"],},
      ],
      "tests": [
        {"src": "alice@example.com", "accept": ["tag:web:443"], "deny": ["tag:web:80"]},
      ],
    }"#;
    let p = Policy::compile(&parse_strict(text).unwrap()).unwrap();
    assert!(p.run_tests(None, &view()).is_empty());
}

// ---- compile errors -----------------------------------------------------------------------

#[test]
fn compile_errors_name_the_offending_entry() {
    let cases = [
        (
            json!({"acls": [{"action": "accept", "src": ["group:nope"], "dst": ["*:*"]}]}),
            "acls[0].src[0] \"group:nope\": group \"group:nope\" is not defined in \"groups\"",
        ),
        (
            json!({"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22", "*:8o"]}]}),
            "acls[0].dst[1] \"*:8o\"",
        ),
        (
            json!({"acls": [{"action": "accept", "src": ["*"], "dst": ["nas:22"]}]}),
            "acls[0].dst[0] \"nas:22\": \"nas\" is not a defined host alias",
        ),
        (
            json!({"grants": [{"src": ["*"], "dst": ["tag:db"], "ip": ["*"]}]}),
            "grants[0].dst[0] \"tag:db\": tag \"tag:db\" is not defined in \"tagOwners\"",
        ),
        (
            json!({"acls": [{"action": "accept", "src": ["*"], "dst": ["*:99999"]}]}),
            "out of range",
        ),
        (
            json!({"acls": [{"action": "accept", "src": ["*"], "dst": ["*:80-22"]}]}),
            "inverted",
        ),
        (
            json!({"acls": [{"action": "accept", "src": ["*"], "dst": ["tag-less-host"]}]}),
            "acls[0].dst[0] \"tag-less-host\": expected \"<target>:<ports>\"",
        ),
        (
            json!({"acls": [{"action": "accept", "src": ["*"], "proto": "icmp", "dst": ["*:22"]}]}),
            "acls[0].dst[0] \"*:22\": this protocol has no ports",
        ),
        (
            json!({"acls": [{"action": "accept", "src": ["*"], "proto": "http", "dst": ["*:*"]}]}),
            "acls[0].proto: unknown protocol \"http\"",
        ),
        (
            json!({"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}),
            "acls[0].action \"deny\"",
        ),
        (
            json!({"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "port": ["x"]}]}),
            "acls[0]: unknown field \"port\"",
        ),
        (
            json!({"acls": [{"action": "accept", "dst": ["*:*"]}]}),
            "acls[0]: \"src\" is required",
        ),
        (
            json!({"grants": [{"src": ["*"], "dst": ["*"]}]}),
            "grants[0]: a grant needs \"ip\" and/or \"app\"",
        ),
        (
            json!({"grants": [{"src": ["*"], "dst": ["*"], "ip": ["tcp:abc"]}]}),
            "grants[0].ip[0] \"tcp:abc\"",
        ),
        (
            json!({"grants": [{"src": ["*"], "dst": ["*"], "ip": ["icmp"]}]}),
            "grants[0].ip[0] \"icmp\": write \"icmp:*\"",
        ),
        (
            json!({"groups": {"group:a": ["group:b"], "group:b": [ALICE]}}),
            "groups[\"group:a\"][0] \"group:b\": groups cannot contain other groups",
        ),
        (
            json!({"groups": {"group:a": ["alice"]}}),
            "groups[\"group:a\"][0] \"alice\": group members must be users",
        ),
        (
            json!({"hosts": {"nas": "10.0.0.300"}}),
            "hosts[\"nas\"]: \"10.0.0.300\" is not an IP address or CIDR",
        ),
        (
            json!({"tagOwners": {"tag:web": ["group:missing"]}}),
            "tagOwners[\"tag:web\"][0] \"group:missing\": group \"group:missing\" is not defined",
        ),
        (
            json!({"ssh": [{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:ghost"], "users": ["root"]}]}),
            "ssh[0].dst[0] \"tag:ghost\": tag \"tag:ghost\" is not defined in \"tagOwners\"",
        ),
        (
            json!({"autoApprovers": {"routes": {"10.0.0.0/8": ["tag:router"]}}}),
            "autoApprovers.routes[\"10.0.0.0/8\"][0] \"tag:router\"",
        ),
        (json!({"tests": {"src": ALICE}}), "tests: must be an array"),
        (json!([]), "the policy must be a JSON object"),
    ];
    for (doc, expected) in cases {
        let e = compile_err(doc.clone());
        assert!(
            e.contains(expected),
            "for {doc}\n  expected: {expected}\n  got: {e}"
        );
    }
}

#[test]
fn compile_reports_every_problem() {
    let e = compile_err(json!({
        "acls": [
            {"action": "accept", "src": ["group:a"], "dst": ["tag:x:22"]},
            {"action": "accept", "src": ["*"], "dst": ["*:abc"]},
        ]
    }));
    assert!(e.contains("acls[0].src[0]"), "{e}");
    assert!(e.contains("acls[0].dst[0]"), "{e}");
    assert!(e.contains("acls[1].dst[0]"), "{e}");
}

#[test]
fn unresolvable_but_valid_selectors_compile_with_warnings() {
    let p = policy(
        r#""grants": [{"src": ["autogroup:shared"], "dst": ["tag:web"], "ip": ["tcp:443"], "srcPosture": ["posture:x"]}],
           "aclz": []"#,
    );
    let warnings = p.warnings().join("\n");
    assert!(warnings.contains("autogroup:shared"), "{warnings}");
    assert!(warnings.contains("srcPosture"), "{warnings}");
    assert!(warnings.contains("\"aclz\""), "{warnings}");
}

#[test]
fn role_autogroups_match_the_untagged_devices_of_users_with_that_role() {
    let p = policy(
        r#""acls": [{"action": "accept", "src": ["autogroup:admin"], "dst": ["*:*"]},
                    {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:owner:80"]}]"#,
    );
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    // alice is an admin: her devices reach anything; bob (a member) does not.
    assert!(allows(
        &p,
        &user(ALICE),
        &device("bob-laptop"),
        22,
        Proto::TCP
    ));
    assert!(!allows(
        &p,
        &user(BOB),
        &device("alice-laptop"),
        22,
        Proto::TCP
    ));
    // web-1 was alice's until she tagged it: a tagged device has no role.
    assert!(!allows(
        &p,
        &device("web-1"),
        &device("bob-laptop"),
        22,
        Proto::TCP
    ));
    // Nobody is the owner in this view: autogroup:owner matches nothing.
    assert!(!allows(
        &p,
        &user(BOB),
        &device("alice-laptop"),
        80,
        Proto::TCP
    ));
}

#[test]
fn tag_definition_helpers() {
    let p = policy(r#""acls": []"#);
    assert!(p.is_tag_defined("tag:web"));
    assert_eq!(
        p.undefined_tags(["tag:web", "tag:k8s", "tag:k8s", "tag:db"]),
        ["tag:k8s"]
    );
    assert_eq!(p.group_members("group:eng").unwrap().len(), 1);
}

// ---- policy tests -------------------------------------------------------------------------

#[test]
fn tests_pass_when_expectations_hold() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["group:eng"], "dst": ["tag:db:5432", "corp-net:22"]}}],
           "tests": [
             {{"src": "{ALICE}", "accept": ["tag:db:5432", "db-1:5432", "db-vip:5432", "10.1.1.1:22", "corp-net:22"], "deny": ["tag:db:22", "bob-laptop:22"]}},
             {{"src": "{BOB}", "deny": ["tag:db:5432"]}},
             {{"src": "group:eng", "proto": "tcp", "accept": ["prod-db:5432"]}},
             {{"src": "tag:web", "deny": ["tag:db:5432"]}},
           ]"#
    ));
    assert_eq!(p.run_tests(None, &view()), []);
}

#[test]
fn failing_accept_and_deny_expectations_are_reported() {
    let p =
        policy(r#""acls": [{"action": "accept", "src": ["group:ops"], "dst": ["tag:web:80"]}]"#);
    let tests = json!([
        {"src": ALICE, "accept": ["tag:web:80", "tag:web:443"], "deny": ["tag:web:80"]},
        {"src": BOB, "accept": ["tag:web:80"]},
        {"src": CAROL, "deny": ["tag:web:80"]},
    ]);
    let failures = p.run_tests(Some(&tests), &view());
    assert_eq!(
        failures,
        [TestFailure {
            src: ALICE.into(),
            errors: vec![
                "address \"tag:web:443\": want: Accept, got: Drop".into(),
                "address \"tag:web:80\": want: Drop, got: Accept".into(),
            ],
        }]
    );
}

#[test]
fn partial_access_fails_both_accept_and_deny() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "dst": ["tag:web:80"]}}]"#
    ));
    let tests = json!([{"src": "group:ops", "accept": ["tag:web:80"]}, {"src": "group:ops", "deny": ["web-1:80"]}]);
    let failures = p.run_tests(Some(&tests), &view());
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].src, "group:ops");
    assert_eq!(
        failures[0].errors,
        ["address \"tag:web:80\": want: Accept, got: Drop from bob-laptop to web-1"]
    );
    assert!(
        failures[1].errors[0]
            .starts_with("address \"web-1:80\": want: Drop, got: Accept from alice-"),
        "{:?}",
        failures[1]
    );
}

#[test]
fn test_proto_defaults_to_tcp_or_udp() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "proto": "udp", "dst": ["tag:web:53"]}}]"#
    ));
    let tests = json!([
        {"src": ALICE, "accept": ["tag:web:53"]},
        {"src": ALICE, "proto": "udp", "accept": ["tag:web:53"]},
        {"src": ALICE, "proto": "tcp", "deny": ["tag:web:53"]},
        {"src": ALICE, "proto": "tcp", "accept": ["tag:web:53"]},
    ]);
    let failures = p.run_tests(Some(&tests), &view());
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        failures[0].errors,
        ["address \"tag:web:53\": want: Accept, got: Drop"]
    );
}

#[test]
fn legacy_test_fields() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "dst": ["tag:web:22"]}}]"#
    ));
    let tests = json!([{"user": ALICE, "allow": ["tag:web:22"], "deny": ["tag:web:23"]}]);
    assert_eq!(p.run_tests(Some(&tests), &view()), []);
    let tests = json!([{"user": BOB, "allow": ["tag:web:22"]}]);
    let failures = p.run_tests(Some(&tests), &view());
    assert_eq!(failures[0].src, BOB);
    assert_eq!(
        failures[0].errors,
        ["address \"tag:web:22\": want: Accept, got: Drop"]
    );
}

#[test]
fn bad_references_in_tests_are_failures_not_panics() {
    let p = policy(r#""acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]"#);
    let tests = json!([
        {"src": "group:missing", "accept": ["tag:web:22"]},
        {"src": ALICE, "accept": ["nas:22", "tag:ghost:22", "tag:web:*", "tag:web", "group:nope:1"]},
        {"src": "mallory@example.com", "accept": ["tag:web:22"]},
        {"src": "*", "accept": ["tag:web:22"]},
        {"accept": ["tag:web:22"]},
        {"src": ALICE, "proto": "bogus", "accept": ["tag:web:22"]},
        {"src": ALICE, "accept": "tag:web:22", "extra": true},
        "not an object",
    ]);
    let failures = p.run_tests(Some(&tests), &view());
    let all: Vec<String> = failures.iter().flat_map(|f| f.errors.clone()).collect();
    let expect = [
        "src \"group:missing\": group \"group:missing\" is not defined",
        "address \"nas:22\": \"nas\" is not a host alias, device hostname",
        "address \"tag:ghost:22\": tag \"tag:ghost\" is not defined in \"tagOwners\"",
        "address \"tag:web:*\": port \"*\" must be a single number",
        "address \"tag:web\": port \"web\" must be a single number",
        "address \"group:nope:1\": group \"group:nope\" is not defined",
        "src \"mallory@example.com\": user \"mallory@example.com\" not found in the tailnet",
        "src \"*\": wildcards and autogroups cannot be tested",
        "tests[4]: \"src\" is required",
        "tests[5].proto: unknown protocol \"bogus\"",
        "tests[6].accept: must be an array",
        "tests[6]: unknown field \"extra\"",
        "tests[7]: must be an object",
    ];
    for e in expect {
        assert!(
            all.iter().any(|a| a.starts_with(e)),
            "missing {e:?} in {all:#?}"
        );
    }
    assert_eq!(failures.len(), 8);
    assert_eq!(failures[0].src, "group:missing");
    assert_eq!(failures[2].src, "mallory@example.com");
    assert_eq!(failures[4].src, "");
}

#[test]
fn tests_against_ips_and_hostnames() {
    let p = policy(
        r#""acls": [{"action": "accept", "src": ["100.64.0.3"], "dst": ["100.64.0.20:5432", "fd7a:115c:a1e0::1:22"]}]"#,
    );
    let tests = json!([
        {"src": "100.64.0.3", "accept": ["100.64.0.20:5432", "db-1:5432", "db-1.example.ts.net:5432", "[fd7a:115c:a1e0::1]:22", "fd7a:115c:a1e0::1:22"], "deny": ["100.64.0.1:22"]},
        {"src": "bob-laptop", "accept": ["db-1:5432"]},
    ]);
    let failures = p.run_tests(Some(&tests), &view());
    // A device endpoint is one atom: it is accepted when any of its addresses is.
    assert_eq!(failures, []);
}

#[test]
fn run_tests_without_tests_is_empty() {
    let p = policy(r#""acls": []"#);
    assert!(p.run_tests(None, &view()).is_empty());
    let failures = p.run_tests(Some(&json!({"src": ALICE})), &view());
    assert_eq!(failures[0].errors, ["tests must be an array"]);
}

// ---- access pairs and diffs ---------------------------------------------------------------

fn pair(src: &str, dst: &str, proto: ProtoMatch, first: u16, last: u16) -> AccessPair {
    AccessPair {
        src: src.into(),
        dst: dst.into(),
        proto,
        ports: PortRange { first, last },
    }
}

#[test]
fn access_pairs_list_reachable_ports_as_ranges() {
    let p = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{BOB}"], "proto": "tcp", "dst": ["tag:db:5432,6000-6010"]}}]"#
    ));
    let pairs: Vec<String> = p
        .access_pairs(&view())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        pairs,
        [
            "bob-laptop -> db-1 tcp:5432",
            "bob-laptop -> db-1 tcp:6000-6010",
            "bob-laptop -> prod-db tcp:5432",
            "bob-laptop -> prod-db tcp:6000-6010",
        ]
    );
}

#[test]
fn access_pairs_collapse_all_protocols_and_include_targets() {
    let p = policy(&format!(
        r#""grants": [{{"src": ["tag:prod"], "dst": ["*"], "ip": ["*"]}}],
           "acls": [{{"action": "accept", "src": ["{ALICE}"], "dst": ["corp-net:22"]}}]"#
    ));
    let pairs = p.access_pairs(&view());
    let any = ProtoMatch::Other { except: vec![] };
    assert!(pairs.contains(&pair("prod-db", "alice-laptop", any.clone(), 0, 65535)));
    assert!(pairs.contains(&pair(
        "alice-phone",
        "corp-net",
        ProtoMatch::Proto(Proto::TCP),
        22,
        22
    )));
    assert!(pairs.contains(&pair(
        "alice-phone",
        "corp-net",
        ProtoMatch::Proto(Proto::UDP),
        22,
        22
    )));
    assert!(
        !pairs
            .iter()
            .any(|p| p.src == "prod-db" && p.dst == "prod-db"),
        "no self pairs"
    );
    // prod-db: 5 other devices, the svc:grafana service and the corp-net target; alice's 2
    // devices: tcp and udp rows.
    assert_eq!(pairs.len(), 5 + 1 + 1 + 2 * 2);
}

#[test]
fn access_diff_reports_gained_and_lost_pairs() {
    let old = policy(&format!(
        r#""acls": [
          {{"action": "accept", "src": ["{ALICE}"], "proto": "tcp", "dst": ["tag:web:80,443"]}},
          {{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}},
        ]"#
    ));
    let new = policy(&format!(
        r#""acls": [{{"action": "accept", "src": ["{ALICE}"], "proto": "tcp", "dst": ["tag:web:443"]}}],
           "grants": [{{"src": ["{BOB}"], "dst": ["tag:web"], "ip": ["tcp:8080"]}}]"#
    ));
    let diff = old.access_diff(&new, &view());
    let show = |set: &std::collections::BTreeSet<AccessPair>| -> Vec<String> {
        set.iter().map(ToString::to_string).collect()
    };
    assert_eq!(show(&diff.gained), ["bob-laptop -> web-1 tcp:8080"]);
    // "autogroup:self:*" without proto covered TCP, UDP, ICMP and ICMPv6 on all ports.
    let self_rows = |a: &str, b: &str| -> Vec<String> {
        ["icmp", "tcp", "udp", "ipv6-icmp"]
            .iter()
            .map(|p| format!("{a} -> {b} {p}:*"))
            .collect()
    };
    let mut expected = self_rows("alice-laptop", "alice-phone");
    expected.push("alice-laptop -> web-1 tcp:80".into());
    expected.extend(self_rows("alice-phone", "alice-laptop"));
    expected.push("alice-phone -> web-1 tcp:80".into());
    assert_eq!(show(&diff.lost), expected);
    assert!(old.access_diff(&old, &view()).is_empty());
}

#[test]
fn access_diff_splits_partially_lost_protocols() {
    let old = policy(r#""acls": [{"action": "accept", "src": ["tag:web"], "dst": ["tag:db:*"]}]"#);
    let new = policy(
        r#""acls": [{"action": "accept", "src": ["tag:web"], "proto": "tcp", "dst": ["tag:db:5432"]}]"#,
    );
    let diff = old.access_diff(&new, &view());
    assert!(diff.gained.is_empty());
    let lost: Vec<String> = diff
        .lost
        .iter()
        .filter(|p| p.dst == "db-1")
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lost,
        [
            "web-1 -> db-1 icmp:*",
            "web-1 -> db-1 tcp:0-5431",
            "web-1 -> db-1 tcp:5433-65535",
            "web-1 -> db-1 udp:*",
            "web-1 -> db-1 ipv6-icmp:*",
        ]
    );
}

#[test]
fn access_diff_over_many_devices() {
    let mut big = TailnetView::default();
    for i in 0..300u32 {
        let addr = format!("100.{}.{}.{}", 64 + (i >> 16), (i >> 8) & 255, i & 255);
        let (user, tags): (&str, &[&str]) = match i % 3 {
            0 => (ALICE, &[]),
            1 => (BOB, &[]),
            _ => ("", &["tag:web"]),
        };
        big.devices
            .push(dev(&format!("node-{i}"), &[&addr], user, tags));
    }
    let old =
        policy(r#""acls": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:web:443"]}]"#);
    let new = policy(
        r#""acls": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:web:443", "tag:web:80"]}]"#,
    );
    let diff = old.access_diff(&new, &big);
    // alice's 100 devices gain tcp+udp:80 to each of the 100 tagged devices.
    assert_eq!(diff.gained.len(), 100 * 100 * 2);
    assert!(diff.gained.iter().all(|p| p.ports
        == PortRange {
            first: 80,
            last: 80
        }));
    assert!(diff.lost.is_empty());
}

#[test]
fn access_diff_from_all_protocols_lists_exceptions() {
    let old = policy(r#""grants": [{"src": ["tag:web"], "dst": ["tag:prod"], "ip": ["*"]}]"#);
    let new = policy(r#""grants": [{"src": ["tag:web"], "dst": ["tag:prod"], "ip": ["tcp:22"]}]"#);
    let diff = old.access_diff(&new, &view());
    let lost: Vec<String> = diff.lost.iter().map(ToString::to_string).collect();
    assert_eq!(
        lost,
        [
            "web-1 -> prod-db tcp:0-21",
            "web-1 -> prod-db tcp:23-65535",
            "web-1 -> prod-db any protocol except tcp",
        ]
    );
    let gained: Vec<String> = new
        .access_diff(&old, &view())
        .gained
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(gained, lost);
}

#[test]
fn whole_address_space_endpoints() {
    let p = policy(
        r#""acls": [{"action": "accept", "src": ["group:eng"], "dst": ["autogroup:internet:443"]}]"#,
    );
    let v = view();
    // The whole IPv6 space is partly internet (2000::/3), partly not.
    assert!(matches!(
        p.check(&user(ALICE), &cidr("::/0"), 443, Some(Proto::TCP), &v)
            .unwrap(),
        Verdict::Partial { .. }
    ));
    assert_eq!(
        p.check(&user(ALICE), &cidr("2000::/3"), 443, Some(Proto::TCP), &v)
            .unwrap(),
        Verdict::Accept
    );
    assert_eq!(
        p.check(&user(ALICE), &cidr("0.0.0.0/0"), 443, Some(Proto::UDP), &v)
            .unwrap(),
        Verdict::Partial {
            accepted: ("alice-laptop".into(), "1.0.0.0-9.255.255.255".into()),
            dropped: ("alice-laptop".into(), "0.0.0.0-0.255.255.255".into()),
        }
    );
}

// ---- ssh rules and sshTests --------------------------------------------------------------

fn ssh_failures(body: &str) -> Vec<String> {
    policy(body)
        .run_tests(None, &view())
        .into_iter()
        .flat_map(|f| f.errors.into_iter().map(move |e| format!("{}: {e}", f.src)))
        .collect()
}

#[test]
fn ssh_tests_pass_when_the_first_matching_rule_gives_the_expected_outcome() {
    let rules = format!(
        r#""ssh": [
             {{"action": "check", "src": ["group:ops"], "dst": ["tag:db"], "users": ["root"]}},
             {{"action": "accept", "src": ["group:ops"], "dst": ["tag:db"], "users": ["root", "ubuntu"]}},
             {{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot"]}},
             {{"action": "accept", "src": ["{CAROL}"], "dst": ["tag:web"], "users": ["localpart:*@example.com"]}},
           ],"#
    );
    let passing = format!(
        r#"{rules}
           "sshTests": [
             {{"src": "{BOB}", "dst": ["tag:db"], "check": ["root"], "accept": ["ubuntu"], "deny": ["postgres"]}},
             {{"src": "{ALICE}", "dst": ["alice-phone"], "accept": ["alice", "ubuntu"], "deny": ["root"]}},
             {{"src": "{BOB}", "dst": ["alice-laptop"], "deny": ["bob", "ubuntu"]}},
           ]"#
    );
    assert_eq!(ssh_failures(&passing), Vec::<String>::new());

    let failing = format!(
        r#"{rules}
           "sshTests": [
             {{"src": "{BOB}", "dst": ["tag:db"], "accept": ["root"]}},
             {{"src": "{ALICE}", "dst": ["tag:db", "nowhere"], "deny": ["root"]}},
           ]"#
    );
    let failures = ssh_failures(&failing);
    assert_eq!(
        failures,
        [
            "bob@example.com: ssh as \"root\" to \"tag:db\": want: accept, got: check from \
             bob-laptop to db-1",
            "alice@example.com: ssh as \"root\" to \"tag:db\": want: deny, got: check from \
             alice-laptop to db-1",
            "alice@example.com: dst \"nowhere\": \"nowhere\" is not a host alias, device \
             hostname, IP, user, group: or tag:",
        ]
    );
}

#[test]
fn ssh_localpart_maps_the_source_login_to_the_local_user() {
    let body = format!(
        r#""ssh": [{{"action": "accept", "src": ["{CAROL}"], "dst": ["tag:web"], "users": ["localpart:*@example.com"]}}],
           "sshTests": [{{"src": "{CAROL}", "dst": ["tag:web"], "accept": ["carol"], "deny": ["root", "alice"]}}]"#
    );
    let mut v = view();
    v.devices
        .push(dev("carol-laptop", &["100.64.0.30"], CAROL, &[]));
    let failures = policy(&body).run_tests(None, &v);
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn an_ssh_rule_the_evaluator_cannot_read_leaves_ssh_tests_to_tailscale() {
    let body = format!(
        r#""ssh": [{{"action": "accept", "src": ["{BOB}"], "dst": ["tag:db"], "users": ["autogroup:wizards"]}}],
           "sshTests": [{{"src": "{BOB}", "dst": ["tag:db"], "accept": ["root"]}}]"#
    );
    let p = policy(&body);
    assert!(p.run_tests(None, &view()).is_empty(), "not run locally");
    let warnings = p.warnings().join("\n");
    assert!(
        warnings.contains("ssh[0]") && warnings.contains("sshTests are left to Tailscale"),
        "{warnings}"
    );
    // Explicit tests (a Fragment's own) run the network tests only.
    assert!(p.run_tests(Some(&json!([])), &view()).is_empty());
}

#[test]
fn service_destinations_are_the_views_tailscale_services() {
    let p = policy(&format!(
        r#""grants": [{{"src": ["{BOB}"], "dst": ["svc:grafana"], "ip": ["tcp:443"]}},
                      {{"src": ["{ALICE}"], "dst": ["svc:unknown"], "ip": ["*"]}}],
           "tests": [{{"src": "{BOB}", "accept": ["svc:grafana:443"], "deny": ["svc:grafana:22"]}},
                     {{"src": "{ALICE}", "deny": ["svc:grafana:443"]}}]"#
    ));
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    assert!(
        p.run_tests(None, &view()).is_empty(),
        "{:?}",
        p.run_tests(None, &view())
    );
    let grafana = Endpoint::Service("svc:grafana".into());
    assert!(allows(&p, &user(BOB), &grafana, 443, Proto::TCP));
    assert!(!allows(&p, &user(CAROL), &grafana, 443, Proto::TCP));
    // A service not in the view: an error naming it, not a silent pass.
    let err = p.resolve_endpoint("svc:unknown", &view()).unwrap_err();
    assert!(err.contains("svc:unknown"), "{err}");
    // In the access matrix, a service is a destination of its own.
    let pairs: Vec<String> = p
        .access_pairs(&view())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(pairs, ["bob-laptop -> svc:grafana tcp:443"]);
}

#[test]
fn a_rule_needing_a_posture_is_conditional_and_tests_evaluate_it_with_src_posture_attrs() {
    let body = format!(
        r#""postures": {{"posture:mac": ["node:os == 'macos'"]}},
           "grants": [{{"src": ["{BOB}"], "dst": ["tag:db"], "ip": ["tcp:5432"], "srcPosture": ["posture:mac"]}}],
           "tests": [
             {{"src": "{BOB}", "srcPostureAttrs": {{"node:os": "macos"}}, "accept": ["tag:db:5432"]}},
             {{"src": "{BOB}", "srcPostureAttrs": {{"node:os": "linux"}}, "deny": ["tag:db:5432"]}},
             {{"src": "{BOB}", "deny": ["tag:db:5432"]}},
           ]"#
    );
    let p = policy(&body);
    assert!(
        p.run_tests(None, &view()).is_empty(),
        "{:?}",
        p.run_tests(None, &view())
    );
    // Outside tests the device's posture is unknown: conditional, nothing granted, and said.
    assert!(!allows(&p, &user(BOB), &device("db-1"), 5432, Proto::TCP));
    assert!(p.access_pairs(&view()).is_empty());
    let warnings = p.warnings().join("\n");
    assert!(
        warnings.contains("grants[0] depends on posture posture:mac")
            && warnings.contains("conditional"),
        "{warnings}"
    );
    // defaultSrcPosture applies to rules without their own.
    let defaulted = policy(&format!(
        r#""postures": {{"posture:mac": ["node:os == 'macos'"]}},
           "defaultSrcPosture": ["posture:mac"],
           "grants": [{{"src": ["{BOB}"], "dst": ["tag:db"], "ip": ["tcp:5432"]}}]"#
    ));
    assert!(!allows(
        &defaulted,
        &user(BOB),
        &device("db-1"),
        5432,
        Proto::TCP
    ));
}

#[test]
fn a_via_grant_needs_a_router_with_one_of_its_tags() {
    let compile = |via: &str| {
        Policy::compile(&json!({
            "tagOwners": {"tag:web": [ALICE], "tag:exit": [ALICE]},
            "grants": [{"src": [BOB], "dst": ["autogroup:internet"], "ip": ["*"], "via": [via]}],
        }))
        .unwrap()
    };
    let internet = cidr("8.8.8.0/24");
    // web-1 carries tag:web: the grant's traffic has a router.
    let routed = compile("tag:web");
    assert!(allows(&routed, &user(BOB), &internet, 443, Proto::TCP));
    // No device carries tag:exit: nothing routes it, so nothing is granted.
    let unrouted = compile("tag:exit");
    assert!(!allows(&unrouted, &user(BOB), &internet, 443, Proto::TCP));
    assert!(unrouted.access_pairs(&view()).is_empty());
    let warnings = unrouted.warnings().join("\n");
    assert!(
        warnings.contains("grants[0].via") && warnings.contains("tag:exit"),
        "{warnings}"
    );
}
