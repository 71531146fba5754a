//! `preview` and `adopt_drift_patch` over small worlds.
use serde_json::{Value, json};

use super::*;
use crate::policy::access::DeviceView;
use crate::resources::tailnet_policy::TailnetPolicy;

const BASE: &str = r#"// The tailnet's policy.
{
  "groups": {"group:eng": ["alice@example.com"]},
  "tagOwners": {"tag:web": ["group:eng"]},
  "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:web:443"]}],
  "tests": [{"src": "alice@example.com", "accept": ["tag:web:443"]}],
}
"#;

fn policy(name: &str, role: &str, text: &str) -> Value {
    json!({
        "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "TailnetPolicy",
        "metadata": {"name": name, "resourceVersion": "42", "uid": "u-1", "generation": 3},
        "spec": {"tailnetRef": "default", "driftPolicy": "Correct", "suspend": false,
                 "deletionPolicy": "Orphan", "role": role, "policy": text, "historyLimit": 10},
        "status": {"conditions": []}
    })
}

fn world(policies: &[&Value]) -> ProposalWorld {
    ProposalWorld {
        policies: policies
            .iter()
            .map(|p| serde_json::from_value((*p).clone()).unwrap())
            .collect(),
        view: crate::policy::access::TailnetView {
            users: vec!["alice@example.com".into(), "bob@example.com".into()],
            devices: vec![
                device("alice-laptop", "100.64.0.1", "alice@example.com", &[]),
                device("bob-laptop", "100.64.0.2", "bob@example.com", &[]),
                device("web-1", "100.64.0.3", "alice@example.com", &["tag:web"]),
            ],
            services: Vec::new(),
        },
        live_policy: Some(BASE.into()),
        ..ProposalWorld::default()
    }
}

fn device(host: &str, ip: &str, user: &str, tags: &[&str]) -> DeviceView {
    DeviceView {
        hostname: host.into(),
        addresses: vec![ip.parse().unwrap()],
        user: user.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        role: String::new(),
    }
}

fn check_of<'a>(preview: &'a Preview, name: &str) -> &'a ValidationResult {
    preview
        .validation
        .iter()
        .find(|v| v.check == name)
        .unwrap_or_else(|| panic!("no {name} check in {:?}", preview.validation))
}

fn with_bob(text: &str) -> String {
    text.replace(
        "[\"alice@example.com\"]}",
        "[\"alice@example.com\", \"bob@example.com\"]}",
    )
}

#[test]
fn a_valid_policy_patch_shows_its_yaml_diff_and_access_diff() {
    let base = policy("base", "Base", BASE);
    let patch = json!({"spec": {"policy": with_bob(BASE)}});
    let preview = super::preview(&base, &patch, &world(&[&base])).unwrap();
    assert!(preview.is_valid(), "{}", preview.problems());
    assert_eq!(
        preview.patched.pointer("/spec/policy").unwrap(),
        &json!(with_bob(BASE))
    );
    assert!(
        preview
            .diff
            .starts_with("--- TailnetPolicy/base (current)\n"),
        "{}",
        preview.diff
    );
    assert!(
        preview.diff.contains(
            "\n+      \"groups\": {\"group:eng\": [\"alice@example.com\", \"bob@example.com\"]},"
        ),
        "{}",
        preview.diff
    );
    assert!(
        !preview.diff.contains("resourceVersion"),
        "{}",
        preview.diff
    );
    assert!(!preview.diff.contains("status"), "{}", preview.diff);
    let access = preview.access_diff.clone().unwrap();
    assert_eq!(
        access,
        "2 gained, 0 lost (source -> destination proto:ports pairs); device pairs gaining: \
         1, losing: 0; class pairs: 1\n\
         + bob-laptop (bob@example.com) -> web-1 (tag:web) tcp:443 udp:443  gained (1 device \
         pair)"
    );
    let names: Vec<&str> = preview
        .validation
        .iter()
        .map(|v| v.check.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "patch",
            "schema",
            "cel",
            "typed",
            "policyCompose",
            "policyChecks",
            "policyTests"
        ]
    );
    assert!(
        check_of(&preview, check::POLICY_TESTS)
            .message
            .contains("1 policy test passes")
    );
}

#[test]
fn a_schema_violation_names_the_field_and_skips_the_planner() {
    let base = policy("base", "Base", BASE);
    for (patch, field) in [
        (json!({"spec": {"role": "Primary"}}), "spec.role"),
        (json!({"spec": {"historyLimit": 0}}), "spec.historyLimit"),
        (
            json!({"spec": {"driftPolicy": null, "suspend": "yes"}}),
            "spec.suspend",
        ),
        (
            json!({"spec": {"polcy": "{}"}}),
            "spec.polcy: unknown field",
        ),
    ] {
        let preview = super::preview(&base, &patch, &world(&[&base])).unwrap();
        assert!(!preview.is_valid());
        let schema = check_of(&preview, check::SCHEMA);
        assert!(
            !schema.ok && schema.message.contains(field),
            "{patch}: {schema:?}"
        );
        assert!(
            check_of(&preview, check::POLICY_TESTS)
                .message
                .starts_with("not run")
        );
        assert!(preview.access_diff.is_none());
    }
}

#[test]
fn cel_rules_run_on_the_patched_object() {
    let base = policy("base", "Base", BASE);
    let patch = json!({"spec": {"policyFrom": {"configMapKeyRef":
        {"namespace": "ops", "name": "p", "key": "policy.hujson"}}}});
    let preview = super::preview(&base, &patch, &world(&[&base])).unwrap();
    let cel = check_of(&preview, check::CEL);
    assert!(
        !cel.ok && cel.message.contains("exactly one of spec.policy"),
        "{cel:?}"
    );
}

#[test]
fn forbidden_paths_and_unknown_kinds_are_errors() {
    let base = policy("base", "Base", BASE);
    let err = super::preview(&base, &json!({"status": {"phase": "x"}}), &world(&[])).unwrap_err();
    assert_eq!(
        err,
        ProposalError::ForbiddenPath {
            path: "status".into()
        }
    );
    let err =
        super::preview(&base, &json!({"metadata": {"finalizers": []}}), &world(&[])).unwrap_err();
    assert!(err.to_string().contains("metadata.finalizers"), "{err}");
    let mut other = base.clone();
    other["kind"] = json!("Widget");
    let err = super::preview(&other, &json!({"spec": {}}), &world(&[])).unwrap_err();
    assert!(
        matches!(err, ProposalError::UnsupportedKind { .. }),
        "{err}"
    );
}

#[test]
fn a_failing_policy_test_makes_the_preview_invalid() {
    let base = policy("base", "Base", BASE);
    let broken = BASE.replace("\"dst\": [\"tag:web:443\"]", "\"dst\": [\"tag:web:80\"]");
    let preview = super::preview(
        &base,
        &json!({"spec": {"policy": broken}}),
        &world(&[&base]),
    )
    .unwrap();
    assert!(!preview.is_valid());
    let tests = check_of(&preview, check::POLICY_TESTS);
    assert!(
        !tests.ok && tests.message.contains("alice@example.com"),
        "{tests:?}"
    );
    assert!(check_of(&preview, check::POLICY_CHECKS).ok);
    let access = preview.access_diff.unwrap();
    assert!(
        access.contains(
            "- alice-laptop (alice@example.com) -> web-1 (tag:web) tcp:443 udp:443  lost"
        ),
        "{access}"
    );
}

#[test]
fn a_fragment_is_composed_with_the_base_and_conflicts_are_named() {
    let base = policy("base", "Base", BASE);
    let fragment = policy(
        "team",
        "Fragment",
        "{\"groups\": {\"group:ops\": [\"bob@example.com\"]}}",
    );
    let patch = json!({"spec": {"policy": "{\"groups\": {\"group:eng\": [\"bob@example.com\"]}}"}});
    let preview = super::preview(&fragment, &patch, &world(&[&base, &fragment])).unwrap();
    let compose = check_of(&preview, check::POLICY_COMPOSE);
    assert!(!compose.ok, "{compose:?}");
    assert!(
        compose.message.contains("TailnetPolicy/base")
            && compose.message.contains("TailnetPolicy/team"),
        "{compose:?}"
    );

    let lonely = super::preview(
        &fragment,
        &json!({"spec": {"historyLimit": 5}}),
        &world(&[&fragment]),
    )
    .unwrap();
    assert!(
        check_of(&lonely, check::POLICY_COMPOSE)
            .message
            .contains("no Base")
    );
}

#[test]
fn a_patch_that_changes_nothing_is_not_valid() {
    let base = policy("base", "Base", BASE);
    let preview =
        super::preview(&base, &json!({"spec": {"policy": BASE}}), &world(&[&base])).unwrap();
    assert!(!check_of(&preview, check::PATCH).ok);
    assert!(preview.diff.is_empty());
}

#[test]
fn adopt_drift_sets_the_inline_base_to_the_live_text() {
    let base = policy("base", "Base", BASE);
    let mut world = world(&[&base]);
    let live = with_bob(BASE).replace("// The tailnet's policy.", "// Edited in the console.");
    world.live_policy = Some(live.clone());
    let adoption = adopt_drift_patch(&base, &world).unwrap();
    assert_eq!(adoption.target, "base");
    let patch = adoption.patch;
    assert_eq!(patch, json!({"spec": {"policy": live}}));
    let preview = super::preview(&base, &patch, &world).unwrap();
    assert!(preview.is_valid(), "{}", preview.problems());
    assert_eq!(preview.access_diff.as_deref(), Some("no change in access"));

    world.live_policy = Some(BASE.into());
    assert!(matches!(
        adopt_drift_patch(&base, &world),
        Err(ProposalError::NotDrifted { .. })
    ));
}

const FRAGMENT: &str = r#"// Team data.
{
  "groups": {
    "group:data": ["bob@example.com"], // the data team
  },
  "acls": [{"action": "accept", "src": ["group:data"], "dst": ["tag:web:5432"]}],
}
"#;

/// The live file as the operator composed it from the Base and the Fragment.
fn composed(base: &Value, fragment: &Value) -> String {
    let base: TailnetPolicy = serde_json::from_value(base.clone()).unwrap();
    let world = world(&[fragment]);
    super::policy::composition_text(&base, &world).unwrap()
}

#[test]
fn a_console_edit_of_a_fragment_group_is_adopted_into_the_fragment() {
    let base = policy("base", "Base", BASE);
    let fragment = policy("team", "Fragment", FRAGMENT);
    let live = composed(&base, &fragment).replace(
        r#""group:data": ["bob@example.com"]"#,
        r#""group:data": ["bob@example.com", "alice@example.com"]"#,
    );
    let mut world = world(&[&base, &fragment]);
    world.live_policy = Some(live.clone());
    // Asked about the Base or the Fragment: the edit belongs to the Fragment.
    for asked in [&base, &fragment] {
        let adoption = adopt_drift_patch(asked, &world).unwrap();
        assert_eq!(adoption.target, "team");
        let text = adoption.patch["spec"]["policy"].as_str().unwrap();
        assert!(
            text.contains(
                r#""group:data": ["bob@example.com", "alice@example.com"], // the data team"#
            ),
            "the edit in place, the comment kept: {text}"
        );
        assert!(text.starts_with("// Team data."), "{text}");
        // Applied, the composition is the live file: no drift, nothing written back.
        let mut patched: TailnetPolicy = serde_json::from_value(fragment.clone()).unwrap();
        patched.spec.policy = Some(text.to_owned());
        let recomposed = super::policy::composition_text(&patched, &world).unwrap();
        assert_eq!(
            crate::policy::hujson::fingerprint(&recomposed),
            crate::policy::hujson::fingerprint(&live)
        );
    }
    // A group added in the console goes to the Base.
    let added = composed(&base, &fragment).replace(
        r#""group:eng": ["alice@example.com"]"#,
        r#""group:eng": ["alice@example.com"], "group:ops": ["bob@example.com"]"#,
    );
    world.live_policy = Some(added);
    let adoption = adopt_drift_patch(&fragment, &world).unwrap();
    assert_eq!(adoption.target, "base");
    assert!(
        adoption.patch["spec"]["policy"]
            .as_str()
            .unwrap()
            .contains("group:ops")
    );
    // So does a whole section.
    let composed_text = composed(&base, &fragment);
    let close = composed_text.rfind('}').unwrap();
    let with_section = format!(
        "{}  \"randomizeClientPort\": true,\n{}",
        &composed_text[..close],
        &composed_text[close..]
    );
    world.live_policy = Some(with_section);
    let adoption = adopt_drift_patch(&base, &world).unwrap();
    assert_eq!(adoption.target, "base");
    assert!(
        adoption.patch["spec"]["policy"]
            .as_str()
            .unwrap()
            .contains("\"randomizeClientPort\": true"),
        "{}",
        adoption.patch
    );
}

#[test]
fn adopt_drift_refuses_what_it_cannot_attribute_saying_why() {
    let base = policy("base", "Base", BASE);
    let fragment = policy("team", "Fragment", FRAGMENT);
    let mut world = world(&[&base, &fragment]);
    // Edits in two sources: one proposal changes one resource.
    let live = composed(&base, &fragment)
        .replace(
            r#""group:data": ["bob@example.com"]"#,
            r#""group:data": []"#,
        )
        .replace(
            r#""group:eng": ["alice@example.com"]"#,
            r#""group:eng": []"#,
        );
    world.live_policy = Some(live);
    let err = adopt_drift_patch(&base, &world).unwrap_err().to_string();
    assert!(
        err.contains("several sources") && err.contains("TailnetPolicy/team: groups.group:data"),
        "{err}"
    );
    // A list section both compose into.
    let live = composed(&base, &fragment).replace("tag:web:5432", "tag:web:5433");
    world.live_policy = Some(live);
    let err = adopt_drift_patch(&base, &world).unwrap_err().to_string();
    assert!(
        err.contains("\"acls\"") && err.contains("cannot be told"),
        "{err}"
    );
    // Nothing drifted.
    world.live_policy = Some(composed(&base, &fragment));
    assert!(matches!(
        adopt_drift_patch(&base, &world),
        Err(ProposalError::NotDrifted { .. })
    ));
    // A kind the console cannot edit has nothing to adopt.
    let exposure = json!({"apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "FunnelExposure",
                          "metadata": {"name": "demo", "namespace": "web"}, "spec": {}});
    let err = adopt_drift_patch(&exposure, &world).unwrap_err();
    assert_eq!(
        err,
        ProposalError::AdoptNotSupported {
            kind: "FunnelExposure".into()
        }
    );
}

#[test]
fn adopt_drift_switches_a_config_map_base_to_inline() {
    let mut base = policy("base", "Base", BASE);
    base["spec"]["policy"] = Value::Null;
    base["spec"]["policyFrom"] =
        json!({"configMapKeyRef": {"namespace": "ops", "name": "p", "key": "k"}});
    let world = world(&[]);
    let adoption = adopt_drift_patch(&base, &world).unwrap();
    assert_eq!(
        adoption.patch,
        json!({"spec": {"policy": BASE, "policyFrom": null}})
    );
}

#[test]
fn other_kinds_get_schema_cel_and_typed_checks_from_the_registry() {
    let tailnet = json!({
        "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "ManagedTailnet",
        "metadata": {"name": "home", "resourceVersion": "7"},
        "spec": {"tailnet": "-", "apiUrl": "https://api.tailscale.com", "resyncInterval": "5m",
                 "apiKeySecretRef": {"name": "k", "namespace": "ops", "key": "api_key"}}
    });
    let ok = super::preview(
        &tailnet,
        &json!({"spec": {"resyncInterval": "2m"}}),
        &world(&[]),
    )
    .unwrap();
    assert!(ok.is_valid(), "{}", ok.problems());
    assert!(ok.access_diff.is_none());
    assert!(
        ok.diff
            .contains("-  resyncInterval: 5m\n+  resyncInterval: 2m\n"),
        "{}",
        ok.diff
    );

    let fast = super::preview(
        &tailnet,
        &json!({"spec": {"resyncInterval": "10s"}}),
        &world(&[]),
    )
    .unwrap();
    let cel = check_of(&fast, check::CEL);
    assert!(!cel.ok && cel.message.contains("at least 30s"), "{cel:?}");
}

#[test]
fn a_dns_config_patch_is_checked_against_its_schema_and_cel_rules() {
    let dns = json!({
        "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "DNSConfig",
        "metadata": {"name": "dns", "resourceVersion": "3"},
        "spec": {"nameservers": [{"address": "1.1.1.1"}], "magicDNS": true}
    });
    let ok = super::preview(
        &dns,
        &json!({"spec": {"searchPaths": ["corp.example.com"]}}),
        &world(&[]),
    )
    .unwrap();
    assert!(ok.is_valid(), "{}", ok.problems());
    assert!(ok.diff.contains("+  searchPaths:"), "{}", ok.diff);

    let bad = super::preview(
        &dns,
        &json!({"spec": {"nameservers": [{"address": "not an address"}]}}),
        &world(&[]),
    )
    .unwrap();
    assert!(!bad.is_valid(), "an invalid nameserver must not pass");
}

#[test]
fn long_check_messages_are_capped() {
    let message = result("x", false, "y".repeat(5000)).message;
    assert_eq!(message.chars().count(), MAX_CHECK_MESSAGE);
    assert!(message.ends_with('…'));
}

#[test]
fn without_the_live_policy_the_access_diff_starts_from_the_current_composition() {
    let base = policy("base", "Base", BASE);
    let fragment = policy("team", "Fragment", "{}");
    let mut world = world(&[&base, &fragment]);
    world.live_policy = None;
    let grant =
        r#"{"grants": [{"src": ["bob@example.com"], "dst": ["tag:web"], "ip": ["tcp:22"]}]}"#;
    let preview = super::preview(&fragment, &json!({"spec": {"policy": grant}}), &world).unwrap();
    assert!(preview.is_valid(), "{}", preview.problems());
    assert!(
        check_of(&preview, check::POLICY_COMPOSE)
            .message
            .contains("TailnetPolicy/base"),
        "{:?}",
        preview.validation
    );
    assert_eq!(
        preview.access_diff.as_deref(),
        Some(
            "1 gained, 0 lost (source -> destination proto:ports pairs); device pairs gaining: \
             1, losing: 0; class pairs: 1\n\
             + bob-laptop (bob@example.com) -> web-1 (tag:web) tcp:22  gained (1 device pair)"
        )
    );
}

/// An assistant can ask for an immediate rotation: the rotate-now annotation on a
/// KeyRotationPolicy is a valid proposal whose diff shows only the annotation.
#[test]
fn a_rotate_now_proposal_on_a_key_rotation_policy_is_valid() {
    let target = json!({
        "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "KeyRotationPolicy",
        "metadata": {"name": "ci", "namespace": "build"},
        "spec": {"reusable": true, "tags": ["tag:ci"]},
        "status": {"currentKeyId": "k1"},
    });
    let patch = json!({"metadata": {"annotations": {"tailnet.ops.dev/rotate-now": "incident-7"}}});
    let preview = super::preview(&target, &patch, &world(&[])).unwrap();
    assert!(
        preview.validation.iter().all(|v| v.ok),
        "{:?}",
        preview.validation
    );
    assert!(
        preview
            .diff
            .contains("+    tailnet.ops.dev/rotate-now: incident-7"),
        "{}",
        preview.diff
    );
    assert!(!preview.diff.contains("currentKeyId"), "{}", preview.diff);
}

#[test]
fn a_create_is_in_effect_when_the_object_exists_with_what_it_set() {
    let spec = ChangeProposalSpec {
        operation: ProposalOperation::Create,
        object: Some(
            json!({"kind": "DNSConfig", "metadata": {"name": "d", "labels": {"a": "b"}},
                            "spec": {"magicDNS": true}}),
        ),
        ..Default::default()
    };
    let change = Change::of(&spec).unwrap();
    // The API server added defaults and its own metadata: still the object created.
    let created = json!({"kind": "DNSConfig",
                         "metadata": {"name": "d", "labels": {"a": "b"}, "uid": "u"},
                         "spec": {"magicDNS": true, "driftPolicy": "Correct"}});
    assert!(change.in_effect(Some(&created)));
    let other = json!({"kind": "DNSConfig", "metadata": {"name": "d"},
                       "spec": {"magicDNS": false}});
    assert!(!change.in_effect(Some(&other)));
    assert!(!change.in_effect(None));
}
