//! Scale benchmark of the DeviceTagSet reconcile (issue 4): 200 sets over a simulated tailnet
//! of 10,000 devices, through the same planner and executor the controller and file mode run.
//! Prints figures; asserts nothing about time (run it with `cargo bench --bench
//! device_tag_set_scale`; under `cargo test` it runs a small smoke version).
//!
//! Two workloads, each from a fresh sim:
//! - `authorize`: each set keeps tag:server on the servers it covers and wants them
//!   authorized (about 3% are not): few writes, the steady-state shape.
//! - `tag`: each set also adds tag:monitoring: every covered server is written.
//!
//! For each: time to converge (passes until one writes nothing; each pass reads the devices
//! once), the writes made, the time of a steady-state pass (one device-list read, a plan, no
//! write), and the process's peak resident memory (VmHWM) so far.
use std::time::{Duration, Instant};

use serde_json::json;
use tailnet_operator::reconcile::device_tag_set::{TagSetInput, reconcile};
use tailnet_operator::sim::{SimConfig, SimServer};
use tailnet_operator::snapshot::TailnetSnapshots;
use tailnet_operator::tailscale::{ClientConfig, Credentials, RateLimit, TailscaleClient};

/// The scale of issue 4.
const SCALE: Scale = Scale {
    devices: 10_000,
    sets: 200,
};
/// What `cargo test --all-targets` runs (it does not pass `--bench`): a smoke test that the
/// benchmark still works, small enough for a debug build.
const SMOKE: Scale = Scale {
    devices: 500,
    sets: 10,
};

#[derive(Clone, Copy)]
struct Scale {
    devices: usize,
    sets: usize,
}

fn main() {
    let scale = if std::env::args().any(|a| a == "--bench") {
        SCALE
    } else {
        SMOKE
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        println!(
            "DeviceTagSet scale: {} sets over {} generated devices (+ demo seed)",
            scale.sets, scale.devices
        );
        for (workload, extra_tags) in [("authorize", vec![]), ("tag", vec!["tag:monitoring"])] {
            run(scale, workload, &extra_tags).await;
        }
    });
}

/// Set k covers the generated devices numbered k*50 .. k*50+49 (hostnames `role-NNNNN`) that
/// carry tag:server.
fn sets(count: usize, extra_tags: &[&str]) -> Vec<TagSetInput> {
    (0..count)
        .map(|k| {
            let globs: Vec<String> = (k * 5..k * 5 + 5).map(|p| format!("*-{p:04}?")).collect();
            let mut tags = vec!["tag:server"];
            tags.extend_from_slice(extra_tags);
            TagSetInput {
                name: format!("servers-{k:03}"),
                generation: Some(1),
                spec: serde_json::from_value(json!({
                    "selector": {"hostnames": globs, "tags": ["tag:server"]},
                    "tags": tags,
                    "authorized": true,
                }))
                .expect("valid spec"),
                applied: None,
                matched_before: None,
                removing: false,
            }
        })
        .collect()
}

async fn run(scale: Scale, workload: &str, extra_tags: &[&str]) {
    let config = SimConfig {
        devices: scale.devices,
        ..SimConfig::default()
    };
    let server = SimServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sim starts");
    let mut client_config = ClientConfig::new(
        server.base_url(),
        Credentials::ApiKey(server.tailnet().credentials().api_key),
    );
    // The sim is local: measure the operator, not the client's politeness towards Tailscale.
    client_config.rate_limit = RateLimit {
        per_second: 0.0,
        burst: 1,
    };
    let client = TailscaleClient::new(client_config).expect("client");
    let snapshots = TailnetSnapshots::new(client, Duration::from_secs(300));
    let sets = sets(scale.sets, extra_tags);

    let started = Instant::now();
    let mut passes = 0;
    let mut writes = 0;
    let mut devices_written = 0;
    loop {
        passes += 1;
        let (_, report, _) = reconcile(&sets, &snapshots).await.expect("pass");
        writes += report.writes;
        devices_written += report.written.len();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        if report.writes == 0 || passes == 5 {
            break;
        }
    }
    let converge = started.elapsed();

    // Steady state: the snapshot expires, one pass reads, plans and writes nothing.
    snapshots.invalidate_all();
    let reads_before = server
        .tailnet()
        .calls()
        .get("GET /api/v2/tailnet/{tailnet}/devices");
    let steady_started = Instant::now();
    let (plan, report, outcome) = reconcile(&sets, &snapshots).await.expect("steady pass");
    let steady = steady_started.elapsed();
    let reads = server
        .tailnet()
        .calls()
        .get("GET /api/v2/tailnet/{tailnet}/devices")
        - reads_before;
    let matched: u32 = outcome.iter().map(|o| o.matched_count).sum();
    let ready = outcome.iter().filter(|o| o.ready.is_true()).count();
    assert!(plan.changes.is_empty(), "converged: nothing left to write");
    println!(
        "[{workload}] converged in {:.2} s over {passes} passes: {devices_written} devices \
         written ({writes} API writes); {matched} devices matched, {ready}/{} sets Ready",
        converge.as_secs_f64(),
        scale.sets
    );
    println!(
        "[{workload}] steady-state pass: {:.0} ms, {reads} device-list read(s), {} writes",
        steady.as_secs_f64() * 1000.0,
        report.writes
    );
    println!(
        "[{workload}] peak resident memory (VmHWM) so far: {}",
        peak_memory().unwrap_or_else(|| "unknown (no /proc/self/status)".to_owned())
    );
}

/// `VmHWM` from `/proc/self/status` (Linux): the process's peak resident set size.
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().to_owned())
}
