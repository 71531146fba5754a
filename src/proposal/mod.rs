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
mod adopt;
mod attribute;
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
use crate::resources::change_proposal::{ChangeProposalSpec, ProposalOperation};
use crate::resources::tailnet_policy::TailnetPolicy;

pub use crate::resources::change_proposal::ValidationResult;
pub use manifest::{
    manifest_append, manifest_creation, manifest_patch, manifest_removal, manifest_yaml,
};
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
    /// A delete: what its `deletionPolicy` removes from the tailnet.
    pub const DELETION: &str = "deletion";
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
    /// The tailnet's live DNS, settings (as the API sends them), Tailscale Services and
    /// devices, when known: what `adopt_drift` of the other kinds adopts from.
    pub live_dns: Option<crate::tailscale::DnsConfiguration>,
    pub live_settings: Option<Value>,
    pub live_services: Option<Vec<crate::tailscale::Service>>,
    pub live_devices: Option<Vec<crate::tailscale::Device>>,
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
    /// The spec's operation and its fields disagree (a Create without `object`, ...).
    #[error("{0}")]
    Spec(String),
    #[error("the target {target} does not exist: check spec.target (kind, name, namespace)")]
    TargetMissing { target: String },
    #[error(
        "{target} already exists: a Create needs a free name; propose a patch to it, or pick \
         another name"
    )]
    NameTaken { target: String },
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
    let structural = schema::check(entry, Some(target), &patched);
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

/// What a proposal asks for, read from its spec.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Patch(&'a Value),
    Create(&'a Value),
    Delete,
}

impl<'a> Change<'a> {
    /// The change `spec` asks for; an error names a missing or misplaced field (the CRD's CEL
    /// rules refuse these too, where they run).
    pub fn of(spec: &'a ChangeProposalSpec) -> Result<Change<'a>, ProposalError> {
        let misplaced = |field: &str| {
            ProposalError::Spec(format!(
                "spec.{field} is not used by operation {}: remove it",
                spec.operation.as_str()
            ))
        };
        let missing = |field: &str, what: &str| {
            ProposalError::Spec(format!(
                "operation {} needs spec.{field} ({what})",
                spec.operation.as_str()
            ))
        };
        match spec.operation {
            ProposalOperation::Patch if spec.object.is_some() => Err(misplaced("object")),
            ProposalOperation::Patch => spec
                .patch
                .as_ref()
                .map(Change::Patch)
                .ok_or_else(|| missing("patch", "a JSON merge patch")),
            ProposalOperation::Create if spec.patch.is_some() => Err(misplaced("patch")),
            ProposalOperation::Create => spec
                .object
                .as_ref()
                .map(Change::Create)
                .ok_or_else(|| missing("object", "the whole object to create")),
            ProposalOperation::Delete if spec.patch.is_some() => Err(misplaced("patch")),
            ProposalOperation::Delete if spec.object.is_some() => Err(misplaced("object")),
            ProposalOperation::Delete => Ok(Change::Delete),
        }
    }

    /// What the checks' world is gathered around: the target, or the object to create.
    pub fn subject(self, target: Option<&'a Value>) -> Option<&'a Value> {
        match self {
            Change::Create(object) => Some(object),
            _ => target,
        }
    }

    /// The merge patch the world's gathering should assume (`{}` but for a patch).
    pub fn patch(self) -> Value {
        match self {
            Change::Patch(patch) => patch.clone(),
            _ => Value::Object(Default::default()),
        }
    }

    /// Whether the change is already in effect on `target` (as it is now; `None`: absent): a
    /// retry after a write that landed records Applied rather than Stale.
    pub fn in_effect(self, target: Option<&Value>) -> bool {
        match (self, target) {
            (Change::Patch(patch), Some(target)) => {
                let patched = apply_merge_patch(target, patch);
                display_object(&patched) == display_object(target)
            }
            // The API server defaults fields the object left out: what it set must be there.
            (Change::Create(object), Some(target)) => {
                contains(target.get("spec"), object.get("spec"))
                    && contains(
                        target.pointer("/metadata/labels"),
                        object.pointer("/metadata/labels"),
                    )
            }
            (Change::Delete, None) => true,
            _ => false,
        }
    }
}

/// Whether `have` holds everything `want` sets (objects key by key, other values equal).
fn contains(have: Option<&Value>, want: Option<&Value>) -> bool {
    match (have, want) {
        (_, None) => true,
        (Some(Value::Object(have)), Some(Value::Object(want))) => want
            .iter()
            .all(|(key, value)| contains(have.get(key), Some(value))),
        (have, want) => have == want,
    }
}

/// What `spec` would do to its target as it is now (`None`: it does not exist): [`preview`]
/// for a patch, [`preview_create`] for a create (the name must be free), [`preview_delete`]
/// for a delete (the target must exist).
pub fn preview_spec(
    spec: &ChangeProposalSpec,
    target: Option<&Value>,
    world: &ProposalWorld,
) -> Result<Preview, ProposalError> {
    let label = target_label(&spec.target);
    match (Change::of(spec)?, target) {
        (Change::Patch(patch), Some(target)) => preview(target, patch, world),
        (Change::Patch(_) | Change::Delete, None) => {
            Err(ProposalError::TargetMissing { target: label })
        }
        (Change::Create(_), Some(_)) => Err(ProposalError::NameTaken { target: label }),
        (Change::Create(object), None) => {
            object_matches(&spec.target, object)?;
            preview_create(object, world)
        }
        (Change::Delete, Some(target)) => preview_delete(target),
    }
}

/// `Kind/name` or `Kind/namespace/name`.
pub fn target_label(target: &crate::resources::change_proposal::ProposalTarget) -> String {
    match &target.namespace {
        Some(ns) => format!("{}/{ns}/{}", target.kind, target.name),
        None => format!("{}/{}", target.kind, target.name),
    }
}

/// The object to create is the one `spec.target` names.
fn object_matches(
    target: &crate::resources::change_proposal::ProposalTarget,
    object: &Value,
) -> Result<(), ProposalError> {
    let field = |path: &str| object.pointer(path).and_then(Value::as_str);
    let wrong = |field: &str, want: &str| {
        Err(ProposalError::Spec(format!(
            "spec.object.{field} must be {want:?}, as in spec.target"
        )))
    };
    if field("/kind") != Some(target.kind.as_str()) {
        return wrong("kind", &target.kind);
    }
    if field("/metadata/name") != Some(target.name.as_str()) {
        return wrong("metadata.name", &target.name);
    }
    match (field("/metadata/namespace"), &target.namespace) {
        (Some(ns), Some(want)) if ns != want => wrong("metadata.namespace", want),
        _ => Ok(()),
    }
}

/// What creating `object` would do: checked as the API server checks a create (schema with
/// unknown fields as errors, CEL rules without `oldSelf`, the Rust type), then the kind's
/// planner checks with the object as both before and after (a policy's access diff is then
/// from the live policy to the composition with the new object).
pub fn preview_create(object: &Value, world: &ProposalWorld) -> Result<Preview, ProposalError> {
    let kind = patch::target_kind(object)?;
    let entry = kinds::lookup(&kind)?;
    if object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ProposalError::InvalidTarget(
            "the object to create needs metadata.name".into(),
        ));
    }
    let diff = patch::creation_diff(object)?;
    let mut validation = schema::check(entry, None, object);
    let structural_ok = validation.iter().all(|v| v.ok);
    let mut access_diff = None;
    if let Some(planner) = entry.planner {
        if structural_ok {
            let report = planner(object, object, world);
            validation.extend(report.validation);
            access_diff = report.access_diff;
        } else {
            validation.extend(entry.planner_checks.iter().map(|name| not_run(name)));
        }
    }
    Ok(Preview {
        patched: object.clone(),
        diff,
        access_diff,
        validation,
    })
}

/// What deleting `target` would do: the YAML removed, and what its `deletionPolicy` takes out
/// of the tailnet (check `deletion`).
pub fn preview_delete(target: &Value) -> Result<Preview, ProposalError> {
    let kind = patch::target_kind(target)?;
    let entry = kinds::lookup(&kind)?;
    let diff = patch::deletion_diff(target)?;
    let message = match target
        .pointer("/spec/deletionPolicy")
        .and_then(Value::as_str)
    {
        Some("Orphan") => format!(
            "deletionPolicy Orphan: the tailnet keeps {}; only the resource is deleted",
            entry.contributes
        ),
        Some(policy) => format!(
            "deletionPolicy {policy}: removes {} from the tailnet",
            entry.contributes
        ),
        None if entry.kind == "ManagedTailnet" => format!("removes {}", entry.contributes),
        // The field is unset in the object: the kind's default applies (the schema's default).
        None => format!(
            "deletionPolicy (the kind's default) decides whether {} leaves the tailnet: see \
             docs/crd-reference.md",
            entry.contributes
        ),
    };
    Ok(Preview {
        patched: Value::Null,
        diff,
        access_diff: None,
        validation: vec![result(check::DELETION, true, message)],
    })
}

fn not_run(name: &str) -> ValidationResult {
    result(name, false, "not run: the object fails the checks above")
}

/// What adopting a drift proposes: a merge patch, and the resource it is for (a policy's
/// console edit belongs to the Base or Fragment owning it, whichever was asked about).
#[derive(Debug, Clone, PartialEq)]
pub struct Adoption {
    /// `metadata.name` of the resource to patch (same kind, same namespace as asked).
    pub target: String,
    pub patch: Value,
}

/// A merge patch making the resource match the live tailnet (console edits) so that, applied,
/// it plans no change and is `Drifted=False` (see the module docs per kind).
pub fn adopt_drift_patch(target: &Value, world: &ProposalWorld) -> Result<Adoption, ProposalError> {
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
