//! The KeyRotationPolicy planner (pure: no I/O, the clock passed in) and the status steps the
//! executor records after each write.
//!
//! One pass: [`plan`] decides, from the policy's status, the tailnet's live keys and the key
//! id the Secret holds, whether to **adopt** (the Secret holds a key status does not know: a
//! previous run wrote the Secret and died before recording it), **mint** (none yet, due,
//! `rotate-now`, the current one used or revoked, or the Secret lost), and which keys to
//! **revoke** (the previous one past its grace period; this policy's orphans: credentials it
//! minted that neither status nor the Secret claims, e.g. minted just before a crash, once
//! they are older than the grace period).
//!
//! Crash-safety follows from the order the executor keeps (mint → Secret → status → revoke)
//! and from every credential carrying this policy's [`marker`] in its description: whatever
//! step a run dies at, the next converges to one current credential held by the Secret and no
//! orphan (see `docs/key-rotation.md`).
mod execute;

pub use execute::{mint, revoke};

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::resources::conditions::{ConditionStatus, Verdict, reason};
use crate::resources::key_rotation_policy::{
    KeyRotationPolicy, KeyRotationPolicySpec, KeyRotationPolicyStatus, KeyType, Lifetimes,
    MAX_AUTH_KEY_EXPIRY, ROTATE_NOW_ANNOTATION,
};
use crate::resources::{ReconcileError, TailnetScoped};
use crate::tailscale::Key;

/// Ready reason when a single-use key was used and `recreateWhenUsed` is off.
pub const USED: &str = "Used";
/// The description prefix of every credential a KeyRotationPolicy mints.
pub const MARKER_PREFIX: &str = "tnop";

/// One KeyRotationPolicy as the planner needs it.
#[derive(Debug, Clone)]
pub struct KeyInput {
    /// `namespace/name`.
    pub key: String,
    pub generation: Option<i64>,
    pub spec: KeyRotationPolicySpec,
    pub status: KeyRotationPolicyStatus,
    /// The `rotate-now` annotation's value.
    pub rotate_now: Option<String>,
    pub secret_name: String,
    /// This policy's credentials' description prefix ([`marker`]).
    pub marker: String,
}

impl KeyInput {
    /// `scope` tells installations apart in the marker (the operator's namespace and the
    /// tailnet), so one operator never sweeps another's credentials.
    pub fn from_object(obj: &KeyRotationPolicy, scope: &str) -> KeyInput {
        let key = format!(
            "{}/{}",
            obj.metadata.namespace.as_deref().unwrap_or("default"),
            obj.metadata.name.as_deref().unwrap_or_default()
        );
        KeyInput {
            marker: marker(scope, &key),
            key,
            generation: obj.metadata.generation,
            spec: obj.spec.clone(),
            status: obj.current_status(),
            rotate_now: obj
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ROTATE_NOW_ANNOTATION))
                .cloned(),
            secret_name: obj.secret_name(),
        }
    }
}

/// `tnop <12 hex>`: the description prefix of `policy`'s credentials (letters, digits and
/// spaces, as the API requires), unique per installation scope and policy.
pub fn marker(scope: &str, policy: &str) -> String {
    let digest = Sha256::digest(format!("{scope}/{policy}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{MARKER_PREFIX} {hex}")
}

/// The description of a new credential: the marker and as much of the policy's name as fits
/// in 50 characters of letters, digits, spaces and hyphens.
pub fn description(marker: &str, policy: &str) -> String {
    let readable: String = policy
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut text = format!("{marker} {readable}");
    text.truncate(50);
    text.trim_end().to_owned()
}

/// Why a new credential is minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintReason {
    /// The policy has none yet.
    Initial,
    /// The current one is within `rotateBefore` of its expiry.
    Due,
    /// A new `rotate-now` annotation value.
    RotateNow,
    /// The current one is gone from the tailnet: used (single-use), revoked or expired.
    Invalid,
    /// The Secret does not hold the current one (deleted or overwritten); the key material
    /// cannot be read back, so a new one replaces it.
    SecretLost,
}

impl MintReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MintReason::Initial => "Initial",
            MintReason::Due => "Due",
            MintReason::RotateNow => "RotateNow",
            MintReason::Invalid => "Invalid",
            MintReason::SecretLost => "SecretLost",
        }
    }
}

/// Why a credential is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// The previous credential's grace period is over.
    GraceOver,
    /// Minted by this policy, claimed by neither status nor the Secret.
    Orphan,
}

/// What one pass does.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPlan {
    /// A key the Secret holds that status does not know: recorded as current first.
    pub adopt: Option<String>,
    pub mint: Option<MintReason>,
    /// In order: revoked after the mint (if any).
    pub revoke: Vec<(String, RevokeReason)>,
    /// Ready when nothing is done or done steps succeed; set when the plan itself blocks.
    pub blocked: Option<Verdict>,
}

/// What the live tailnet and the Secret say.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The tailnet's valid keys (`GET /keys?all=true` lists no revoked or expired key).
    pub keys: &'a [Key],
    /// The key id on the Secret (`tailnet.ops.dev/key-id`), when the Secret exists.
    pub secret_key_id: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// The policy's lifetimes, checked against the API's limit for auth keys.
pub fn lifetimes(spec: &KeyRotationPolicySpec) -> Result<Lifetimes, ReconcileError> {
    let lifetimes = spec
        .lifetimes()
        .map_err(|e| ReconcileError::invalid("spec.expiry", e.to_string()))?;
    if spec.key_type == KeyType::Auth && lifetimes.expiry > MAX_AUTH_KEY_EXPIRY {
        return Err(ReconcileError::invalid(
            "spec.expiry",
            "an auth key lives at most 2160h (90 days); lower spec.expiry",
        ));
    }
    if lifetimes.rotate_before >= lifetimes.expiry {
        return Err(ReconcileError::invalid(
            "spec.rotateBefore",
            "rotateBefore must be shorter than expiry, or every pass would rotate",
        ));
    }
    Ok(lifetimes)
}

/// Decides one pass for `input`. Suspended policies are planned by the caller not executing.
pub fn plan(input: &KeyInput, observed: Observed<'_>) -> KeyPlan {
    let mut plan = KeyPlan {
        adopt: None,
        mint: None,
        revoke: Vec::new(),
        blocked: None,
    };
    let lifetimes = match lifetimes(&input.spec) {
        Ok(l) => l,
        Err(err) => {
            plan.blocked = Some(Verdict::new(
                ConditionStatus::False,
                reason::INVALID,
                err.to_string(),
            ));
            return plan;
        }
    };
    let live = |id: &str| observed.keys.iter().find(|k| k.id == id && !k.invalid);
    let mut status = input.status.clone();
    // The Secret holds a key of ours that status does not record: a run died between the
    // Secret write and the status write.
    if let Some(held) = observed.secret_key_id
        && status.current_key_id.as_deref() != Some(held)
        && live(held).is_some_and(|k| k.description.starts_with(&input.marker))
    {
        plan.adopt = Some(held.to_owned());
        status = after_new_current(&status, held, live(held), observed.now, &lifetimes);
    }
    let current = status.current_key_id.as_deref().and_then(live);
    plan.mint = match (status.current_key_id.as_deref(), current) {
        (None, _) => Some(MintReason::Initial),
        (Some(_), None) => {
            let single_use = input.spec.key_type == KeyType::Auth && !input.spec.reusable;
            if single_use && !input.spec.recreate_when_used {
                plan.blocked = Some(Verdict::new(
                    ConditionStatus::False,
                    USED,
                    format!(
                        "the single-use key {} was used (or revoked); set spec.recreateWhenUsed \
                         to replace used keys, or annotate {ROTATE_NOW_ANNOTATION} to mint a \
                         new one now",
                        status.current_key_id.as_deref().unwrap_or_default()
                    ),
                ));
                None
            } else {
                Some(MintReason::Invalid)
            }
        }
        (Some(id), Some(key)) => {
            if new_rotate_now(input, &status) {
                Some(MintReason::RotateNow)
            } else if observed.secret_key_id != Some(id) {
                Some(MintReason::SecretLost)
            } else if next_rotation(key, &lifetimes).is_some_and(|at| at <= observed.now) {
                Some(MintReason::Due)
            } else {
                None
            }
        }
    };
    // A used single-use key with a new rotate-now: mint anyway (asked for explicitly).
    if plan.mint.is_none() && plan.blocked.is_some() && new_rotate_now(input, &status) {
        plan.blocked = None;
        plan.mint = Some(MintReason::RotateNow);
    }
    if let (Some(previous), Some(at)) = (&status.previous_key_id, &status.previous_revoke_at)
        && parse_time(at).is_none_or(|at| at <= observed.now)
    {
        plan.revoke
            .push((previous.clone(), RevokeReason::GraceOver));
    }
    let claimed = [
        status.current_key_id.as_deref(),
        status.previous_key_id.as_deref(),
        observed.secret_key_id,
    ];
    let grace = chrono::Duration::from_std(lifetimes.grace_period).unwrap_or_default();
    for key in observed.keys {
        let ours = key.description.starts_with(&input.marker) && !key.invalid;
        let old_enough = key.created.is_none_or(|c| c + grace <= observed.now);
        if ours && old_enough && !claimed.contains(&Some(key.id.as_str())) {
            plan.revoke.push((key.id.clone(), RevokeReason::Orphan));
        }
    }
    plan
}

fn new_rotate_now(input: &KeyInput, status: &KeyRotationPolicyStatus) -> bool {
    input
        .rotate_now
        .as_ref()
        .is_some_and(|v| status.rotated_for.as_ref() != Some(v))
}

/// When `key` is renewed: its expiry less `rotateBefore` (an OAuth client, which has no
/// expiry, is renewed `expiry - rotateBefore` after its creation).
pub fn next_rotation(key: &Key, lifetimes: &Lifetimes) -> Option<DateTime<Utc>> {
    let before = chrono::Duration::from_std(lifetimes.rotate_before).ok()?;
    let expires = match key.expires {
        Some(at) => at,
        None => key.created? + chrono::Duration::from_std(lifetimes.expiry).ok()?,
    };
    Some(expires - before)
}

/// RFC 3339 at second precision, as status shows times.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Status after `key` became current: the old current becomes the previous one, revoked after
/// the grace period (an older previous, still pending, is for the caller to revoke now).
pub fn after_new_current(
    status: &KeyRotationPolicyStatus,
    key_id: &str,
    key: Option<&Key>,
    now: DateTime<Utc>,
    lifetimes: &Lifetimes,
) -> KeyRotationPolicyStatus {
    let mut next = status.clone();
    if let Some(old) = status
        .current_key_id
        .as_ref()
        .filter(|old| old.as_str() != key_id)
    {
        next.previous_key_id = Some(old.clone());
        let grace = chrono::Duration::from_std(lifetimes.grace_period).unwrap_or_default();
        next.previous_revoke_at = Some(format_time(now + grace));
    }
    next.current_key_id = Some(key_id.to_owned());
    next.created = key.and_then(|k| k.created).map(format_time);
    next.expires = key.and_then(|k| k.expires).map(format_time);
    next.next_rotation = key
        .and_then(|k| next_rotation(k, lifetimes))
        .map(format_time);
    next
}

/// Status after a credential minted for `why` became current; a `rotate-now` mint records the
/// annotation value it acted on.
pub fn after_mint(
    status: &KeyRotationPolicyStatus,
    minted: &Key,
    why: MintReason,
    input: &KeyInput,
    now: DateTime<Utc>,
    lifetimes: &Lifetimes,
) -> KeyRotationPolicyStatus {
    let mut next = after_new_current(status, &minted.id, Some(minted), now, lifetimes);
    if why == MintReason::RotateNow {
        next.rotated_for = input.rotate_now.clone();
    }
    next
}

/// Status after `key_id` was revoked.
pub fn after_revoke(status: &KeyRotationPolicyStatus, key_id: &str) -> KeyRotationPolicyStatus {
    let mut next = status.clone();
    if next.previous_key_id.as_deref() == Some(key_id) {
        next.previous_key_id = None;
        next.previous_revoke_at = None;
    }
    next
}

/// When the next pass is due: the next rotation or revocation, at most `resync` away.
pub fn next_wake(
    status: &KeyRotationPolicyStatus,
    now: DateTime<Utc>,
    resync: Duration,
) -> Duration {
    [
        status.next_rotation.as_deref(),
        status.previous_revoke_at.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(parse_time)
    .map(|at| (at - now).to_std().unwrap_or(Duration::from_secs(1)))
    .fold(resync, Duration::min)
    .max(Duration::from_secs(1))
}

/// `Ready=True` when the Secret holds a valid current credential: the text says which and
/// when it is renewed (the same in every steady pass).
pub fn ready_verdict(status: &KeyRotationPolicyStatus, secret: &str) -> Verdict {
    let id = status.current_key_id.as_deref().unwrap_or_default();
    let renew = status
        .next_rotation
        .as_deref()
        .map_or(String::new(), |at| format!("; renewed at {at}"));
    Verdict::new(
        ConditionStatus::True,
        reason::RECONCILED,
        format!("Secret {secret} holds credential {id}{renew}"),
    )
}

#[cfg(test)]
mod tests;
