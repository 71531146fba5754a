//! File mode for `FunnelExposure`: a cluster-only kind (the proxy is a Deployment beside the
//! Service it exposes). `plan` shows, against the live tailnet, where the window is, which
//! prerequisites hold, the policy line the exposure would contribute, the key it would mint
//! and the objects it would run; `apply` exposes nothing and says so. Like a KeyRotationPolicy
//! without `--secrets-dir`, it counts as neither a change nor a failure.
use std::fmt::Write as _;

use super::{FileKind, FileReport, Manifests, StepResult};
use crate::policy::hujson;
use crate::reconcile::funnel::{KEY_EXPIRY, Tailnet, WindowState, names, node_attr, prerequisites};
use crate::reconcile::tailscale_service::contribution_lines;
use crate::resources::{FunnelExposure, ReconcileError};
use crate::snapshot::TailnetSnapshots;

impl FileKind for FunnelExposure {
    /// Its proxy tags must be owned in the policy first.
    const AFTER: &'static [&'static str] = &["TailnetPolicy"];

    async fn plan(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        let mut report = FileReport::default();
        let settings = snapshots.settings().await?;
        let dns = snapshots.dns().await?;
        let policy = snapshots.policy().await?;
        let policy = hujson::parse_strict(&policy.data.hujson).map_err(|e| {
            ReconcileError::internal(format!("the live policy does not parse: {e}"))
        })?;
        let now = chrono::Utc::now();
        for exposure in manifests.of::<FunnelExposure>() {
            let tailnet = Tailnet {
                settings: &settings.data,
                dns: &dns.data.preferences,
                policy: &policy,
                connection: None,
            };
            describe(&exposure, &tailnet, now, &mut report)?;
        }
        Ok(report)
    }

    async fn apply(manifests: &Manifests, _snapshots: &TailnetSnapshots) -> StepResult {
        let mut report = FileReport::default();
        for exposure in manifests.of::<FunnelExposure>() {
            let _ = writeln!(
                report.output,
                "{}: skipped: a FunnelExposure needs a cluster (its proxy is a Deployment \
                 beside Service {}, and a controller ends the exposure on time); nothing was \
                 exposed",
                label(&exposure),
                exposure.spec.service.name
            );
        }
        Ok(report)
    }
}

fn label(exposure: &FunnelExposure) -> String {
    format!("FunnelExposure/{}", exposure.owner_key())
}

/// What the operator in a cluster would do with `exposure` now.
fn describe(
    exposure: &FunnelExposure,
    tailnet: &Tailnet<'_>,
    now: chrono::DateTime<chrono::Utc>,
    report: &mut FileReport,
) -> Result<(), ReconcileError> {
    let window = exposure
        .window()
        .map_err(|(field, message)| ReconcileError::invalid(field, message))?;
    let out = &mut report.output;
    let _ = writeln!(
        out,
        "{} (cluster only; apply skips it): expose Service {} port {} publicly as {} on port {}",
        label(exposure),
        exposure.spec.service.name,
        exposure.spec.service.port,
        exposure.spec.hostname,
        exposure.spec.public_port
    );
    let when = match WindowState::at(window, now) {
        WindowState::Before(start) => format!("scheduled: nothing is deployed before {start}"),
        WindowState::Open(Some(end)) => format!("in its window until {end}"),
        WindowState::Open(None) => "in its window, with no end (set expiresAt)".to_owned(),
        WindowState::Ended(end) => format!("expired at {end}: nothing would be deployed"),
    };
    let _ = writeln!(out, "  window: {when}");
    for prerequisite in prerequisites(exposure, tailnet) {
        let mark = if prerequisite.met { "ok" } else { "MISSING" };
        let _ = writeln!(
            out,
            "  {mark} {}: {}",
            prerequisite.name, prerequisite.message
        );
    }
    for line in contribution_lines(&[node_attr(exposure)]) {
        let _ = writeln!(out, "  policy: {line}");
    }
    let n = names(exposure);
    let _ = writeln!(
        out,
        "  key: single-use, pre-authorized, tags {}, expires in {KEY_EXPIRY}, in Secret {}",
        exposure.proxy_tags().join(","),
        n.auth_secret
    );
    let _ = writeln!(
        out,
        "  proxy: Deployment/ServiceAccount/Role/RoleBinding {}, ConfigMap {}, state Secret {}",
        n.proxy, n.serve_config, n.state_secret
    );
    Ok(())
}
