//! File mode: `tailnet-operator plan -f PATH` and `apply -f PATH`, the operator's job without
//! a cluster (issue 3, item 6). The same planner and executor as the controller run over the
//! resources found in PATH.
//!
//! - PATH is a YAML file or a directory read recursively (`*.yaml`, `*.yml`, sorted by path);
//!   files may hold several documents.
//! - Documents are dispatched by `kind`: `ManagedTailnet`, `TailnetPolicy`, `DNSConfig` (in
//!   `file_mode/dns_config.rs`) and `DeviceTagSet` (in `file_mode/device_tag_set.rs`) are handled;
//!   `ConfigMap`s (apiVersion `v1`) are the sources of `policyFrom.configMapKeyRef`; other
//!   kinds of the operator's group (`tailnet.ops.dev/...`) are skipped with a warning ("not
//!   supported yet in file mode"); anything else is an error naming the file and the kind.
//! - The connection is the one `audit` uses (TS_* settings, else the embedded simulated
//!   tailnet, said on stderr). One PATH manages one tailnet.
//! - History is in memory: there is none across runs, so drift is not told apart from a spec
//!   change. `plan` compares the composed policy with the live one; a difference is a change.
mod device_tag_set;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

mod dns_config;

use super::connection::{ConnectionArgs, connect};
use crate::reconcile::tailnet_policy::{
    ExecuteResult, InMemoryRevisionStore, PolicyAction, PolicyPlan, PolicyResource,
    ResourceOutcome, TextSource, config_map_text, find_config_map, observe_and_plan,
    policy_resource, reconcile, text_source,
};
use crate::resources::common::GROUP;
use crate::resources::{DNSConfig, DeviceTagSet, ManagedTailnet, ReconcileError, TailnetPolicy};
use crate::snapshot::TailnetSnapshots;

/// Arguments of `plan` and `apply`.
#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// A YAML file, or a directory read recursively (*.yaml, *.yml).
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Why PATH cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileModeError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid YAML: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error(
        "{}: document {index} has no `kind`: every document needs apiVersion and kind",
        path.display()
    )]
    NoKind { path: PathBuf, index: usize },
    #[error(
        "{}: document {index} is kind {kind:?} (apiVersion {api_version:?}), which file mode \
         does not know: use ManagedTailnet, TailnetPolicy, DeviceTagSet (apiVersion \
         tailnet.ops.dev/v1alpha1) or \
         ConfigMap (v1)",
        path.display()
    )]
    UnknownKind {
        path: PathBuf,
        index: usize,
        kind: String,
        api_version: String,
    },
    #[error("{}: {kind} document {index} does not match its schema: {message}", path.display())]
    Invalid {
        path: PathBuf,
        index: usize,
        kind: String,
        message: String,
    },
    #[error(
        "{}: no *.yaml or *.yml file with a TailnetPolicy, DNSConfig or DeviceTagSet",
        path.display()
    )]
    NothingToDo { path: PathBuf },
    #[error(
        "the resources under {} name several tailnets ({}): file mode manages one \
         tailnet per run; split them into one directory per tailnet",
        path.display(),
        tailnets.join(", ")
    )]
    SeveralTailnets {
        path: PathBuf,
        tailnets: Vec<String>,
    },
}

/// The documents found under PATH.
#[derive(Debug, Default)]
pub struct Manifests {
    pub tailnets: Vec<ManagedTailnet>,
    pub policies: Vec<TailnetPolicy>,
    pub dns_configs: Vec<DNSConfig>,
    pub device_tag_sets: Vec<DeviceTagSet>,
    pub config_maps: Vec<ConfigMap>,
    /// Documents skipped, each naming its file and kind.
    pub warnings: Vec<String>,
}

/// Reads every YAML document under `path`.
pub fn load(path: &Path) -> Result<Manifests, FileModeError> {
    let mut manifests = Manifests::default();
    for file in yaml_files(path)? {
        let text = std::fs::read_to_string(&file).map_err(|source| FileModeError::Io {
            path: file.clone(),
            source,
        })?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| FileModeError::Yaml {
                path: file.clone(),
                message: e.to_string(),
            })?;
        for (i, doc) in docs.into_iter().enumerate() {
            dispatch(&file, i + 1, doc, &mut manifests)?;
        }
    }
    Ok(manifests)
}

pub fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, FileModeError> {
    let io = |source| FileModeError::Io {
        path: path.to_owned(),
        source,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(io)?;
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry_path = entry.map_err(io)?.path();
            if entry_path.is_dir() {
                dirs.push(entry_path);
            } else if entry_path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml")
            {
                files.push(entry_path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn dispatch(
    file: &Path,
    index: usize,
    doc: Value,
    manifests: &mut Manifests,
) -> Result<(), FileModeError> {
    if doc.is_null() {
        return Ok(()); // an empty document (`---` at the end of a file)
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if kind.is_empty() {
        return Err(FileModeError::NoKind {
            path: file.to_owned(),
            index,
        });
    }
    let kind = kind.to_owned();
    let invalid = |e: serde_json::Error| FileModeError::Invalid {
        path: file.to_owned(),
        index,
        kind: kind.clone(),
        message: e.to_string(),
    };
    let ours = api_version.starts_with(&format!("{GROUP}/"));
    match (kind.as_str(), ours) {
        ("ManagedTailnet", true) => manifests
            .tailnets
            .push(serde_json::from_value(doc).map_err(invalid)?),
        ("TailnetPolicy", true) => manifests
            .policies
            .push(serde_json::from_value(doc).map_err(invalid)?),
        ("DNSConfig", true) => manifests
            .dns_configs
            .push(serde_json::from_value(doc).map_err(invalid)?),
        ("DeviceTagSet", true) => manifests
            .device_tag_sets
            .push(serde_json::from_value(doc).map_err(invalid)?),
        ("ConfigMap", false) if api_version == "v1" => manifests
            .config_maps
            .push(serde_json::from_value(doc).map_err(invalid)?),
        (_, true) => manifests.warnings.push(format!(
            "{}: document {index}: kind {kind} is not supported yet in file mode; skipped",
            file.display()
        )),
        _ => {
            return Err(FileModeError::UnknownKind {
                path: file.to_owned(),
                index,
                kind,
                api_version,
            });
        }
    }
    Ok(())
}

impl Manifests {
    /// The tailnet the resources manage (their `tailnetRef`), one per PATH.
    pub fn tailnet(&self, path: &Path) -> Result<String, FileModeError> {
        let refs: BTreeSet<&str> = self
            .policies
            .iter()
            .map(|p| p.spec.common.tailnet_ref.as_str())
            .chain(
                self.dns_configs
                    .iter()
                    .map(|d| d.spec.common.tailnet_ref.as_str()),
            )
            .chain(
                self.device_tag_sets
                    .iter()
                    .map(|s| s.spec.common.tailnet_ref.as_str()),
            )
            .collect();
        match refs.len() {
            0 => Err(FileModeError::NothingToDo {
                path: path.to_owned(),
            }),
            1 => Ok(refs.into_iter().next().unwrap_or_default().to_owned()),
            _ => Err(FileModeError::SeveralTailnets {
                path: path.to_owned(),
                tailnets: refs.into_iter().map(str::to_owned).collect(),
            }),
        }
    }

    /// The policies as planner inputs, `policyFrom` resolved from the ConfigMaps found.
    pub fn policy_resources(&self) -> Vec<PolicyResource> {
        self.policies
            .iter()
            .map(|p| policy_resource(p, self.policy_text(p)))
            .collect()
    }

    fn policy_text(&self, policy: &TailnetPolicy) -> Result<String, ReconcileError> {
        let r = match text_source(&policy.spec)? {
            TextSource::Inline(text) => return Ok(text.to_owned()),
            TextSource::ConfigMap(r) => r,
        };
        config_map_text(
            r,
            find_config_map(&self.config_maps, r),
            "spec.policyFrom.configMapKeyRef: in file mode the ConfigMap must be a document \
             under the same PATH (apiVersion v1, kind ConfigMap, with that namespace and name)",
        )
    }
}

/// What a `plan` or `apply` found: the text to print and how to exit.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    pub output: String,
    /// `plan`: the tailnet's policy would change.
    pub changes: bool,
    /// Some resource is not Ready (or, for `plan`, would not be).
    pub failed: bool,
}

/// Plans `manifests` against the tailnet behind `snapshots` (writes nothing).
pub async fn plan_manifests(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
) -> Result<FileReport, ReconcileError> {
    let mut report = FileReport::default();
    if !manifests.policies.is_empty() {
        report.merge(plan_policies(manifests, snapshots).await?);
    }
    if !manifests.dns_configs.is_empty() {
        report.merge(dns_config::plan_dns(&manifests.dns_configs, snapshots).await?);
    }
    Ok(report)
}

/// Applies `manifests` to the tailnet behind `snapshots` and reports every resource's status.
pub async fn apply_manifests(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
) -> Result<FileReport, ReconcileError> {
    let mut report = FileReport::default();
    if !manifests.policies.is_empty() {
        report.merge(apply_policies(manifests, snapshots).await?);
    }
    if !manifests.dns_configs.is_empty() {
        report.merge(dns_config::apply_dns(&manifests.dns_configs, snapshots).await?);
    }
    Ok(report)
}

impl FileReport {
    fn merge(&mut self, other: FileReport) {
        self.output.push_str(&other.output);
        self.changes |= other.changes;
        self.failed |= other.failed;
    }
}

async fn plan_policies(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
) -> Result<FileReport, ReconcileError> {
    let resources = manifests.policy_resources();
    let store = InMemoryRevisionStore::new();
    let plan = observe_and_plan(&resources, &[], snapshots, &store).await?;
    let mut out = String::new();
    describe_plan(&plan, &mut out);
    let mut failed = false;
    for outcome in &plan.outcomes {
        let verdict = if outcome.ready.status == crate::resources::ConditionStatus::False {
            failed = true;
            format!("error: {} {}", outcome.ready.reason, outcome.ready.message)
        } else if plan.writes() && outcome.ready.reason == "Pending" {
            "would be applied".to_owned()
        } else {
            "no changes".to_owned()
        };
        let _ = writeln!(out, "TailnetPolicy/{}: {verdict}", outcome.name);
    }
    let tags = device_tag_set::plan(manifests, snapshots).await?;
    out.push_str(&tags.output);
    Ok(FileReport {
        output: out,
        changes: plan.writes() || tags.changes,
        failed: failed || tags.failed,
    })
}

async fn apply_policies(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
) -> Result<FileReport, ReconcileError> {
    let resources = manifests.policy_resources();
    let store = InMemoryRevisionStore::new();
    let outcome = reconcile(&resources, &[], snapshots, &store, Utc::now()).await?;
    let mut out = String::new();
    let summary = match &outcome.result {
        ExecuteResult::NoWrite => "no changes written".to_owned(),
        ExecuteResult::Applied { revision, reason } => {
            format!("applied the composed policy as revision {revision} ({reason:?})")
        }
        ExecuteResult::ValidationFailed { message } => format!("not applied: {message}"),
        ExecuteResult::Conflict { message } => format!("not applied: {message}"),
        ExecuteResult::RolledBack { problem, .. } => format!("rolled back: {problem}"),
        ExecuteResult::CheckFailed { problem } => format!("applied, check failed: {problem}"),
    };
    let _ = writeln!(out, "policy: {summary}");
    for o in &outcome.outcomes {
        describe_outcome(o, &mut out);
    }
    let failed = outcome.outcomes.iter().any(|o| !o.ready.is_true());
    // After the policy: the tags the sets use must be in its tagOwners first.
    let tags = device_tag_set::apply(manifests, snapshots).await?;
    out.push_str(&tags.output);
    Ok(FileReport {
        output: out,
        changes: outcome.wrote() || tags.changes,
        failed: failed || tags.failed,
    })
}

fn describe_plan(plan: &PolicyPlan, out: &mut String) {
    match &plan.action {
        PolicyAction::NoChange => {
            let _ = writeln!(out, "policy: no changes");
        }
        PolicyAction::ReportDrift { diff } => {
            let _ = writeln!(out, "policy: drifted (reported only): {}", diff.summary());
        }
        PolicyAction::Apply(apply) => {
            let access = &apply.access_diff;
            let _ = writeln!(
                out,
                "policy: would apply the composed policy ({:?}); access: {} pairs gained, {} lost",
                apply.reason, access.gained, access.lost
            );
            for pair in &access.gained_pairs {
                let _ = writeln!(out, "  + {pair}");
            }
            if access.gained as usize > access.gained_pairs.len() {
                let more = access.gained as usize - access.gained_pairs.len();
                let _ = writeln!(out, "  + ... and {more} more");
            }
            for pair in &access.lost_pairs {
                let _ = writeln!(out, "  - {pair}");
            }
            if access.lost as usize > access.lost_pairs.len() {
                let more = access.lost as usize - access.lost_pairs.len();
                let _ = writeln!(out, "  - ... and {more} more");
            }
            out.push_str(&apply.text_diff);
        }
    }
}

fn describe_outcome(o: &ResourceOutcome, out: &mut String) {
    let _ = writeln!(out, "TailnetPolicy/{}:", o.name);
    for (name, v) in [
        ("Ready", &o.ready),
        ("Synced", &o.synced),
        ("Drifted", &o.drifted),
    ] {
        let _ = writeln!(out, "  {name}={} {}: {}", v.status, v.reason, v.message);
    }
    if let Some(revision) = o.applied_revision {
        let _ = writeln!(out, "  appliedRevision: {revision}");
    }
    for conflict in &o.conflicts {
        let _ = writeln!(
            out,
            "  conflict: {} ({})",
            conflict.key,
            conflict.sources.join(", ")
        );
    }
}

/// How `plan` and `apply` end.
pub enum Mode {
    Plan,
    Apply,
}

/// Loads PATH, connects, runs, prints; returns the exit code (plan: 0 no changes, 2 changes,
/// 1 error; apply: 0 all Ready, 1 otherwise).
pub async fn run(args: &FileArgs, mode: Mode) -> Result<std::process::ExitCode, super::CliError> {
    let manifests = load(&args.path)?;
    for warning in &manifests.warnings {
        eprintln!("warning: {warning}");
    }
    let tailnet = manifests.tailnet(&args.path)?;
    for t in &manifests.tailnets {
        eprintln!(
            "ManagedTailnet/{}: file mode connects with the TS_* settings (or the embedded simulated \
             tailnet); the Secret references in its spec are used by the controller only",
            t.metadata.name.as_deref().unwrap_or_default()
        );
    }
    let connection = connect(&args.connection).await?;
    let snapshots = TailnetSnapshots::new(connection.client.clone(), Duration::from_secs(300));
    let report = match mode {
        Mode::Plan => plan_manifests(&manifests, &snapshots).await?,
        Mode::Apply => apply_manifests(&manifests, &snapshots).await?,
    };
    super::write_stdout(&format!("tailnet {tailnet}\n{}", report.output))?;
    let code = match mode {
        _ if report.failed => 1,
        Mode::Plan if report.changes => 2,
        _ => 0,
    };
    Ok(std::process::ExitCode::from(code))
}
