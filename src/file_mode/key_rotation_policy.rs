//! File mode for `KeyRotationPolicy`, a cluster-only kind: the credential has to live in a
//! Secret, and renewing it needs a controller that keeps running. `plan` shows what the
//! operator in a cluster would mint and when it would renew it; `apply` mints nothing and says
//! so. Neither counts it as a change or a failure (like a ChangeProposal, it is for the
//! cluster), so `plan` after `apply` still exits 0.
use std::fmt::Write as _;

use super::{FileKind, FileReport, Manifests, StepResult};
use crate::reconcile::key_rotation::lifetimes;
use crate::resources::KeyRotationPolicy;
use crate::resources::key_rotation_policy::KeyType;

impl FileKind for KeyRotationPolicy {
    /// Its tags must be owned in the policy first.
    const AFTER: &'static [&'static str] = &["TailnetPolicy"];

    async fn plan(
        manifests: &Manifests,
        _snapshots: &crate::snapshot::TailnetSnapshots,
    ) -> StepResult {
        let mut report = FileReport::default();
        for policy in manifests.of::<KeyRotationPolicy>() {
            describe(&policy, &mut report);
        }
        Ok(report)
    }

    async fn apply(
        manifests: &Manifests,
        _snapshots: &crate::snapshot::TailnetSnapshots,
    ) -> StepResult {
        let mut report = FileReport::default();
        for policy in manifests.of::<KeyRotationPolicy>() {
            let _ = writeln!(
                report.output,
                "{}: skipped: a KeyRotationPolicy needs a cluster (its credential lives in a \
                 Secret, and a controller renews it); nothing was minted",
                label(&policy)
            );
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

/// `would mint an auth key (reusable, tags ...) living 720h, renewed 240h before expiry,
/// previous revoked 1h after; Secret ns/name key authkey`.
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
         nothing)",
        label(policy),
        hours(lifetimes.expiry),
        hours(lifetimes.rotate_before),
        hours(lifetimes.grace_period),
        policy.secret_name()
    );
}
