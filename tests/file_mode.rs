//! File mode: `plan -f` / `apply -f` over YAML files, in process against one simulated tailnet
//! (so a second apply is observable) and as the real binary for the exit codes.
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::client::*;
use tailnet_operator::file_mode::{self, FileModeError};
use tailnet_operator::sim::{SimConfig, SimTailnet};
use tailnet_operator::snapshot::TailnetSnapshots;

const POST_ACL: &str = "POST /api/v2/tailnet/{tailnet}/acl";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A fresh directory under the system temp dir holding `files`.
fn fixture(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tailnet-operator-file-mode-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn base_doc(name: &str, policy: &str) -> String {
    format!(
        "apiVersion: tailnet.ops.dev/v1alpha1\nkind: TailnetPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  role: Base\n  policy: {}\n",
        serde_json::to_string(policy).unwrap()
    )
}

#[tokio::test]
async fn apply_examples_converges_and_a_second_apply_writes_nothing() {
    let server = start_sim().await;
    let manifests = file_mode::load(&examples()).unwrap();
    assert_eq!(
        manifests
            .of::<tailnet_operator::resources::ManagedTailnet>()
            .len(),
        1
    );
    assert_eq!(
        manifests
            .of::<tailnet_operator::resources::TailnetPolicy>()
            .len(),
        2
    );
    for run in 1..=2 {
        // Each run is a fresh process in real life: new snapshots, no history.
        let snapshots =
            TailnetSnapshots::new(client(api_key_config(&server)), Duration::from_secs(300));
        let report = file_mode::apply_manifests(&manifests, &snapshots)
            .await
            .unwrap();
        assert!(!report.failed, "run {run}:\n{}", report.output);
        assert_eq!(report.changes, run == 1, "run {run}:\n{}", report.output);
    }
    // And a plan after them: nothing to change (exit 0).
    let snapshots =
        TailnetSnapshots::new(client(api_key_config(&server)), Duration::from_secs(300));
    let plan = file_mode::plan_manifests(&manifests, &snapshots)
        .await
        .unwrap();
    assert!(!plan.changes && !plan.failed, "{}", plan.output);
    let posts = server.tailnet().calls().get(POST_ACL);
    eprintln!("apply -f examples/ twice: POST /acl count {posts}");
    assert_eq!(posts, 1);
    let live = server.tailnet().policy().0;
    assert!(
        live.contains("// Access policy of the example tailnet"),
        "{live}"
    );
    assert!(live.contains("// from TailnetPolicy/team-data"), "{live}");
    assert!(live.contains("\"group:data\""), "{live}");
    // The TailscaleService: created and its advertising host approved once, its grant composed
    // into the policy, nothing written by the second apply.
    let calls = server.tailnet().calls();
    assert_eq!(calls.get(PUT_SERVICE), 1);
    assert_eq!(calls.get(APPROVE_HOST), 1);
    assert!(
        live.contains("// from TailscaleService/monitoring/grafana-eng"),
        "{live}"
    );
    let service = server.tailnet().service("svc:grafana-eng").unwrap();
    assert_eq!(
        service["annotations"]["tailnet.ops.dev/owner"],
        "monitoring/grafana-eng"
    );
    let monitoring = server.tailnet().device_id("monitoring-1").unwrap();
    assert_eq!(
        server.tailnet().service_hosts("svc:grafana-eng"),
        [(monitoring, "approved:manual")]
    );
}

const PUT_SERVICE: &str = "PUT /api/v2/tailnet/{tailnet}/services/{serviceName}";
const APPROVE_HOST: &str =
    "POST /api/v2/tailnet/{tailnet}/services/{serviceName}/device/{deviceId}/approved";

#[test]
fn config_map_sources_resolve_and_foreign_kinds_are_handled() {
    let dir = fixture(
        "load",
        &[
            (
                "policy.yaml",
                "apiVersion: tailnet.ops.dev/v1alpha1\nkind: TailnetPolicy\nmetadata:\n  name: base\n\
                 spec:\n  role: Base\n  policyFrom:\n    configMapKeyRef: {namespace: ops, name: acl, key: policy.hujson}\n\
                 ---\n\
                 apiVersion: tailnet.ops.dev/v1alpha1\nkind: WebhookEndpoint\nmetadata:\n  name: web\n",
            ),
            (
                "nested/cm.yml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: acl\n  namespace: ops\n\
                 data:\n  policy.hujson: '{\"groups\": {}}'\n",
            ),
        ],
    );
    let manifests = file_mode::load(&dir).unwrap();
    let resources = file_mode::tailnet_policy::inputs(&manifests);
    assert_eq!(resources[0].text.as_deref().unwrap(), "{\"groups\": {}}");
    assert_eq!(manifests.warnings.len(), 1);
    assert!(manifests.warnings[0].contains("WebhookEndpoint is not supported yet"));

    let missing = fixture(
        "missing-cm",
        &[(
            "policy.yaml",
            "apiVersion: tailnet.ops.dev/v1alpha1\nkind: TailnetPolicy\nmetadata:\n  name: base\n\
             spec:\n  role: Base\n  policyFrom:\n    configMapKeyRef: {namespace: ops, name: acl, key: k}\n",
        )],
    );
    let manifests = file_mode::load(&missing).unwrap();
    let err = file_mode::tailnet_policy::inputs(&manifests)[0]
        .text
        .as_ref()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ConfigMap ops/acl key k") && err.contains("same PATH"),
        "{err}"
    );

    let foreign = fixture(
        "foreign",
        &[(
            "deploy.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
        )],
    );
    let err = file_mode::load(&foreign).unwrap_err();
    assert!(matches!(err, FileModeError::UnknownKind { .. }));
    let message = err.to_string();
    assert!(
        message.contains("deploy.yaml") && message.contains("\"Deployment\""),
        "{message}"
    );
}

/// Runs the binary with no Tailscale settings: the embedded simulated tailnet.
#[test]
fn plan_exit_codes_are_0_without_changes_2_with_changes_1_on_errors() {
    // 0: a Base identical to the embedded tailnet's current policy.
    let demo = SimTailnet::new(SimConfig::default()).policy().0;
    let same = fixture("plan-same", &[("base.yaml", &base_doc("base", &demo))]);
    let (code, stdout, stderr) = run_binary(&["plan", "-f", same.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("policy: no changes"), "{stdout}");
    assert!(stderr.contains("embedded simulated tailnet"), "{stderr}");

    // 2: the examples change the policy; the plan shows the text and access diff.
    let (code, stdout, stderr) = run_binary(&["plan", "-f", examples().to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.contains("+++ desired") && stdout.contains("device pairs gaining"),
        "{stdout}"
    );
    // The TailscaleService to create, and who gains it in the access diff.
    assert!(
        stdout.contains(
            "TailscaleService/monitoring/grafana-eng: would create svc:grafana-eng (Create)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("-> svc:grafana-eng tcp:443  gained"),
        "{stdout}"
    );
    // Class lines by default; individual pairs only on request, bounded.
    assert!(!stdout.contains("pairs gained (showing"), "{stdout}");
    let (code, stdout, stderr) = run_binary(&[
        "plan",
        "-f",
        examples().to_str().unwrap(),
        "--show-pairs",
        "2",
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.contains("policy: 45 pairs gained (showing 2):"),
        "{stdout}"
    );
    assert!(
        stdout.contains("policy: 198 pairs lost (showing 2):"),
        "{stdout}"
    );
    let listed = stdout
        .lines()
        .filter(|l| l.starts_with("  + ") || l.starts_with("  - "))
        .filter(|l| l.contains(" -> ") && !l.contains("devices)") && !l.contains("device pair"))
        .count();
    assert_eq!(listed, 4, "two gained and two lost pairs: {stdout}");
    let (code, _, stderr) = run_binary(&[
        "apply",
        "-f",
        examples().to_str().unwrap(),
        "--show-pairs",
        "2",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("use it with `plan`"), "{stderr}");

    // 1: a tag nobody owns (named in the output), and an unknown kind (named with its file).
    let unowned = demo.replace("\"tag:ci\", \"accept\"", "\"tag:nobody\", \"accept\"");
    assert_ne!(unowned, demo, "the fixture edit applies");
    let bad = fixture("plan-bad", &[("base.yaml", &base_doc("base", &unowned))]);
    let (code, stdout, stderr) = run_binary(&["plan", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("tag:nobody"), "{stdout}");

    let foreign = fixture(
        "plan-foreign",
        &[(
            "x.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
        )],
    );
    let (code, _, stderr) = run_binary(&["plan", "-f", foreign.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Deployment") && stderr.contains("x.yaml"),
        "{stderr}"
    );
}

#[test]
fn apply_exits_0_when_ready_and_1_when_a_resource_is_not() {
    let (code, stdout, stderr) = run_binary(&["apply", "-f", examples().to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("TailnetPolicy/team-data:\n  Ready=True"),
        "{stdout}"
    );

    let dir = fixture(
        "apply-conflict",
        &[
            (
                "base.yaml",
                &base_doc(
                    "base",
                    "{\"groups\": {\"group:a\": [\"alice@example.com\"]}}",
                ),
            ),
            (
                "frag.yaml",
                "apiVersion: tailnet.ops.dev/v1alpha1\nkind: TailnetPolicy\nmetadata:\n  name: frag\n\
                 spec:\n  role: Fragment\n  policy: '{\"groups\": {\"group:a\": [\"bob@example.com\"]}}'\n",
            ),
        ],
    );
    let (code, stdout, stderr) = run_binary(&["apply", "-f", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("Ready=False Conflict"), "{stdout}");
}

const POST_DNS: &str = "POST /api/v2/tailnet/{tailnet}/dns/configuration";

#[tokio::test]
async fn the_dns_config_example_converges_and_a_second_apply_writes_nothing() {
    let server = start_sim().await;
    let manifests = file_mode::load(&examples()).unwrap();
    assert_eq!(
        manifests
            .of::<tailnet_operator::resources::DNSConfig>()
            .len(),
        1
    );
    for run in 1..=2 {
        let snapshots =
            TailnetSnapshots::new(client(api_key_config(&server)), Duration::from_secs(300));
        if run == 2 {
            let plan = file_mode::plan_manifests(&manifests, &snapshots)
                .await
                .unwrap();
            assert!(!plan.changes, "{}", plan.output);
            assert!(
                plan.output.contains("DNSConfig/default: no changes"),
                "{}",
                plan.output
            );
        }
        let report = file_mode::apply_manifests(&manifests, &snapshots)
            .await
            .unwrap();
        assert!(!report.failed, "run {run}:\n{}", report.output);
        assert!(
            report.output.contains("DNSConfig/default:\n  Ready=True"),
            "{}",
            report.output
        );
    }
    assert_eq!(
        server.tailnet().calls().get(POST_DNS),
        1,
        "one write over two runs"
    );
    let dns = server.tailnet().dns();
    assert!(dns.nameservers[0].use_with_exit_node);
    assert_eq!(dns.split_dns["corp.example.com"].len(), 2);
    assert!(dns.preferences.magic_dns && dns.preferences.override_local_dns);
}

#[tokio::test]
async fn a_dns_only_path_plans_the_write_and_a_second_dns_config_is_a_conflict() {
    let doc = |name: &str, spec: &str| {
        format!(
            "apiVersion: tailnet.ops.dev/v1alpha1\nkind: DNSConfig\nmetadata:\n  name: {name}\nspec:\n{spec}"
        )
    };
    let dir = fixture(
        "dns-only",
        &[
            ("a.yaml", &doc("a", "  magicDNS: true\n  nameservers: []\n")),
            ("b.yaml", &doc("b", "  magicDNS: false\n")),
        ],
    );
    let manifests = file_mode::load(&dir).unwrap();
    let server = start_sim().await;
    let snapshots =
        TailnetSnapshots::new(client(api_key_config(&server)), Duration::from_secs(300));
    let plan = file_mode::plan_manifests(&manifests, &snapshots)
        .await
        .unwrap();
    assert!(plan.changes && plan.failed, "{}", plan.output);
    assert!(
        plan.output
            .contains("DNSConfig/a: would write the tailnet's DNS (Initial)")
            && plan.output.contains("/nameservers/0:")
            && plan
                .output
                .contains("DNSConfig/b: error: Conflict DNSConfig a already manages"),
        "{}",
        plan.output
    );
    let report = file_mode::apply_manifests(&manifests, &snapshots)
        .await
        .unwrap();
    assert!(
        report.failed,
        "the conflict fails the run:\n{}",
        report.output
    );
    let dns = server.tailnet().dns();
    assert!(
        dns.nameservers.is_empty() && dns.preferences.magic_dns,
        "{dns:?}"
    );
    assert_eq!(
        server.tailnet().calls().get(POST_DNS),
        1,
        "only the winner wrote"
    );
}

/// A TailscaleService granting access to an undefined group: `plan` and `apply` fail naming
/// it, the service is not written, and the policy still applies without the bad grant.
#[tokio::test]
async fn a_service_granting_an_undefined_group_fails_without_writing_it() {
    let base = std::fs::read_to_string(examples().join("policy-base.yaml")).unwrap();
    let service = "apiVersion: tailnet.ops.dev/v1alpha1\nkind: TailscaleService\n\
        metadata:\n  name: web\n  namespace: apps\nspec:\n  ports: [\"tcp:443\"]\n  \
        tags: [\"tag:server\"]\n  hosts:\n    tags: [\"tag:server\"]\n  \
        accessFrom: [\"group:nobody\"]\n";
    let dir = fixture(
        "svc-undefined-group",
        &[("base.yaml", &base), ("service.yaml", service)],
    );
    let server = start_sim().await;
    let manifests = file_mode::load(&dir).unwrap();
    let snapshots =
        TailnetSnapshots::new(client(api_key_config(&server)), Duration::from_secs(300));
    let plan = file_mode::plan_manifests(&manifests, &snapshots)
        .await
        .unwrap();
    assert!(plan.failed, "{}", plan.output);
    assert!(
        plan.output
            .contains("TailscaleService/apps/web: error: Invalid")
            && plan.output.contains("group:nobody"),
        "{}",
        plan.output
    );
    assert!(
        plan.output
            .contains("policy: error: TailscaleService/apps/web (grants) left out of the policy"),
        "{}",
        plan.output
    );
    let applied = file_mode::apply_manifests(&manifests, &snapshots)
        .await
        .unwrap();
    assert!(applied.failed, "{}", applied.output);
    assert_eq!(server.tailnet().calls().get(PUT_SERVICE), 0);
    let live = server.tailnet().policy().0;
    assert!(
        live.contains("// Access policy of the example tailnet"),
        "{live}"
    );
    assert!(!live.contains("group:nobody"), "{live}");
}

/// `--secrets-dir`: a KeyRotationPolicy's credential in a 0600 file, minted by the first apply,
/// left alone by the next, replaced (the previous one recorded) on rotate-now.
#[tokio::test]
async fn secrets_dir_keeps_a_key_rotation_credential_in_a_private_file() {
    let policy = |annotations: &str| {
        format!(
            "apiVersion: tailnet.ops.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata:\n  \
             name: runners\n  namespace: ci\n{annotations}spec:\n  reusable: true\n  \
             tags: [\"tag:ci\"]\n  expiry: 720h\n"
        )
    };
    let server = start_sim().await;
    let secrets = std::env::temp_dir().join(format!("secrets-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&secrets);
    let apply = |text: String, name: &'static str| {
        let dir = fixture(name, &[("keys.yaml", &text)]);
        let mut manifests = file_mode::load(&dir).unwrap();
        manifests.secrets_dir = Some(secrets.clone());
        let snapshots =
            TailnetSnapshots::new(client(api_key_config(&server)), Duration::from_secs(300));
        async move {
            file_mode::apply_manifests(&manifests, &snapshots)
                .await
                .unwrap()
        }
    };
    let file = secrets.join("ci.runners.json");
    let read =
        || -> serde_json::Value { serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap() };

    let first = apply(policy(""), "keys-1").await;
    assert!(!first.failed && first.changes, "{}", first.output);
    let written = read();
    let id = written["keyId"].as_str().unwrap().to_owned();
    assert!(
        written["data"]["authkey"]
            .as_str()
            .unwrap()
            .starts_with("tskey-auth-")
    );
    assert_eq!(written["status"]["currentKeyId"], id.as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        !first
            .output
            .contains(written["data"]["authkey"].as_str().unwrap())
    );

    let again = apply(policy(""), "keys-2").await;
    assert!(!again.changes, "{}", again.output);
    assert_eq!(read()["keyId"], id.as_str());

    let rotated = apply(
        policy("  annotations:\n    tailnet.ops.dev/rotate-now: \"1\"\n"),
        "keys-3",
    )
    .await;
    assert!(rotated.changes, "{}", rotated.output);
    let after = read();
    assert_ne!(after["keyId"], id.as_str());
    assert_eq!(after["status"]["previousKeyId"], id.as_str());
    assert_eq!(after["status"]["rotatedFor"], "1");
    let _ = std::fs::remove_dir_all(&secrets);
}
