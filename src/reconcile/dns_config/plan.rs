//! The pure DNSConfig planner: no I/O, no clock. Given one DNSConfig, the other DNSConfigs of
//! its tailnet and the live DNS snapshot, it decides the one write to make (or none) and what
//! the resource's status says.
//!
//! How the API's pitfalls are avoided by construction:
//! - **The combined endpoint replaces everything and an omitted boolean means `false`.** The
//!   write is always a *whole* configuration: the managed parts from the spec, every other part
//!   copied from the live snapshot, and both booleans always present. A spec that leaves
//!   `magicDNS` out therefore never turns MagicDNS off.
//! - **MagicDNS and empty nameservers.** Only the per-part endpoints tie the two together
//!   (enabling MagicDNS needs a nameserver; removing the last one disables MagicDNS). Nothing
//!   here uses them: nameservers and MagicDNS go out in the same write, so `magicDNS: true` with
//!   `nameservers: []` is one write and stays that way, and no ordering between calls exists.
use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::resources::DriftDiff;
use crate::resources::ReconcileError;
use crate::resources::conditions::Verdict;
use crate::resources::conditions::{ConditionStatus, reason};
use crate::resources::dns_config::{
    DNSConfig, DNSConfigSpec, DnsConflict, DnsSettings, MAX_NAMESERVERS, Nameserver,
};
use crate::resources::drift::{DiffOptions, diff_with};
use crate::tailscale::{DnsConfiguration, DnsPreferences, DnsResolver};

/// Drift entries listed in status.
pub const DRIFT_ENTRIES: usize = 20;

/// One `DNSConfig` as the planner needs it.
#[derive(Debug, Clone, Default)]
pub struct DnsInput {
    pub name: String,
    pub generation: Option<i64>,
    /// When it was created: the oldest DNSConfig of a tailnet manages its DNS. `None` (file
    /// mode) sorts first; names break ties.
    pub created: Option<DateTime<Utc>>,
    pub spec: DNSConfigSpec,
    /// `status.applied`: what it last applied (`None` in file mode and before the first sync).
    pub applied: Option<DnsSettings>,
}

impl DnsInput {
    pub fn from_object(obj: &DNSConfig) -> DnsInput {
        DnsInput {
            name: obj.metadata.name.clone().unwrap_or_default(),
            generation: obj.metadata.generation,
            created: obj
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0)),
            spec: obj.spec.clone(),
            applied: obj.status.clone().and_then(|s| s.normalized().applied),
        }
    }

    /// The order in which DNSConfigs of one tailnet claim it: oldest first, then by name.
    fn claim_key(&self) -> (Option<DateTime<Utc>>, &str) {
        (self.created, &self.name)
    }
}

/// The DNSConfig that manages a tailnet's DNS among `candidates` (all of one tailnet, none
/// being deleted): the oldest, by name when equally old. Deterministic, and stable: a DNSConfig
/// created later never takes over from an existing one.
pub fn winner(candidates: &[DnsInput]) -> Option<&DnsInput> {
    candidates
        .iter()
        .min_by(|a, b| a.claim_key().cmp(&b.claim_key()))
}

/// Why the tailnet's DNS is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteReason {
    /// Nothing applied by this resource before.
    Initial,
    /// The spec asks for something other than what was applied.
    SpecChanged,
    /// The live DNS was changed elsewhere; `driftPolicy: Correct` puts it back.
    DriftCorrection,
}

impl WriteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteReason::Initial => "Initial",
            WriteReason::SpecChanged => "SpecChanged",
            WriteReason::DriftCorrection => "DriftCorrection",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DnsAction {
    /// The tailnet holds the managed parts, or nothing may be written (conflict, invalid spec,
    /// suspend, drift reported only).
    NoChange,
    /// Post this whole configuration to `/dns/configuration`.
    Write {
        configuration: DnsConfiguration,
        reason: WriteReason,
    },
}

/// What the resource's status should say. Time-free; the controller adds the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsOutcome {
    pub generation: Option<i64>,
    pub ready: Verdict,
    pub synced: Verdict,
    pub drifted: Verdict,
    pub drift: Option<DriftDiff>,
    pub conflict: Option<DnsConflict>,
    /// `status.applied` after this pass (`None` for a resource that does not manage the DNS).
    pub applied: Option<DnsSettings>,
    /// MagicDNS as live (after a write: as written).
    pub magic_dns: Option<bool>,
}

/// The planner's answer for one DNSConfig.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsPlan {
    pub name: String,
    pub action: DnsAction,
    pub outcome: DnsOutcome,
    /// The managed parts the write is to produce (checked against the write's answer).
    pub desired: DnsSettings,
}

impl DnsPlan {
    /// Whether executing would write to the tailnet.
    pub fn writes(&self) -> bool {
        matches!(self.action, DnsAction::Write { .. })
    }

    /// The reason of the write, if one is planned.
    pub fn write_reason(&self) -> Option<WriteReason> {
        match &self.action {
            DnsAction::Write { reason, .. } => Some(*reason),
            DnsAction::NoChange => None,
        }
    }
}

/// Plans `resource` against `live`. `others` are the other DNSConfigs of the same tailnet (not
/// being deleted); when one of them wins the tailnet, `resource` is a `Conflict` and writes
/// nothing.
pub fn plan(resource: &DnsInput, others: &[DnsInput], live: &DnsConfiguration) -> DnsPlan {
    let desired = resource.spec.dns.clone();
    let mut plan = DnsPlan {
        name: resource.name.clone(),
        action: DnsAction::NoChange,
        outcome: DnsOutcome {
            generation: resource.generation,
            ready: pending(),
            synced: synced_verdict(),
            drifted: in_sync_verdict(),
            drift: None,
            conflict: None,
            applied: resource.applied.clone(),
            magic_dns: Some(live.preferences.magic_dns),
        },
        desired: desired.clone(),
    };
    if let Some(conflict) = conflict_with(resource, others) {
        let message = conflict.message.clone();
        plan.outcome.ready = Verdict::new(ConditionStatus::False, reason::CONFLICT, &message);
        plan.outcome.synced = Verdict::new(ConditionStatus::False, reason::CONFLICT, &message);
        plan.outcome.drifted = Verdict::new(
            ConditionStatus::False,
            reason::CONFLICT,
            "not managing this tailnet's DNS",
        );
        plan.outcome.conflict = Some(conflict);
        plan.outcome.applied = None;
        return plan;
    }
    if let Err(err) = validate(&resource.spec) {
        let message = err.to_string();
        plan.outcome.ready = Verdict::new(ConditionStatus::False, reason::INVALID, &message);
        plan.outcome.synced = Verdict::new(ConditionStatus::False, reason::INVALID, &message);
        return plan;
    }
    let live_parts = managed_parts(&desired, live);
    let drift = drift_of(&desired, resource.applied.as_ref(), live);
    if let Some(diff) = &drift {
        plan.outcome.drifted = Verdict::new(
            ConditionStatus::True,
            reason::DRIFTED,
            format!(
                "the live DNS differs from what this DNSConfig applied: {}",
                diff.summary()
            ),
        );
        plan.outcome.drift = Some(diff.clone());
    }
    if same_dns(&live_parts, &desired) {
        plan.outcome.ready = ready_verdict(&desired);
        plan.outcome.applied = Some(desired);
        return plan;
    }
    if resource.spec.common.suspend {
        let message = "suspended (spec.suspend here or on its ManagedTailnet): observing only; the live DNS differs from the spec";
        plan.outcome.ready = Verdict::new(ConditionStatus::False, reason::SUSPENDED, message);
        plan.outcome.synced = Verdict::new(ConditionStatus::True, reason::SUSPENDED, message);
        return plan;
    }
    if let Some(diff) = drift
        .as_ref()
        .filter(|_| !resource.spec.common.corrects_drift())
    {
        plan.outcome.ready = Verdict::new(
            ConditionStatus::True,
            reason::DRIFTED,
            format!(
                "the live DNS was changed outside the operator and is left as is \
                 (driftPolicy: Report): {}",
                diff.summary()
            ),
        );
        return plan;
    }
    let why = match (&drift, &resource.applied) {
        (Some(_), _) => WriteReason::DriftCorrection,
        (None, None) => WriteReason::Initial,
        (None, Some(_)) => WriteReason::SpecChanged,
    };
    plan.action = DnsAction::Write {
        configuration: merged(&desired, live),
        reason: why,
    };
    plan.outcome.ready = Verdict::new(
        ConditionStatus::False,
        reason::PENDING,
        format!("writing the DNS ({})", why.as_str()),
    );
    plan
}

fn pending() -> Verdict {
    Verdict::new(ConditionStatus::Unknown, reason::PENDING, "")
}

/// `Synced=True` after a pass that reached the API. The same text whether or not the pass
/// wrote, so the pass after a write changes nothing in status.
pub(super) fn synced_verdict() -> Verdict {
    Verdict::new(
        ConditionStatus::True,
        reason::RECONCILED,
        "the live DNS was read and compared",
    )
}

/// `Drifted=False`.
pub(super) fn in_sync_verdict() -> Verdict {
    Verdict::new(
        ConditionStatus::False,
        reason::IN_SYNC,
        "the live DNS is as applied",
    )
}

/// `Ready=True`: the same text after a write and in steady state.
pub(super) fn ready_verdict(desired: &DnsSettings) -> Verdict {
    Verdict::new(
        ConditionStatus::True,
        reason::RECONCILED,
        in_sync_message(desired),
    )
}

fn in_sync_message(desired: &DnsSettings) -> String {
    if desired.is_empty() {
        "no DNS part is managed (every part is left out of the spec)".to_owned()
    } else {
        format!("the tailnet's DNS holds {}", describe_parts(desired))
    }
}

/// `nameservers, splitDNS and magicDNS`: the parts a spec manages.
pub fn describe_parts(settings: &DnsSettings) -> String {
    let names: Vec<&str> = [
        ("nameservers", settings.nameservers.is_some()),
        ("splitDNS", settings.split_dns.is_some()),
        ("searchPaths", settings.search_paths.is_some()),
        ("magicDNS", settings.magic_dns.is_some()),
        ("overrideLocalDNS", settings.override_local_dns.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, managed)| managed.then_some(name))
    .collect();
    match names.as_slice() {
        [] => "nothing".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The conflict of `resource` when another DNSConfig of its tailnet wins.
fn conflict_with(resource: &DnsInput, others: &[DnsInput]) -> Option<DnsConflict> {
    let mut all: Vec<DnsInput> = others
        .iter()
        .filter(|o| o.name != resource.name)
        .cloned()
        .collect();
    all.push(resource.clone());
    let winner = winner(&all)?;
    (winner.name != resource.name).then(|| DnsConflict {
        winner: winner.name.clone(),
        message: format!(
            "DNSConfig {} already manages the DNS of tailnet {} (the oldest DNSConfig of a \
             tailnet wins): this one writes nothing; merge its settings into {} and delete it",
            winner.name, resource.spec.common.tailnet_ref, winner.name
        ),
    })
}

/// Checks what the CRD's CEL rules check, for file mode (where no API server runs them) and
/// for objects created before the rules existed. The error names the field and the fix.
pub fn validate(spec: &DNSConfigSpec) -> Result<(), ReconcileError> {
    let dns = &spec.dns;
    for (i, ns) in dns.nameservers.iter().flatten().enumerate() {
        check_address(&format!("spec.nameservers[{i}].address"), &ns.address)?;
    }
    for (domain, nameservers) in dns.split_dns.iter().flatten() {
        check_domain(&format!("spec.splitDNS[{domain:?}]"), domain)?;
        if nameservers.is_empty() || nameservers.len() > MAX_NAMESERVERS as usize {
            return Err(ReconcileError::invalid(
                format!("spec.splitDNS[{domain:?}]"),
                format!(
                    "needs between 1 and {MAX_NAMESERVERS} nameservers; to stop resolving \
                     {domain} specially, remove the domain"
                ),
            ));
        }
        for (i, ns) in nameservers.iter().enumerate() {
            check_address(
                &format!("spec.splitDNS[{domain:?}][{i}].address"),
                &ns.address,
            )?;
        }
    }
    for (i, path) in dns.search_paths.iter().flatten().enumerate() {
        check_domain(&format!("spec.searchPaths[{i}]"), path)?;
    }
    Ok(())
}

fn check_address(field: &str, address: &str) -> Result<(), ReconcileError> {
    let doh = address
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
    if address.parse::<IpAddr>().is_ok() || doh {
        return Ok(());
    }
    Err(ReconcileError::invalid(
        field,
        format!(
            "{address:?} is not an IP address or a DNS-over-HTTPS URL: use e.g. 1.1.1.1, \
             2606:4700:4700::1111 or https://dns.example/dns-query"
        ),
    ))
}

/// Whether `domain` is a domain name as the CRD's pattern says.
pub fn is_domain(domain: &str) -> bool {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn check_domain(field: &str, domain: &str) -> Result<(), ReconcileError> {
    if is_domain(domain) {
        return Ok(());
    }
    Err(ReconcileError::invalid(
        field,
        format!(
            "{domain:?} is not a domain name: use dot-separated labels of letters, digits, '-' \
             and '_' (at most 63 characters each), e.g. corp.example.com"
        ),
    ))
}

/// The live values of the parts `desired` manages, in the spec's shape (unmanaged parts
/// `None`), so the two compare with `==`.
pub fn managed_parts(desired: &DnsSettings, live: &DnsConfiguration) -> DnsSettings {
    let live = live_settings(live);
    DnsSettings {
        nameservers: desired.nameservers.as_ref().and(live.nameservers),
        split_dns: desired.split_dns.as_ref().and(live.split_dns),
        search_paths: desired.search_paths.as_ref().and(live.search_paths),
        magic_dns: desired.magic_dns.and(live.magic_dns),
        override_local_dns: desired.override_local_dns.and(live.override_local_dns),
    }
}

/// Every part of a live configuration, in the spec's shape.
pub fn live_settings(live: &DnsConfiguration) -> DnsSettings {
    DnsSettings {
        nameservers: Some(live.nameservers.iter().map(nameserver).collect()),
        split_dns: Some(
            live.split_dns
                .iter()
                .map(|(domain, resolvers)| {
                    (domain.clone(), resolvers.iter().map(nameserver).collect())
                })
                .collect(),
        ),
        search_paths: Some(live.search_paths.clone()),
        magic_dns: Some(live.preferences.magic_dns),
        override_local_dns: Some(live.preferences.override_local_dns),
    }
}

fn nameserver(resolver: &DnsResolver) -> Nameserver {
    Nameserver {
        address: resolver.address.clone(),
        use_with_exit_node: resolver.use_with_exit_node,
    }
}

fn resolver(nameserver: &Nameserver) -> DnsResolver {
    DnsResolver {
        address: nameserver.address.clone(),
        use_with_exit_node: nameserver.use_with_exit_node,
    }
}

fn resolvers(nameservers: &[Nameserver]) -> Vec<DnsResolver> {
    nameservers.iter().map(resolver).collect()
}

/// The whole configuration to post: the managed parts from `desired`, every other part as
/// live, both booleans explicit (the endpoint turns an omitted one off).
pub fn merged(desired: &DnsSettings, live: &DnsConfiguration) -> DnsConfiguration {
    DnsConfiguration {
        nameservers: desired
            .nameservers
            .as_deref()
            .map_or_else(|| live.nameservers.clone(), resolvers),
        split_dns: desired.split_dns.as_ref().map_or_else(
            || live.split_dns.clone(),
            |split| {
                split
                    .iter()
                    .map(|(domain, ns)| (domain.clone(), resolvers(ns)))
                    .collect()
            },
        ),
        search_paths: desired
            .search_paths
            .clone()
            .unwrap_or_else(|| live.search_paths.clone()),
        preferences: DnsPreferences {
            magic_dns: desired.magic_dns.unwrap_or(live.preferences.magic_dns),
            override_local_dns: desired
                .override_local_dns
                .unwrap_or(live.preferences.override_local_dns),
        },
    }
}

/// Drift: a part the spec still asks for exactly as it was applied, whose live value differs
/// from what was applied. Parts the spec changed since are a spec change, not drift; without a
/// record of what was applied (first sync, file mode) there is nothing to drift from.
pub fn drift_of(
    desired: &DnsSettings,
    applied: Option<&DnsSettings>,
    live: &DnsConfiguration,
) -> Option<DriftDiff> {
    let applied = applied?;
    let unchanged = DnsSettings {
        nameservers: same(&desired.nameservers, &applied.nameservers),
        split_dns: same(&desired.split_dns, &applied.split_dns),
        search_paths: same(&desired.search_paths, &applied.search_paths),
        magic_dns: same(&desired.magic_dns, &applied.magic_dns),
        override_local_dns: same(&desired.override_local_dns, &applied.override_local_dns),
    };
    let live_of_unchanged = managed_parts(&unchanged, live);
    if same_dns(&live_of_unchanged, &unchanged) {
        return None;
    }
    let as_json = |s: &DnsSettings| serde_json::to_value(s).unwrap_or(Value::Null);
    // In canonical form, so a difference of spelling alone is never listed.
    let diff = diff_with(
        &as_json(&canonical(&unchanged)),
        &as_json(&canonical(&live_of_unchanged)),
        &DiffOptions {
            cap: DRIFT_ENTRIES,
            string_arrays_as_sets: false,
        },
    );
    (!diff.is_empty()).then_some(diff)
}

/// Whether two settings mean the same DNS: IP addresses compared in canonical form
/// (`2606:4700:4700:0:0:0:0:1111` is `2606:4700:4700::1111`), domains case-insensitively and
/// without a trailing dot. An API that stores a normalized form therefore never looks like a
/// difference (which would be a write at every resync).
pub fn same_dns(a: &DnsSettings, b: &DnsSettings) -> bool {
    canonical(a) == canonical(b)
}

fn canonical(settings: &DnsSettings) -> DnsSettings {
    let nameservers = |list: &[Nameserver]| -> Vec<Nameserver> {
        list.iter()
            .map(|n| Nameserver {
                address: canonical_address(&n.address),
                use_with_exit_node: n.use_with_exit_node,
            })
            .collect()
    };
    DnsSettings {
        nameservers: settings.nameservers.as_deref().map(nameservers),
        split_dns: settings.split_dns.as_ref().map(|split| {
            split
                .iter()
                .map(|(domain, list)| (canonical_domain(domain), nameservers(list)))
                .collect()
        }),
        search_paths: settings
            .search_paths
            .as_ref()
            .map(|paths| paths.iter().map(|p| canonical_domain(p)).collect()),
        magic_dns: settings.magic_dns,
        override_local_dns: settings.override_local_dns,
    }
}

fn canonical_address(address: &str) -> String {
    address
        .parse::<IpAddr>()
        .map_or_else(|_| address.to_owned(), |ip| ip.to_string())
}

fn canonical_domain(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

fn same<T: Clone + PartialEq>(desired: &Option<T>, applied: &Option<T>) -> Option<T> {
    match (desired, applied) {
        (Some(d), Some(a)) if d == a => Some(d.clone()),
        _ => None,
    }
}

/// `deletionPolicy: Delete`: the configuration without what `applied` set, or `None` when the
/// live DNS holds none of it (no write). Removed: the global nameservers, split-DNS domains
/// and search paths it set; `overrideLocalDNS` it turned on goes back off. MagicDNS is left as
/// it is: turning it off on delete would break every device name, and it never depended on
/// the nameservers removed here (the combined endpoint keeps it as sent).
pub fn cleared(applied: &DnsSettings, live: &DnsConfiguration) -> Option<DnsConfiguration> {
    let mut next = live.clone();
    if let Some(set) = &applied.nameservers {
        let ours: BTreeSet<&str> = set.iter().map(|n| n.address.as_str()).collect();
        next.nameservers
            .retain(|r| !ours.contains(r.address.as_str()));
    }
    if let Some(split) = &applied.split_dns {
        next.split_dns
            .retain(|domain, _| !split.contains_key(domain));
    }
    if let Some(paths) = &applied.search_paths {
        let ours: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
        next.search_paths.retain(|p| !ours.contains(p.as_str()));
    }
    if applied.override_local_dns == Some(true) {
        next.preferences.override_local_dns = false;
    }
    (next != *live).then_some(next)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::resources::DriftPolicy;

    fn ns(address: &str) -> Nameserver {
        Nameserver {
            address: address.to_owned(),
            use_with_exit_node: false,
        }
    }

    fn live() -> DnsConfiguration {
        DnsConfiguration {
            nameservers: vec![DnsResolver {
                address: "1.1.1.1".into(),
                use_with_exit_node: false,
            }],
            split_dns: BTreeMap::from([(
                "corp.example.com".to_owned(),
                vec![DnsResolver {
                    address: "10.10.0.53".into(),
                    use_with_exit_node: false,
                }],
            )]),
            search_paths: vec!["corp.example.com".into()],
            preferences: DnsPreferences {
                override_local_dns: true,
                magic_dns: true,
            },
        }
    }

    fn resource(name: &str, dns: DnsSettings) -> DnsInput {
        DnsInput {
            name: name.to_owned(),
            generation: Some(1),
            created: None,
            spec: DNSConfigSpec {
                dns,
                ..DNSConfigSpec::default()
            },
            applied: None,
        }
    }

    fn write_of(plan: &DnsPlan) -> (&DnsConfiguration, WriteReason) {
        match &plan.action {
            DnsAction::Write {
                configuration,
                reason,
            } => (configuration, *reason),
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn a_spec_matching_the_live_dns_writes_nothing_and_records_what_it_manages() {
        let dns = DnsSettings {
            nameservers: Some(vec![ns("1.1.1.1")]),
            magic_dns: Some(true),
            ..DnsSettings::default()
        };
        let plan = plan(&resource("dns", dns.clone()), &[], &live());
        assert_eq!(plan.action, DnsAction::NoChange);
        assert!(plan.outcome.ready.is_true());
        assert_eq!(plan.outcome.applied, Some(dns));
        assert_eq!(plan.outcome.magic_dns, Some(true));
    }

    #[test]
    fn parts_left_out_are_copied_from_live_and_both_booleans_are_always_sent() {
        // Only the nameservers are managed: MagicDNS and override stay on, split DNS and search
        // paths stay as they are. A body with just the nameservers would turn both off.
        let dns = DnsSettings {
            nameservers: Some(vec![ns("9.9.9.9")]),
            ..DnsSettings::default()
        };
        let plan = plan(&resource("dns", dns), &[], &live());
        let (body, why) = write_of(&plan);
        assert_eq!(why, WriteReason::Initial);
        assert_eq!(body.nameservers[0].address, "9.9.9.9");
        assert!(body.preferences.magic_dns && body.preferences.override_local_dns);
        assert_eq!(body.split_dns, live().split_dns);
        assert_eq!(body.search_paths, live().search_paths);
        let wire = serde_json::to_value(body).unwrap();
        assert_eq!(wire["preferences"]["magicDNS"], true);
        assert_eq!(wire["preferences"]["overrideLocalDNS"], true);
    }

    #[test]
    fn magic_dns_with_no_nameservers_is_one_write() {
        let dns = DnsSettings {
            nameservers: Some(vec![]),
            magic_dns: Some(true),
            override_local_dns: Some(false),
            ..DnsSettings::default()
        };
        let plan = plan(&resource("dns", dns.clone()), &[], &live());
        let (body, _) = write_of(&plan);
        assert!(body.nameservers.is_empty());
        assert!(body.preferences.magic_dns);
        // The endpoint answers with what it stored; as written, the resource is Ready.
        let done = super::super::written(&plan, body);
        assert!(done.ready.is_true(), "{:?}", done.ready);
        assert_eq!(done.applied, Some(dns));
    }

    #[test]
    fn an_answer_that_differs_from_the_write_is_not_called_applied() {
        let dns = DnsSettings {
            nameservers: Some(vec![]),
            magic_dns: Some(true),
            ..DnsSettings::default()
        };
        let plan = plan(&resource("dns", dns), &[], &live());
        let (body, _) = write_of(&plan);
        let mut answer = body.clone();
        answer.preferences.magic_dns = false; // what the per-part endpoints would have done
        let done = super::super::written(&plan, &answer);
        assert_eq!(done.ready.reason, super::super::NOT_APPLIED);
        assert!(
            done.ready.message.contains("/magicDNS"),
            "{}",
            done.ready.message
        );
        assert_eq!(done.applied, None, "nothing recorded as applied");
    }

    #[test]
    fn the_oldest_dns_config_wins_and_the_loser_names_it_and_writes_nothing() {
        let dns = DnsSettings {
            magic_dns: Some(false),
            ..DnsSettings::default()
        };
        let mut older = resource("zeta", dns.clone());
        older.created = DateTime::<Utc>::from_timestamp(1_000, 0);
        let mut newer = resource("alpha", dns);
        newer.created = DateTime::<Utc>::from_timestamp(2_000, 0);
        let lost = plan(&newer, std::slice::from_ref(&older), &live());
        assert_eq!(lost.action, DnsAction::NoChange);
        assert_eq!(lost.outcome.ready.reason, reason::CONFLICT);
        assert!(lost.outcome.ready.message.contains("DNSConfig zeta"));
        assert_eq!(lost.outcome.conflict.as_ref().unwrap().winner, "zeta");
        assert_eq!(lost.outcome.applied, None);
        let won = plan(&older, std::slice::from_ref(&newer), &live());
        assert!(won.writes() && won.outcome.conflict.is_none());
        // Equally old (file mode: no timestamps): by name.
        let (a, b) = (
            resource("a", DnsSettings::default()),
            resource("b", DnsSettings::default()),
        );
        assert_eq!(winner(&[b.clone(), a.clone()]).unwrap().name, "a");
        assert_eq!(
            plan(&b, &[a], &live()).outcome.conflict.unwrap().winner,
            "a"
        );
    }

    #[test]
    fn drift_is_a_live_change_to_a_part_applied_and_still_asked_for() {
        let dns = DnsSettings {
            nameservers: Some(vec![ns("1.1.1.1")]),
            magic_dns: Some(true),
            ..DnsSettings::default()
        };
        let mut applied = resource("dns", dns.clone());
        applied.applied = Some(dns.clone());
        let mut console = live();
        console.nameservers[0].address = "8.8.8.8".into();
        let corrected = plan(&applied, &[], &console);
        let (body, why) = write_of(&corrected);
        assert_eq!(why, WriteReason::DriftCorrection);
        assert_eq!(body.nameservers[0].address, "1.1.1.1");
        assert!(corrected.outcome.drifted.is_true());
        let diff = corrected.outcome.drift.as_ref().unwrap();
        assert_eq!(diff.entries[0].path, "/nameservers/0/address");

        applied.spec.common.drift_policy = DriftPolicy::Report;
        let reported = plan(&applied, &[], &console);
        assert_eq!(reported.action, DnsAction::NoChange);
        assert!(reported.outcome.drifted.is_true());
        assert_eq!(reported.outcome.ready.reason, reason::DRIFTED);

        // A console change to a part the spec leaves out is nobody's drift.
        let mut unmanaged = live();
        unmanaged.search_paths = vec!["other.example".into()];
        let quiet = plan(&applied, &[], &unmanaged);
        assert_eq!(quiet.action, DnsAction::NoChange);
        assert!(!quiet.outcome.drifted.is_true());
    }

    #[test]
    fn a_spec_change_is_not_drift() {
        let old = DnsSettings {
            magic_dns: Some(true),
            ..DnsSettings::default()
        };
        let mut changed = resource(
            "dns",
            DnsSettings {
                magic_dns: Some(false),
                ..DnsSettings::default()
            },
        );
        changed.applied = Some(old);
        let plan = plan(&changed, &[], &live());
        assert_eq!(write_of(&plan).1, WriteReason::SpecChanged);
        assert!(!plan.outcome.drifted.is_true());
    }

    #[test]
    fn suspend_and_invalid_specs_write_nothing() {
        let mut suspended = resource(
            "dns",
            DnsSettings {
                magic_dns: Some(false),
                ..DnsSettings::default()
            },
        );
        suspended.spec.common.suspend = true;
        let plan_suspended = plan(&suspended, &[], &live());
        assert_eq!(plan_suspended.action, DnsAction::NoChange);
        assert_eq!(plan_suspended.outcome.ready.reason, reason::SUSPENDED);

        let invalid = resource(
            "dns",
            DnsSettings {
                split_dns: Some(BTreeMap::from([(
                    "bad domain".to_owned(),
                    vec![ns("1.1.1.1")],
                )])),
                ..DnsSettings::default()
            },
        );
        let rejected = plan(&invalid, &[], &live());
        assert_eq!(rejected.action, DnsAction::NoChange);
        assert_eq!(rejected.outcome.ready.reason, reason::INVALID);
        assert!(
            rejected
                .outcome
                .ready
                .message
                .contains("spec.splitDNS[\"bad domain\"]")
        );
    }

    #[test]
    fn validation_names_the_field_and_accepts_ips_and_doh() {
        let spec = |dns| DNSConfigSpec {
            dns,
            ..DNSConfigSpec::default()
        };
        let ok = spec(DnsSettings {
            nameservers: Some(vec![
                ns("2606:4700:4700::1111"),
                ns("https://dns.nextdns.io/x"),
            ]),
            search_paths: Some(vec!["corp.example.com.".into()]),
            ..DnsSettings::default()
        });
        assert!(validate(&ok).is_ok());
        let bad_ns = spec(DnsSettings {
            nameservers: Some(vec![ns("1.1.1.1"), ns("dns.google")]),
            ..DnsSettings::default()
        });
        let err = validate(&bad_ns).unwrap_err().to_string();
        assert!(
            err.contains("spec.nameservers[1].address") && err.contains("dns.google"),
            "{err}"
        );
        let empty_split = spec(DnsSettings {
            split_dns: Some(BTreeMap::from([("corp.example.com".to_owned(), vec![])])),
            ..DnsSettings::default()
        });
        assert!(
            validate(&empty_split)
                .unwrap_err()
                .to_string()
                .contains("remove the domain")
        );
        let bad_path = spec(DnsSettings {
            search_paths: Some(vec!["-x.example".into()]),
            ..DnsSettings::default()
        });
        assert!(
            validate(&bad_path)
                .unwrap_err()
                .to_string()
                .contains("spec.searchPaths[0]")
        );
        for bad in ["", "a..b", ".example", "bad domain", "x-.example"] {
            assert!(!is_domain(bad), "{bad}");
        }
    }

    #[test]
    fn a_normalized_answer_is_not_a_difference() {
        let dns = DnsSettings {
            nameservers: Some(vec![ns("2606:4700:4700:0:0:0:0:1111")]),
            search_paths: Some(vec!["Corp.Example.com.".into()]),
            ..DnsSettings::default()
        };
        let mut tailnet = live();
        tailnet.nameservers[0].address = "2606:4700:4700::1111".into();
        tailnet.search_paths = vec!["corp.example.com".into()];
        let mut applied = resource("dns", dns.clone());
        applied.applied = Some(dns);
        let plan = plan(&applied, &[], &tailnet);
        assert_eq!(plan.action, DnsAction::NoChange, "{:?}", plan.outcome);
        assert!(!plan.outcome.drifted.is_true());
        assert!(plan.outcome.ready.is_true());
    }

    #[test]
    fn delete_removes_what_was_applied_and_keeps_magic_dns_and_the_rest() {
        let mut tailnet = live();
        tailnet.nameservers.push(DnsResolver {
            address: "8.8.8.8".into(),
            use_with_exit_node: false,
        });
        let applied = DnsSettings {
            nameservers: Some(vec![ns("1.1.1.1")]),
            split_dns: Some(BTreeMap::from([(
                "corp.example.com".to_owned(),
                vec![ns("10.10.0.53")],
            )])),
            magic_dns: Some(true),
            override_local_dns: Some(true),
            ..DnsSettings::default()
        };
        let next = cleared(&applied, &tailnet).expect("a write");
        let addresses: Vec<&str> = next
            .nameservers
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(addresses, ["8.8.8.8"], "only what it set goes");
        assert!(next.split_dns.is_empty());
        assert_eq!(next.search_paths, tailnet.search_paths, "not managed: kept");
        assert!(next.preferences.magic_dns, "MagicDNS stays on");
        assert!(!next.preferences.override_local_dns);
        // Nothing of it left in the tailnet: no write.
        assert_eq!(cleared(&applied, &next), None);
        assert_eq!(cleared(&DnsSettings::default(), &tailnet), None);
    }
}
