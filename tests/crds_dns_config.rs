//! The DNSConfig CustomResourceDefinition, as `tests/crds.rs` checks the others: names and
//! columns, descriptions, and sample objects passing or failing the generated schema (with
//! `jsonschema`) and its CEL rules (with `kube-cel`) as the API server would decide.
mod support;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_cel::{ScopeContext, analyze_rule, compile_schema};
use serde_json::{Value, json};
use support::crds::{undocumented, walk, yaml};
use tailnet_operator::reconcile::dns_config::{DnsInput, DnsOutcome, plan};
use tailnet_operator::resources::{self, DNSConfig, DNSConfigStatus};
use tailnet_operator::tailscale::DnsConfiguration;

fn crd() -> CustomResourceDefinition {
    support::crds::crd(DNS)
}

fn schema() -> Value {
    support::crds::schema(DNS)
}

fn schema_errors(object: &Value) -> Vec<String> {
    support::crds::schema_errors(&schema(), object)
}

fn cel_errors(object: &Value, old: Option<&Value>) -> Vec<String> {
    support::crds::cel_errors(&schema(), object, old)
}

const DNS: &str = "dnsconfigs.tailnet.ops.dev";

const FULL: &str = r#"
apiVersion: tailnet.ops.dev/v1alpha1
kind: DNSConfig
metadata:
  name: default
spec:
  tailnetRef: prod
  driftPolicy: Report
  deletionPolicy: Orphan
  magicDNS: true
  overrideLocalDNS: false
  nameservers:
    - address: 1.1.1.1
      useWithExitNode: true
    - address: 2606:4700:4700::1111
    - address: https://dns.nextdns.io/abc123
  splitDNS:
    corp.example.com:
      - address: 10.10.0.53
    svc.cluster.local.:
      - address: fd7a:115c:a1e0::53
  searchPaths:
    - corp.example.com
    - svc.cluster.local
"#;

const MINIMAL: &str = r#"
apiVersion: tailnet.ops.dev/v1alpha1
kind: DNSConfig
metadata:
  name: magic-only
spec:
  magicDNS: true
  nameservers: []
"#;

fn example() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dns-config.yaml");
    yaml(&std::fs::read_to_string(path).unwrap())
}

fn patched(sample: &str, patch: Value) -> Value {
    let mut object = yaml(sample);
    json_patch::merge(&mut object, &patch);
    object
}

fn assert_cel_rejects(object: &Value, message: &str) {
    let errors = cel_errors(object, None);
    assert!(
        errors.iter().any(|e| e.contains(message)),
        "expected a CEL failure containing {message:?}, got {errors:?} for {object}"
    );
}

#[test]
fn names_scope_columns_and_a_short_name_apart_from_tailscales_own_kind() {
    let crd = crd();
    assert_eq!(crd.spec.group, "tailnet.ops.dev");
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(crd.spec.names.kind, "DNSConfig");
    assert_eq!(crd.spec.names.plural, "dnsconfigs");
    assert_eq!(crd.spec.names.short_names, Some(vec!["tndns".to_owned()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["tailnetops".to_owned()])
    );
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<(String, String)> = version
        .additional_printer_columns
        .clone()
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.json_path))
        .collect();
    for expected in [
        ("Ready", r#".status.conditions[?(@.type=="Ready")].status"#),
        (
            "Drifted",
            r#".status.conditions[?(@.type=="Drifted")].status"#,
        ),
        ("MagicDNS", ".status.magicDNS"),
        ("Age", ".metadata.creationTimestamp"),
    ] {
        assert!(
            columns
                .iter()
                .any(|(n, p)| (n.as_str(), p.as_str()) == expected),
            "{expected:?} in {columns:?}"
        );
    }
    assert_eq!(columns.last().unwrap().0, "Age");
}

#[test]
fn every_property_has_a_description() {
    let (count, missing) = undocumented(&schema());
    assert!(count > 20, "walked only {count} properties");
    assert!(missing.is_empty(), "undocumented properties {missing:?}");
}

/// The variables `rule` binds in `all(...)` / `exists(...)` comprehensions.
fn comprehension_variables(rule: &str) -> Vec<String> {
    ["all(", "exists(", "exists_one(", "map(", "filter("]
        .iter()
        .flat_map(|macro_| rule.match_indices(macro_).map(|(i, m)| i + m.len()))
        .filter_map(|start| {
            let rest = &rule[start..];
            let name = rest.split(',').next()?.trim();
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                .then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn every_cel_rule_compiles_and_fits_the_cost_budget() {
    let mut total = 0;
    walk(&schema(), String::new(), &mut |path, node| {
        for rule in node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            total += 1;
            let text = rule["rule"].as_str().unwrap();
            assert!(rule["message"].as_str().is_some_and(|m| !m.is_empty()));
            let compiled = compile_schema(node);
            let errors: Vec<String> = compiled
                .compilation_errors()
                .iter()
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{path}: `{text}`: {errors:?}");
            // kube-cel's scope check also lists a comprehension's own variable (`domain` in
            // `self.all(domain, ...)`); only other variables are out of scope.
            let bound = comprehension_variables(text);
            let warnings: Vec<_> = analyze_rule(text, &compiled, ScopeContext::CrdValidation)
                .into_iter()
                .filter(|w| {
                    !bound
                        .iter()
                        .any(|v| w.message.contains(&format!("variable '{v}'")))
                })
                .collect();
            assert!(warnings.is_empty(), "{path}: `{text}`: {warnings:?}");
        }
    });
    // spec: tailnetRef (immutable), nameserver address (global and split), split-DNS domains
    // and their nameserver count, search paths; status.applied repeats the five DNS ones.
    assert_eq!(
        total, 11,
        "a rule was added or lost; extend the tests below"
    );
}

#[test]
fn valid_samples_pass_the_schema_and_the_cel_rules_and_deserialize() {
    for object in [yaml(FULL), yaml(MINIMAL), example()] {
        assert_eq!(schema_errors(&object), Vec::<String>::new(), "{object}");
        assert_eq!(cel_errors(&object, None), Vec::<String>::new(), "{object}");
        assert_eq!(cel_errors(&object, Some(&object)), Vec::<String>::new());
        let parsed: DNSConfig = serde_json::from_value(object).unwrap();
        assert!(!parsed.spec.dns.is_empty());
    }
}

#[test]
fn nameservers_must_be_ip_addresses_or_https_urls() {
    let message = "address must be an IPv4 or IPv6 address";
    for bad in [
        "dns.google",
        "1.1.1",
        "256.0.0.1",
        "http://dns.example/q",
        "2606:::1",
    ] {
        let global = patched(
            MINIMAL,
            json!({"spec": {"nameservers": [{"address": bad}]}}),
        );
        assert_cel_rejects(&global, message);
        let split = patched(
            MINIMAL,
            json!({"spec": {"splitDNS": {"corp.example.com": [{"address": bad}]}}}),
        );
        assert_cel_rejects(&split, message);
    }
}

#[test]
fn split_dns_domains_and_search_paths_must_be_domain_names() {
    for bad in [
        "bad domain",
        "-corp.example.com",
        "a..b",
        ".example",
        "corp/example",
    ] {
        let split = patched(
            MINIMAL,
            json!({"spec": {"splitDNS": {bad: [{"address": "10.0.0.53"}]}}}),
        );
        assert_cel_rejects(&split, "every splitDNS key must be a domain name");
        let path = patched(MINIMAL, json!({"spec": {"searchPaths": [bad]}}));
        assert_cel_rejects(&path, "every searchPaths entry must be a domain name");
    }
    let empty = patched(
        MINIMAL,
        json!({"spec": {"splitDNS": {"corp.example.com": []}}}),
    );
    assert_cel_rejects(
        &empty,
        "every splitDNS domain needs between 1 and 32 nameservers",
    );
}

#[test]
fn the_tailnet_ref_is_immutable_and_the_schema_types_hold() {
    let old = yaml(FULL);
    let moved = patched(FULL, json!({"spec": {"tailnetRef": "staging"}}));
    let errors = cel_errors(&moved, Some(&old));
    assert!(
        errors.iter().any(|e| e.contains("tailnetRef is immutable")),
        "{errors:?}"
    );
    let wrong_type = patched(MINIMAL, json!({"spec": {"magicDNS": "yes"}}));
    assert!(!schema_errors(&wrong_type).is_empty());
    let no_address = patched(
        MINIMAL,
        json!({"spec": {"nameservers": [{"useWithExitNode": true}]}}),
    );
    assert!(!schema_errors(&no_address).is_empty());
}

#[test]
fn statuses_the_operator_writes_fit_the_schema() {
    let mut live = DnsConfiguration::default();
    live.preferences.magic_dns = true;
    let sample: DNSConfig = serde_json::from_value(yaml(FULL)).unwrap();
    let winner = DnsInput::from_object(&sample);
    let mut loser = winner.clone();
    loser.name = "zz-second".into();
    let now = resources::conditions::now();
    for outcome in [
        plan(&winner, &[], &live).outcome,
        plan(&loser, std::slice::from_ref(&winner), &live).outcome,
    ] {
        let mut status = DNSConfigStatus::default();
        DnsOutcome::write_status(&outcome, &mut status, &now);
        let mut object = sample.clone();
        object.status = Some(status);
        let value = serde_json::to_value(&object).unwrap();
        assert_eq!(schema_errors(&value), Vec::<String>::new(), "{value}");
    }
}
