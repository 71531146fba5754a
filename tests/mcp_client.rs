//! `tailnet-operator mcp` driven by a REAL MCP client: the official Python SDK
//! (`tests/mcp/client.py`, installed by `scripts/test` into the test venv whose interpreter
//! is `$TAILNET_TEST_PYTHON`).
//!
//! The server runs as a child process exactly as a user runs it: `--kubeconfig` against the
//! in-process fake API server served over TCP on 127.0.0.1 (with the simulated tailnet behind
//! the `ManagedTailnet`'s Secret), `--operator-url` against the loopback API, and `--manifests` over a
//! copy of `examples/` with no cluster and no credentials. Every byte the client received (tool
//! outputs, resources) and every proposal file is scanned for the secrets in play.
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};
use support::fake_kube::{FakeKube, Gvr};
use support::fixtures::BASE;
use support::kinds::HANG_GUARD;
use support::operator::{self, NAMESPACE, TAILNET};
use tailnet_operator::controller::Manager;
use tailnet_operator::mcp::kube_source::KubeSource;
use tailnet_operator::mcp::local::LocalBackend;
use tailnet_operator::resources::dns_config::DNSConfig;
use tailnet_operator::resources::{ChangeProposal, DeviceTagSet, ManagedTailnet, TailnetPolicy};
use tailnet_operator::sim::{SimConfig, SimServer};
use tower::ServiceExt;

const BIN: &str = env!("CARGO_BIN_EXE_tailnet-operator");
const BEARER: &str = "test-bearer-token-0123456789abcdef";
const READ_TOOLS: &[&str] = &[
    "overview",
    "list_resources",
    "get_resource",
    "get_policy",
    "check_access",
    "list_devices",
    "device_audit",
    "list_auth_keys",
    "list_proposals",
    "network_report",
];

/// The interpreter of the test venv; a clear failure, never a silent pass, without it.
fn python() -> String {
    match std::env::var("TAILNET_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => panic!(
            "TAILNET_TEST_PYTHON is not set: these tests drive the server with the official \
             Python MCP SDK. Run `scripts/test` (it creates the test venv from \
             scripts/requirements-test.txt and sets TAILNET_TEST_PYTHON), or set it to a \
             python with `pip install -r scripts/requirements-test.txt`"
        ),
    }
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py")
}

/// Runs the Python client with `steps` and returns its per-step results (and the raw output,
/// for the secret scan). Runs on a blocking thread: the fake API server and the sim live on
/// this test's runtime.
async fn run_client(
    transport: Vec<String>,
    steps: Value,
    env: Vec<(String, String)>,
) -> (Vec<Value>, String) {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(python());
        command
            .arg(client_script())
            .args(&transport)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The server must never pick up a developer's real credentials or cluster.
        support::client::without_developer_settings(&mut command);
        command.envs(env);
        let mut child = command.spawn().expect("python starts");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(steps.to_string().as_bytes()).unwrap();
        }
        let output = child.wait_with_output().expect("python runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "the MCP client failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            output.status
        );
        let parsed: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {stdout}\n{stderr}"));
        let steps = parsed["steps"].as_array().cloned().unwrap_or_default();
        (steps, format!("{stdout}\n{stderr}"))
    })
    .await
    .expect("client thread")
}

fn stdio(args: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--stdio".to_owned(),
        "--".to_owned(),
        BIN.to_owned(),
        "mcp".to_owned(),
    ];
    v.extend(args.iter().map(|a| (*a).to_owned()));
    v
}

/// Arguments for each read tool.
fn read_tool_calls() -> Value {
    json!([
        {"op": "list_tools"},
        {"op": "call", "tool": "overview"},
        {"op": "call", "tool": "list_resources", "args": {}},
        {"op": "call", "tool": "get_resource", "args": {"kind": "TailnetPolicy", "name": "base"}},
        {"op": "call", "tool": "get_policy", "args": {}},
        {"op": "call", "tool": "check_access", "args": {"src": "bob@example.com", "dst": "tag:prod", "port": 5432}},
        {"op": "call", "tool": "list_devices", "args": {"tag": "tag:server"}},
        {"op": "call", "tool": "device_audit", "args": {}},
        {"op": "call", "tool": "list_auth_keys", "args": {}},
        {"op": "call", "tool": "list_proposals"},
        {"op": "call", "tool": "network_report", "args": {}},
        {"op": "list_resources"},
        {"op": "read_resources"},
        {"op": "list_prompts"},
        {"op": "get_prompt", "name": "expose_for_demo", "args": {
            "service": "grafana", "namespace": "monitoring", "port": "3000", "duration": "2h"}},
        {"op": "get_prompt", "name": "expose_for_demo", "args": {}},
    ])
}

/// Checks the read-tool session: every tool listed with its annotations, every read tool
/// answered with structured output.
fn check_reads(steps: &[Value], read_only: bool) {
    let tools: BTreeMap<String, &Value> = steps[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t))
        .collect();
    for name in READ_TOOLS {
        let tool = tools
            .get(*name)
            .unwrap_or_else(|| panic!("{name} listed: {tools:?}"));
        assert_eq!(tool["readOnly"], true, "{name} is annotated read-only");
        assert_eq!(tool["hasOutputSchema"], true, "{name} has an output schema");
    }
    for name in tailnet_operator::mcp::server::PROPOSE_TOOLS {
        assert_eq!(
            tools.contains_key(*name),
            !read_only,
            "{name} listed unless --read-only"
        );
    }
    for (i, step) in steps[1..=READ_TOOLS.len()].iter().enumerate() {
        assert_eq!(
            step["isError"], false,
            "read tool {} failed: {step}",
            READ_TOOLS[i]
        );
        assert!(
            step["structured"].is_object(),
            "{}: structured output",
            READ_TOOLS[i]
        );
    }
    let overview = &steps[1]["structured"];
    assert!(
        overview["tailnets"][0]["devices"]["total"]
            .as_u64()
            .unwrap()
            > 0,
        "{overview}"
    );
    let access = &steps[5]["structured"];
    assert_eq!(access["verdict"], "accept", "SRE reaches prod: {access}");
    let devices = &steps[6]["structured"]["devices"];
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["tags"].as_array().unwrap().contains(&json!("tag:server")))
    );
    let report = &steps[10]["structured"];
    assert!(report["devices"]["total"].as_u64().unwrap() > 0, "{report}");
    assert!(
        !report["policy"]["access"]["cells"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the access heatmap: {report}"
    );
    let resources = steps[11]["resources"].as_array().unwrap();
    assert!(
        resources.contains(&json!("tailnet://policy/live")),
        "{resources:?}"
    );
    assert!(resources.contains(&json!("tailnet://resources/TailnetPolicy/base")));
    assert!(resources.contains(&json!("tailnet://report.html")));
    let contents = steps[12]["contents"].as_object().unwrap();
    assert_eq!(
        contents.len(),
        resources.len(),
        "every listed resource reads"
    );
    let prompts: Vec<&str> = steps[13]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        prompts,
        [
            "review_drift",
            "onboard_device",
            "expose_for_demo",
            "rotate_leaked_key"
        ]
    );
    let prompt = steps[14]["text"].as_str().unwrap();
    assert!(
        prompt.contains("monitoring/grafana port 3000 publicly for 2h")
            && prompt.contains("expose_publicly"),
        "{prompt}"
    );
    assert!(
        steps[15]["protocolError"]
            .as_str()
            .is_some_and(|e| e.contains("service")),
        "a missing argument is named: {}",
        steps[15]
    );
    let page = contents["tailnet://report.html"].as_str().unwrap();
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains("<section id=\"policy\">"),
        "{page:.200}"
    );
}

/// None of `secrets` occurs in `text`.
fn assert_no_secrets(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret),
            "a secret value appears in MCP output:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster: fake API server over TCP, sim, controllers in process.

struct Cluster {
    fake: FakeKube,
    sim: SimServer,
    manager: Manager,
    kubeconfig: PathBuf,
    _dir: TempDir,
}

impl Cluster {
    fn secrets(&self) -> Vec<String> {
        let credentials = self.sim.tailnet().credentials();
        vec![
            credentials.api_key.expose().to_owned(),
            credentials.oauth_client_secret.expose().to_owned(),
            BEARER.to_owned(),
        ]
    }

    fn proposals(&self) -> Vec<Value> {
        self.fake
            .list(&Gvr::of::<ChangeProposal>(), Some(NAMESPACE))
    }

    async fn wait_for_phase(&self, name: &str, phase: &str) -> Value {
        self.fake
            .wait_for(&format!("ChangeProposal {name} {phase}"), HANG_GUARD, |f| {
                f.get(&Gvr::of::<ChangeProposal>(), Some(NAMESPACE), name)
                    .filter(|p| p.pointer("/status/phase") == Some(&json!(phase)))
            })
            .await
    }

    fn approve(&self, name: &str) {
        self.fake
            .merge_patch(
                &Gvr::of::<ChangeProposal>(),
                Some(NAMESPACE),
                name,
                json!({"spec": {"approved": true}}),
            )
            .expect("approved");
    }

    async fn wait_for_condition(&self, name: &str, condition: &str, status: &str) {
        self.wait_for_condition_of(&Gvr::of::<TailnetPolicy>(), name, condition, status)
            .await;
    }

    async fn wait_for_condition_of(&self, gvr: &Gvr, name: &str, condition: &str, status: &str) {
        self.fake
            .wait_for(&format!("{name} {condition}={status}"), HANG_GUARD, |f| {
                let object = f.get(gvr, None, name)?;
                object["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == condition && c["status"] == status)
                    .cloned()
            })
            .await;
    }

    /// Makes the resource's controller look now rather than at its next resync.
    fn reconcile_now(&self, gvr: &Gvr, name: &str, stamp: &str) {
        self.fake
            .merge_patch(
                gvr,
                None,
                name,
                json!({"metadata": {"annotations": {"tailnet.ops.dev/reconcile-at": stamp}}}),
            )
            .unwrap();
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "tailnet-mcp-{label}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `fake` over HTTP on 127.0.0.1 so a child process's kube client reaches it.
async fn serve_fake(fake: FakeKube) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let fake = fake.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let request =
                http::Request::from_parts(parts, kube::client::Body::from(bytes.to_vec()));
            fake.oneshot(request).await.expect("the fake answers")
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn write_kubeconfig(dir: &Path, addr: SocketAddr) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: {NAMESPACE}\n\
         current-context: fake\nusers:\n- name: tester\n  user: {{}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn cluster(drift_policy: &str) -> Cluster {
    let fake = FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<TailnetPolicy>()
        .with_status_subresource_for::<ChangeProposal>()
        .with_status_subresource_for::<DeviceTagSet>()
        .with_status_subresource_for::<DNSConfig>();
    let sim = operator::sim().await;
    operator::connect_tailnet(&fake, &sim);
    fake.create(
        &Gvr::of::<TailnetPolicy>(),
        json!({
            "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "TailnetPolicy",
            "metadata": {"name": "base"},
            "spec": {"tailnetRef": TAILNET, "role": "Base", "driftPolicy": drift_policy, "policy": BASE},
        }),
    )
    .unwrap();
    let manager = operator::start_manager(&fake, operator::run_config()).await;
    let dir = TempDir::new("cluster");
    let addr = serve_fake(fake.clone()).await;
    let kubeconfig = write_kubeconfig(&dir.0, addr);
    let cluster = Cluster {
        fake,
        sim,
        manager,
        kubeconfig,
        _dir: dir,
    };
    cluster.wait_for_condition("base", "Ready", "True").await;
    cluster
}

/// The valid change: engineers get SSH to servers (the policy's tests still pass).
fn ssh_patch() -> Value {
    let text = BASE.replace(
        r#"{"src": ["group:eng"], "dst": ["tag:server"], "ip": ["tcp:443"]},"#,
        r#"{"src": ["group:eng"], "dst": ["tag:server"], "ip": ["tcp:443", "tcp:22"]},"#,
    );
    assert_ne!(text, BASE);
    json!({"spec": {"policy": text}})
}

/// An invalid change: engineers reach the prod databases, which the policy's tests forbid.
fn forbidden_patch() -> Value {
    let text = BASE.replace(
        r#"{"src": ["group:eng"], "dst": ["tag:server"], "ip": ["tcp:443"]},"#,
        r#"{"src": ["group:eng"], "dst": ["tag:server"], "ip": ["tcp:443"]},
    {"src": ["group:eng"], "dst": ["tag:prod"], "ip": ["tcp:5432"]},"#,
    );
    json!({"spec": {"policy": text}})
}

fn propose_step(patch: Value, summary: &str) -> Value {
    json!({"op": "call", "tool": "propose_patch", "args": {
        "kind": "TailnetPolicy", "name": "base", "patch": patch, "summary": summary}})
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubeconfig_over_stdio_reads_proposes_and_approval_applies() {
    let cluster = cluster("Correct").await;
    let kubeconfig = cluster.kubeconfig.to_string_lossy().into_owned();
    let transport = stdio(&["--kubeconfig", &kubeconfig]);
    let mut outputs = String::new();

    let (steps, raw) = run_client(transport.clone(), read_tool_calls(), vec![]).await;
    outputs.push_str(&raw);
    check_reads(&steps, false);

    // An invalid patch: a clear error, and no ChangeProposal.
    let (steps, raw) = run_client(
        transport.clone(),
        json!([propose_step(forbidden_patch(), "let engineers query prod")]),
        vec![],
    )
    .await;
    outputs.push_str(&raw);
    assert_eq!(steps[0]["isError"], true, "{}", steps[0]);
    assert!(
        steps[0]["text"].as_str().unwrap().contains("policyTests"),
        "{}",
        steps[0]
    );
    assert!(
        cluster.proposals().is_empty(),
        "nothing created for an invalid patch"
    );

    // A valid patch: the proposal, its YAML diff and access diff.
    let (steps, raw) = run_client(
        transport.clone(),
        json!([propose_step(ssh_patch(), "engineers need SSH to servers")]),
        vec![],
    )
    .await;
    outputs.push_str(&raw);
    let created = &steps[0]["structured"];
    assert_eq!(steps[0]["isError"], false, "{}", steps[0]);
    assert!(
        created["yamlDiff"].as_str().unwrap().contains("tcp:22"),
        "{created}"
    );
    let access = created["accessDiff"].as_str().unwrap();
    assert!(
        access.contains("+ ") && access.contains("22"),
        "gained SSH pairs: {access}"
    );
    let name = created["name"].as_str().unwrap().to_owned();
    assert_eq!(created["namespace"], NAMESPACE);
    assert_eq!(cluster.proposals().len(), 1);
    cluster.wait_for_phase(&name, "Pending").await;
    let posts_before = cluster
        .sim
        .tailnet()
        .calls()
        .get("POST /api/v2/tailnet/{tailnet}/acl");

    // A human approves: the operator applies it and the tailnet's policy changes.
    cluster.approve(&name);
    cluster.wait_for_phase(&name, "Applied").await;
    let live = cluster
        .fake
        .wait_for("the new policy in the tailnet", HANG_GUARD, |_| {
            let (text, _) = cluster.sim.tailnet().policy();
            text.contains("tcp:22").then_some(text)
        })
        .await;
    assert!(live.contains(r#""tcp:443", "tcp:22""#));
    assert!(
        cluster
            .sim
            .tailnet()
            .calls()
            .get("POST /api/v2/tailnet/{tailnet}/acl")
            > posts_before
    );

    // A proposal whose target changes before approval goes Stale.
    let (steps, raw) = run_client(
        transport.clone(),
        json!([propose_step(
            json!({"metadata": {"labels": {"team": "net"}}}),
            "label it"
        )]),
        vec![],
    )
    .await;
    outputs.push_str(&raw);
    let stale = steps[0]["structured"]["name"].as_str().unwrap().to_owned();
    cluster.wait_for_phase(&stale, "Pending").await;
    let mut spec = cluster
        .fake
        .get(&Gvr::of::<TailnetPolicy>(), None, "base")
        .unwrap()["spec"]
        .clone();
    spec["historyLimit"] = json!(5);
    cluster
        .fake
        .set_spec(&Gvr::of::<TailnetPolicy>(), None, "base", spec)
        .unwrap();
    cluster.approve(&stale);
    cluster.wait_for_phase(&stale, "Stale").await;
    let labels = cluster
        .fake
        .get(&Gvr::of::<TailnetPolicy>(), None, "base")
        .unwrap();
    assert!(
        labels.pointer("/metadata/labels/team").is_none(),
        "a stale patch is not applied"
    );

    let secrets = cluster.secrets();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secrets(&outputs, &secrets);
    cluster.manager.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adopt_drift_keeps_the_console_edit_and_clears_drift() {
    let cluster = cluster("Report").await;
    let kubeconfig = cluster.kubeconfig.to_string_lossy().into_owned();
    let transport = stdio(&["--kubeconfig", &kubeconfig]);
    // Someone edits the policy in the admin console.
    let edited = BASE.replace(
        r#""group:sre": ["bob@example.com", "dave@example.com"],"#,
        r#""group:sre": ["bob@example.com", "dave@example.com", "erin@example.com"],"#,
    );
    cluster
        .sim
        .tailnet()
        .set_console_actor("erin.admin@example.com", "Erin");
    cluster.sim.tailnet().console_set_policy(&edited).unwrap();
    // Make the controller look now rather than at its next resync.
    cluster.reconcile_now(&Gvr::of::<TailnetPolicy>(), "base", "now");
    cluster.wait_for_condition("base", "Drifted", "True").await;

    let (steps, raw) = run_client(
        transport,
        json!([
            {"op": "call", "tool": "get_resource", "args": {"kind": "TailnetPolicy", "name": "base"}},
            {"op": "call", "tool": "adopt_drift", "args": {"kind": "TailnetPolicy", "name": "base"}},
        ]),
        vec![],
    )
    .await;
    assert!(
        steps[0]["structured"]["drift"].is_object(),
        "the drift diff is shown: {}",
        steps[0]
    );
    assert!(
        steps[0]["structured"]["drift"]["changedBy"]
            .as_str()
            .is_some_and(
                |who| who.starts_with("erin.admin@example.com (Erin) in the admin console")
            ),
        "get_resource shows who made the drift: {}",
        steps[0]
    );
    assert_eq!(steps[1]["isError"], false, "{}", steps[1]);
    let name = steps[1]["structured"]["name"].as_str().unwrap().to_owned();
    let proposal = cluster
        .fake
        .get(&Gvr::of::<ChangeProposal>(), Some(NAMESPACE), &name)
        .map(|p| p.to_string())
        .unwrap_or_default();
    assert!(
        proposal.contains("the edit: erin.admin@example.com (Erin)"),
        "the proposal names whose edit it keeps: {proposal}"
    );
    assert!(
        steps[1]["structured"]["yamlDiff"]
            .as_str()
            .unwrap()
            .contains("erin@example.com")
    );
    cluster.wait_for_phase(&name, "Pending").await;
    let posts_before = cluster
        .sim
        .tailnet()
        .calls()
        .get("POST /api/v2/tailnet/{tailnet}/acl");
    cluster.approve(&name);
    cluster.wait_for_phase(&name, "Applied").await;
    cluster.wait_for_condition("base", "Drifted", "False").await;
    let (live, _) = cluster.sim.tailnet().policy();
    assert_eq!(live, edited, "the tailnet keeps the console edit");
    assert_eq!(
        cluster
            .sim
            .tailnet()
            .calls()
            .get("POST /api/v2/tailnet/{tailnet}/acl"),
        posts_before,
        "adopting drift writes nothing to the tailnet"
    );
    let secrets = cluster.secrets();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secrets(&raw, &secrets);
    cluster.manager.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_url_over_http_with_token_host_checks() {
    let cluster = cluster("Correct").await;
    // The operator's loopback API, over the controllers' own caches.
    let source = KubeSource::new(cluster.fake.client(), NAMESPACE)
        .with_shared_snapshots(cluster.manager.snapshots().clone());
    let (loopback, _task) = tailnet_operator::mcp::loopback::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(LocalBackend::new(source)),
        std::future::pending(),
    )
    .await
    .expect("loopback API starts");
    let dir = TempDir::new("http");
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, format!("{BEARER}\n")).unwrap();
    let audit = dir.0.join("audit.jsonl");
    let sidecar = support::client::binary()
        .args([
            "mcp",
            "--operator-url",
            &format!("http://{loopback}"),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--audit-log")
        .arg(&audit)
        .stderr(Stdio::piped())
        .spawn()
        .expect("sidecar starts");
    let mut sidecar = KillOnDrop(sidecar);
    let url = listening_url(&mut sidecar.0);

    let transport = vec![
        "--http".to_owned(),
        url.clone(),
        "--token".to_owned(),
        BEARER.to_owned(),
    ];
    let (steps, raw) = run_client(transport.clone(), read_tool_calls(), vec![]).await;
    check_reads(&steps, false);
    let (steps, raw2) = run_client(
        transport,
        json!([
            propose_step(ssh_patch(), "engineers need SSH to servers"),
            // The other intent tools, through the loopback API.
            {"op": "call", "tool": "authorize_devices", "args": {
                "devices": ["frank-surface"], "tailnet": TAILNET}},
            {"op": "call", "tool": "set_device_key_expiry", "args": {
                "devices": ["web-*"], "keyExpiryDisabled": true, "tailnet": TAILNET}},
            {"op": "call", "tool": "publish_service", "args": {
                "name": "wiki", "namespace": NAMESPACE, "ports": ["tcp:443"],
                "hosts": ["web-1"], "tags": ["tag:server"], "accessFrom": ["group:eng"],
                "tailnet": TAILNET}},
            {"op": "call", "tool": "create_key_rotation", "args": {
                "name": "ci-key", "namespace": NAMESPACE, "tags": ["tag:ci"],
                "expiry": "720h", "reusable": true, "tailnet": TAILNET}},
            {"op": "call", "tool": "rollback_policy", "args": {"revision": 1}},
            {"op": "call", "tool": "propose_create", "args": {
                "kind": "DeviceTagSet", "name": "ci", "summary": "tag the runners",
                "spec": {"tailnetRef": TAILNET, "selector": {"hostnames": ["ci-runner-*"]},
                         "tags": ["tag:ci"]}}},
            {"op": "call", "tool": "propose_create", "args": {
                "kind": "DeviceTagSet", "name": "bad", "summary": "a typo",
                "spec": {"tailnetRef": TAILNET, "selektor": {"hostnames": ["x"]}}}},
        ]),
        vec![],
    )
    .await;
    assert_eq!(steps[0]["isError"], false, "{}", steps[0]);
    assert!(
        steps[0]["structured"]["accessDiff"]
            .as_str()
            .unwrap()
            .contains("22")
    );
    let names: Vec<String> = steps[1..7].iter().map(created).collect();
    assert_eq!(steps[7]["isError"], true, "an unknown field: {}", steps[7]);
    assert!(
        steps[7]["text"]
            .as_str()
            .unwrap()
            .contains("spec.selektor: unknown field"),
        "the field is named: {}",
        steps[7]
    );
    assert_eq!(
        cluster.proposals().len(),
        7,
        "created through the loopback API, the invalid one not"
    );
    for name in &names {
        cluster.wait_for_phase(name, "Pending").await;
    }
    // Approving the authorization authorizes the device in the tailnet.
    let frank = cluster.sim.tailnet().device_id("frank-surface").unwrap();
    cluster.approve(&names[0]);
    cluster.wait_for_phase(&names[0], "Applied").await;
    cluster
        .fake
        .wait_for("frank-surface authorized", HANG_GUARD, |_| {
            let device = cluster.sim.tailnet().device(&frank)?;
            (device["authorized"] == true).then_some(())
        })
        .await;

    // No token, a wrong token: 401. A wrong Host: refused.
    let http = reqwest::Client::new();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let post = |token: Option<&str>, host: Option<&str>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    assert_eq!(post(None, None).await.unwrap().status(), 401);
    assert_eq!(
        post(Some("wrong-token-0123456789abcdef"), None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post(Some(BEARER), Some("evil.example.com"))
            .await
            .unwrap()
            .status(),
        403
    );

    let audit = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["tool"] == "propose_patch" && l["outcome"] == "ok")
    );
    assert!(
        lines
            .iter()
            .all(|l| l["client"].as_str().unwrap().starts_with("127.0.0.1:"))
    );

    let secrets = cluster.secrets();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secrets(&format!("{raw}{raw2}{audit}"), &secrets);
    cluster.manager.shutdown();
}

/// Reads the sidecar's stderr until it says where it listens, then keeps draining it on a
/// thread so the child never blocks on a full pipe.
fn listening_url(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("MCP streamable HTTP listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    rx.recv_timeout(HANG_GUARD).expect("the sidecar listens")
}

/// Ends a child process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A copy of `examples/` in a fresh git repository.
fn examples_checkout() -> TempDir {
    let dir = TempDir::new("manifests");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::create_dir_all(dir.0.join("examples")).unwrap();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            dir.0.join("examples").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(args)
            .current_dir(&dir.0)
            .stdout(Stdio::null())
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "add",
        ".",
    ]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "examples",
    ]);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manifests_over_stdio_without_cluster_writes_a_patch_that_git_applies() {
    let checkout = examples_checkout();
    let manifests = checkout.0.join("examples").to_string_lossy().into_owned();
    let proposals = checkout.0.join("proposals").to_string_lossy().into_owned();
    let transport = stdio(&["--manifests", &manifests, "--proposals-dir", &proposals]);
    let (steps, mut raw) = run_client(transport.clone(), read_tool_calls(), vec![]).await;
    check_reads(&steps, false);
    assert!(
        raw.contains("embedded simulated tailnet"),
        "said on stderr / in the overview"
    );
    // The overview shows every kind's own view: exposures with their end, services, schedules.
    let overview = &steps[1]["structured"];
    let exposure = &overview["funnelExposures"][0];
    assert_eq!(exposure["name"], "mcp-demo", "{overview}");
    assert_eq!(
        exposure["service"],
        "tailnet-operator/tailnet-operator:8090"
    );
    assert!(
        exposure["expires"]
            .as_str()
            .is_some_and(|e| e.starts_with("2026-12-31")),
        "{exposure}"
    );
    assert_eq!(
        overview["services"][0]["service"], "svc:grafana-eng",
        "{overview}"
    );
    let rotations: Vec<&str> = overview["keyRotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(rotations, ["ci-runners", "tailscale-operator-oauth"]);

    let base = std::fs::read_to_string(checkout.0.join("examples/policy-base.yaml")).unwrap();
    let doc: Value = serde_saphyr::from_str(&base).unwrap();
    let text = doc["spec"]["policy"].as_str().unwrap().replace(
        r#""group:sre":    ["bob@example.com", "dave@example.com"],"#,
        r#""group:sre":    ["bob@example.com", "dave@example.com"],
  "group:oncall": ["dave@example.com"],"#,
    );
    assert!(text.contains("group:oncall"));
    let (steps, raw2) = run_client(
        transport,
        json!([
            propose_step(json!({"spec": {"role": "Primary"}}), "not a role"),
            propose_step(json!({"spec": {"policy": text}}), "an on-call group"),
            {"op": "call", "tool": "list_proposals"},
        ]),
        vec![],
    )
    .await;
    raw.push_str(&raw2);
    assert_eq!(steps[0]["isError"], true, "{}", steps[0]);
    assert!(
        steps[0]["text"].as_str().unwrap().contains("spec.role"),
        "{}",
        steps[0]
    );
    assert_eq!(steps[1]["isError"], false, "{}", steps[1]);
    let file = steps[1]["structured"]["file"].as_str().unwrap().to_owned();
    let listed = steps[2]["structured"]["proposals"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        1,
        "only the valid proposal was written: {listed:?}"
    );
    assert_eq!(listed[0]["file"], json!(file));
    let patch = std::fs::read_to_string(&file).unwrap();

    let apply = Command::new("git")
        .args(["apply", "--verbose", &file])
        .current_dir(&checkout.0)
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "git apply: {}",
        String::from_utf8_lossy(&apply.stderr)
    );
    let plan = support::client::binary()
        .args(["plan", "-f", &manifests])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2), "plan shows changes: {shown}");
    assert!(
        shown.contains("group:oncall"),
        "plan shows the proposed change: {shown}"
    );

    assert_no_secrets(
        &format!("{raw}{patch}"),
        &sim_demo_secrets()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
}

/// The embedded simulated tailnet's demo credentials (the same seed every run).
fn sim_demo_secrets() -> Vec<String> {
    let seed = tailnet_operator::sim::SimTailnet::new(SimConfig::default());
    let credentials = seed.credentials();
    vec![
        credentials.api_key.expose().to_owned(),
        credentials.oauth_client_secret.expose().to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_only_mode_hides_and_refuses_propose_tools() {
    let checkout = examples_checkout();
    let manifests = checkout.0.join("examples").to_string_lossy().into_owned();
    let proposals = checkout.0.join("proposals");
    let proposals_arg = proposals.to_string_lossy().into_owned();
    let transport = stdio(&[
        "--manifests",
        &manifests,
        "--proposals-dir",
        &proposals_arg,
        "--read-only",
    ]);
    let mut steps = read_tool_calls();
    steps.as_array_mut().unwrap().extend([
        json!({"op": "call", "tool": "propose_patch", "args": {"kind": "TailnetPolicy", "name": "base", "patch": {"spec": {"historyLimit": 3}}, "summary": "x"}}),
        json!({"op": "call", "tool": "adopt_drift", "args": {"kind": "TailnetPolicy", "name": "base"}}),
    ]);
    steps.as_array_mut().unwrap().extend([
        json!({"op": "call", "tool": "make_exit_node", "args": {"devices": ["exit-node-fra"]}}),
        json!({"op": "call", "tool": "propose_delete", "args": {"kind": "TailnetPolicy", "name": "base", "summary": "x"}}),
    ]);
    let (steps, raw) = run_client(transport, steps, vec![]).await;
    check_reads(&steps, true);
    let secrets = sim_demo_secrets();
    assert_no_secrets(
        &raw,
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let reads = read_tool_calls().as_array().unwrap().len();
    for refused in &steps[reads..reads + 4] {
        let refused_by_protocol = refused.get("protocolError").is_some();
        let refused_as_error = refused["isError"] == true;
        assert!(
            refused_by_protocol || refused_as_error,
            "refused: {refused}"
        );
    }
    assert!(!proposals.exists(), "no proposal file in read-only mode");
}

/// Proposal name of a propose step (the tool's structured output).
fn created(step: &Value) -> String {
    assert_eq!(step["isError"], false, "{step}");
    step["structured"]["name"].as_str().unwrap().to_owned()
}

/// Intent tools over the kubeconfig backend: each builds its proposal (Pending, with the YAML
/// of the result and its diff); approving changes the tailnet as intended (counted by the
/// sim); a create whose name got taken meanwhile, and a delete whose target changed, are Stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn intent_tools_propose_and_approval_changes_the_tailnet_as_intended() {
    let cluster = cluster("Correct").await;
    let kubeconfig = cluster.kubeconfig.to_string_lossy().into_owned();
    let transport = stdio(&["--kubeconfig", &kubeconfig]);
    let (steps, raw) = run_client(
        transport,
        json!([
            {"op": "call", "tool": "enable_subnet_routes", "args": {
                "devices": ["subnet-router-1"], "tailnet": TAILNET,
                "routes": ["10.10.0.0/16", "10.20.0.0/16", "192.168.50.0/24"]}},
            {"op": "call", "tool": "change_dns", "args": {
                "addNameservers": ["9.9.9.9"], "tailnet": TAILNET}},
            {"op": "call", "tool": "expose_publicly", "args": {
                "service": "grafana", "namespace": NAMESPACE, "port": 3000, "duration": "2h",
                "tailnet": TAILNET}},
            {"op": "call", "tool": "tag_devices", "args": {
                "devices": ["web-*"], "tags": ["tag:server"], "name": "web-servers",
                "tailnet": TAILNET}},
            {"op": "call", "tool": "grant_access", "args": {
                "src": ["group:eng"], "dst": ["tag:server"], "ip": ["tcp:22"]}},
            {"op": "call", "tool": "propose_delete", "args": {
                "kind": "TailnetPolicy", "name": "base", "summary": "start over"}},
            {"op": "call", "tool": "expose_publicly", "args": {
                "service": "grafana", "namespace": NAMESPACE, "port": 3000,
                "duration": "two hours"}},
        ]),
        vec![],
    )
    .await;
    let routes = created(&steps[0]);
    let dns = created(&steps[1]);
    let funnel = created(&steps[2]);
    let taken = created(&steps[3]);
    let grant = created(&steps[4]);
    let delete = created(&steps[5]);
    assert_eq!(steps[6]["isError"], true, "a bad duration: {}", steps[6]);
    assert!(steps[6]["text"].as_str().unwrap().contains("duration"));
    let exposure = &steps[2]["structured"];
    assert_eq!(exposure["operation"], "Create");
    assert!(
        exposure["yaml"].as_str().unwrap().contains("expiresAt:"),
        "{exposure}"
    );
    assert!(
        steps[4]["structured"]["accessDiff"]
            .as_str()
            .unwrap()
            .contains("tcp:22"),
        "{}",
        steps[4]
    );
    assert!(
        steps[5]["structured"]["yamlDiff"]
            .as_str()
            .unwrap()
            .contains("/dev/null")
    );
    for name in [&routes, &dns, &funnel, &taken, &grant, &delete] {
        cluster.wait_for_phase(name, "Pending").await;
    }

    // Approved: the routes are enabled and the nameserver added, by the kinds' controllers.
    let router = cluster.sim.tailnet().device_id("subnet-router-1").unwrap();
    cluster.approve(&routes);
    cluster.approve(&dns);
    cluster.wait_for_phase(&routes, "Applied").await;
    cluster.wait_for_phase(&dns, "Applied").await;
    cluster
        .fake
        .wait_for("the route enabled in the tailnet", HANG_GUARD, |_| {
            let device = cluster.sim.tailnet().device(&router)?;
            device["enabledRoutes"]
                .as_array()?
                .contains(&json!("192.168.50.0/24"))
                .then_some(())
        })
        .await;
    cluster
        .fake
        .wait_for("the nameserver in the tailnet", HANG_GUARD, |_| {
            let dns = cluster.sim.tailnet().dns();
            dns.nameservers
                .iter()
                .any(|n| n.address == "9.9.9.9")
                .then_some(())
        })
        .await;
    let calls = cluster.sim.tailnet().calls();
    assert_eq!(
        calls.get("POST /api/v2/device/{deviceId}/routes"),
        1,
        "one routes write"
    );

    // Taken meanwhile: someone creates the set first. Changed meanwhile: the Base is edited.
    cluster
        .fake
        .create(
            &Gvr::of::<DeviceTagSet>(),
            json!({"apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "DeviceTagSet",
                   "metadata": {"name": "web-servers"},
                   "spec": {"tailnetRef": TAILNET, "selector": {"hostnames": ["web-1"]},
                            "tags": ["tag:server"]}}),
        )
        .unwrap();
    cluster.approve(&taken);
    cluster.wait_for_phase(&taken, "Stale").await;
    cluster
        .fake
        .merge_patch(
            &Gvr::of::<TailnetPolicy>(),
            None,
            "base",
            json!({"spec": {"historyLimit": 3}}),
        )
        .unwrap();
    cluster.approve(&delete);
    cluster.wait_for_phase(&delete, "Stale").await;
    assert!(
        cluster
            .fake
            .get(&Gvr::of::<TailnetPolicy>(), None, "base")
            .is_some(),
        "the Base is not deleted"
    );
    assert_no_secrets(
        &raw,
        &cluster
            .secrets()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
}

/// Intent tools over `--manifests examples/`: each writes a file that `git apply` takes (a
/// new manifest, a patch of a document, a document removed), after which `plan -f` shows the
/// intended change and nothing else new.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn intent_tools_in_manifests_mode_write_files_that_git_applies_and_plan_shows() {
    let checkout = examples_checkout();
    let manifests = checkout.0.join("examples").to_string_lossy().into_owned();
    let proposals = checkout.0.join("proposals").to_string_lossy().into_owned();
    let plan = || {
        let out = support::client::binary()
            .args(["plan", "-f", &manifests])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = plan();
    let transport = stdio(&["--manifests", &manifests, "--proposals-dir", &proposals]);
    let (steps, raw) = run_client(
        transport,
        json!([
            {"op": "call", "tool": "make_exit_node", "args": {"devices": ["exit-node-fra"]}},
            {"op": "call", "tool": "change_dns", "args": {"addSearchPaths": ["lab.example.com"]}},
            {"op": "call", "tool": "grant_access", "args": {
                "src": ["group:data"], "dst": ["tag:server"], "ip": ["tcp:8080"]}},
            {"op": "call", "tool": "propose_delete", "args": {
                "kind": "FunnelExposure", "name": "mcp-demo", "namespace": "tailnet-operator",
                "summary": "the demo is over"}},
            {"op": "call", "tool": "rotate_key_now", "args": {
                "name": "ci-runners", "namespace": "ci"}},
            {"op": "call", "tool": "grant_service_access", "args": {
                "name": "grafana-eng", "namespace": "monitoring", "accessFrom": ["group:sre"]}},
        ]),
        vec![],
    )
    .await;
    let files: Vec<String> = steps
        .iter()
        .map(|step| {
            assert_eq!(step["isError"], false, "{step}");
            step["structured"]["file"].as_str().unwrap().to_owned()
        })
        .collect();
    let rotate = std::fs::read_to_string(&files[4]).unwrap();
    assert!(
        rotate.contains("+    tailnet.ops.dev/rotate-now:"),
        "{rotate}"
    );
    let access = std::fs::read_to_string(&files[5]).unwrap();
    assert!(access.contains("group:sre"), "{access}");
    // The grant went to the Fragment that defines group:data, not the Base.
    let grant = std::fs::read_to_string(&files[2]).unwrap();
    assert!(
        grant.contains("# target: TailnetPolicy/team-data"),
        "{grant}"
    );
    assert!(
        grant.contains("examples/policy-fragment-team.yaml"),
        "{grant}"
    );
    for file in &files {
        let apply = Command::new("git")
            .args(["apply", "--verbose", file])
            .current_dir(&checkout.0)
            .output()
            .unwrap();
        assert!(
            apply.status.success(),
            "git apply {file}: {}",
            String::from_utf8_lossy(&apply.stderr)
        );
    }
    assert!(
        checkout
            .0
            .join("examples/devicetagset-mcp-exit-node-exit-node-fra.yaml")
            .exists()
    );
    let after = plan();
    let new: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    let shown = new.join("\n");
    for expected in [
        "DeviceTagSet/mcp-exit-node-exit-node-fra",
        "lab.example.com",
        "tcp:8080",
    ] {
        assert!(
            shown.contains(expected),
            "{expected} in the new plan lines:\n{shown}"
        );
    }
    assert!(before.contains("FunnelExposure/tailnet-operator/mcp-demo"));
    assert!(
        !after.contains("FunnelExposure/tailnet-operator/mcp-demo"),
        "the exposure is gone from the plan:\n{after}"
    );
    assert_no_secrets(
        &raw,
        &sim_demo_secrets()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
}

/// The shipped examples' Base and Fragment (with `driftPolicy: Report`, so the console edit
/// stays to be adopted), on the test tailnet.
fn example_policy(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let mut doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["spec"]["tailnetRef"] = json!(TAILNET);
    doc["spec"]["driftPolicy"] = json!("Report");
    doc
}

/// A console edit of the shipped Fragment's group, adopted through MCP: the proposal targets
/// the Fragment (whichever policy was asked about), keeps its comments, and once approved the
/// drift clears with nothing written back to the tailnet.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adopting_a_console_edit_of_a_fragment_group_keeps_it_in_the_fragment() {
    let cluster = cluster("Report").await;
    let policies = Gvr::of::<TailnetPolicy>();
    cluster.fake.delete(&policies, None, "base").unwrap();
    cluster
        .fake
        .wait_for("the test Base gone", HANG_GUARD, |f| {
            f.get(&policies, None, "base").is_none().then_some(())
        })
        .await;
    for file in ["policy-base.yaml", "policy-fragment-team.yaml"] {
        cluster
            .fake
            .create(&policies, example_policy(file))
            .unwrap();
    }
    cluster
        .fake
        .wait_for("the examples composed into the tailnet", HANG_GUARD, |_| {
            let (live, _) = cluster.sim.tailnet().policy();
            live.contains("// from TailnetPolicy/team-data")
                .then_some(())
        })
        .await;
    cluster.wait_for_condition("base", "Ready", "True").await;
    // The composition including the Fragment is recorded as applied (so a later difference is
    // drift, not a first apply).
    cluster
        .fake
        .wait_for("team-data's revision recorded", HANG_GUARD, |f| {
            let fragment = f.get(&policies, None, "team-data")?;
            fragment["status"]["appliedRevision"].as_u64()
        })
        .await;
    let (live, _) = cluster.sim.tailnet().policy();
    let edited = live.replace(
        r#""group:data": ["erin@example.com", "grace@example.com"]"#,
        r#""group:data": ["erin@example.com", "grace@example.com", "frank@example.com"]"#,
    );
    assert_ne!(
        edited, live,
        "the composed file holds the Fragment's group:\n{live}"
    );
    cluster.sim.tailnet().console_set_policy(&edited).unwrap();
    cluster.reconcile_now(&policies, "base", "now");
    cluster.wait_for_condition("base", "Drifted", "True").await;

    let kubeconfig = cluster.kubeconfig.to_string_lossy().into_owned();
    let (steps, _) = run_client(
        stdio(&["--kubeconfig", &kubeconfig]),
        json!([{"op": "call", "tool": "adopt_drift", "args": {"kind": "TailnetPolicy", "name": "base"}}]),
        vec![],
    )
    .await;
    let name = created(&steps[0]);
    let adopted = &steps[0]["structured"];
    assert_eq!(adopted["target"]["name"], "team-data", "{adopted}");
    let diff = adopted["yamlDiff"].as_str().unwrap();
    assert!(diff.contains("frank@example.com"), "{diff}");
    assert!(
        !diff.contains("-      // The data team."),
        "the Fragment's comments stay: {diff}"
    );
    cluster.wait_for_phase(&name, "Pending").await;
    let posts = || {
        cluster
            .sim
            .tailnet()
            .calls()
            .get("POST /api/v2/tailnet/{tailnet}/acl")
    };
    let before = posts();
    cluster.approve(&name);
    cluster.wait_for_phase(&name, "Applied").await;
    cluster.reconcile_now(&policies, "base", "after");
    cluster.wait_for_condition("base", "Drifted", "False").await;
    let fragment = cluster.fake.get(&policies, None, "team-data").unwrap();
    assert!(
        fragment["spec"]["policy"]
            .as_str()
            .unwrap()
            .contains("frank@example.com")
    );
    assert_eq!(
        cluster.sim.tailnet().policy().0,
        edited,
        "the tailnet keeps the edit"
    );
    assert_eq!(posts(), before, "nothing written back to the tailnet");
    cluster.manager.shutdown();
}

/// A console edit of the DNS, adopted through MCP: the DNSConfig takes the live nameservers,
/// the drift clears and nothing is written back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adopting_a_console_dns_edit_updates_the_dns_config() {
    let cluster = cluster("Report").await;
    cluster
        .fake
        .create(
            &Gvr::of::<DNSConfig>(),
            json!({"apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "DNSConfig",
                   "metadata": {"name": "dns"},
                   "spec": {"tailnetRef": TAILNET, "driftPolicy": "Report",
                            "nameservers": [{"address": "1.1.1.1"}]}}),
        )
        .unwrap();
    cluster
        .wait_for_condition_of(&Gvr::of::<DNSConfig>(), "dns", "Ready", "True")
        .await;
    let mut live = cluster.sim.tailnet().dns();
    live.nameservers
        .push(tailnet_operator::sim::DnsResolver::new("9.9.9.9"));
    cluster.sim.tailnet().console_set_dns(live).unwrap();
    cluster.reconcile_now(&Gvr::of::<DNSConfig>(), "dns", "now");
    cluster
        .wait_for_condition_of(&Gvr::of::<DNSConfig>(), "dns", "Drifted", "True")
        .await;
    let writes = || {
        let calls = cluster.sim.tailnet().calls();
        calls.get("POST /api/v2/tailnet/{tailnet}/dns/nameservers")
    };
    let before = writes();
    let kubeconfig = cluster.kubeconfig.to_string_lossy().into_owned();
    let (steps, _) = run_client(
        stdio(&["--kubeconfig", &kubeconfig]),
        json!([{"op": "call", "tool": "adopt_drift", "args": {"kind": "DNSConfig", "name": "dns"}}]),
        vec![],
    )
    .await;
    let name = created(&steps[0]);
    assert!(
        steps[0]["structured"]["yamlDiff"]
            .as_str()
            .unwrap()
            .contains("9.9.9.9")
    );
    cluster.wait_for_phase(&name, "Pending").await;
    cluster.approve(&name);
    cluster.wait_for_phase(&name, "Applied").await;
    cluster
        .wait_for_condition_of(&Gvr::of::<DNSConfig>(), "dns", "Drifted", "False")
        .await;
    assert_eq!(writes(), before, "nothing written back to the tailnet");
    assert!(
        cluster
            .sim
            .tailnet()
            .dns()
            .nameservers
            .iter()
            .any(|n| n.address == "9.9.9.9")
    );
    cluster.manager.shutdown();
}
