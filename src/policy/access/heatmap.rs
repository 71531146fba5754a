//! The access heatmap: which identities (rows: groups, `autogroup:member`, tags,
//! `autogroup:tagged`) reach which destinations (columns: untagged devices as
//! `autogroup:member`, tags, Tailscale Services, and the address targets the policy names such
//! as `autogroup:internet`), each cell the protocols and ports reachable.
//!
//! Built from [`Policy::access_classes`]: the cost grows with classes squared times the
//! identities a class spans, never with device pairs, and the axes are the policy's identities,
//! not devices, so the picture stays readable at any number of devices.
//!
//! A cell is a union: some device of the row reaches some destination of the column on these
//! ports (not necessarily every member; a device never counts as reaching itself). Role
//! autogroups (`autogroup:admin`, ...) are not rows: their devices are in the rows of their
//! groups and `autogroup:member`.
use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::matrix::Caps;
use super::{Policy, TailnetView};

/// Rows and columns of a [`Heatmap`], and the access in each non-empty cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heatmap {
    pub rows: Vec<HeatAxis>,
    pub columns: Vec<HeatAxis>,
    /// Non-empty cells only, by row then column.
    pub cells: Vec<HeatCell>,
    /// Identities left out to keep the map readable (the fewest devices go first).
    pub omitted_rows: usize,
    pub omitted_columns: usize,
}

/// One identity on an axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeatAxis {
    /// As written in a policy: `group:eng`, `tag:prod`, `autogroup:member`, `svc:grafana`,
    /// a host alias.
    pub label: String,
    /// Devices with this identity; absent for a service or an address target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<u64>,
}

/// What a row reaches in a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeatCell {
    /// Index into the rows.
    pub row: usize,
    /// Index into the columns.
    pub column: usize,
    /// `tcp:22,443 udp:53`, `all protocols`, ...
    pub access: String,
    /// Ports reachable over the protocols with ports (a portless protocol counts 1); absent
    /// when every protocol is (beyond counting ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<u64>,
}

/// The order axes are shown in: groups, people, tags, then what is not a device.
fn rank(label: &str) -> u8 {
    match label {
        l if l.starts_with("group:") => 0,
        "autogroup:member" => 1,
        l if l.starts_with("tag:") => 2,
        "autogroup:tagged" => 3,
        l if l.starts_with("svc:") => 4,
        _ => 5,
    }
}

/// Identities seen on one axis: label → (devices, index).
#[derive(Default)]
struct Axis {
    ids: BTreeMap<String, (u64, usize)>,
    labels: Vec<String>,
}

impl Axis {
    fn id(&mut self, label: &str) -> usize {
        if let Some((count, id)) = self.ids.get_mut(label) {
            *count += 1;
            return *id;
        }
        let id = self.labels.len();
        self.ids.insert(label.to_owned(), (1, id));
        self.labels.push(label.to_owned());
        id
    }

    /// Keeps at most `max` identities (most devices first) in display order; returns the old
    /// index → new index map and the kept axis.
    fn keep(
        &self,
        max: usize,
        counted: impl Fn(&str) -> bool,
    ) -> (Vec<Option<usize>>, Vec<HeatAxis>) {
        let mut order: Vec<(&String, u64)> = self.ids.iter().map(|(l, (n, _))| (l, *n)).collect();
        order.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(rank(a.0).cmp(&rank(b.0)))
                .then(a.0.cmp(b.0))
        });
        order.truncate(max);
        order.sort_by(|a, b| rank(a.0).cmp(&rank(b.0)).then(a.0.cmp(b.0)));
        let mut map = vec![None; self.labels.len()];
        let axis = order
            .iter()
            .enumerate()
            .map(|(new, (label, count))| {
                map[self.ids[*label].1] = Some(new);
                HeatAxis {
                    label: (*label).clone(),
                    devices: counted(label).then_some(*count),
                }
            })
            .collect();
        (map, axis)
    }
}

/// Per class: identity → (members with it, one such member).
type Spans = Vec<HashMap<usize, (u64, u32)>>;

fn spans(members: &[Vec<u32>], ids_of: impl Fn(u32) -> Vec<usize>) -> Spans {
    members
        .iter()
        .map(|class| {
            let mut span: HashMap<usize, (u64, u32)> = HashMap::new();
            for &m in class {
                for id in ids_of(m) {
                    span.entry(id).or_insert((0, m)).0 += 1;
                }
            }
            span
        })
        .collect()
}

impl Policy {
    /// The access heatmap over `view`, at most `max_axis` rows and columns.
    pub fn heatmap(&self, view: &TailnetView, max_axis: usize) -> Heatmap {
        let classes = self.access_classes(view);
        let mut groups_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for (group, members) in &self.defs.groups {
            for member in members {
                groups_of.entry(member).or_default().push(group);
            }
        }
        // Each device's identities as a source, then each destination's.
        let mut rows = Axis::default();
        let row_ids: Vec<Vec<usize>> = view
            .devices
            .iter()
            .map(|d| {
                if d.tags.is_empty() {
                    let groups = groups_of.get(d.user.as_str()).into_iter().flatten();
                    let mut ids: Vec<usize> = groups.map(|g| rows.id(g)).collect();
                    ids.push(rows.id("autogroup:member"));
                    ids
                } else {
                    let mut ids: Vec<usize> = d.tags.iter().map(|t| rows.id(t)).collect();
                    ids.push(rows.id("autogroup:tagged"));
                    ids
                }
            })
            .collect();
        let mut columns = Axis::default();
        let column_ids: Vec<Vec<usize>> = classes
            .dest_labels
            .iter()
            .enumerate()
            .map(|(i, label)| match view.devices.get(i) {
                Some(d) if d.tags.is_empty() => vec![columns.id("autogroup:member")],
                Some(d) => d.tags.iter().map(|t| columns.id(t)).collect(),
                None => vec![columns.id(label)],
            })
            .collect();
        let src_spans = spans(&classes.src_members, |m| row_ids[m as usize].clone());
        let dst_spans = spans(&classes.dst_members, |m| column_ids[m as usize].clone());

        let mut cells: BTreeMap<(usize, usize), Caps> = BTreeMap::new();
        for change in &classes.changes {
            for (&row, &(n_src, src_one)) in &src_spans[change.src] {
                for (&column, &(n_dst, dst_one)) in &dst_spans[change.dst] {
                    // The only pair would be a device and itself.
                    if n_src == 1 && n_dst == 1 && src_one == dst_one {
                        continue;
                    }
                    let cell = cells.entry((row, column)).or_default();
                    *cell = cell.union(&change.gained);
                }
            }
        }

        let (row_map, row_axis) = rows.keep(max_axis, |_| true);
        // Services and address targets have no device count.
        let (column_map, column_axis) = columns.keep(max_axis, |label| rank(label) <= 3);
        let mut cells: Vec<HeatCell> = cells
            .into_iter()
            .filter(|(_, caps)| !caps.is_empty())
            .filter_map(|((row, column), caps)| {
                Some(HeatCell {
                    row: row_map[row]?,
                    column: column_map[column]?,
                    access: caps.describe(),
                    ports: caps.port_count(),
                })
            })
            .collect();
        cells.sort_by_key(|c| (c.row, c.column));
        Heatmap {
            omitted_rows: rows.labels.len() - row_axis.len(),
            omitted_columns: columns.labels.len() - column_axis.len(),
            rows: row_axis,
            columns: column_axis,
            cells,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::access::DeviceView;
    use serde_json::json;

    fn device(name: &str, user: &str, tags: &[&str], ip: &str) -> DeviceView {
        DeviceView {
            hostname: name.into(),
            addresses: vec![ip.parse().unwrap()],
            user: user.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            role: String::new(),
        }
    }

    fn cell<'a>(map: &'a Heatmap, row: &str, column: &str) -> Option<&'a HeatCell> {
        let r = map.rows.iter().position(|a| a.label == row)?;
        let c = map.columns.iter().position(|a| a.label == column)?;
        map.cells
            .iter()
            .find(|cell| cell.row == r && cell.column == c)
    }

    fn policy() -> Policy {
        Policy::compile(&json!({
            "groups": {"group:eng": ["alice@example.com"], "group:ops": ["bob@example.com"]},
            "tagOwners": {"tag:web": ["group:ops"], "tag:db": ["group:ops"]},
            "acls": [
                {"action": "accept", "src": ["group:eng"], "dst": ["tag:web:443"]},
                {"action": "accept", "src": ["group:ops"], "dst": ["tag:web:*", "tag:db:5432"]},
                {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"]},
            ],
        }))
        .unwrap()
    }

    fn view() -> TailnetView {
        TailnetView {
            users: vec!["alice@example.com".into(), "bob@example.com".into()],
            devices: vec![
                device("alice-mbp", "alice@example.com", &[], "100.64.0.1"),
                device("bob-mbp", "bob@example.com", &[], "100.64.0.2"),
                device("web-1", "bob@example.com", &["tag:web"], "100.64.0.3"),
                device("web-2", "bob@example.com", &["tag:web"], "100.64.0.4"),
                device("db-1", "bob@example.com", &["tag:db"], "100.64.0.5"),
            ],
            services: Vec::new(),
        }
    }

    #[test]
    fn cells_are_the_ports_each_identity_reaches() {
        let map = policy().heatmap(&view(), 40);
        let labels = |axis: &[HeatAxis]| axis.iter().map(|a| a.label.clone()).collect::<Vec<_>>();
        assert_eq!(
            labels(&map.rows),
            [
                "group:eng",
                "group:ops",
                "autogroup:member",
                "tag:db",
                "tag:web",
                "autogroup:tagged"
            ]
        );
        assert_eq!(
            labels(&map.columns),
            ["autogroup:member", "tag:db", "tag:web"]
        );
        assert_eq!(map.rows[4].devices, Some(2), "tag:web has two devices");
        let eng_web = cell(&map, "group:eng", "tag:web").unwrap();
        assert_eq!(eng_web.access, "tcp:443 udp:443");
        assert_eq!(eng_web.ports, Some(2));
        assert!(
            cell(&map, "group:eng", "tag:db").is_none(),
            "eng has no db access"
        );
        assert_eq!(
            cell(&map, "group:ops", "tag:db").unwrap().access,
            "tcp:5432 udp:5432"
        );
        // The union of eng and ops: 443 for one, everything for the other.
        let member_web = cell(&map, "autogroup:member", "tag:web").unwrap();
        assert_eq!(
            member_web.ports,
            Some(2 * 65536 + 2),
            "every tcp and udp port, icmp, icmpv6"
        );
        assert_eq!(
            cell(&map, "tag:web", "tag:db").unwrap().access,
            "tcp:5432 udp:5432"
        );
        assert!(
            cell(&map, "tag:web", "tag:web").is_none(),
            "web-1 and web-2 reach nothing of each other"
        );
        assert!(cell(&map, "tag:db", "tag:web").is_none());
    }

    #[test]
    fn a_device_reaching_only_itself_is_no_cell() {
        let policy = Policy::compile(&json!({
            "tagOwners": {"tag:solo": []},
            "acls": [{"action": "accept", "src": ["tag:solo"], "dst": ["tag:solo:22"]}],
        }))
        .unwrap();
        let mut one = view();
        one.devices = vec![device(
            "solo",
            "bob@example.com",
            &["tag:solo"],
            "100.64.0.9",
        )];
        assert!(policy.heatmap(&one, 40).cells.is_empty());
        one.devices.push(device(
            "solo-2",
            "bob@example.com",
            &["tag:solo"],
            "100.64.0.10",
        ));
        assert_eq!(
            policy.heatmap(&one, 40).cells.len(),
            2,
            "solo reaches tag:solo, as a tag and as autogroup:tagged"
        );
    }

    #[test]
    fn large_axes_keep_the_identities_with_most_devices() {
        let map = policy().heatmap(&view(), 2);
        assert_eq!(map.rows.len(), 2);
        assert_eq!(map.omitted_rows, 4);
        assert_eq!(map.columns.len(), 2);
        assert_eq!(map.omitted_columns, 1);
        // autogroup:tagged (3 devices) and tag:web / autogroup:member (2 each): ties by rank.
        assert_eq!(map.rows[0].label, "autogroup:member");
        assert_eq!(map.rows[1].label, "autogroup:tagged");
        assert!(map.cells.iter().all(|c| c.row < 2 && c.column < 2));
    }
}
