//! The rotation planner without a runtime, including each crash point's next pass.
use chrono::TimeZone;
use serde_json::json;

use super::*;

const HOUR: i64 = 3600;

fn t(hours: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + hours * HOUR, 0).unwrap()
}

fn input(spec: serde_json::Value) -> KeyInput {
    let obj: KeyRotationPolicy = serde_json::from_value(json!({
        "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "KeyRotationPolicy",
        "metadata": {"name": "ci", "namespace": "build"},
        "spec": spec,
    }))
    .unwrap();
    KeyInput::from_object(&obj, "ops/default")
}

/// A reusable auth key policy living 30 days, renewed 10 days before, 1h grace.
fn reusable() -> KeyInput {
    input(json!({"reusable": true, "tags": ["tag:ci"], "expiry": "720h", "rotateBefore": "240h"}))
}

fn key(input: &KeyInput, id: &str, created: i64) -> Key {
    Key {
        id: id.into(),
        key_type: "auth".into(),
        description: description(&input.marker, &input.key),
        created: Some(t(created)),
        expires: Some(t(created + 720)),
        ..Key::default()
    }
}

fn lifetimes_of(input: &KeyInput) -> Lifetimes {
    lifetimes(&input.spec).unwrap()
}

/// `input` whose status records `current` (created at `at`) as current.
fn holding(mut input: KeyInput, current: &Key) -> KeyInput {
    let l = lifetimes_of(&input);
    input.status = after_new_current(&input.status, &current.id, Some(current), t(0), &l);
    input
}

fn observe<'a>(keys: &'a [Key], secret: Option<&'a str>, now: i64) -> Observed<'a> {
    Observed {
        keys,
        secret_key_id: secret,
        now: t(now),
    }
}

#[test]
fn the_marker_is_short_valid_and_unique_per_policy_and_installation() {
    let a = marker("ops/default", "build/ci");
    assert!(a.starts_with("tnop ") && a.len() == 17, "{a}");
    assert_ne!(a, marker("ops/default", "build/cd"));
    assert_ne!(a, marker("other/default", "build/ci"));
    let text = description(&a, "build/a.very.long-name-that-goes-on-and-on-and-on");
    assert!(text.len() <= 50, "{text}");
    assert!(
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
    );
    assert!(text.starts_with(&a));
}

#[test]
fn a_new_policy_mints_and_a_fresh_key_held_by_the_secret_is_left_alone() {
    let policy = reusable();
    assert_eq!(
        plan(&policy, observe(&[], None, 0)).mint,
        Some(MintReason::Initial)
    );
    let current = key(&policy, "k1", 0);
    let policy = holding(policy, &current);
    let keys = [current];
    let steady = plan(&policy, observe(&keys, Some("k1"), 100));
    assert_eq!(steady.mint, None);
    assert!(steady.revoke.is_empty() && steady.adopt.is_none());
    assert_eq!(
        policy.status.next_rotation.as_deref(),
        Some(format_time(t(480)).as_str()),
        "renewed rotateBefore (240h) before its expiry (720h)"
    );
}

#[test]
fn renewal_is_due_at_rotate_before_and_rotate_now_rotates_once_per_value() {
    let current = key(&reusable(), "k1", 0);
    let mut policy = holding(reusable(), &current);
    let keys = [current];
    assert_eq!(plan(&policy, observe(&keys, Some("k1"), 479)).mint, None);
    assert_eq!(
        plan(&policy, observe(&keys, Some("k1"), 480)).mint,
        Some(MintReason::Due)
    );
    policy.rotate_now = Some("incident-42".into());
    assert_eq!(
        plan(&policy, observe(&keys, Some("k1"), 1)).mint,
        Some(MintReason::RotateNow)
    );
    policy.status.rotated_for = Some("incident-42".into());
    assert_eq!(plan(&policy, observe(&keys, Some("k1"), 1)).mint, None);
}

#[test]
fn a_lost_secret_or_a_used_key_is_replaced_or_reported() {
    let current = key(&reusable(), "k1", 0);
    let policy = holding(reusable(), &current);
    let keys = [current.clone()];
    assert_eq!(
        plan(&policy, observe(&keys, None, 1)).mint,
        Some(MintReason::SecretLost)
    );
    // Reusable and revoked in the console: replaced.
    assert_eq!(
        plan(&policy, observe(&[], Some("k1"), 1)).mint,
        Some(MintReason::Invalid)
    );
    // Single use and used: reported, unless recreateWhenUsed.
    let single = holding(input(json!({"tags": ["tag:ci"]})), &current);
    let used = plan(&single, observe(&[], Some("k1"), 1));
    assert_eq!(used.mint, None);
    assert_eq!(used.blocked.unwrap().reason, USED);
    let recreate = holding(
        input(json!({"tags": ["tag:ci"], "recreateWhenUsed": true})),
        &current,
    );
    assert_eq!(
        plan(&recreate, observe(&[], Some("k1"), 1)).mint,
        Some(MintReason::Invalid)
    );
}

#[test]
fn the_previous_key_is_revoked_when_its_grace_period_is_over() {
    let policy = reusable();
    let (k1, k2) = (key(&policy, "k1", 0), key(&policy, "k2", 480));
    let mut policy = holding(policy, &k1);
    let l = lifetimes_of(&policy);
    policy.status = after_new_current(&policy.status, "k2", Some(&k2), t(480), &l);
    assert_eq!(policy.status.previous_key_id.as_deref(), Some("k1"));
    let keys = [k1, k2];
    let within = plan(&policy, observe(&keys, Some("k2"), 480));
    assert!(within.revoke.is_empty(), "{within:?}");
    let after = plan(&policy, observe(&keys, Some("k2"), 481));
    assert_eq!(after.revoke, [("k1".to_owned(), RevokeReason::GraceOver)]);
    assert_eq!(after_revoke(&policy.status, "k1").previous_key_id, None);
}

/// Crash after the mint, before the Secret write: the new key is an orphan (status and Secret
/// still name k1); it is revoked once older than the grace period, and nothing else changes.
#[test]
fn crash_after_mint_leaves_an_orphan_that_is_swept_after_the_grace_period() {
    let policy = reusable();
    let (k1, orphan) = (key(&policy, "k1", 0), key(&policy, "k2", 480));
    let policy = holding(policy, &k1);
    let keys = [k1, orphan];
    // The next pass (still due) mints again; the orphan is too young to sweep.
    let next = plan(&policy, observe(&keys, Some("k1"), 480));
    assert_eq!(next.mint, Some(MintReason::Due));
    assert!(next.revoke.is_empty());
    let later = plan(&policy, observe(&keys, Some("k1"), 482));
    assert!(
        later
            .revoke
            .contains(&("k2".to_owned(), RevokeReason::Orphan))
    );
    // Another policy's (or installation's) credentials are never swept.
    let other = Key {
        description: description(&marker("ops/default", "build/cd"), "build/cd"),
        ..key(&policy, "k9", 0)
    };
    let keys = [key(&policy, "k1", 0), other];
    assert!(
        plan(&policy, observe(&keys, Some("k1"), 100))
            .revoke
            .is_empty()
    );
}

/// Crash after the Secret write, before the status write: the Secret holds k2, status still
/// k1. The next pass adopts k2 (k1 becomes previous, revoked after the grace period) and mints
/// nothing.
#[test]
fn crash_after_the_secret_write_is_adopted_without_a_second_mint() {
    let policy = reusable();
    let (k1, k2) = (key(&policy, "k1", 0), key(&policy, "k2", 480));
    let policy = holding(policy, &k1);
    let keys = [k1, k2];
    let next = plan(&policy, observe(&keys, Some("k2"), 480));
    assert_eq!(next.adopt.as_deref(), Some("k2"));
    assert_eq!(next.mint, None, "{next:?}");
    assert!(next.revoke.is_empty(), "k1 keeps its grace period");
    // A Secret holding a key that is not this policy's is not adopted: replaced.
    let foreign = Key {
        description: "hand made".into(),
        ..key(&policy, "k7", 1)
    };
    let keys = [key(&policy, "k1", 0), foreign];
    let next = plan(&policy, observe(&keys, Some("k7"), 2));
    assert_eq!(next.adopt, None);
    assert_eq!(next.mint, Some(MintReason::SecretLost));
}

/// Crash during the revocation: status still names the previous key; the next pass revokes
/// it again (a 404 is success).
#[test]
fn crash_during_revocation_revokes_again() {
    let policy = reusable();
    let (k1, k2) = (key(&policy, "k1", 0), key(&policy, "k2", 480));
    let mut policy = holding(policy, &k1);
    let l = lifetimes_of(&policy);
    policy.status = after_new_current(&policy.status, "k2", Some(&k2), t(480), &l);
    // k1 already gone from the tailnet (revoked before the crash): still revoked (404 = ok).
    let keys = [k2];
    let next = plan(&policy, observe(&keys, Some("k2"), 482));
    assert_eq!(next.revoke, [("k1".to_owned(), RevokeReason::GraceOver)]);
    assert_eq!(next.mint, None);
}

#[test]
fn bad_lifetimes_block_before_anything_is_minted() {
    let policy = input(json!({"expiry": "3000h"}));
    let planned = plan(&policy, observe(&[], None, 0));
    assert_eq!(planned.mint, None);
    let blocked = planned.blocked.unwrap();
    assert_eq!(blocked.reason, reason::INVALID);
    assert!(blocked.message.contains("spec.expiry"), "{blocked:?}");
    let policy = input(json!({"expiry": "24h", "rotateBefore": "24h"}));
    assert!(plan(&policy, observe(&[], None, 0)).blocked.is_some());
}

#[test]
fn the_next_wake_is_the_next_rotation_or_revocation_within_the_resync() {
    let current = key(&reusable(), "k1", 0);
    let policy = holding(reusable(), &current);
    let resync = Duration::from_secs(300);
    assert_eq!(next_wake(&policy.status, t(0), resync), resync);
    assert_eq!(
        next_wake(
            &policy.status,
            t(480) - chrono::Duration::seconds(10),
            resync
        ),
        Duration::from_secs(10)
    );
}
