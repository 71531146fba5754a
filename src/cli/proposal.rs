//! `tailnet-operator proposal export NAME [-n NAMESPACE]`: a ChangeProposal's change as
//! something to commit to git (GitOps proposals are never applied by the operator).
//!
//! Output (stdout):
//! - default: the **patched target manifest** (YAML: `apiVersion`, `kind`, `metadata` with
//!   name, namespace, labels and annotations, `spec`), preceded by `#` comment lines naming the
//!   proposal and its summary. Replace the target's manifest in the repository with it. It is
//!   rendered from the cluster's copy of the target, so fields the API server defaulted
//!   appear explicitly.
//! - `--against FILE`: a **unified diff** (`diff --git a/FILE b/FILE`) that applies the
//!   proposal's merge patch to the target's document in FILE (found by kind and name), for
//!   `git apply` at the repository root; FILE is the path as given (relative to that root).
//!   Only the `spec` keys (and labels/annotations) the patch changes are rewritten; every
//!   other line of the file is kept.
//! - `--format patch`: the JSON merge patch itself (as YAML), for `kubectl patch --type merge`.
//!
//! Warnings go to stderr: a proposal not approved yet, not valid, or whose target changed since
//! it was computed.
use std::path::PathBuf;

use kube::Api;
use serde_json::Value;

use super::CliError;
use crate::cluster::proposals::{fetch_target, target_hash};
use crate::proposal;
use crate::resources::change_proposal::{ChangeProposal, ProposalPhase};

#[derive(Debug, clap::Args)]
pub struct ProposalArgs {
    #[command(subcommand)]
    pub command: ProposalCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProposalCommand {
    /// Print a proposal's change as a file to commit: the patched target manifest (default),
    /// a diff against a manifest file (--against), or the merge patch (--format patch).
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The ChangeProposal's name.
    pub name: String,
    /// Its namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = ExportFormat::Manifest)]
    pub format: ExportFormat,
    /// Print a unified diff against this manifest file of the checkout instead (run from the
    /// repository root; the path appears as given in the diff headers).
    #[arg(long, conflicts_with = "format")]
    pub against: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The patched target manifest (YAML).
    Manifest,
    /// The JSON merge patch (YAML).
    Patch,
}

/// Why a proposal could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("ChangeProposal {namespace}/{name} not found: check the name and -n NAMESPACE")]
    NotFound { namespace: String, name: String },
    #[error("the target {0} of the proposal no longer exists; nothing to export")]
    TargetGone(String),
    #[error("{path}: no document is {wanted} (found: {found})")]
    NoSuchDocument {
        path: String,
        wanted: String,
        found: String,
    },
    #[error(transparent)]
    Proposal(#[from] proposal::ProposalError),
}

pub async fn run(args: &ProposalArgs) -> Result<String, CliError> {
    match &args.command {
        ProposalCommand::Export(export_args) => export(export_args).await,
    }
}

async fn export(args: &ExportArgs) -> Result<String, CliError> {
    export_with(kube::Client::try_default().await?, args).await
}

/// `proposal export` with a given client: the text to print (warnings go to stderr).
pub async fn export_with(client: kube::Client, args: &ExportArgs) -> Result<String, CliError> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api = Api::<ChangeProposal>::namespaced(client.clone(), &namespace);
    let found = api.get_opt(&args.name).await?;
    let Some(proposal) = found else {
        return Err(export_error(ExportError::NotFound {
            namespace,
            name: args.name.clone(),
        }));
    };
    let target_ns = proposal
        .spec
        .target
        .namespace
        .clone()
        .or_else(|| Some(namespace.clone()));
    let target = fetch_target(&client, &proposal.spec.target, target_ns.as_deref()).await?;
    for warning in warnings(&proposal, target.as_ref()) {
        eprintln!("warning: {warning}");
    }
    match (&args.against, args.format) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
                context: format!("reading {}", path.display()),
                source,
            })?;
            let shown = path.to_string_lossy().replace('\\', "/");
            against_file(&shown, &text, &proposal).map_err(export_error)
        }
        (None, format) => {
            let change = proposal::Change::of(&proposal.spec)
                .map_err(|e| export_error(ExportError::Proposal(e)))?;
            let mut out = header(&proposal);
            match (change, format) {
                (proposal::Change::Patch(patch), ExportFormat::Patch) => {
                    out.push_str(&yaml(patch).map_err(export_error)?);
                }
                (proposal::Change::Patch(patch), ExportFormat::Manifest) => {
                    let target = target.ok_or_else(|| {
                        export_error(ExportError::TargetGone(proposal.spec.target.name.clone()))
                    })?;
                    let patched = proposal::apply_merge_patch(&target, patch);
                    out.push_str(&proposal::manifest_yaml(&patched).map_err(export_error)?);
                }
                // A new object is its own manifest, whatever the format.
                (proposal::Change::Create(object), _) => {
                    out.push_str(&proposal::manifest_yaml(object).map_err(export_error)?);
                }
                (proposal::Change::Delete, _) => out.push_str(&format!(
                    "# delete {}: remove its document from the repository (with --against \
                     FILE, a diff that does)\n",
                    proposal::target_label(&proposal.spec.target)
                )),
            }
            Ok(out)
        }
    }
}

fn export_error(err: impl Into<ExportError>) -> CliError {
    CliError::Export(err.into())
}

fn yaml(value: &Value) -> Result<String, ExportError> {
    serde_saphyr::to_string(value)
        .map_err(|e| ExportError::Proposal(proposal::ProposalError::Render(e.to_string())))
}

/// `#` lines naming the proposal, for the top of an exported manifest.
fn header(proposal: &ChangeProposal) -> String {
    let mut out = format!(
        "# ChangeProposal {}/{}\n",
        proposal.metadata.namespace.as_deref().unwrap_or_default(),
        proposal.metadata.name.as_deref().unwrap_or_default()
    );
    for line in proposal.spec.summary.lines() {
        out.push_str(&format!("# {line}\n"));
    }
    out
}

/// What a reviewer should know before committing the export.
fn warnings(proposal: &ChangeProposal, target: Option<&Value>) -> Vec<String> {
    let status = proposal.status.clone().unwrap_or_default();
    let mut out = Vec::new();
    if !proposal.spec.approved {
        out.push("the proposal is not approved yet (spec.approved is false)".to_owned());
    }
    match status.phase {
        Some(ProposalPhase::Rejected) | Some(ProposalPhase::Failed) => out.push(format!(
            "the proposal is {:?}: {}",
            status.phase.unwrap_or_default(),
            status.message.unwrap_or_default()
        )),
        None => out.push("the operator has not validated the proposal yet".to_owned()),
        _ => {}
    }
    if let (Some(target), Some(hash)) = (target, status.target_hash.as_deref()) {
        if target_hash(target) != hash {
            out.push(
                "the target changed since the proposal was validated; review the result".into(),
            );
        }
    }
    out
}

/// The proposal as a diff against the target's document in a manifest file: the merge patch
/// is applied to the file's document, not to the cluster's copy, so only what the patch
/// changes differs.
pub fn against_file(
    path: &str,
    text: &str,
    proposal: &ChangeProposal,
) -> Result<String, ExportError> {
    let target = &proposal.spec.target;
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        ExportError::Proposal(proposal::ProposalError::Manifest(format!("{path}: {e}")))
    })?;
    let matches = |doc: &Value| {
        doc.get("kind").and_then(Value::as_str) == Some(&target.kind)
            && doc.pointer("/metadata/name").and_then(Value::as_str) == Some(&target.name)
    };
    let found = || ExportError::NoSuchDocument {
        path: path.to_owned(),
        wanted: format!("{}/{}", target.kind, target.name),
        found: docs
            .iter()
            .filter(|d| !d.is_null())
            .map(docs_label)
            .collect::<Vec<_>>()
            .join(", "),
    };
    match (
        proposal::Change::of(&proposal.spec)?,
        docs.iter().position(matches),
    ) {
        (proposal::Change::Create(_), Some(index)) => Err(ExportError::Proposal(
            proposal::ProposalError::Spec(format!(
                "{path} already has {}: a Create adds it where it is not",
                docs_label(&docs[index])
            )),
        )),
        (proposal::Change::Create(object), None) => {
            Ok(proposal::manifest_append(path, text, object)?)
        }
        (_, None) => Err(found()),
        (proposal::Change::Patch(patch), Some(index)) => {
            let patched = proposal::apply_merge_patch(&docs[index], patch);
            Ok(proposal::manifest_patch(path, text, index, &patched)?)
        }
        (proposal::Change::Delete, Some(index)) => {
            Ok(proposal::manifest_removal(path, text, index)?)
        }
    }
}

fn docs_label(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc.get("kind").and_then(Value::as_str).unwrap_or("?"),
        doc.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::change_proposal::{ChangeProposalSpec, ProposalTarget};
    use serde_json::json;

    #[test]
    fn a_diff_against_the_file_changes_only_what_the_patch_changes() {
        let file = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: tailnet.ops.dev/v1alpha1\nkind: TailnetPolicy\nmetadata:\n  name: base\nspec:\n  role: Base\n  driftPolicy: Report\n  policy: '{}'\n";
        let proposal = ChangeProposal::new(
            "p",
            ChangeProposalSpec {
                target: ProposalTarget {
                    kind: "TailnetPolicy".into(),
                    name: "base".into(),
                    namespace: None,
                },
                patch: Some(json!({"spec": {"driftPolicy": "Correct"}})),
                summary: "correct drift".into(),
                ..Default::default()
            },
        );
        let diff = against_file("policies/base.yaml", file, &proposal).unwrap();
        assert!(
            diff.contains("\n-  driftPolicy: Report\n")
                && diff.contains("\n+  driftPolicy: Correct\n"),
            "{diff}"
        );
        // One line changes; the ConfigMap document and the policy's quoting are untouched.
        let changed = diff
            .lines()
            .filter(|l| {
                (l.starts_with('-') || l.starts_with('+'))
                    && !l.starts_with("---")
                    && !l.starts_with("+++")
            })
            .count();
        assert_eq!(changed, 2, "{diff}");
        let mut other = proposal.clone();
        other.spec.target.name = "nope".into();
        let err = against_file("p.yaml", file, &other)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("found: ConfigMap/c, TailnetPolicy/base"),
            "{err}"
        );
    }
}
