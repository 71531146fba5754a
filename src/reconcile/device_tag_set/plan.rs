//! The pure planner: every DeviceTagSet of one tailnet against the devices snapshot.
//!
//! Planning over all sets at once makes conflicts a property of the tailnet, not of the set
//! that happens to reconcile: whichever set's reconcile runs, the same devices are written and
//! the same conflicts reported, so two sets never take turns rewriting a device.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::select::{AutoApprovers, matches};
use crate::resources::device_tag_set::{
    DeviceTagSetSpec, MAX_LISTED_DEVICES, TagMode, TagSetConflict, WaitingDevice,
};
use crate::resources::drift::{DiffOptions, DriftDiff, diff_with};
use crate::tailscale::Device;

/// At most this many differences are listed in a set's drift diff.
pub const DRIFT_ENTRIES: usize = 20;
/// At most this many device names are given as examples of a conflict.
pub const CONFLICT_EXAMPLES: usize = 5;

/// One DeviceTagSet as the planner needs it.
#[derive(Debug, Clone)]
pub struct TagSetInput {
    pub name: String,
    pub generation: Option<i64>,
    pub spec: DeviceTagSetSpec,
    /// From status: when this generation was last fully applied (absent: never).
    pub applied: Option<AppliedMark>,
    /// From status: how many devices matched at the last reconcile.
    pub matched_before: Option<u32>,
    /// Being deleted with `deletionPolicy: Delete`: its `Add` tags are removed from the
    /// devices it matches (unless another set wants them); it wants nothing else.
    pub removing: bool,
}

/// When a set's generation was fully applied, by the tailnet state's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedMark {
    pub generation: i64,
    pub at: DateTime<Utc>,
}

/// The fields a set manages on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Tags,
    Authorized,
    KeyExpiryDisabled,
    Routes,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Tags => "tags",
            Field::Authorized => "authorized",
            Field::KeyExpiryDisabled => "keyExpiryDisabled",
            Field::Routes => "routes",
        }
    }
}

/// The writes one device needs (only the fields that differ are `Some`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChange {
    pub node_id: String,
    pub hostname: String,
    pub tags: Option<Vec<String>>,
    pub authorized: Option<bool>,
    pub key_expiry_disabled: Option<bool>,
    pub routes: Option<Vec<String>>,
}

impl DeviceChange {
    /// How many API writes the change takes.
    pub fn write_count(&self) -> usize {
        usize::from(self.tags.is_some())
            + usize::from(self.authorized.is_some())
            + usize::from(self.key_expiry_disabled.is_some())
            + usize::from(self.routes.is_some())
    }
}

/// Where a matched device stands for one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Holds what the set wants.
    InSync,
    /// Differs; the plan writes it.
    Changing,
    /// Differs; another set wants something else here, so nobody writes it.
    Conflict,
    /// Differs after a change outside the operator; `driftPolicy: Report` leaves it.
    DriftReported,
    /// Differs; the set is suspended.
    Suspended,
}

/// A matched device of one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDevice {
    pub node_id: String,
    pub hostname: String,
    pub state: DeviceState,
    /// The difference is drift (the set had applied its generation to this device).
    pub drifted: bool,
}

/// The plan for one set: what it matches and where each device stands.
#[derive(Debug, Clone)]
pub struct SetPlan {
    pub name: String,
    pub generation: Option<i64>,
    pub suspended: bool,
    pub removing: bool,
    pub corrects_drift: bool,
    pub applied: Option<AppliedMark>,
    pub matched_before: Option<u32>,
    /// Sorted by hostname.
    pub devices: Vec<SetDevice>,
    pub waiting: Vec<WaitingDevice>,
    pub conflicts: Vec<TagSetConflict>,
    /// Differences on devices this set had applied at its current generation.
    pub drift: DriftDiff,
    /// How many devices drifted.
    pub drifted_devices: usize,
}

impl SetPlan {
    pub fn writes(&self) -> bool {
        self.devices
            .iter()
            .any(|d| d.state == DeviceState::Changing)
    }
}

/// The planner's answer for one tailnet.
#[derive(Debug, Clone)]
pub struct TagSetPlan {
    /// One per input set, in input order.
    pub sets: Vec<SetPlan>,
    /// One per device to write, in device order.
    pub changes: Vec<DeviceChange>,
    /// The time of the devices snapshot planned against.
    pub observed_at: DateTime<Utc>,
}

impl TagSetPlan {
    pub fn set(&self, name: &str) -> Option<&SetPlan> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// API writes executing the plan takes.
    pub fn write_count(&self) -> usize {
        self.changes.iter().map(DeviceChange::write_count).sum()
    }
}

/// Plans every set of one tailnet against `devices` (pure).
pub fn plan(
    sets: &[TagSetInput],
    devices: &[Device],
    approvers: &AutoApprovers,
    observed_at: DateTime<Utc>,
) -> TagSetPlan {
    let mut builders: Vec<SetBuilder> = sets.iter().map(SetBuilder::default_for).collect();
    let mut changes = Vec::new();
    let mut conflicts: BTreeMap<(usize, usize), ConflictAcc> = BTreeMap::new();
    for device in devices {
        let matched: Vec<usize> = sets
            .iter()
            .enumerate()
            .filter(|(_, s)| matches(&s.spec.selector, device))
            .map(|(i, _)| i)
            .collect();
        if matched.is_empty() {
            continue;
        }
        let ctx = DeviceContext {
            sets,
            device,
            approvers,
            observed_at,
        };
        if let Some(change) = ctx.plan_device(&matched, &mut builders, &mut conflicts) {
            changes.push(change);
        }
    }
    for ((a, b), acc) in conflicts {
        builders[a].add_conflict(&sets[b].name, &acc);
        builders[b].add_conflict(&sets[a].name, &acc);
    }
    TagSetPlan {
        sets: builders
            .into_iter()
            .zip(sets)
            .map(|(b, s)| b.finish(s))
            .collect(),
        changes,
        observed_at,
    }
}

#[derive(Default)]
struct ConflictAcc {
    fields: BTreeSet<Field>,
    devices: u32,
    examples: Vec<String>,
}

#[derive(Default)]
struct SetBuilder {
    devices: Vec<SetDevice>,
    waiting: Vec<WaitingDevice>,
    conflicts: Vec<TagSetConflict>,
    drift_desired: Map<String, Value>,
    drift_live: Map<String, Value>,
    drifted_devices: usize,
}

impl SetBuilder {
    fn default_for(_: &TagSetInput) -> SetBuilder {
        SetBuilder::default()
    }

    fn add_conflict(&mut self, other: &str, acc: &ConflictAcc) {
        self.conflicts.push(TagSetConflict {
            with: format!("DeviceTagSet/{other}"),
            fields: acc.fields.iter().map(|f| f.as_str().to_owned()).collect(),
            devices: acc.devices,
            examples: acc.examples.clone(),
        });
    }

    fn finish(mut self, set: &TagSetInput) -> SetPlan {
        self.devices.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        self.waiting.sort_by(|a, b| a.name.cmp(&b.name));
        self.waiting.truncate(MAX_LISTED_DEVICES);
        self.conflicts.sort_by(|a, b| a.with.cmp(&b.with));
        let drift = diff_with(
            &Value::Object(self.drift_desired),
            &Value::Object(self.drift_live),
            &DiffOptions {
                cap: DRIFT_ENTRIES,
                string_arrays_as_sets: true,
            },
        );
        SetPlan {
            name: set.name.clone(),
            generation: set.generation,
            suspended: set.spec.common.suspend,
            removing: set.removing,
            corrects_drift: set.spec.common.corrects_drift(),
            applied: set.applied,
            matched_before: set.matched_before,
            devices: self.devices,
            waiting: self.waiting,
            conflicts: self.conflicts,
            drift,
            drifted_devices: self.drifted_devices,
        }
    }
}

struct DeviceContext<'a> {
    sets: &'a [TagSetInput],
    device: &'a Device,
    approvers: &'a AutoApprovers,
    observed_at: DateTime<Utc>,
}

impl DeviceContext<'_> {
    /// Decides one device for every set matching it; returns the writes it needs.
    fn plan_device(
        &self,
        matched: &[usize],
        builders: &mut [SetBuilder],
        conflicts: &mut BTreeMap<(usize, usize), ConflictAcc>,
    ) -> Option<DeviceChange> {
        let (removers, wanters): (Vec<usize>, Vec<usize>) =
            matched.iter().partition(|&&i| self.sets[i].removing);
        let in_conflict = self.find_conflicts(&wanters, conflicts);
        for &i in &wanters {
            self.note_waiting(i, &mut builders[i]);
        }
        if !in_conflict.is_empty() {
            // Written by neither: every wanting set records the device as not in sync.
            for &i in &removers {
                builders[i]
                    .devices
                    .push(self.entry(DeviceState::Conflict, false));
            }
            for &i in &wanters {
                let state = if self.unsatisfied(i).is_empty() {
                    DeviceState::InSync
                } else {
                    DeviceState::Conflict
                };
                builders[i].devices.push(self.entry(state, false));
            }
            return None;
        }
        let desired = self.desired(&wanters, &removers);
        let differs = self.differing_fields(&desired);
        let writable = self.writable_fields(&wanters, &removers, &differs);
        for &i in &wanters {
            let unsatisfied = self.unsatisfied(i);
            let state = self.state_for(i, &unsatisfied, &writable);
            let drifted = !unsatisfied.is_empty() && self.is_known(i);
            if drifted {
                self.record_drift(i, &unsatisfied, &mut builders[i]);
            }
            builders[i].devices.push(self.entry(state, drifted));
        }
        // A set being deleted: its devices are done once their tags are written.
        let removal = if writable.contains(&Field::Tags) {
            DeviceState::Changing
        } else {
            DeviceState::InSync
        };
        for &i in &removers {
            builders[i].devices.push(self.entry(removal, false));
        }
        self.change(&desired, &writable)
    }

    fn entry(&self, state: DeviceState, drifted: bool) -> SetDevice {
        SetDevice {
            node_id: self.device.node_id.clone(),
            hostname: self.device.hostname.clone(),
            state,
            drifted,
        }
    }

    /// Pairs of wanting sets that disagree on this device, recorded in `conflicts`; returns
    /// the sets involved.
    fn find_conflicts(
        &self,
        wanters: &[usize],
        conflicts: &mut BTreeMap<(usize, usize), ConflictAcc>,
    ) -> BTreeSet<usize> {
        let mut involved = BTreeSet::new();
        for (n, &a) in wanters.iter().enumerate() {
            for &b in &wanters[n + 1..] {
                let fields = disagreements(&self.sets[a].spec, &self.sets[b].spec);
                if fields.is_empty() {
                    continue;
                }
                involved.extend([a, b]);
                let acc = conflicts.entry((a.min(b), a.max(b))).or_default();
                acc.fields.extend(fields);
                acc.devices += 1;
                if acc.examples.len() < CONFLICT_EXAMPLES {
                    acc.examples.push(self.device.hostname.clone());
                }
            }
        }
        involved
    }

    fn note_waiting(&self, i: usize, builder: &mut SetBuilder) {
        let Some(routes) = &self.sets[i].spec.routes else {
            return;
        };
        let advertised = self.device.advertised_routes.as_deref().unwrap_or_default();
        let waiting: Vec<String> = routes
            .iter()
            .filter(|r| !advertised.contains(r))
            .cloned()
            .collect();
        if !waiting.is_empty() {
            builder.waiting.push(WaitingDevice {
                name: self.device.hostname.clone(),
                node_id: self.device.node_id.clone(),
                routes: waiting,
            });
        }
    }

    /// The combined desired state of the device (the wanting sets agree: no conflict).
    fn desired(&self, wanters: &[usize], removers: &[usize]) -> Desired {
        let specs: Vec<&DeviceTagSetSpec> = wanters.iter().map(|&i| &self.sets[i].spec).collect();
        let tags = self.desired_tags(&specs, removers);
        Desired {
            tags,
            authorized: specs.iter().find_map(|s| s.authorized),
            key_expiry_disabled: specs.iter().find_map(|s| s.key_expiry_disabled),
            routes: specs
                .iter()
                .find_map(|s| s.routes.as_ref())
                .map(|r| self.desired_routes(r)),
        }
    }

    /// `Exact`: that set's tags. Otherwise the live tags, less the tags of sets being deleted
    /// that no wanting set adds, plus every `Add` tag (in order, without repeats).
    fn desired_tags(&self, specs: &[&DeviceTagSetSpec], removers: &[usize]) -> Option<Vec<String>> {
        if let Some(exact) = specs.iter().find(|s| s.mode == TagMode::Exact) {
            return Some(dedup(exact.tags.iter().cloned()));
        }
        let added: Vec<&String> = specs.iter().flat_map(|s| s.tags.iter()).collect();
        let removed: BTreeSet<&String> = removers
            .iter()
            .filter(|&&i| self.sets[i].spec.mode == TagMode::Add)
            .flat_map(|&i| self.sets[i].spec.tags.iter())
            .filter(|t| !added.contains(t))
            .collect();
        if added.is_empty() && removed.is_empty() {
            return None;
        }
        let kept = self.device.tags.iter().filter(|t| !removed.contains(t));
        Some(dedup(kept.chain(added).cloned()))
    }

    /// The enabled routes: the wanted ones the device advertises (or that are enabled
    /// already), plus enabled routes the policy's autoApprovers approve for the device.
    fn desired_routes(&self, wanted: &[String]) -> Vec<String> {
        let advertised = self.device.advertised_routes.as_deref().unwrap_or_default();
        let enabled = self.device.enabled_routes.as_deref().unwrap_or_default();
        let keep = enabled
            .iter()
            .filter(|r| wanted.contains(r) || self.approvers.approves(self.device, r));
        let add = wanted.iter().filter(|r| advertised.contains(r));
        dedup(keep.chain(add).cloned())
    }

    fn differing_fields(&self, desired: &Desired) -> BTreeSet<Field> {
        let d = self.device;
        let mut fields = BTreeSet::new();
        if desired.tags.as_ref().is_some_and(|t| !same_set(t, &d.tags)) {
            fields.insert(Field::Tags);
        }
        if desired.authorized.is_some_and(|a| a != d.authorized) {
            fields.insert(Field::Authorized);
        }
        if desired
            .key_expiry_disabled
            .is_some_and(|k| k != d.key_expiry_disabled)
        {
            fields.insert(Field::KeyExpiryDisabled);
        }
        let enabled = d.enabled_routes.as_deref().unwrap_or_default();
        if desired
            .routes
            .as_ref()
            .is_some_and(|r| !same_set(r, enabled))
        {
            fields.insert(Field::Routes);
        }
        fields
    }

    /// The fields set `i` wants different from what the device has (its own view, before any
    /// other set is considered).
    fn unsatisfied(&self, i: usize) -> BTreeSet<Field> {
        let spec = &self.sets[i].spec;
        let d = self.device;
        let mut fields = BTreeSet::new();
        let tags_ok = match spec.mode {
            TagMode::Exact => same_set(&spec.tags, &d.tags),
            TagMode::Add => spec.tags.iter().all(|t| d.tags.contains(t)),
        };
        if !tags_ok {
            fields.insert(Field::Tags);
        }
        if spec.authorized.is_some_and(|a| a != d.authorized) {
            fields.insert(Field::Authorized);
        }
        if spec
            .key_expiry_disabled
            .is_some_and(|k| k != d.key_expiry_disabled)
        {
            fields.insert(Field::KeyExpiryDisabled);
        }
        if let Some(wanted) = &spec.routes {
            let enabled = d.enabled_routes.as_deref().unwrap_or_default();
            if !same_set(&self.desired_routes(wanted), enabled) {
                fields.insert(Field::Routes);
            }
        }
        fields
    }

    /// Whether set `i` had applied its current generation to this device: the device existed
    /// when the generation was last fully applied. A difference on such a device is drift.
    fn is_known(&self, i: usize) -> bool {
        let set = &self.sets[i];
        let Some(mark) = set.applied else {
            return false;
        };
        Some(mark.generation) == set.generation
            && mark.at <= self.observed_at
            && self.device.created.is_some_and(|c| c <= mark.at)
    }

    /// May set `i` write to this device now (not suspended, and not drift it only reports)?
    fn may_write(&self, i: usize) -> bool {
        let set = &self.sets[i];
        !set.spec.common.suspend && (set.spec.common.corrects_drift() || !self.is_known(i))
    }

    /// The differing fields some responsible set may write. A field is the responsibility of
    /// the sets that want it different; tag removals on deletion are always written.
    fn writable_fields(
        &self,
        wanters: &[usize],
        removers: &[usize],
        differs: &BTreeSet<Field>,
    ) -> BTreeSet<Field> {
        differs
            .iter()
            .copied()
            .filter(|field| {
                let by_wanter = wanters
                    .iter()
                    .any(|&i| self.unsatisfied(i).contains(field) && self.may_write(i));
                let by_remover = *field == Field::Tags
                    && !removers.is_empty()
                    && wanters
                        .iter()
                        .all(|&i| !self.unsatisfied(i).contains(field));
                by_wanter || by_remover
            })
            .collect()
    }

    fn state_for(
        &self,
        i: usize,
        unsatisfied: &BTreeSet<Field>,
        writable: &BTreeSet<Field>,
    ) -> DeviceState {
        if unsatisfied.is_empty() {
            DeviceState::InSync
        } else if unsatisfied.iter().all(|f| writable.contains(f)) {
            DeviceState::Changing
        } else if self.sets[i].spec.common.suspend {
            DeviceState::Suspended
        } else {
            DeviceState::DriftReported
        }
    }

    fn record_drift(&self, i: usize, unsatisfied: &BTreeSet<Field>, builder: &mut SetBuilder) {
        let spec = &self.sets[i].spec;
        let d = self.device;
        let mut desired = Map::new();
        let mut live = Map::new();
        for field in unsatisfied {
            let (want, have) = match field {
                Field::Tags => (json!(spec.tags), json!(d.tags)),
                Field::Authorized => (json!(spec.authorized), json!(d.authorized)),
                Field::KeyExpiryDisabled => (
                    json!(spec.key_expiry_disabled),
                    json!(d.key_expiry_disabled),
                ),
                Field::Routes => (
                    json!(self.desired_routes(spec.routes.as_deref().unwrap_or_default())),
                    json!(d.enabled_routes.as_deref().unwrap_or_default()),
                ),
            };
            // Add mode: only the missing tags are a difference, not the device's other tags.
            let have = if *field == Field::Tags && spec.mode == TagMode::Add {
                json!(
                    spec.tags
                        .iter()
                        .filter(|t| d.tags.contains(t))
                        .collect::<Vec<_>>()
                )
            } else {
                have
            };
            desired.insert(field.as_str().to_owned(), want);
            live.insert(field.as_str().to_owned(), have);
        }
        builder
            .drift_desired
            .insert(d.hostname.clone(), Value::Object(desired));
        builder
            .drift_live
            .insert(d.hostname.clone(), Value::Object(live));
        builder.drifted_devices += 1;
    }

    fn change(&self, desired: &Desired, writable: &BTreeSet<Field>) -> Option<DeviceChange> {
        if writable.is_empty() {
            return None;
        }
        let pick = |field: Field| writable.contains(&field);
        Some(DeviceChange {
            node_id: self.device.node_id.clone(),
            hostname: self.device.hostname.clone(),
            tags: desired.tags.clone().filter(|_| pick(Field::Tags)),
            authorized: desired.authorized.filter(|_| pick(Field::Authorized)),
            key_expiry_disabled: desired
                .key_expiry_disabled
                .filter(|_| pick(Field::KeyExpiryDisabled)),
            routes: desired.routes.clone().filter(|_| pick(Field::Routes)),
        })
    }
}

struct Desired {
    tags: Option<Vec<String>>,
    authorized: Option<bool>,
    key_expiry_disabled: Option<bool>,
    routes: Option<Vec<String>>,
}

/// What two sets matching the same device disagree on.
fn disagreements(a: &DeviceTagSetSpec, b: &DeviceTagSetSpec) -> BTreeSet<Field> {
    let mut fields = BTreeSet::new();
    let subset = |small: &[String], big: &[String]| small.iter().all(|t| big.contains(t));
    let tags_clash = match (a.mode, b.mode) {
        (TagMode::Exact, TagMode::Exact) => !same_set(&a.tags, &b.tags),
        (TagMode::Exact, TagMode::Add) => !subset(&b.tags, &a.tags),
        (TagMode::Add, TagMode::Exact) => !subset(&a.tags, &b.tags),
        (TagMode::Add, TagMode::Add) => false,
    };
    if tags_clash {
        fields.insert(Field::Tags);
    }
    let clash = |x: Option<bool>, y: Option<bool>| matches!((x, y), (Some(x), Some(y)) if x != y);
    if clash(a.authorized, b.authorized) {
        fields.insert(Field::Authorized);
    }
    if clash(a.key_expiry_disabled, b.key_expiry_disabled) {
        fields.insert(Field::KeyExpiryDisabled);
    }
    if let (Some(x), Some(y)) = (&a.routes, &b.routes) {
        if !same_set(x, y) {
            fields.insert(Field::Routes);
        }
    }
    fields
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let a: BTreeSet<&String> = a.iter().collect();
    let b: BTreeSet<&String> = b.iter().collect();
    a == b
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}
