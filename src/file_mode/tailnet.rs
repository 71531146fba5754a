//! File mode for `ManagedTailnet`: file mode connects with the TS_* settings (the Secret
//! references are the controller's), and applies `spec.settings` with the controller's planner
//! ([`crate::reconcile::tailnet_settings`]). Without a record of what was applied, a managed
//! field that differs from the live settings is a change, never drift.
use std::fmt::Write as _;

use super::{FileKind, FileReport, Manifests, StepResult};
use crate::reconcile::tailnet_settings::{plan, scopes_of};
use crate::resources::{ManagedTailnet, ReconcileError};
use crate::snapshot::{Area, TailnetSnapshots};

impl FileKind for ManagedTailnet {
    async fn plan(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        settings(manifests, snapshots, false).await
    }

    async fn apply(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        settings(manifests, snapshots, true).await
    }
}

async fn settings(manifests: &Manifests, snapshots: &TailnetSnapshots, apply: bool) -> StepResult {
    let mut report = FileReport::default();
    for tailnet in manifests.of::<ManagedTailnet>() {
        let Some(spec) = &tailnet.spec.settings else {
            continue;
        };
        let name = format!(
            "ManagedTailnet/{}",
            tailnet.metadata.name.as_deref().unwrap_or_default()
        );
        let live = snapshots.settings().await?;
        let planned = plan(spec, None, &live.data, tailnet.spec.suspend);
        let Some((patch, _)) = planned.patch else {
            let note = if tailnet.spec.suspend {
                "suspended: settings not written"
            } else {
                "settings: no changes"
            };
            let _ = writeln!(report.output, "{name}: {note}");
            continue;
        };
        let fields = serde_json::to_string(&patch).unwrap_or_default();
        report.changes = true;
        if !apply {
            let _ = writeln!(report.output, "{name}: would PATCH the settings {fields}");
            continue;
        }
        let written = snapshots.client().update_settings(&patch).await;
        snapshots.record_write(Area::Settings);
        if let Err(err) = written {
            return Err(ReconcileError::invalid(
                "spec.settings",
                format!(
                    "{name}: Tailscale refused the settings PATCH ({err}); the credential needs \
                     a scope for each field: {}",
                    scopes_of(&patch)
                ),
            ));
        }
        let _ = writeln!(report.output, "{name}: patched the settings {fields}");
    }
    Ok(report)
}
