//! Composition of the effective policy (Base + Fragments + contributions), driven through the
//! public API: merge rules, conflicts, ordering, and byte-for-byte preservation of the Base.
use serde_json::{Value, json};
use tailnet_operator::policy::access::TailnetView;
use tailnet_operator::policy::checks;
use tailnet_operator::policy::compose::{
    ComposeError, Composition, Contribution, PolicySource, compose,
};
use tailnet_operator::policy::hujson::parse_strict;

const BASE: &str = "TailnetPolicy/base";

fn source(name: &str, text: &str) -> PolicySource {
    PolicySource {
        name: name.to_string(),
        generation: Some(3),
        text: text.to_string(),
    }
}

fn base(text: &str) -> PolicySource {
    source(BASE, text)
}

fn fragment(name: &str, text: &str) -> PolicySource {
    source(&format!("TailnetPolicy/{name}"), text)
}

fn funnel_attr(source: &str) -> Contribution {
    Contribution {
        source: source.to_string(),
        section: "nodeAttrs".to_string(),
        value: json!({"target": ["tag:funnel"], "attr": ["funnel"]}),
    }
}

/// Composes and checks the result is strict HuJSON; returns it with its parsed value.
fn composed(
    base: &PolicySource,
    fragments: &[PolicySource],
    contributions: &[Contribution],
) -> (Composition, Value) {
    let composition = compose(base, fragments, contributions).expect("the base composes");
    let value = parse_strict(&composition.text)
        .unwrap_or_else(|e| panic!("composed text is not HuJSON ({e}):\n{}", composition.text));
    (composition, value)
}

fn rejected_error<'a>(composition: &'a Composition, source: &str) -> &'a ComposeError {
    &composition
        .rejected
        .iter()
        .find(|r| r.source == source)
        .unwrap_or_else(|| panic!("{source} was not rejected: {:?}", composition.rejected))
        .error
}

fn grant_srcs(value: &Value) -> Vec<String> {
    value["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["src"][0].as_str().unwrap().to_string())
        .collect()
}

const TAB_BASE: &str = "// ManagedTailnet policy, edited by the platform team.
{
\t// Static groups.
\t\"groups\": {
\t\t\"group:eng\": [\"alice@example.com\"], // engineers
\t},
\t\"tagOwners\": {\"tag:web\": [\"group:eng\"]},
\t\"acls\": [
\t\t// everyone may reach the web servers
\t\t{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"tag:web:443\"]} // no comma here
\t\t// {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]},
\t],
\t\"grants\": [],
\t\"derpMap\": {
\t\t/* keep the default regions */ \"OmitDefaultRegions\": false,
\t},
\t\"randomizeClientPort\": true,
}
";

const TEAM_A: &str = r#"{
  "groups": {
    // Team A, on call this quarter
    "group:team-a": [
      "bob@example.com",
    ],
  },
  "tagOwners": {"tag:db": ["group:team-a"]},
  "grants": [
    {
      "src": ["group:team-a"],
      "dst": ["tag:db"],
      "ip": ["tcp:5432"], // postgres
    }, // team A to its database
  ],
  "acls": [{"action": "accept", "src": ["group:team-a"], "dst": ["tag:web:80"]}],
}"#;

#[test]
fn splices_fragment_entries_and_contributions_into_the_base_text() {
    let (composition, _) = composed(
        &base(TAB_BASE),
        &[fragment("team-a", TEAM_A)],
        &[funnel_attr("FunnelExposure/web/public")],
    );
    let expected = "// ManagedTailnet policy, edited by the platform team.
{
\t// Static groups.
\t\"groups\": {
\t\t\"group:eng\": [\"alice@example.com\"], // engineers
\t\t// from TailnetPolicy/team-a
\t\t// Team A, on call this quarter
\t\t\"group:team-a\": [
\t\t\t\"bob@example.com\",
\t\t],
\t},
\t\"tagOwners\": {\"tag:web\": [\"group:eng\"],
\t\t// from TailnetPolicy/team-a
\t\t\"tag:db\": [\"group:team-a\"],
\t},
\t\"acls\": [
\t\t// everyone may reach the web servers
\t\t{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"tag:web:443\"]}, // no comma here
\t\t// {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]},
\t\t// from TailnetPolicy/team-a
\t\t{\"action\": \"accept\", \"src\": [\"group:team-a\"], \"dst\": [\"tag:web:80\"]},
\t],
\t\"grants\": [
\t\t// from TailnetPolicy/team-a
\t\t{
\t\t\t\"src\": [\"group:team-a\"],
\t\t\t\"dst\": [\"tag:db\"],
\t\t\t\"ip\": [\"tcp:5432\"], // postgres
\t\t}, // team A to its database
\t],
\t\"derpMap\": {
\t\t/* keep the default regions */ \"OmitDefaultRegions\": false,
\t},
\t\"randomizeClientPort\": true,
\t\"nodeAttrs\": [
\t\t// from FunnelExposure/web/public
\t\t{\"target\":[\"tag:funnel\"],\"attr\":[\"funnel\"]},
\t],
}
";
    assert_eq!(composition.text, expected, "got:\n{}", composition.text);
    assert_eq!(
        composition.applied,
        [BASE, "TailnetPolicy/team-a", "FunnelExposure/web/public"]
    );
    assert!(composition.rejected.is_empty());
}

#[test]
fn without_fragments_or_contributions_the_base_is_returned_unchanged() {
    for text in [
        TAB_BASE,
        "{\"acls\":[],\"groups\":{}}",
        "  {\r\n  // CRLF and odd spacing\r\n  \"acls\" : [ ] ,\r\n}\r\n",
    ] {
        let (composition, _) = composed(&base(text), &[], &[]);
        assert_eq!(composition.text, text);
        assert_eq!(composition.applied, [BASE]);
    }
}

#[test]
fn fragments_that_add_nothing_leave_the_base_unchanged() {
    let empty = fragment("empty", "{\"grants\": [], \"groups\": {}}");
    let (composition, _) = composed(&base(TAB_BASE), &[empty], &[]);
    assert_eq!(composition.text, TAB_BASE);
    assert_eq!(composition.applied, [BASE, "TailnetPolicy/empty"]);
}

#[test]
fn map_sections_merge_and_keep_the_base_entries() {
    let (composition, value) = composed(&base(TAB_BASE), &[fragment("team-a", TEAM_A)], &[]);
    assert_eq!(
        value["groups"],
        json!({"group:eng": ["alice@example.com"], "group:team-a": ["bob@example.com"]})
    );
    assert_eq!(
        value["tagOwners"],
        json!({"tag:web": ["group:eng"], "tag:db": ["group:team-a"]})
    );
    // The effective policy is valid and compiles with both sources' definitions.
    let outcome = checks::check(&composition.text, &TailnetView::default());
    assert!(outcome.is_ok(), "{:?}", outcome.problems);
}

#[test]
fn a_key_defined_twice_rejects_the_later_fragment_and_the_rest_still_applies() {
    let base = base(r#"{"groups": {"group:eng": ["alice@example.com"]}, "grants": []}"#);
    let team_a = fragment(
        "team-a",
        r#"{"groups": {"group:eng": ["mallory@example.com"]}, "grants": [{"src": ["group:eng"], "dst": ["*"], "ip": ["*"]}]}"#,
    );
    let team_b = fragment(
        "team-b",
        r#"{"groups": {"group:b": ["bob@example.com"]}, "grants": [{"src": ["group:b"], "dst": ["*"], "ip": ["22"]}]}"#,
    );
    let (composition, value) = composed(&base, &[team_b, team_a], &[]);
    let error = rejected_error(&composition, "TailnetPolicy/team-a");
    assert_eq!(
        *error,
        ComposeError::Conflict {
            section: "groups".into(),
            key: "group:eng".into(),
            first: BASE.into(),
            second: "TailnetPolicy/team-a".into(),
        }
    );
    assert_eq!(
        error.to_string(),
        "group \"group:eng\" is defined by both TailnetPolicy/base and TailnetPolicy/team-a: \
         keep one definition and remove the other"
    );
    // All or nothing: none of team-a's entries (not even its grant) got in; team-b's did.
    assert_eq!(composition.applied, [BASE, "TailnetPolicy/team-b"]);
    assert_eq!(value["groups"]["group:eng"], json!(["alice@example.com"]));
    assert_eq!(grant_srcs(&value), ["group:b"]);
    assert!(!composition.text.contains("team-a"), "{}", composition.text);
}

#[test]
fn a_conflict_between_two_fragments_names_both_and_keeps_the_first_by_name() {
    let base = base("{}");
    let a = fragment("a", r#"{"hosts": {"db": "100.64.0.10"}}"#);
    let b = fragment("b", r#"{"hosts": {"db": "100.64.0.11"}}"#);
    let (composition, value) = composed(&base, &[b, a], &[]);
    let message = rejected_error(&composition, "TailnetPolicy/b").to_string();
    assert_eq!(
        message,
        "host \"db\" is defined by both TailnetPolicy/a and TailnetPolicy/b: keep one \
         definition and remove the other"
    );
    assert_eq!(value["hosts"], json!({"db": "100.64.0.10"}));
}

#[test]
fn lists_concatenate_base_first_then_fragments_by_name_whatever_the_input_order() {
    let base = base(r#"{"grants": [{"src": ["base@example.com"], "dst": ["*"], "ip": ["*"]}]}"#);
    let grant = |name: &str| {
        fragment(
            name,
            &format!(
                r#"{{"grants": [{{"src": ["{name}@example.com"], "dst": ["*"], "ip": ["*"]}}]}}"#
            ),
        )
    };
    let orders = [
        ["zeta", "alpha", "mid"],
        ["mid", "zeta", "alpha"],
        ["alpha", "mid", "zeta"],
    ];
    let mut texts = Vec::new();
    for order in orders {
        let fragments: Vec<PolicySource> = order.iter().map(|n| grant(n)).collect();
        let (composition, value) = composed(&base, &fragments, &[]);
        assert_eq!(
            grant_srcs(&value),
            [
                "base@example.com",
                "alpha@example.com",
                "mid@example.com",
                "zeta@example.com"
            ]
        );
        assert_eq!(
            composition.applied,
            [
                BASE,
                "TailnetPolicy/alpha",
                "TailnetPolicy/mid",
                "TailnetPolicy/zeta"
            ]
        );
        texts.push(composition.text);
    }
    // Deterministic: the same inputs in any order give the same bytes.
    assert!(texts.windows(2).all(|w| w[0] == w[1]));
    let markers: Vec<usize> = ["alpha", "mid", "zeta"]
        .iter()
        .map(|n| {
            texts[0]
                .find(&format!("// from TailnetPolicy/{n}\n"))
                .unwrap()
        })
        .collect();
    assert!(markers.windows(2).all(|w| w[0] < w[1]), "{}", texts[0]);
}

#[test]
fn contributions_come_after_fragments_ordered_by_source() {
    let base = base(
        "{\n  \"nodeAttrs\": [\n    {\"target\": [\"*\"], \"attr\": [\"base\"]},\n  ],\n  \"tagOwners\": {\"tag:funnel\": [\"autogroup:admin\"]},\n}\n",
    );
    let frag = fragment(
        "apps",
        r#"{"nodeAttrs": [{"target": ["tag:funnel"], "attr": ["fragment"]}]}"#,
    );
    let contribution = |source: &str, attr: &str| Contribution {
        source: source.to_string(),
        section: "nodeAttrs".to_string(),
        value: json!({"target": ["tag:funnel"], "attr": [attr]}),
    };
    let contributions = [
        contribution("FunnelExposure/web/z", "z"),
        contribution("FunnelExposure/web/a", "a"),
    ];
    let (composition, value) = composed(&base, &[frag], &contributions);
    let attrs: Vec<&str> = value["nodeAttrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attr"][0].as_str().unwrap())
        .collect();
    assert_eq!(attrs, ["base", "fragment", "a", "z"]);
    assert_eq!(
        composition.applied,
        [
            BASE,
            "TailnetPolicy/apps",
            "FunnelExposure/web/a",
            "FunnelExposure/web/z"
        ]
    );
    assert!(composition.text.contains(
        "    // from FunnelExposure/web/a\n    {\"target\":[\"tag:funnel\"],\"attr\":[\"a\"]},\n"
    ));
}

#[test]
fn a_contribution_to_a_map_section_merges_and_conflicts_like_a_fragment() {
    let base = base(r#"{"tagOwners": {"tag:web": ["autogroup:admin"]}}"#);
    let owner = |source: &str, tag: &str| Contribution {
        source: source.to_string(),
        section: "tagOwners".to_string(),
        value: json!({ tag: ["autogroup:admin"] }),
    };
    let (composition, value) = composed(
        &base,
        &[],
        &[
            owner("FunnelExposure/a/b", "tag:funnel"),
            owner("FunnelExposure/c/d", "tag:web"),
        ],
    );
    assert_eq!(
        value["tagOwners"],
        json!({"tag:web": ["autogroup:admin"], "tag:funnel": ["autogroup:admin"]})
    );
    assert_eq!(
        rejected_error(&composition, "FunnelExposure/c/d").to_string(),
        "tag owner entry \"tag:web\" is defined by both TailnetPolicy/base and \
         FunnelExposure/c/d: keep one definition and remove the other"
    );
}

#[test]
fn sections_the_base_lacks_are_created_at_its_end() {
    let base = base("{\n  \"acls\": [],\n}\n");
    let frag = fragment(
        "net",
        r#"{"autoApprovers": {"routes": {"10.0.0.0/8": ["tag:router"]}, "exitNode": ["tag:exit"]}, "tagOwners": {"tag:router": [], "tag:exit": []}}"#,
    );
    let (composition, value) = composed(&base, &[frag], &[]);
    assert_eq!(
        composition.text,
        "{
  \"acls\": [],
  \"autoApprovers\": {
    \"routes\": {
      // from TailnetPolicy/net
      \"10.0.0.0/8\": [\"tag:router\"],
    },
    \"exitNode\": [
      // from TailnetPolicy/net
      \"tag:exit\",
    ],
  },
  \"tagOwners\": {
    // from TailnetPolicy/net
    \"tag:router\": [],
    \"tag:exit\": [],
  },
}
"
    );
    assert_eq!(value["autoApprovers"]["exitNode"], json!(["tag:exit"]));
}

#[test]
fn auto_approver_routes_merge_as_a_map_and_exit_nodes_concatenate() {
    let base =
        base(r#"{"autoApprovers": {"routes": {"10.0.0.0/8": ["tag:a"]}, "exitNode": ["tag:a"]}}"#);
    let more = fragment(
        "more",
        r#"{"autoApprovers": {"routes": {"192.168.0.0/16": ["tag:b"]}, "exitNode": ["tag:b"]}}"#,
    );
    let same_route = fragment(
        "same-route",
        r#"{"autoApprovers": {"routes": {"10.0.0.0/8": ["tag:c"]}}}"#,
    );
    let (composition, value) = composed(&base, &[more, same_route], &[]);
    assert_eq!(
        value["autoApprovers"],
        json!({
            "routes": {"10.0.0.0/8": ["tag:a"], "192.168.0.0/16": ["tag:b"]},
            "exitNode": ["tag:a", "tag:b"],
        })
    );
    let error = rejected_error(&composition, "TailnetPolicy/same-route");
    assert!(
        matches!(error, ComposeError::Conflict { section, key, .. }
            if section == "autoApprovers.routes" && key == "10.0.0.0/8"),
        "{error:?}"
    );
}

#[test]
fn a_setting_the_base_already_has_is_a_conflict_a_new_one_is_added_once() {
    let base = base("{\n  \"randomizeClientPort\": false,\n}\n");
    let sets_base_setting = fragment("a", r#"{"RandomizeClientPort": true}"#);
    let new_setting = fragment("b", "{\n  // no IPv4\n  \"disableIPv4\": true,\n}");
    let same_new_setting = fragment("c", r#"{"disableIPv4": false}"#);
    let (composition, value) = composed(
        &base,
        &[sets_base_setting, new_setting, same_new_setting],
        &[],
    );
    assert_eq!(
        rejected_error(&composition, "TailnetPolicy/a").to_string(),
        "setting \"RandomizeClientPort\" is set by both TailnetPolicy/base and TailnetPolicy/a: \
         set it in one of them only"
    );
    assert!(matches!(
        rejected_error(&composition, "TailnetPolicy/c"),
        ComposeError::Conflict { first, .. } if first == "TailnetPolicy/b"
    ));
    assert_eq!(value["randomizeClientPort"], json!(false));
    assert_eq!(value["disableIPv4"], json!(true));
    assert_eq!(
        composition.text,
        "{\n  \"randomizeClientPort\": false,\n  // from TailnetPolicy/b\n  // no IPv4\n  \"disableIPv4\": true,\n}\n"
    );
}

#[test]
fn a_fragment_with_a_syntax_error_is_rejected_with_its_position_and_name() {
    let broken = fragment("broken", "{\n  \"groups\": {\n    'group:x': [],\n  },\n}");
    let good = fragment("good", r#"{"groups": {"group:ok": ["ok@example.com"]}}"#);
    let (composition, value) = composed(&base("{}"), &[broken, good], &[]);
    let error = rejected_error(&composition, "TailnetPolicy/broken");
    let ComposeError::Syntax {
        source,
        line,
        column,
        ..
    } = error
    else {
        panic!("expected a syntax error, got {error:?}");
    };
    assert_eq!(
        (source.as_str(), *line, *column),
        ("TailnetPolicy/broken", 3, 5)
    );
    assert!(
        error
            .to_string()
            .starts_with("TailnetPolicy/broken: line 3, column 5: ")
    );
    assert_eq!(value["groups"], json!({"group:ok": ["ok@example.com"]}));
}

#[test]
fn fragments_of_the_wrong_shape_are_rejected() {
    let cases = [
        (
            "array-root",
            "[]",
            "TailnetPolicy/array-root: the policy must be a JSON object ({ ... })",
        ),
        (
            "acls-object",
            r#"{"acls": {}}"#,
            "TailnetPolicy/acls-object: \"acls\" must be an array",
        ),
        (
            "groups-list",
            r#"{"Groups": []}"#,
            "TailnetPolicy/groups-list: \"groups\" must be an object",
        ),
        (
            "routes-list",
            r#"{"autoApprovers": {"routes": []}}"#,
            "TailnetPolicy/routes-list: \"autoApprovers.routes\" must be an object",
        ),
    ];
    let fragments: Vec<PolicySource> = cases.iter().map(|(n, t, _)| fragment(n, t)).collect();
    let (composition, _) = composed(&base("{}"), &fragments, &[]);
    for (name, _, message) in cases {
        let error = rejected_error(&composition, &format!("TailnetPolicy/{name}"));
        assert_eq!(error.to_string(), message);
    }
    assert_eq!(composition.text, "{}");
}

#[test]
fn a_broken_base_is_a_hard_error() {
    let syntax = compose(&base("{\"acls\": [,]}"), &[], &[]).unwrap_err();
    assert!(
        matches!(syntax, ComposeError::Syntax { ref source, line: 1, .. } if source == BASE),
        "{syntax:?}"
    );
    let not_object = compose(&base("[]"), &[], &[]).unwrap_err();
    assert_eq!(
        not_object,
        ComposeError::NotAnObject {
            source: BASE.into()
        }
    );
    let wrong_type = compose(&base(r#"{"grants": {}}"#), &[], &[]).unwrap_err();
    assert_eq!(
        wrong_type.to_string(),
        "TailnetPolicy/base: \"grants\" must be an array"
    );
}

#[test]
fn section_names_match_case_insensitively() {
    let base = base(r#"{"ACLs": [{"action": "accept", "src": ["*"], "dst": ["*:22"]}]}"#);
    let frag = fragment(
        "x",
        r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:80"]}]}"#,
    );
    let (_, value) = composed(&base, &[frag], &[]);
    assert_eq!(value.as_object().unwrap().len(), 1, "{value}");
    assert_eq!(value["ACLs"].as_array().unwrap().len(), 2);
}

#[test]
fn crlf_bases_get_crlf_insertions() {
    let base = base("{\r\n  \"grants\": [\r\n  ],\r\n}\r\n");
    let frag = fragment(
        "x",
        r#"{"grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}]}"#,
    );
    let (composition, _) = composed(&base, &[frag], &[]);
    assert_eq!(
        composition.text,
        "{\r\n  \"grants\": [\r\n    // from TailnetPolicy/x\r\n    {\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"*\"]},\r\n  ],\r\n}\r\n"
    );
}

#[test]
fn a_composed_policy_with_an_undefined_tag_fails_the_local_checks() {
    // Composition merges text; whether the result is a valid policy is the checks' job.
    let frag = fragment(
        "web",
        r#"{"grants": [{"src": ["autogroup:member"], "dst": ["tag:web"], "ip": ["443"]}]}"#,
    );
    let (composition, _) = composed(&base(TAB_BASE), &[frag], &[]);
    let outcome = checks::check(&composition.text, &TailnetView::default());
    assert!(
        outcome.is_ok(),
        "tag:web is owned in the base: {:?}",
        outcome.problems
    );
    let frag = fragment(
        "api",
        r#"{"grants": [{"src": ["autogroup:member"], "dst": ["tag:api"], "ip": ["443"]}]}"#,
    );
    let (composition, _) = composed(&base(TAB_BASE), &[frag], &[]);
    let outcome = checks::check(&composition.text, &TailnetView::default());
    let messages: Vec<String> = outcome.problems.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with(
            "tag \"tag:api\" is used in grants[0].dst[0] but not defined in tagOwners"
        ),
        "{messages:?}"
    );
}

#[test]
fn contributions_can_target_nested_sections_and_must_name_one() {
    let base = base(r#"{"autoApprovers": {"exitNode": ["tag:a"]}}"#);
    let exit = Contribution {
        source: "DeviceTagSet/exits".into(),
        section: "autoApprovers.exitNode".into(),
        value: json!("tag:exit"),
    };
    let unnamed = Contribution {
        source: "Broken/x".into(),
        section: "autoApprovers.".into(),
        value: json!("tag:exit"),
    };
    let (composition, value) = composed(&base, &[], &[exit, unnamed]);
    assert_eq!(
        value["autoApprovers"]["exitNode"],
        json!(["tag:a", "tag:exit"])
    );
    let error = rejected_error(&composition, "Broken/x");
    assert!(matches!(error, ComposeError::WrongType { .. }), "{error:?}");
    assert_eq!(error.reason(), "InvalidPolicy");
}

#[test]
fn errors_map_to_condition_reasons() {
    let (composition, _) = composed(
        &base(r#"{"groups": {"group:a": []}}"#),
        &[
            fragment("conflict", r#"{"groups": {"group:a": []}}"#),
            fragment("syntax", "{"),
        ],
        &[],
    );
    let reasons: Vec<&str> = composition
        .rejected
        .iter()
        .map(|r| r.error.reason())
        .collect();
    assert_eq!(reasons, ["Conflict", "InvalidHuJSON"]);
}

/// Whatever the Base's layout, the composed text parses and means the same as merging the
/// parsed values (maps merge, lists concatenate, new sections added).
#[test]
fn every_base_layout_composes_to_the_merged_value() {
    let layouts = [
        "{}",
        "{\"groups\":{\"group:a\":[\"a@example.com\"]},\"grants\":[{\"src\":[\"*\"],\"dst\":[\"*\"],\"ip\":[\"*\"]}]}",
        "{\n  \"groups\": {\n    \"group:a\": [\"a@example.com\"] // no trailing comma\n  },\n  \"grants\": [\n    {\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"*\"]} /* block */\n  ]\n}",
        "{ \"groups\": { /* empty */ }, \"grants\": [ // nothing yet\n ] }",
        "{\r\n\t\"grants\": [\r\n\t\t{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"*\"]},\r\n\t],\r\n\t\"groups\": {},\r\n}",
        "// header\n{\n  \"autoApprovers\": {\"routes\": {}}, \"groups\": {\"group:a\": []}, \"grants\": [],\n  \"derpMap\": {\"Regions\": {}},\n}\n// footer\n",
    ];
    let team = fragment(
        "team",
        "{\n  // team\n  \"groups\": {\"group:team\": [\"t@example.com\"]},\n  \"grants\": [\n    {\"src\": [\"group:team\"], \"dst\": [\"*\"], \"ip\": [\"22\"]}, // ssh\n  ],\n  \"autoApprovers\": {\"routes\": {\"10.1.0.0/16\": [\"group:team\"]}},\n}",
    );
    let funnel = funnel_attr("FunnelExposure/web/public");
    for layout in layouts {
        let (composition, value) = composed(
            &base(layout),
            std::slice::from_ref(&team),
            std::slice::from_ref(&funnel),
        );
        assert!(
            composition.rejected.is_empty(),
            "{:?}",
            composition.rejected
        );
        let mut expected = parse_strict(layout).unwrap();
        let root = expected.as_object_mut().unwrap();
        let groups = root.entry("groups").or_insert_with(|| json!({}));
        groups["group:team"] = json!(["t@example.com"]);
        let grants = root.entry("grants").or_insert_with(|| json!([]));
        grants
            .as_array_mut()
            .unwrap()
            .push(json!({"src": ["group:team"], "dst": ["*"], "ip": ["22"]}));
        let approvers = root.entry("autoApprovers").or_insert_with(|| json!({}));
        let routes = approvers
            .as_object_mut()
            .unwrap()
            .entry("routes")
            .or_insert_with(|| json!({}));
        routes["10.1.0.0/16"] = json!(["group:team"]);
        root.insert(
            "nodeAttrs".into(),
            json!([{"target": ["tag:funnel"], "attr": ["funnel"]}]),
        );
        assert_eq!(
            value, expected,
            "layout {layout:?} composed to:\n{}",
            composition.text
        );
        // Comments of the Base and of the fragment's entries are all still there.
        for comment in [
            "// no trailing comma",
            "/* block */",
            "/* empty */",
            "// nothing yet",
            "// header",
            "// footer",
        ] {
            assert_eq!(
                layout.contains(comment),
                composition.text.contains(comment),
                "{comment}"
            );
        }
        assert!(
            composition.text.contains("}, // ssh"),
            "{}",
            composition.text
        );
    }
}
