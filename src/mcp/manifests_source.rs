//! The GitOps-checkout [`Source`] (`tailnet-operator mcp --manifests PATH`): desired state from
//! the CR files under PATH (file mode's loader), live state from the tailnet given by the TS_*
//! settings or, without any, the embedded simulated tailnet (said on stderr), status and drift
//! from the same planner the controller runs. No Kubernetes at all.
//!
//! A proposal is a patch file under `--proposals-dir`: a `git apply`-able diff of the target's
//! manifest, preceded by `# ` header lines (summary, target, validation, access diff) that
//! `git apply` skips. A human reviews it, applies it to the checkout and commits.
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use super::backend::*;
use super::local::{Source, kind_of, name_of, with_live_state};
use crate::connection::{Connection, ConnectionArgs, connect};
use crate::file_mode::{self, Manifests};
use crate::proposal::{self, ProposalWorld};
use crate::reconcile::tailnet_policy::PolicyInput;
use crate::reconcile::view::tailnet_view;
use crate::snapshot::TailnetSnapshots;

/// A manifest file as last seen: path, modification time, length.
type FileStamp = (PathBuf, Option<std::time::SystemTime>, u64);

/// The YAML files under `path` with their modification times and lengths.
fn stamps(path: &Path) -> Result<Vec<FileStamp>, file_mode::FileModeError> {
    Ok(file_mode::yaml_files(path)?
        .into_iter()
        .map(|file| {
            let meta = std::fs::metadata(&file).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (file, modified, len)
        })
        .collect())
}

/// How long a read of one area of the tailnet serves further tool calls.
pub const FRESHNESS: Duration = Duration::from_secs(2);

pub struct ManifestsSource {
    path: PathBuf,
    proposals_dir: PathBuf,
    /// The checkout's root (nearest ancestor with `.git`), which patch paths are relative to.
    repo_root: PathBuf,
    snapshots: TailnetSnapshots,
    /// The checkout as last loaded, with the files' (path, modified, length) it was loaded
    /// from: a tool call re-validates the YAML only when a file changed.
    loaded: std::sync::Mutex<Option<(Vec<FileStamp>, Manifests)>>,
    simulated: bool,
    /// Keeps the embedded simulated tailnet running.
    _connection: Connection,
}

impl ManifestsSource {
    pub async fn open(
        path: &Path,
        proposals_dir: &Path,
        connection: &ConnectionArgs,
    ) -> Result<ManifestsSource, BackendError> {
        let path = path
            .canonicalize()
            .map_err(|e| BackendError::Invalid(format!("--manifests {}: {e}", path.display())))?;
        // Load once up front so a broken checkout fails at start, naming the file.
        file_mode::load(&path).map_err(|e| BackendError::Invalid(e.to_string()))?;
        let connection = connect(connection)
            .await
            .map_err(|e| BackendError::Invalid(e.to_string()))?;
        // An interactive tool: a call reads each area it needs once, and calls within
        // FRESHNESS of each other share those reads (an assistant fires several at once), so a
        // console edit is seen within that window and a burst of calls is never throttled by
        // the client's own rate limit.
        let snapshots = TailnetSnapshots::new(connection.client.clone(), FRESHNESS);
        let repo_root = repo_root(&path);
        Ok(ManifestsSource {
            simulated: connection.is_simulated(),
            proposals_dir: proposals_dir.to_owned(),
            path,
            repo_root,
            snapshots,
            loaded: std::sync::Mutex::new(None),
            _connection: connection,
        })
    }

    fn manifests(&self) -> Result<Manifests, BackendError> {
        let invalid = |e: file_mode::FileModeError| BackendError::Invalid(e.to_string());
        let stamps = stamps(&self.path).map_err(invalid)?;
        let mut cache = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let mut manifests = match cache.as_ref() {
            Some((seen, manifests)) if *seen == stamps => manifests.clone(),
            _ => {
                let manifests = file_mode::load(&self.path).map_err(invalid)?;
                *cache = Some((stamps, manifests.clone()));
                manifests
            }
        };
        drop(cache);
        if let Ok(tailnet) = manifests.tailnet(&self.path) {
            manifests.apply_tailnet_suspension(&tailnet);
        }
        Ok(manifests)
    }

    async fn world(&self, manifests: &Manifests) -> ProposalWorld {
        let (policy, devices, users) = tokio::join!(
            self.snapshots.policy(),
            self.snapshots.devices(),
            self.snapshots.users()
        );
        let view = match (devices, users) {
            (Ok(d), Ok(u)) => tailnet_view(&d.data, &u.data),
            _ => Default::default(),
        };
        let world = ProposalWorld {
            policies: manifests.of(),
            config_maps: manifests.config_maps.clone(),
            contributions: crate::file_mode::tailnet_policy::contributions(manifests),
            view,
            live_policy: policy.ok().map(|p| p.data.hujson.clone()),
            ..Default::default()
        };
        with_live_state(world, &self.snapshots).await
    }

    /// Validates the change (for an adoption, the adopt-drift patch) and writes the proposal
    /// file: a diff of the target's manifest, a new manifest file for a create, or the
    /// document's removal for a delete. Nothing is written when the preview fails.
    async fn propose(
        &self,
        mut request: ChangeRequest,
        adopt: bool,
    ) -> Result<ProposalCreated, BackendError> {
        let manifests = self.manifests()?;
        let mut key = request.key();
        let mut located = match locate(&self.path, &key) {
            Ok(located) => Some(located),
            Err(BackendError::NotFound(_)) if request.operation == ProposalOperation::Create => {
                None
            }
            Err(err) => return Err(err),
        };
        let world = self.world(&manifests).await;
        if let (true, Some(asked)) = (adopt, &located) {
            let adoption = proposal::adopt_drift_patch(&asked.object, &world)
                .map_err(|e| BackendError::Invalid(e.to_string()))?;
            // The edit may belong to another source (a Fragment's group): propose it there.
            if adoption.target != key.name {
                key.name = adoption.target.clone();
                request.name = adoption.target;
                located = Some(locate(&self.path, &key)?);
            }
            request.patch = Some(adoption.patch);
        }
        let spec = request.spec();
        let preview = proposal::preview_spec(&spec, located.as_ref().map(|l| &l.object), &world)
            .map_err(|e| BackendError::Invalid(e.to_string()))?;
        if !preview.is_valid() {
            return Err(BackendError::Invalid(format!(
                "the {} of {} fails validation, no proposal written: {}",
                spec.operation.as_str().to_lowercase(),
                key.label(),
                preview.problems()
            )));
        }
        let relative = |file: &Path| {
            file.strip_prefix(&self.repo_root)
                .unwrap_or(file)
                .to_string_lossy()
                .replace('\\', "/")
        };
        let invalid = |e: proposal::ProposalError| BackendError::Invalid(e.to_string());
        let diff = match (request.operation, &located) {
            (ProposalOperation::Patch, Some(l)) => {
                proposal::manifest_patch(&relative(&l.file), &l.text, l.index, &preview.patched)
                    .map_err(invalid)?
            }
            (ProposalOperation::Delete, Some(l)) => {
                proposal::manifest_removal(&relative(&l.file), &l.text, l.index).map_err(invalid)?
            }
            (ProposalOperation::Create, _) => {
                let file = self.new_manifest_path(&key);
                proposal::manifest_creation(&relative(&file), &preview.patched).map_err(invalid)?
            }
            // locate() answered NotFound for these.
            (_, None) => return Err(BackendError::NotFound(key.label())),
        };
        let name = format!(
            "{}-{}-{}",
            Utc::now().format("%Y%m%dT%H%M%S%3f"),
            key.kind.to_lowercase(),
            key.name
        );
        let mut view = created_view(key, request.operation, preview);
        let header = header(
            &request.summary,
            &view.target,
            request.operation,
            &view.validation,
            view.access_diff.as_deref(),
        );
        std::fs::create_dir_all(&self.proposals_dir).map_err(|e| {
            BackendError::unavailable(&format!("creating {}", self.proposals_dir.display()), e)
        })?;
        let file = self.proposals_dir.join(format!("{name}.patch"));
        std::fs::write(&file, format!("{header}{diff}"))
            .map_err(|e| BackendError::unavailable(&format!("writing {}", file.display()), e))?;
        view.next_step = format!(
            "review {file}, then from {root}: `git apply {file}`, check with \
             `tailnet-operator plan -f {manifests}`, and commit",
            file = file.display(),
            root = self.repo_root.display(),
            manifests = self.path.display()
        );
        view.name = name;
        view.file = Some(file.display().to_string());
        Ok(view)
    }

    /// Where a created resource's manifest goes: `<kind>-<name>.yaml` in the manifests
    /// directory (beside the file when `--manifests` names one).
    fn new_manifest_path(&self, key: &ResourceKey) -> PathBuf {
        let dir = if self.path.is_dir() {
            self.path.clone()
        } else {
            self.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        };
        dir.join(format!("{}-{}.yaml", key.kind.to_lowercase(), key.name))
    }
}

/// The nearest ancestor of `path` holding `.git` (a directory, or a file in a worktree);
/// `path` itself when there is none.
fn repo_root(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|dir| dir.join(".git").exists())
        .unwrap_or(path)
        .to_owned()
}

/// Where a resource's document is: file, text, index (as `serde_saphyr::from_multiple` counts
/// documents) and the document itself.
struct Located {
    file: PathBuf,
    text: String,
    index: usize,
    object: Value,
}

fn locate(root: &Path, key: &ResourceKey) -> Result<Located, BackendError> {
    for file in file_mode::yaml_files(root).map_err(|e| BackendError::Invalid(e.to_string()))? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| BackendError::unavailable(&file.display().to_string(), e))?;
        let Ok(docs) = serde_saphyr::from_multiple::<Value>(&text) else {
            continue;
        };
        for (index, object) in docs.into_iter().enumerate() {
            if kind_of(&object) == key.kind && name_of(&object) == key.name {
                return Ok(Located {
                    file,
                    text,
                    index,
                    object,
                });
            }
        }
    }
    Err(BackendError::NotFound(format!(
        "{}: no document with this kind and name under {}",
        key.label(),
        root.display()
    )))
}

fn header(
    summary: &str,
    target: &ResourceKey,
    operation: ProposalOperation,
    validation: &[ValidationView],
    access_diff: Option<&str>,
) -> String {
    let mut lines = vec![
        "# tailnet-operator change proposal (review, then `git apply` this file)".to_owned(),
        format!("# summary: {}", summary.replace('\n', " ")),
        format!("# target: {}", target.label()),
        format!("# operation: {}", operation.as_str()),
    ];
    for v in validation {
        lines.push(format!(
            "# check {}: {} {}",
            v.check,
            if v.ok { "ok" } else { "FAILED" },
            v.message.replace('\n', " ")
        ));
    }
    if let Some(access) = access_diff {
        lines.push("# access diff:".to_owned());
        lines.extend(access.lines().map(|l| format!("#   {l}")));
    }
    lines.push(String::new());
    lines.join("\n")
}

fn proposal_from_file(path: &Path) -> Option<ProposalInfo> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        text.lines()
            .take_while(|l| l.starts_with('#'))
            .find_map(|l| l.strip_prefix(&format!("# {name}: ")))
            .map(str::to_owned)
    };
    let target = field("target")?;
    let (kind, name) = target.split_once('/')?;
    Some(ProposalInfo {
        name: path.file_stem()?.to_string_lossy().into_owned(),
        namespace: None,
        target: ResourceKey {
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: None,
        },
        summary: field("summary").unwrap_or_default(),
        mode: "GitOps".to_owned(),
        approved: false,
        phase: None,
        diff: None,
        access_diff: None,
        message: None,
        file: Some(path.display().to_string()),
    })
}

impl Source for ManifestsSource {
    fn describe(&self) -> String {
        let live = if self.simulated {
            "the embedded simulated tailnet"
        } else {
            "the tailnet of the TS_* settings"
        };
        format!(
            "manifests at {} (no cluster), live state from {live}",
            self.path.display()
        )
    }

    fn resources(&self) -> BackendResult<'_, Vec<Value>> {
        Box::pin(async move {
            let manifests = self.manifests()?;
            let now = crate::resources::conditions::time_from(Utc::now());
            file_mode::with_status(&manifests, &self.snapshots, &now)
                .await
                .map_err(|e| BackendError::unavailable("planning the resources", e))
        })
    }

    fn declared(&self) -> BackendResult<'_, Vec<Value>> {
        Box::pin(async move {
            let manifests = self.manifests()?;
            Ok(manifests
                .documents
                .into_iter()
                .map(|document| document.value)
                .collect())
        })
    }

    fn snapshots(&self, _tailnet: String) -> BackendResult<'_, TailnetSnapshots> {
        // One checkout manages one tailnet (file mode's rule).
        Box::pin(async move { Ok(self.snapshots.clone()) })
    }

    fn policy_inputs(&self, tailnet: String) -> BackendResult<'_, Vec<PolicyInput>> {
        Box::pin(async move {
            let manifests = self.manifests()?;
            Ok(file_mode::tailnet_policy::inputs(&manifests)
                .into_iter()
                .filter(|r| r.spec.common.tailnet_ref == tailnet || tailnet.is_empty())
                .collect())
        })
    }

    fn proposals(&self) -> BackendResult<'_, ProposalList> {
        Box::pin(async move {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&self.proposals_dir)
                .map(|dir| {
                    dir.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            Ok(ProposalList {
                proposals: files.iter().filter_map(|f| proposal_from_file(f)).collect(),
            })
        })
    }

    fn propose_change(&self, request: ChangeRequest) -> BackendResult<'_, ProposalCreated> {
        Box::pin(self.propose(request, false))
    }

    fn adopt_drift(&self, request: AdoptDriftRequest) -> BackendResult<'_, ProposalCreated> {
        let request = ChangeRequest {
            operation: ProposalOperation::Patch,
            summary: format!(
                "Adopt the live tailnet's state into {} (keep the console edit)",
                request.kind.clone() + "/" + &request.name
            ),
            kind: request.kind,
            name: request.name,
            namespace: request.namespace,
            ..Default::default()
        };
        Box::pin(self.propose(request, true))
    }
}
