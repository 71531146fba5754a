//! File mode for `KeyRotationPolicy`.
//!
//! Without `--secrets-dir` it is a cluster-only kind: the credential has to live in a Secret and
//! a controller renews it. `plan` shows what the operator in a cluster would mint and when it
//! would renew it; `apply` mints nothing and says so. Neither counts it as a change or a
//! failure (like a ChangeProposal, it is for the cluster), so `plan` after `apply` still exits 0.
//!
//! With `--secrets-dir DIR` (VMs, CI): each policy's credential lives in
//! `DIR/<namespace>.<name>.json`, mode 0600, replaced by atomic rename: `{"keyId", "data",
//! "status"}` where `data` holds what the Secret would (`authkey`, or `client_id` and
//! `client_secret`) and `status` what the controller records. Each `apply` runs the
//! controller's planner on it: mint when due (the file written before anything is revoked),
//! revoke the previous credential after the grace period and this policy's orphans. A run that
//! stops after a mint and before the file write leaves an orphan the next run sweeps.
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{FileKind, FileReport, Manifests, StepResult};
use crate::reconcile::key_rotation::{
    KeyInput, Observed, after_mint, after_revoke, lifetimes, mint, plan, revoke,
};
use crate::resources::key_rotation_policy::{KeyRotationPolicyStatus, KeyType};
use crate::resources::{KeyRotationPolicy, ReconcileError};
use crate::snapshot::TailnetSnapshots;
use crate::tailscale::CreatedKey;

impl FileKind for KeyRotationPolicy {
    /// Its tags must be owned in the policy first.
    const AFTER: &'static [&'static str] = &["TailnetPolicy"];

    async fn plan(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        let mut report = FileReport::default();
        for policy in manifests.of::<KeyRotationPolicy>() {
            match &manifests.secrets_dir {
                Some(dir) => run_with_file(&policy, dir, snapshots, false, &mut report).await?,
                None => describe(&policy, &mut report),
            }
        }
        Ok(report)
    }

    async fn apply(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        let mut report = FileReport::default();
        for policy in manifests.of::<KeyRotationPolicy>() {
            match &manifests.secrets_dir {
                Some(dir) => run_with_file(&policy, dir, snapshots, true, &mut report).await?,
                None => {
                    let _ = writeln!(
                        report.output,
                        "{}: skipped: a KeyRotationPolicy needs a cluster (its credential lives \
                         in a Secret, and a controller renews it), or --secrets-dir DIR; \
                         nothing was minted",
                        label(&policy)
                    );
                }
            }
        }
        Ok(report)
    }
}

fn label(policy: &KeyRotationPolicy) -> String {
    format!(
        "KeyRotationPolicy/{}/{}",
        policy.metadata.namespace.as_deref().unwrap_or("default"),
        policy.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The credential file of one policy.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialFile {
    key_id: String,
    data: std::collections::BTreeMap<String, String>,
    status: KeyRotationPolicyStatus,
}

/// `DIR/<namespace>.<name>.json`.
fn file_of(dir: &Path, policy: &KeyRotationPolicy) -> PathBuf {
    dir.join(format!(
        "{}.{}.json",
        policy.metadata.namespace.as_deref().unwrap_or("default"),
        policy.metadata.name.as_deref().unwrap_or_default()
    ))
}

fn read_file(path: &Path) -> Result<Option<CredentialFile>, ReconcileError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ReconcileError::invalid(
                "--secrets-dir",
                format!(
                    "{} is not a credential file this command wrote ({e}); move it away",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReconcileError::internal(format!(
            "reading {}: {e}",
            path.display()
        ))),
    }
}

/// Writes `file` to `path` with mode 0600 through a temporary file and a rename, so a reader
/// sees the old credential or the new one, never half of one.
fn write_file(path: &Path, file: &CredentialFile) -> Result<(), ReconcileError> {
    let fail =
        |e: std::io::Error| ReconcileError::internal(format!("writing {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&tmp).map_err(fail)?;
    let text = serde_json::to_vec_pretty(file)
        .map_err(|e| ReconcileError::internal(format!("encoding the credential file: {e}")))?;
    out.write_all(&text).map_err(fail)?;
    out.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The controller's pass over a credential file: the file stands for both the Secret (its key
/// id and data) and the status.
async fn run_with_file(
    policy: &KeyRotationPolicy,
    dir: &Path,
    snapshots: &TailnetSnapshots,
    apply: bool,
    report: &mut FileReport,
) -> Result<(), ReconcileError> {
    let path = file_of(dir, policy);
    let mut file = read_file(&path)?.unwrap_or_default();
    let mut input =
        KeyInput::from_object(policy, &format!("file/{}", policy.spec.common.tailnet_ref));
    input.status = file.status.clone();
    let keys = snapshots.keys().await?;
    let now = chrono::Utc::now();
    let held = (!file.key_id.is_empty()).then_some(file.key_id.as_str());
    let planned = plan(
        &input,
        Observed {
            keys: &keys.data,
            secret_key_id: held,
            now,
        },
    );
    let name = label(policy);
    if let Some(blocked) = &planned.blocked {
        report.failed = true;
        let _ = writeln!(
            report.output,
            "{name}: error: {} {}",
            blocked.reason, blocked.message
        );
        return Ok(());
    }
    let revokes: Vec<&String> = planned.revoke.iter().map(|(id, _)| id).collect();
    if !apply {
        match planned.mint {
            Some(why) => {
                report.changes = true;
                let _ = writeln!(
                    report.output,
                    "{name}: would mint a new credential into {} ({})",
                    path.display(),
                    why.as_str()
                );
            }
            None => {
                let _ = writeln!(
                    report.output,
                    "{name}: credential {} is current",
                    file.key_id
                );
            }
        }
        if !revokes.is_empty() {
            report.changes = true;
            let _ = writeln!(report.output, "{name}: would revoke {revokes:?}");
        }
        return Ok(());
    }
    let lifetimes = lifetimes(&input.spec)?;
    let mut status = file.status.clone();
    if let Some(why) = planned.mint {
        if let Some(older) = status.previous_key_id.clone() {
            revoke(snapshots, &older).await?;
            status = after_revoke(&status, &older);
        }
        let created = mint(snapshots, &input).await?;
        status = after_mint(&status, &created.key, why, &input, now, &lifetimes);
        file = CredentialFile {
            key_id: created.key.id.clone(),
            data: data_of(policy, &created),
            status: status.clone(),
        };
        write_file(&path, &file)?;
        report.changes = true;
        let _ = writeln!(
            report.output,
            "{name}: wrote credential {} to {} ({})",
            created.key.id,
            path.display(),
            why.as_str()
        );
    }
    for id in revokes {
        if status.current_key_id.as_deref() == Some(id.as_str()) {
            continue;
        }
        revoke(snapshots, id).await?;
        status = after_revoke(&status, id);
        file.status = status.clone();
        write_file(&path, &file)?;
        report.changes = true;
        let _ = writeln!(report.output, "{name}: revoked credential {id}");
    }
    if planned.mint.is_none() && planned.revoke.is_empty() {
        let _ = writeln!(
            report.output,
            "{name}: credential {} in {} is current",
            file.key_id,
            path.display()
        );
    }
    Ok(())
}

/// What the Secret would hold.
fn data_of(
    policy: &KeyRotationPolicy,
    created: &CreatedKey,
) -> std::collections::BTreeMap<String, String> {
    let keys = &policy.spec.secret_keys;
    match policy.spec.key_type {
        KeyType::Auth => [(keys.auth_key.clone(), created.secret.expose().to_owned())].into(),
        KeyType::OauthClient => [
            (keys.client_id.clone(), created.key.id.clone()),
            (
                keys.client_secret.clone(),
                created.secret.expose().to_owned(),
            ),
        ]
        .into(),
    }
}

/// `in a cluster, the operator would mint an auth key (reusable, ...) with tags ..., living
/// 720h, renewed 240h before it expires, the previous one revoked 1h after, into Secret ...`.
fn describe(policy: &KeyRotationPolicy, report: &mut FileReport) {
    let spec = &policy.spec;
    let lifetimes = match lifetimes(spec) {
        Ok(l) => l,
        Err(err) => {
            report.failed = true;
            let _ = writeln!(report.output, "{}: error: {err}", label(policy));
            return;
        }
    };
    let hours = |d: std::time::Duration| format!("{}h", d.as_secs() / 3600);
    let what = match spec.key_type {
        KeyType::Auth => {
            let mut traits = Vec::new();
            for (on, name) in [
                (spec.reusable, "reusable"),
                (spec.ephemeral, "ephemeral"),
                (spec.preauthorized, "preauthorized"),
            ] {
                if on {
                    traits.push(name.to_owned());
                }
            }
            if !spec.reusable {
                traits.push("single-use".to_owned());
            }
            format!("an auth key ({})", traits.join(", "))
        }
        KeyType::OauthClient => format!("an OAuth client (scopes {})", spec.scopes.join(", ")),
    };
    let tags = if spec.tags.is_empty() {
        "no tags".to_owned()
    } else {
        format!("tags {}", spec.tags.join(", "))
    };
    let _ = writeln!(
        report.output,
        "{}: in a cluster, the operator would mint {what} with {tags}, living {}, renewed {} \
         before it expires, the previous one revoked {} after, into Secret {} (apply -f mints \
         nothing without --secrets-dir)",
        label(policy),
        hours(lifetimes.expiry),
        hours(lifetimes.rotate_before),
        hours(lifetimes.grace_period),
        policy.secret_name()
    );
}
