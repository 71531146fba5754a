//! File mode: the operator's job without a cluster (`plan -f PATH`, `apply -f PATH`, and the
//! MCP server's `--manifests` source). The same planners and executors as the controllers run
//! over the resources found in PATH.
//!
//! - [`manifests`]: loading PATH, every document validated as the API server would (schema
//!   with unknown fields as errors, CEL rules, the Rust type) before anything connects.
//! - [`FileKind`]: what file mode does with one kind (plan, apply, status for the MCP server).
//!   Every kind of [`crate::for_each_kind`] implements it, in that order: `TailnetPolicy` runs
//!   before `DeviceTagSet`, so the tags a set gives are owned in the policy before devices get
//!   them, then `DNSConfig`. A kind present under PATH runs on its own: a folder holding only a
//!   DNSConfig (and its ManagedTailnet) is planned and applied like any other.
//! - History is in memory: there is none across runs, so drift is not told apart from a spec
//!   change: a difference with the live tailnet is a change. A document with `driftPolicy:
//!   Report` gets a warning saying so; `deletionPolicy` applies when a resource is deleted in
//!   a cluster, and file mode deletes nothing (a document removed from PATH is not seen).
pub mod device_tag_set;
pub mod dns_config;
pub mod funnel_exposure;
pub mod key_rotation_policy;
pub mod manifests;
pub mod tailnet;
pub mod tailnet_policy;
pub mod tailscale_service;

use std::fmt::Write as _;
use std::future::Future;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use manifests::{Document, FileModeError, Manifests, load, yaml_files};

use crate::resources::conditions::Verdict;
use crate::resources::{ChangeProposal, ReconcileError};
use crate::snapshot::TailnetSnapshots;

/// What a `plan` or `apply` found: the text to print and how to exit.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    pub output: String,
    /// Something would change (`plan`) or was written (`apply`).
    pub changes: bool,
    /// Some resource is not Ready (or, for `plan`, would not be).
    pub failed: bool,
}

impl FileReport {
    pub fn merge(&mut self, other: FileReport) {
        self.output.push_str(&other.output);
        self.changes |= other.changes;
        self.failed |= other.failed;
    }
}

/// `  Ready=<status> <reason>: <message>` and likewise for Synced and Drifted: how every kind's
/// `apply` shows a resource's conditions.
pub fn describe_conditions(verdicts: [&Verdict; 3], out: &mut String) {
    for (name, v) in ["Ready", "Synced", "Drifted"].into_iter().zip(verdicts) {
        let _ = writeln!(out, "  {name}={} {}: {}", v.status, v.reason, v.message);
    }
}

/// What a kind's step returns.
pub type StepResult = Result<FileReport, ReconcileError>;

/// What file mode does with one kind's documents. The defaults do nothing: a kind that owns
/// nothing in the tailnet (the connection) needs no step.
pub trait FileKind: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync {
    /// Why file mode leaves this kind's documents alone, if it does (a warning per document).
    const SKIPPED: Option<&'static str> = None;
    /// Whether the kind has a step at all (the connection does not: it is how file mode
    /// connects, from the TS_* settings).
    const STEP: bool = true;
    /// Kinds whose step must succeed before this one runs (a DeviceTagSet's tags must be owned
    /// in the policy first). When one of them fails, this kind is reported as waiting.
    const AFTER: &'static [&'static str] = &[];

    /// What applying would change (writes nothing). Only called when PATH holds the kind.
    fn plan(
        _manifests: &Manifests,
        _snapshots: &TailnetSnapshots,
    ) -> impl Future<Output = StepResult> + Send {
        async { Ok(FileReport::default()) }
    }

    /// Applies the kind's documents and reports each one's conditions.
    fn apply(
        _manifests: &Manifests,
        _snapshots: &TailnetSnapshots,
    ) -> impl Future<Output = StepResult> + Send {
        async { Ok(FileReport::default()) }
    }

    /// Each document of the kind with the status its planner gives it against the live tailnet
    /// (the MCP server's `--manifests` source); by default the documents as written.
    fn with_status(
        manifests: &Manifests,
        _snapshots: &TailnetSnapshots,
        _now: &Time,
    ) -> impl Future<Output = Result<Vec<Value>, ReconcileError>> + Send {
        let kind = Self::kind(&());
        let documents: Vec<Value> = manifests
            .documents_of(&kind)
            .map(|d| d.value.clone())
            .collect();
        async move { Ok(documents) }
    }
}

impl FileKind for ChangeProposal {
    const SKIPPED: Option<&'static str> =
        Some("a ChangeProposal is reviewed and applied in a cluster; file mode skips it");
}

/// Which step of each kind to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// Plans (`Mode::Plan`, writes nothing) or applies `manifests` against the tailnet behind
/// `snapshots`, kind by kind in [`crate::for_each_kind`] order. A kind whose step fails (an API
/// error) is reported as failed and the others still run, except those that must come after it
/// ([`FileKind::AFTER`]), which are reported as waiting; the report is then `failed`.
pub async fn run_steps(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
    mode: Mode,
) -> StepResult {
    let mut report = FileReport::default();
    let mut failed_kinds: Vec<String> = Vec::new();
    macro_rules! steps {
        ($($kind:ident),*) => {
            $(run_kind::<crate::resources::$kind>(
                manifests, snapshots, mode, &mut report, &mut failed_kinds,
            ).await;)*
        };
    }
    crate::for_each_kind!(steps);
    Ok(report)
}

/// Runs kind `K`'s step into `report`, unless a kind it comes after failed.
async fn run_kind<K: FileKind>(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
    mode: Mode,
    report: &mut FileReport,
    failed_kinds: &mut Vec<String>,
) {
    let kind = K::kind(&()).into_owned();
    if !runs::<K>(manifests) {
        return;
    }
    if let Some(blocker) = K::AFTER
        .iter()
        .find(|k| failed_kinds.iter().any(|f| f == *k))
    {
        report.failed = true;
        let _ = writeln!(
            report.output,
            "{kind}: not run: it waits for the {blocker} step, which failed"
        );
        failed_kinds.push(kind);
        return;
    }
    progress(&kind, manifests, mode);
    match step::<K>(manifests, snapshots, mode).await {
        Ok(done) => report.merge(done),
        Err(err) => {
            report.failed = true;
            let _ = writeln!(report.output, "{kind}: error: {err}");
            failed_kinds.push(kind);
        }
    }
}

/// One progress line on stderr per kind when a person watches (stderr is a terminal): long
/// runs over a large tailnet are not silent. Piped or in CI, nothing is printed.
fn progress(kind: &str, manifests: &Manifests, mode: Mode) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return;
    }
    let count = manifests.documents_of(kind).count();
    let verb = match mode {
        Mode::Plan => "planning",
        Mode::Apply => "applying",
    };
    eprintln!("{verb} {count} {kind} resource(s) against the tailnet...");
}

/// A "writing N of M <what>s" line on stderr, rewritten in place, when a person watches
/// (stderr is a terminal) and there are enough writes to wait for; nothing when piped.
pub(crate) fn writing_progress(what: &'static str) -> impl Fn(usize, usize) + Sync {
    use std::io::IsTerminal;
    let watching = std::io::stderr().is_terminal();
    move |done, total| {
        // Every 1% (and the last): a line per write would cost more than the write at scale.
        let step = (total / 100).max(1);
        if watching && total >= 20 && (done % step == 0 || done == total) {
            let end = if done == total { "\n" } else { "" };
            eprint!("\rwriting {done} of {total} {what}s{end}");
        }
    }
}

/// Plans `manifests` (writes nothing).
pub async fn plan_manifests(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
    run_steps(manifests, snapshots, Mode::Plan).await
}

/// Applies `manifests` and reports every resource's status.
pub async fn apply_manifests(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
    run_steps(manifests, snapshots, Mode::Apply).await
}

async fn step<K: FileKind>(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
    mode: Mode,
) -> StepResult {
    match mode {
        Mode::Plan => K::plan(manifests, snapshots).await,
        Mode::Apply => K::apply(manifests, snapshots).await,
    }
}

/// Whether file mode runs kind `K` on `manifests`: it has a step, PATH holds some, and the kind
/// is not skipped.
fn runs<K: FileKind>(manifests: &Manifests) -> bool {
    K::STEP && K::SKIPPED.is_none() && manifests.documents_of(&K::kind(&())).next().is_some()
}

/// The warnings of a load and of the kinds file mode skips, each naming the file.
pub fn warnings(manifests: &Manifests) -> Vec<String> {
    let mut warnings = manifests.warnings.clone();
    macro_rules! skipped {
        ($($kind:ident),*) => {
            $(warnings.extend(skipped::<crate::resources::$kind>(manifests));)*
        };
    }
    crate::for_each_kind!(skipped);
    warnings.extend(manifests.documents.iter().filter_map(drift_report_warning));
    warnings
}

/// `driftPolicy: Report` cannot be honoured without a record of what was applied: say so for
/// each document that asks for it, rather than silently writing over a console edit.
fn drift_report_warning(document: &Document) -> Option<String> {
    if document.value.pointer("/spec/driftPolicy")? != "Report" {
        return None;
    }
    let name = document
        .value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(format!(
        "{}: document {}: {}/{name} has driftPolicy: Report, which file mode cannot honour: it \
         keeps no record across runs of what it applied, so a console edit and a change in \
         PATH look the same and `apply` writes every difference. `plan` shows them without \
         writing; the operator in a cluster reports drift",
        document.file.display(),
        document.index,
        document.kind
    ))
}

fn skipped<K: FileKind>(manifests: &Manifests) -> Vec<String> {
    let Some(why) = K::SKIPPED else {
        return Vec::new();
    };
    let kind = K::kind(&());
    manifests
        .documents_of(&kind)
        .map(|d| format!("{}: document {}: {why}", d.file.display(), d.index))
        .collect()
}

/// Every document with the status its kind's planner gives it (the MCP `--manifests` source).
pub async fn with_status(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
    now: &Time,
) -> Result<Vec<Value>, ReconcileError> {
    let mut all = Vec::new();
    macro_rules! statuses {
        ($($kind:ident),*) => {
            $(all.extend(statuses::<crate::resources::$kind>(manifests, snapshots, now).await?);)*
        };
    }
    crate::for_each_kind!(statuses);
    Ok(all)
}

async fn statuses<K: FileKind>(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
    now: &Time,
) -> Result<Vec<Value>, ReconcileError> {
    // Every kind is listed (the connection too), but the skipped ones.
    let kind = K::kind(&());
    if K::SKIPPED.is_some() || manifests.documents_of(&kind).next().is_none() {
        return Ok(Vec::new());
    }
    K::with_status(manifests, snapshots, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(kind: &str, spec: Value) -> Document {
        Document {
            kind: kind.to_owned(),
            file: "dns.yaml".into(),
            index: 2,
            value: json!({"kind": kind, "metadata": {"name": "default"}, "spec": spec}),
        }
    }

    #[test]
    fn drift_policy_report_is_named_as_a_control_file_mode_cannot_honour() {
        let manifests = Manifests {
            documents: vec![
                document("DNSConfig", json!({"driftPolicy": "Report"})),
                document("DeviceTagSet", json!({"driftPolicy": "Correct"})),
            ],
            ..Manifests::default()
        };
        let warnings = warnings(&manifests);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .starts_with("dns.yaml: document 2: DNSConfig/default has driftPolicy: Report"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("writes every difference"));
    }
}
