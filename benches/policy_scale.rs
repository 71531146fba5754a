//! Scale benchmark of the TailnetPolicy access diff (issue 13): the `plan` command, as a real
//! process, against a simulated tailnet of 1,000, 10,000 and 50,000 devices, for three changes
//! of `examples/`, plus the class diff itself in-process. Prints figures; asserts nothing
//! about time (`cargo bench --bench policy_scale`; under `cargo test` it runs a small smoke
//! version on a debug build).
//!
//! For each size, from a fresh simulated tailnet (served by this process, so its memory is
//! not the plan's):
//! - `apply -f examples/` once (the first apply: the demo policy is replaced);
//! - `plan -f` of (a) `examples/` unchanged (the steady state), (b) one port added to one rule,
//!   (c) a broad grant added (every device may reach every user's devices on everything);
//! - per run: wall time, peak resident memory of the `plan` process (max RSS, from
//!   `/usr/bin/time`), and from the plan's access summary the class pairs and device pairs
//!   gained;
//! - in-process: source and destination classes (live policy against the variant's Base)
//!   and the class diff's wall time.
//!
//! `cargo bench --bench policy_scale -- --sizes 1000,10000` picks the sizes.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tailnet_operator::policy::access::Policy;
use tailnet_operator::policy::hujson;
use tailnet_operator::reconcile::view::tailnet_view;
use tailnet_operator::sim::{SimConfig, SimServer};
use tailnet_operator::tailscale::{
    ClientConfig, Credentials, DeviceListOptions, RateLimit, TailscaleClient,
};

const BENCH_SIZES: [usize; 3] = [1_000, 10_000, 50_000];
const SMOKE_SIZES: [usize; 1] = [200];

/// The three changes, as replacements in `examples/policy-base.yaml`.
const ONE_PORT: (&str, &str) = (
    r#"{"src": ["tag:ci"], "dst": ["tag:server"], "ip": ["tcp:443"]},"#,
    r#"{"src": ["tag:ci"], "dst": ["tag:server"], "ip": ["tcp:443", "tcp:8443"]},"#,
);
const BROAD: (&str, &str) = (
    r#"        // Metrics scraping."#,
    "        {\"src\": [\"*\"], \"dst\": [\"autogroup:member\"], \"ip\": [\"*\"]},\n        // Metrics scraping.",
);

struct Run {
    label: &'static str,
    wall: Duration,
    max_rss_kib: Option<u64>,
    code: Option<i32>,
    summary: String,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::args().skip_while(|a| a != "--sizes").nth(1) {
        Some(list) => list
            .split(',')
            .map(|n| n.trim().parse().expect("--sizes takes numbers"))
            .collect(),
        None if bench => BENCH_SIZES.to_vec(),
        None => SMOKE_SIZES.to_vec(),
    };
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_tailnet-operator"));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let work = std::env::temp_dir().join(format!("policy-scale-{}", std::process::id()));
    let variants = [
        (
            "(a) no change",
            write_variant(&examples, &work.join("a"), None),
        ),
        (
            "(b) one port added",
            write_variant(&examples, &work.join("b"), Some(ONE_PORT)),
        ),
        (
            "(c) broad grant added",
            write_variant(&examples, &work.join("c"), Some(BROAD)),
        ),
    ];
    let timer = Path::new("/usr/bin/time").exists();
    if !timer {
        println!("(no /usr/bin/time: peak memory is not measured)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("TailnetPolicy scale: `plan -f` of examples/ variants against a simulated tailnet");
    for devices in sizes {
        runtime.block_on(async {
            let server = SimServer::start(
                SimConfig {
                    devices,
                    ..SimConfig::default()
                },
                "127.0.0.1:0".parse().unwrap(),
            )
            .await
            .expect("sim starts");
            let url = server.base_url();
            let key = server.tailnet().credentials().api_key;
            let env = [("TS_API_URL", url.as_str()), ("TS_API_KEY", key.expose())];
            let run = |label, args: Vec<String>| {
                let binary = binary.clone();
                let env: Vec<(String, String)> = env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                tokio::task::spawn_blocking(move || timed(label, &binary, &args, &env, timer))
            };
            let path = |dir: &PathBuf| dir.display().to_string();
            let apply = run(
                "first apply",
                vec!["apply".into(), "-f".into(), path(&variants[0].1)],
            )
            .await
            .unwrap();
            let mut runs = vec![apply];
            for (label, dir) in &variants {
                runs.push(
                    run(label, vec!["plan".into(), "-f".into(), path(dir)])
                        .await
                        .unwrap(),
                );
            }
            let classes = in_process(&server, &variants).await;
            print_size(devices, &runs, &classes);
        });
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// A copy of `examples/` with one replacement in the Base policy.
fn write_variant(examples: &Path, dir: &Path, change: Option<(&str, &str)>) -> PathBuf {
    std::fs::create_dir_all(dir).expect("temp dir");
    for entry in std::fs::read_dir(examples).expect("examples/") {
        let entry = entry.expect("entry");
        let mut text = std::fs::read_to_string(entry.path()).expect("example");
        if let (Some((from, to)), true) = (change, entry.file_name() == "policy-base.yaml") {
            assert!(
                text.contains(from),
                "examples/policy-base.yaml changed: {from}"
            );
            text = text.replace(from, to);
        }
        std::fs::write(dir.join(entry.file_name()), text).expect("write variant");
    }
    dir.to_path_buf()
}

fn timed(
    label: &'static str,
    binary: &Path,
    args: &[String],
    env: &[(String, String)],
    timer: bool,
) -> Run {
    let out_file = std::env::temp_dir().join(format!("policy-scale-time-{}", std::process::id()));
    let mut command = if timer {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f").arg("%M").arg("-o").arg(&out_file).arg(binary);
        c
    } else {
        Command::new(binary)
    };
    command
        .args(args)
        // Only the simulated tailnet's settings: nothing from the developer's shell.
        .env_remove("CI")
        .env_remove("TS_OAUTH_CLIENT_ID")
        .env_remove("TS_OAUTH_CLIENT_SECRET")
        .env_remove("TS_TAILNET")
        .envs(env.iter().map(|(k, v)| (k, v)));
    let started = Instant::now();
    let output = command.output().expect("run tailnet-operator");
    let wall = started.elapsed();
    let max_rss_kib = timer
        .then(|| std::fs::read_to_string(&out_file).ok())
        .flatten()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .find_map(|l| l.split_once("; access: ").map(|(_, s)| s.to_owned()))
        .unwrap_or_else(|| {
            if stdout.contains("policy: no changes") {
                "no change".to_owned()
            } else {
                String::new()
            }
        });
    let code = output.status.code();
    if !matches!(code, Some(0 | 2)) {
        eprintln!(
            "{label}: exit {code:?}\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Run {
        label,
        wall,
        max_rss_kib,
        code,
        summary,
    }
}

/// Classes and class-diff time in this process, live policy → each variant's Base.
async fn in_process(server: &SimServer, variants: &[(&str, PathBuf)]) -> Vec<String> {
    let mut config = ClientConfig::new(
        server.base_url(),
        Credentials::ApiKey(server.tailnet().credentials().api_key),
    );
    config.rate_limit = RateLimit {
        per_second: 0.0,
        burst: 1,
    };
    let client = TailscaleClient::new(config).expect("client");
    let devices = client
        .list_devices(&DeviceListOptions::default())
        .await
        .expect("devices");
    let users = client.list_users().await.expect("users");
    let view = tailnet_view(&devices, &users);
    let live = client.get_policy().await.expect("policy");
    let live = compile(&live.hujson);
    variants
        .iter()
        .map(|(label, dir)| {
            let yaml = std::fs::read_to_string(dir.join("policy-base.yaml")).expect("base");
            let desired = compile(&base_policy_text(&yaml));
            let started = Instant::now();
            let diff = live.class_diff(&desired, &view);
            let took = started.elapsed();
            let (sources, destinations) = diff.classes();
            format!(
                "  {label:<22} classes: {sources} sources x {destinations} destinations; class \
                 diff in-process {:.1} ms",
                took.as_secs_f64() * 1e3
            )
        })
        .collect()
}

fn compile(text: &str) -> Policy {
    Policy::compile(&hujson::parse_strict(text).expect("HuJSON")).expect("compiles")
}

/// The `policy: |` block of a TailnetPolicy manifest.
fn base_policy_text(yaml: &str) -> String {
    let start = yaml.find("  policy: |\n").expect("policy block") + "  policy: |\n".len();
    yaml[start..]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_size(devices: usize, runs: &[Run], classes: &[String]) {
    println!();
    println!("devices generated: {devices} (+ the demo seed)");
    println!(
        "  {:<22} {:>9} {:>12} {:>5}  access summary",
        "run", "wall", "peak RSS", "exit"
    );
    for r in runs {
        let rss = r.max_rss_kib.map_or_else(
            || "n/a".to_owned(),
            |k| format!("{:.1} MiB", k as f64 / 1024.0),
        );
        let code = r.code.map_or_else(|| "-".to_owned(), |c| c.to_string());
        println!(
            "  {:<22} {:>7.2} s {:>12} {:>5}  {}",
            r.label,
            r.wall.as_secs_f64(),
            rss,
            code,
            r.summary
        );
    }
    let steady = runs.iter().find(|r| r.label.starts_with("(a)"));
    for r in runs
        .iter()
        .filter(|r| r.label.starts_with("(b)") || r.label.starts_with("(c)"))
    {
        if let Some(s) = steady {
            println!(
                "  {} / steady state: {:.2}x wall",
                r.label,
                r.wall.as_secs_f64() / s.wall.as_secs_f64()
            );
        }
    }
    for line in classes {
        println!("{line}");
    }
}
