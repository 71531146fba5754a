//! The `ChangeProposal` core (`docs/change-proposal.md`): what a proposed patch would do to its target, checked
//! before anyone approves it. Pure and runtime-free: no Kubernetes client, no Tailscale client,
//! no clock. The callers gather the world and hand it in:
//! - the ChangeProposal controller (from the API server and the tailnet's snapshots);
//! - the MCP server's three backends (kube, the operator's loopback API, plain manifest files);
//! - file mode.
//!
//! # API (stable: other modules build on these signatures)
//!
//! - [`preview`]`(target, patch, world) -> Result<`[`Preview`]`, `[`ProposalError`]`>`: applies
//!   a JSON merge patch (RFC 7386) to the target object and validates the result. `Err` means
//!   no preview can be computed at all (unsupported kind, a patch touching a forbidden path, a
//!   malformed target); every other finding is a [`ValidationResult`] in
//!   [`Preview::validation`], and [`Preview::is_valid`] says whether all of them passed. A
//!   caller creating or approving a proposal refuses an invalid preview.
//! - [`adopt_drift_patch`]`(target, world) -> Result<Value, ProposalError>`: a merge patch that
//!   makes the resource match what someone changed in the console (see below).
//! - [`manifest_patch`]`(path_in_repo, file_text, document_index, patched) -> Result<String,
//!   ProposalError>`: the proposal as a `git apply`-able unified diff against a manifest file
//!   of a GitOps checkout (the `--manifests` MCP backend and `proposal export`).
//! - [`manifest_yaml`]`(patched)`: the patched target as a manifest (no status, no server
//!   metadata), e.g. for `proposal export`.
//! - [`kinds`]: the per-kind registry ([`kinds::registry`], [`kinds::lookup`]).
//! - From a cluster: `controller::change_proposal::{gather_world, fetch_target}` build the
//!   world and fetch the target as the ChangeProposal controller does (kube client, optional
//!   tailnet snapshots). Lifecycle, RBAC and export: `docs/change-proposal.md`.
//!
//! # What `preview` checks, in order (each a [`ValidationResult`], `check` names below)
//!
//! 1. `patch` (an `Err` rather than a result when violated): the patch is a JSON object that
//!    only touches `spec`, `metadata.labels` and `metadata.annotations`. A patch that changes
//!    nothing is a failed `patch` result.
//! 2. `schema`: the patched object against its CRD's `openAPIV3Schema` (types, required
//!    fields, enums, patterns, lengths, ranges, unknown fields), each problem naming its path.
//! 3. `cel`: the CRD's CEL rules (`x-kubernetes-validations`), with the current target as
//!    `oldSelf` so transition rules apply as they would on the API server.
//! 4. `typed`: the patched object deserializes into the kind's Rust type (the operator reads
//!    it that way).
//! 5. The kind's planner checks, when the kind has any. `TailnetPolicy`: `policyCompose`
//!    (compose with the other policies of the tailnet: Base, Fragments by name, contributions),
//!    `policyChecks` (strict HuJSON, tags/groups/hosts defined), `policyTests` (the policy's
//!    `tests` in the local evaluator over the tailnet's users and devices). Its
//!    [`Preview::access_diff`] lists who gains and loses access, current → patched, where
//!    "current" is the live policy when the world knows it (what the tailnet enforces now, so
//!    the diff is what approving would change) and the current composition otherwise.
//!
//! Later checks are skipped (reported as not run) once the structural ones fail, since they
//! would only repeat the same problem less clearly.
//!
//! # adopt_drift
//!
//! `TailnetPolicy`: the tailnet's composed policy file is owned by its Base, so adoption
//! targets the Base. For an inline Base with nothing else composed into it (no Fragments, no
//! contributions), the patch sets `spec.policy` to the live text, byte for byte (comments
//! included), so once applied the planner finds live == desired: `Drifted=False`, no write.
//! A Base reading its text from a ConfigMap (`policyFrom`) is switched to the inline live text
//! (`policyFrom: null`): a proposal cannot patch the ConfigMap, and the reviewer sees the
//! switch in the diff. When Fragments or contributions are composed in, the live file holds
//! their entries too and no Base text reproduces it exactly without duplicating them, so it is
//! refused with an error naming them (edit the sources by hand instead). A Fragment target is
//! refused, naming the Base to adopt into. Other kinds: "not supported for KIND yet".
//!
//! # Building a world
//!
//! [`ProposalWorld`] has public fields and `Default`: build it with `..Default::default()` so
//! fields added later (live state of other kinds) do not break callers.
mod manifest;
mod patch;
mod policy;
mod schema;
pub use schema::validate_new;
mod splice;

pub mod kinds;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::policy::access::TailnetView;
use crate::policy::compose::Contribution;
use crate::resources::tailnet_policy::TailnetPolicy;

pub use crate::resources::change_proposal::ValidationResult;
pub use manifest::{manifest_patch, manifest_yaml};
pub use patch::{apply_merge_patch, check_patch_paths, display_object};

/// Check names used in [`ValidationResult::check`].
pub mod check {
    pub const PATCH: &str = "patch";
    pub const SCHEMA: &str = "schema";
    pub const CEL: &str = "cel";
    pub const TYPED: &str = "typed";
    pub const POLICY_COMPOSE: &str = "policyCompose";
    pub const POLICY_CHECKS: &str = "policyChecks";
    pub const POLICY_TESTS: &str = "policyTests";
}

/// Lines of the YAML diff kept in a preview (and so in a proposal's status).
pub const DIFF_LINES: usize = 400;
/// Class lines (gained and lost together, biggest first) listed in an access diff; the
/// counts are complete.
pub const ACCESS_LINES: usize = 50;

/// Everything the checks need about the world, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct ProposalWorld {
    /// Every `TailnetPolicy` the caller knows (any tailnet: the checks keep the target's
    /// tailnet), including the target itself when it is one (it is replaced by its patched
    /// version; the `target` argument is what counts).
    pub policies: Vec<TailnetPolicy>,
    /// ConfigMaps that `policyFrom` references point to (of the policies above and of the
    /// patched target). A reference to a ConfigMap not in this list fails the checks.
    pub config_maps: Vec<ConfigMap>,
    /// Contributions of other kinds to the target's tailnet policy (e.g. FunnelExposure).
    pub contributions: Vec<Contribution>,
    /// The target tailnet's users and devices
    /// ([`tailnet_view`](crate::reconcile::view::tailnet_view) over its snapshots), for policy
    /// tests and access diffs. Empty: tests referring to devices fail as unknown.
    pub view: TailnetView,
    /// The target tailnet's live policy file (HuJSON), when known. Needed by
    /// [`adopt_drift_patch`]; used as "before" of the access diff.
    pub live_policy: Option<String>,
}

/// What a patch would do to its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The target after the merge patch (status and server metadata as in the target).
    pub patched: Value,
    /// Unified diff of the target's YAML, before → after, without status and server-set
    /// metadata; capped at [`DIFF_LINES`].
    pub diff: String,
    /// For policy targets: the totals, then gained (`+ <class> -> <class> proto:ports`) and
    /// lost (`- ...`) access by class of devices, capped at [`ACCESS_LINES`] lines, or `no
    /// change in access`.
    pub access_diff: Option<String>,
    /// Every check run, in order.
    pub validation: Vec<ValidationResult>,
}

impl Preview {
    /// Whether every check passed.
    pub fn is_valid(&self) -> bool {
        self.validation.iter().all(|v| v.ok)
    }

    /// The failed checks as one message, `check: message; ...` (empty when valid).
    pub fn problems(&self) -> String {
        self.validation
            .iter()
            .filter(|v| !v.ok)
            .map(|v| format!("{}: {}", v.check, v.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Why no preview (or adopt patch, or manifest patch) can be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error(
        "kind {kind:?} cannot be the target of a ChangeProposal: supported kinds are {}",
        supported.join(", ")
    )]
    UnsupportedKind {
        kind: String,
        supported: Vec<String>,
    },
    #[error(
        "the patch may only change spec, metadata.labels and metadata.annotations, not \
         {path}: remove {path} from the patch"
    )]
    ForbiddenPath { path: String },
    #[error(
        "the patch must be a JSON object (a JSON merge patch, e.g. {{\"spec\": {{...}}}}), not {found}"
    )]
    PatchNotAnObject { found: String },
    #[error("the target object is malformed: {0}")]
    InvalidTarget(String),
    #[error("adopt_drift is not supported for {kind} yet: propose the change with a patch instead")]
    AdoptNotSupported { kind: String },
    #[error("{target}: {message}")]
    CannotAdopt { target: String, message: String },
    #[error("{target} is not drifted: the live state already matches it, nothing to adopt")]
    NotDrifted { target: String },
    #[error("{0}")]
    Manifest(String),
    #[error("rendering YAML: {0}")]
    Render(String),
}

/// Applies `patch` to `target` and validates the result (see the module docs).
pub fn preview(
    target: &Value,
    patch: &Value,
    world: &ProposalWorld,
) -> Result<Preview, ProposalError> {
    let kind = patch::target_kind(target)?;
    let entry = kinds::lookup(&kind)?;
    patch::check_patch_paths(patch)?;
    let patched = apply_merge_patch(target, patch);
    let diff = patch::yaml_diff(target, &patched)?;
    let mut validation = Vec::new();
    let changes = !diff.is_empty();
    validation.push(ValidationResult {
        check: check::PATCH.into(),
        ok: changes,
        message: if changes {
            "only spec, metadata.labels or metadata.annotations change".into()
        } else {
            "the patch changes nothing: the target already has these values".into()
        },
    });
    let structural = schema::check(entry, target, &patched);
    let structural_ok = structural.iter().all(|v| v.ok);
    validation.extend(structural);
    let mut access_diff = None;
    if let Some(planner) = entry.planner {
        if structural_ok {
            let report = planner(target, &patched, world);
            validation.extend(report.validation);
            access_diff = report.access_diff;
        } else {
            validation.extend(entry.planner_checks.iter().map(|name| ValidationResult {
                check: (*name).into(),
                ok: false,
                message: "not run: the patched object fails the checks above".into(),
            }));
        }
    }
    Ok(Preview {
        patched,
        diff,
        access_diff,
        validation,
    })
}

/// A merge patch making the resource match the live tailnet (console edits) so that, applied,
/// it plans no change and is `Drifted=False` (see the module docs per kind).
pub fn adopt_drift_patch(target: &Value, world: &ProposalWorld) -> Result<Value, ProposalError> {
    let kind = patch::target_kind(target)?;
    let entry = kinds::lookup(&kind)?;
    match entry.adopt {
        Some(adopt) => adopt(target, world),
        None => Err(ProposalError::AdoptNotSupported { kind }),
    }
}

/// What a kind's planner checks found.
#[derive(Debug, Clone, Default)]
pub struct PlannerReport {
    pub validation: Vec<ValidationResult>,
    pub access_diff: Option<String>,
}

/// Longest [`ValidationResult::message`] (characters): results are kept in status.
pub const MAX_CHECK_MESSAGE: usize = 2000;

fn result(check: &str, ok: bool, message: impl Into<String>) -> ValidationResult {
    ValidationResult {
        check: check.to_owned(),
        ok,
        message: cap(message.into(), MAX_CHECK_MESSAGE),
    }
}

/// `text` cut to `max` characters, ending with `…` when cut.
pub fn cap(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests;
