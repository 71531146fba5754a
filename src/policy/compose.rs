//! Composition of the effective policy file: the Base `TailnetPolicy`, every `Fragment`
//! (ordered by name) and the contributions of other kinds (e.g. a `FunnelExposure`'s
//! `nodeAttrs` entry), as `docs/policy-reconcile.md` describes.
//!
//! # Semantics
//!
//! - **Map sections** (`groups`, `tagOwners`, `hosts`, `postures`, `ipsets`, and inside
//!   `autoApprovers` the `routes` and `services` maps) merge key by key. A key defined by two
//!   sources is a [`ComposeError::Conflict`] naming both. `autoApprovers.routes` is a map like
//!   `groups`: a route's approver list is one statement of who may advertise it, so a second
//!   source naming the same route is flagged rather than silently widening it.
//! - **List sections** (`acls`, `grants`, `ssh`, `nodeAttrs`, `tests`, `sshTests`,
//!   `autoApprovers.exitNode`) concatenate: Base first, then fragments by name, then
//!   contributions (sorted by source name, stable).
//! - **Any other section** (`derpMap`, `randomizeClientPort`, …) may be set by one source only:
//!   a fragment setting one the Base (or an earlier fragment) sets is a conflict.
//! - Section names match case-insensitively, like Tailscale's decoder (`"ACLs"` merges into
//!   `"acls"`); map keys match exactly.
//! - A fragment is all or nothing: if it fails to parse, is not an object, has a section of the
//!   wrong type, or conflicts, it is listed in [`Composition::rejected`] and none of it is
//!   applied; the other sources still are. A Base that fails is a hard error: there is nothing
//!   to compose onto.
//!
//! # Text, not values
//!
//! The Base is never round-tripped through serde: its text is kept and the new entries are
//! spliced into it, so its comments, formatting and every section the operator does not model
//! survive byte for byte. With no fragments and no contributions the output is the Base text
//! itself. Entries copied from a fragment keep their own comments (leading lines and the
//! trailing comment on the same line), re-indented to the Base's style, and each source's run
//! of entries starts with a `// from <source>` line so a human reading the console sees where
//! they came from. The output is a pure function of the inputs, so its hash is stable.
use std::collections::{BTreeMap, HashMap, HashSet};

use jsonc_parser::ast::{ObjectPropName, Value as Ast};
use jsonc_parser::common::Ranged;
use jsonc_parser::tokens::Token;
use jsonc_parser::{CollectOptions, CommentCollectionStrategy, ParseOptions, parse_to_ast};

use super::hujson;

/// One policy document and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// Shown in conflicts and `// from` comments, e.g. `TailnetPolicy/base`.
    pub name: String,
    /// The resource's `metadata.generation`, recorded by callers with each revision.
    pub generation: Option<i64>,
    /// The HuJSON text.
    pub text: String,
}

/// A policy entry another kind needs, e.g. a `FunnelExposure`'s `funnel` node attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// Who contributes, e.g. `FunnelExposure/web/public`.
    pub source: String,
    /// Section path: `nodeAttrs`, `tagOwners`, `autoApprovers.exitNode`, …
    pub section: String,
    /// For a list section, one entry (appended as is); for a map section, an object whose keys
    /// are merged; for any other section, its whole value.
    pub value: serde_json::Value,
}

/// The effective policy and what went into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Composition {
    /// The effective HuJSON text.
    pub text: String,
    /// Sources merged, in merge order: the Base first.
    pub applied: Vec<String>,
    /// Sources left out, each with the reason.
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub source: String,
    pub error: ComposeError,
}

/// Why a source cannot be composed. (Display and Error are written by hand: thiserror would
/// take the `source` fields, which name a policy source, for a chained error.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeError {
    /// Not HuJSON; the position is within that source's own text.
    Syntax {
        source: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// `section` is the map section (`groups`, `autoApprovers.routes`) or, for a section
    /// only one source may set, that section's path (`derpMap`); `first` defined it before
    /// `second` tried to.
    Conflict {
        section: String,
        key: String,
        first: String,
        second: String,
    },
    NotAnObject {
        source: String,
    },
    /// A modelled section (`section`, e.g. `acls` or `autoApprovers.routes`) of the wrong
    /// JSON type.
    WrongType {
        source: String,
        section: String,
        expected: String,
    },
}

impl std::fmt::Display for ComposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComposeError::Syntax {
                source,
                line,
                column,
                message,
            } => write!(f, "{source}: line {line}, column {column}: {message}"),
            ComposeError::Conflict {
                section,
                key,
                first,
                second,
            } => f.write_str(&conflict_message(section, key, first, second)),
            ComposeError::NotAnObject { source } => {
                write!(f, "{source}: the policy must be a JSON object ({{ ... }})")
            }
            ComposeError::WrongType {
                source,
                section,
                expected,
            } => write!(f, "{source}: \"{section}\" must be {expected}"),
        }
    }
}

impl std::error::Error for ComposeError {}

impl ComposeError {
    /// A stable CamelCase reason for conditions and events (`Conflict`, as in `docs/policy-reconcile.md`).
    pub fn reason(&self) -> &'static str {
        match self {
            ComposeError::Syntax { .. } => "InvalidHuJSON",
            ComposeError::Conflict { .. } => "Conflict",
            ComposeError::NotAnObject { .. } | ComposeError::WrongType { .. } => "InvalidPolicy",
        }
    }
}

fn conflict_message(section: &str, key: &str, first: &str, second: &str) -> String {
    let noun = match section {
        "groups" => "group",
        "tagOwners" => "tag owner entry",
        "hosts" => "host",
        "postures" => "posture",
        "ipsets" => "ipset",
        "autoApprovers.routes" => "auto-approved route",
        "autoApprovers.services" => "auto-approved service",
        _ => {
            return format!(
                "setting \"{section}\" is set by both {first} and {second}: set it in one of them only"
            );
        }
    };
    format!(
        "{noun} {key:?} is defined by both {first} and {second}: keep one definition and remove the other"
    )
}

/// Composes Base + fragments (ordered by name, whatever the input order) + contributions
/// (ordered by source, stable). See the module docs for the rules.
pub fn compose(
    base: &PolicySource,
    fragments: &[PolicySource],
    contributions: &[Contribution],
) -> Result<Composition, ComposeError> {
    let base_doc = Doc::parse(&base.name, &base.text)?;
    let mut merger = Merger::new(&base_doc, &base.name)?;
    let mut applied = vec![base.name.clone()];
    let mut rejected = Vec::new();

    let mut fragments: Vec<&PolicySource> = fragments.iter().collect();
    fragments.sort_by(|a, b| a.name.cmp(&b.name));
    for fragment in fragments {
        let outcome = Doc::parse(&fragment.name, &fragment.text)
            .and_then(|doc| merger.merge(&doc, &fragment.name));
        record(&fragment.name, outcome, &mut applied, &mut rejected);
    }

    let mut contributions: Vec<&Contribution> = contributions.iter().collect();
    contributions.sort_by(|a, b| a.source.cmp(&b.source));
    for contribution in contributions {
        let outcome = contribution_text(contribution).and_then(|text| {
            merger.merge(
                &Doc::parse(&contribution.source, &text)?,
                &contribution.source,
            )
        });
        record(&contribution.source, outcome, &mut applied, &mut rejected);
    }

    Ok(Composition {
        text: merger.render(),
        applied,
        rejected,
    })
}

fn record(
    source: &str,
    outcome: Result<(), ComposeError>,
    applied: &mut Vec<String>,
    rejected: &mut Vec<Rejection>,
) {
    match outcome {
        Ok(()) if !applied.iter().any(|a| a == source) => applied.push(source.to_string()),
        Ok(()) => {}
        Err(error) => rejected.push(Rejection {
            source: source.to_string(),
            error,
        }),
    }
}

/// A contribution as a tiny policy document, so it goes through the same merge as a fragment.
/// Entries are rendered compactly (one line each).
fn contribution_text(c: &Contribution) -> Result<String, ComposeError> {
    let parts: Vec<&str> = c.section.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ComposeError::WrongType {
            source: c.source.clone(),
            section: c.section.clone(),
            expected: "a section path such as \"nodeAttrs\" or \"autoApprovers.exitNode\""
                .to_string(),
        });
    }
    let (last, parents) = parts.split_last().unwrap_or((&"", &[]));
    let parent_path = canonical_path(parents);
    let is_list = parent_path
        .as_ref()
        .and_then(|p| lookup(p, last))
        .is_some_and(|(_, kind)| kind == Kind::List);
    let mut value = if is_list {
        serde_json::Value::Array(vec![c.value.clone()])
    } else {
        c.value.clone()
    };
    for part in parts.iter().rev() {
        let mut object = serde_json::Map::new();
        object.insert((*part).to_string(), value);
        value = serde_json::Value::Object(object);
    }
    Ok(value.to_string())
}

/// The canonical path of a chain of struct sections (`["autoApprovers"]`), if it is one.
fn canonical_path(parts: &[&str]) -> Option<Vec<&'static str>> {
    let mut path = Vec::new();
    for part in parts {
        match lookup(&path, part) {
            Some((name, Kind::Struct)) => path.push(name),
            _ => return None,
        }
    }
    Some(path)
}

// ---- schema ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Map,
    Struct,
}

const ROOT_SECTIONS: &[(&str, Kind)] = &[
    ("acls", Kind::List),
    ("grants", Kind::List),
    ("ssh", Kind::List),
    ("nodeAttrs", Kind::List),
    ("tests", Kind::List),
    ("sshTests", Kind::List),
    ("groups", Kind::Map),
    ("tagOwners", Kind::Map),
    ("hosts", Kind::Map),
    ("postures", Kind::Map),
    ("ipsets", Kind::Map),
    ("autoApprovers", Kind::Struct),
];

const AUTO_APPROVER_SECTIONS: &[(&str, Kind)] = &[
    ("routes", Kind::Map),
    ("services", Kind::Map),
    ("exitNode", Kind::List),
];

/// A container's path by canonical section names: `[]` is the root.
type Path = Vec<&'static str>;

/// The modelled child `key` of the struct at `path` (case-insensitive), if any.
fn lookup(path: &[&str], key: &str) -> Option<(&'static str, Kind)> {
    let sections = match path {
        [] => ROOT_SECTIONS,
        ["autoApprovers"] => AUTO_APPROVER_SECTIONS,
        _ => &[],
    };
    sections
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .copied()
}

fn path_label(path: &[&str]) -> String {
    path.join(".")
}

fn child_path(path: &[&'static str], name: &'static str) -> Path {
    let mut child = path.to_vec();
    child.push(name);
    child
}

/// A section's value must have the shape the operator merges it as (array or object).
fn ensure_kind(
    value: &Node,
    kind: Kind,
    source: &str,
    section: &[&str],
) -> Result<(), ComposeError> {
    if value.has_kind(kind) {
        return Ok(());
    }
    Err(ComposeError::WrongType {
        source: source.to_string(),
        section: path_label(section),
        expected: expected(kind).to_string(),
    })
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::List => "an array",
        Kind::Map | Kind::Struct => "an object",
    }
}

// ---- parsed documents -----------------------------------------------------------------

/// A parsed HuJSON document with byte ranges, comment positions and line starts.
struct Doc<'a> {
    text: &'a str,
    root: Node,
    /// Every token, comments included, sorted by position.
    tokens: Vec<Tok>,
    line_starts: Vec<usize>,
    /// One level of indentation, as the document writes it (`"  "` when it cannot tell).
    unit: String,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    start: usize,
    end: usize,
    comment: bool,
    comma: bool,
}

struct Node {
    start: usize,
    end: usize,
    kind: NodeKind,
}

enum NodeKind {
    Object(Vec<Prop>),
    Array(Vec<Node>),
    Scalar,
}

struct Prop {
    key: String,
    start: usize,
    end: usize,
    value: Node,
}

/// Text copied from a source, with the indentation of the line it started on so it can be
/// re-indented without losing its inner layout.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    indent: String,
    /// The source's indentation unit, converted to the Base's when re-indenting.
    unit: String,
}

/// One list entry or object property from a source, with its comments.
#[derive(Debug, Clone)]
struct Chunk {
    leading: Vec<Piece>,
    body: Piece,
    trailing: Option<String>,
}

impl<'a> Doc<'a> {
    /// Strict parse first (so errors carry HuJSON's line and column), then the tree with
    /// ranges for splicing.
    fn parse(source: &str, text: &'a str) -> Result<Doc<'a>, ComposeError> {
        hujson::parse_strict(text).map_err(|e| ComposeError::Syntax {
            source: source.to_string(),
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        let collect = CollectOptions {
            comments: CommentCollectionStrategy::AsTokens,
            tokens: true,
        };
        // Already validated strictly above; the default options only build the tree.
        let parsed = parse_to_ast(text, &collect, &ParseOptions::default()).map_err(|e| {
            ComposeError::Syntax {
                source: source.to_string(),
                line: e.line_display(),
                column: e.column_display(),
                message: e.kind().to_string(),
            }
        })?;
        let root = match &parsed.value {
            Some(value @ Ast::Object(_)) => node(value),
            _ => {
                return Err(ComposeError::NotAnObject {
                    source: source.to_string(),
                });
            }
        };
        let tokens = parsed
            .tokens
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|t| Tok {
                start: t.range.start,
                end: t.range.end,
                comment: matches!(t.token, Token::CommentLine(_) | Token::CommentBlock(_)),
                comma: t.token == Token::Comma,
            })
            .collect();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut doc = Doc {
            text,
            root,
            tokens,
            line_starts,
            unit: String::new(),
        };
        doc.unit = doc.detect_unit();
        Ok(doc)
    }

    /// The indentation of the root's first property, when it starts a line.
    fn detect_unit(&self) -> String {
        match self.root.child_ranges().first() {
            Some(&(start, _)) if self.starts_line(start) && !self.indent_at(start).is_empty() => {
                self.indent_at(start).to_string()
            }
            _ => "  ".to_string(),
        }
    }

    fn line_of(&self, pos: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= pos) - 1
    }

    fn line_start(&self, pos: usize) -> usize {
        self.line_starts[self.line_of(pos)]
    }

    /// Leading spaces and tabs of the line holding `pos`.
    fn indent_at(&self, pos: usize) -> &'a str {
        let start = self.line_start(pos);
        let line = &self.text[start..];
        let width = line.len() - line.trim_start_matches([' ', '\t']).len();
        &self.text[start..start + width]
    }

    /// True when only spaces and tabs precede `pos` on its line.
    fn starts_line(&self, pos: usize) -> bool {
        self.text[self.line_start(pos)..pos]
            .chars()
            .all(|c| c == ' ' || c == '\t')
    }

    fn tokens_in(&self, from: usize, to: usize) -> impl Iterator<Item = &Tok> {
        let first = self.tokens.partition_point(|t| t.start < from);
        self.tokens[first..].iter().take_while(move |t| t.end <= to)
    }

    fn piece(&self, start: usize, end: usize) -> Piece {
        Piece {
            text: self.text[start..end].to_string(),
            indent: self.indent_at(start).to_string(),
            unit: self.unit.clone(),
        }
    }

    /// The entries (array) or properties (object) of `node`, with their comments: the comment
    /// lines before each child, and the comments on the line where it ends.
    fn chunks(&self, node: &Node) -> Vec<Chunk> {
        let ranges = node.child_ranges();
        let close = node.end.saturating_sub(1);
        let mut out = Vec::with_capacity(ranges.len());
        for (i, &(start, end)) in ranges.iter().enumerate() {
            let (from, previous_line) = match i.checked_sub(1).map(|p| ranges[p].1) {
                Some(previous_end) => (previous_end, Some(self.line_of(previous_end))),
                None => (node.start + 1, None),
            };
            let next = ranges.get(i + 1).map_or(close, |r| r.0);
            let leading = self
                .tokens_in(from, start)
                .filter(|t| t.comment && Some(self.line_of(t.start)) != previous_line)
                .map(|t| self.piece(t.start, t.end))
                .collect();
            let end_line = self.line_of(end);
            let trailing: Vec<&str> = self
                .tokens_in(end, next)
                .filter(|t| t.comment && self.line_of(t.start) == end_line)
                .map(|t| &self.text[t.start..t.end])
                .collect();
            out.push(Chunk {
                leading,
                body: self.piece(start, end),
                trailing: (!trailing.is_empty()).then(|| trailing.join(" ")),
            });
        }
        out
    }

    /// Is the first token after `pos` (comments skipped) a comma?
    fn comma_after(&self, pos: usize) -> bool {
        let first = self.tokens.partition_point(|t| t.start < pos);
        self.tokens[first..]
            .iter()
            .find(|t| !t.comment)
            .is_some_and(|t| t.comma)
    }
}

fn node(value: &Ast<'_>) -> Node {
    let range = value.range();
    let kind = match value {
        Ast::Object(object) => NodeKind::Object(
            object
                .properties
                .iter()
                .map(|p| Prop {
                    key: match &p.name {
                        ObjectPropName::String(s) => s.value.to_string(),
                        ObjectPropName::Word(w) => w.value.to_string(),
                    },
                    start: p.range.start,
                    end: p.range.end,
                    value: node(&p.value),
                })
                .collect(),
        ),
        Ast::Array(array) => NodeKind::Array(array.elements.iter().map(node).collect()),
        _ => NodeKind::Scalar,
    };
    Node {
        start: range.start,
        end: range.end,
        kind,
    }
}

impl Node {
    fn child_ranges(&self) -> Vec<(usize, usize)> {
        match &self.kind {
            NodeKind::Object(props) => props.iter().map(|p| (p.start, p.end)).collect(),
            NodeKind::Array(items) => items.iter().map(|n| (n.start, n.end)).collect(),
            NodeKind::Scalar => Vec::new(),
        }
    }

    fn props(&self) -> Option<&[Prop]> {
        match &self.kind {
            NodeKind::Object(props) => Some(props),
            _ => None,
        }
    }

    fn has_kind(&self, kind: Kind) -> bool {
        match kind {
            Kind::List => matches!(self.kind, NodeKind::Array(_)),
            Kind::Map | Kind::Struct => matches!(self.kind, NodeKind::Object(_)),
        }
    }
}

// ---- merging --------------------------------------------------------------------------

/// What one source adds, checked against the merge state before anything is applied.
enum Op {
    /// An entry appended to the list at `path`.
    Append { path: Path, chunk: Chunk },
    /// A key added to the map at `path`.
    AddKey {
        path: Path,
        key: String,
        chunk: Chunk,
    },
    /// An unmodelled setting added to the struct at `path` (the root or `autoApprovers`).
    AddSetting {
        path: Path,
        key: String,
        chunk: Chunk,
    },
}

/// Something to insert into a container.
enum Item {
    Chunk {
        source: String,
        chunk: Chunk,
    },
    /// A container the Base lacks, rendered from its own pending items.
    NewContainer {
        name: &'static str,
        kind: Kind,
    },
}

/// A container of the Base: where its brackets are and how its children sit.
struct BaseContainer {
    open: usize,
    close: usize,
    last_child: Option<(usize, usize)>,
}

struct Merger<'b> {
    base: &'b Doc<'b>,
    containers: HashMap<Path, BaseContainer>,
    /// Defined keys of each map section, with the source that defined them.
    map_keys: HashMap<Path, BTreeMap<String, String>>,
    /// Unmodelled settings of each struct (lowercased name), with the source that set them.
    settings: HashMap<Path, BTreeMap<String, String>>,
    /// Containers that exist in the Base or have been created for a source.
    exists: HashSet<Path>,
    pending: BTreeMap<Path, Vec<Item>>,
}

impl<'b> Merger<'b> {
    fn new(base: &'b Doc<'b>, name: &str) -> Result<Merger<'b>, ComposeError> {
        let mut merger = Merger {
            base,
            containers: HashMap::new(),
            map_keys: HashMap::new(),
            settings: HashMap::new(),
            exists: HashSet::new(),
            pending: BTreeMap::new(),
        };
        merger.index_struct(&base.root, Vec::new(), name)?;
        Ok(merger)
    }

    /// Records the Base's containers, keys and settings; a modelled section of the wrong type
    /// is an error (the Base is invalid whatever the fragments say).
    fn index_struct(
        &mut self,
        node: &'b Node,
        path: Path,
        source: &str,
    ) -> Result<(), ComposeError> {
        self.add_container(node, path.clone());
        for prop in node.props().unwrap_or_default() {
            let Some((name, kind)) = lookup(&path, &prop.key) else {
                self.settings
                    .entry(path.clone())
                    .or_default()
                    .entry(prop.key.to_lowercase())
                    .or_insert_with(|| source.to_string());
                continue;
            };
            let child = child_path(&path, name);
            ensure_kind(&prop.value, kind, source, &child)?;
            if self.exists.contains(&child) {
                // A second spelling of a section ("ACLs" next to "acls"): merge into the first.
                continue;
            }
            match kind {
                Kind::Struct => self.index_struct(&prop.value, child, source)?,
                Kind::List => self.add_container(&prop.value, child),
                Kind::Map => {
                    let keys = self.map_keys.entry(child.clone()).or_default();
                    for entry in prop.value.props().unwrap_or_default() {
                        keys.entry(entry.key.clone())
                            .or_insert_with(|| source.to_string());
                    }
                    self.add_container(&prop.value, child);
                }
            }
        }
        Ok(())
    }

    fn add_container(&mut self, node: &Node, path: Path) {
        let last_child = node.child_ranges().last().copied();
        self.containers.insert(
            path.clone(),
            BaseContainer {
                open: node.start,
                close: node.end.saturating_sub(1),
                last_child,
            },
        );
        self.exists.insert(path);
    }

    /// Merges one source, all or nothing.
    fn merge(&mut self, doc: &Doc<'_>, source: &str) -> Result<(), ComposeError> {
        let mut ops = Vec::new();
        collect_ops(doc, &doc.root, Vec::new(), source, &mut ops)?;
        self.check_conflicts(&ops, source)?;
        for op in ops {
            self.apply(op, source);
        }
        Ok(())
    }

    fn check_conflicts(&self, ops: &[Op], source: &str) -> Result<(), ComposeError> {
        // Keys this source defines itself: "ACLs"/"acls"-style duplicates inside one source.
        let mut own: HashSet<(&[&str], String)> = HashSet::new();
        for op in ops {
            let (path, key, name, section, defined_by) = match op {
                Op::Append { .. } => continue,
                Op::AddKey { path, key, .. } => (
                    path,
                    key,
                    key.clone(),
                    path_label(path),
                    self.map_keys.get(path).and_then(|keys| keys.get(key)),
                ),
                Op::AddSetting { path, key, .. } => {
                    let lower = key.to_lowercase();
                    let defined_by = self.settings.get(path).and_then(|s| s.get(&lower));
                    let mut full: Vec<&str> = path.clone();
                    full.push(key);
                    (path, key, lower, path_label(&full), defined_by)
                }
            };
            let first = match defined_by {
                Some(first) => Some(first.clone()),
                None => (!own.insert((path.as_slice(), name))).then(|| source.to_string()),
            };
            if let Some(first) = first {
                return Err(ComposeError::Conflict {
                    section,
                    key: key.clone(),
                    first,
                    second: source.to_string(),
                });
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: Op, source: &str) {
        let (container, chunk) = match op {
            Op::Append { path, chunk } => (path, chunk),
            Op::AddKey { path, key, chunk } => {
                self.map_keys
                    .entry(path.clone())
                    .or_default()
                    .insert(key, source.to_string());
                (path, chunk)
            }
            Op::AddSetting { path, key, chunk } => {
                self.settings
                    .entry(path.clone())
                    .or_default()
                    .insert(key.to_lowercase(), source.to_string());
                (path, chunk)
            }
        };
        self.ensure(&container);
        self.pending
            .entry(container)
            .or_default()
            .push(Item::Chunk {
                source: source.to_string(),
                chunk,
            });
    }

    /// Makes sure the container at `path` exists, creating it (and its parents) as new
    /// properties of the nearest existing ancestor.
    fn ensure(&mut self, path: &[&'static str]) {
        if self.exists.contains(path) {
            return;
        }
        // The root is always in `exists`, so `path` has a last element here.
        let Some((name, parent)) = path.split_last() else {
            return;
        };
        self.ensure(parent);
        // Only modelled containers are ever created (ops target schema paths).
        let kind = lookup(parent, name).map_or(Kind::Map, |(_, kind)| kind);
        self.pending
            .entry(parent.to_vec())
            .or_default()
            .push(Item::NewContainer { name, kind });
        self.exists.insert(path.to_vec());
    }

    /// The Base text with every pending item spliced in.
    fn render(&self) -> String {
        let style = Style::of(self.base);
        let mut edits: Vec<(usize, String)> = Vec::new();
        for (path, items) in &self.pending {
            if let Some(container) = self.containers.get(path) {
                self.splice(container, path, items, &style, &mut edits);
            }
        }
        // Stable: edits at one position keep the order they were made in.
        edits.sort_by_key(|(pos, _)| *pos);
        let text = self.base.text;
        let mut out =
            String::with_capacity(text.len() + edits.iter().map(|e| e.1.len()).sum::<usize>());
        let mut copied = 0;
        for (pos, insert) in edits {
            out.push_str(&text[copied..pos]);
            out.push_str(&insert);
            copied = pos;
        }
        out.push_str(&text[copied..]);
        out
    }

    fn splice(
        &self,
        container: &BaseContainer,
        path: &[&'static str],
        items: &[Item],
        style: &Style,
        edits: &mut Vec<(usize, String)>,
    ) {
        let base = self.base;
        let outer = base.indent_at(container.open);
        let indent = match container.last_child {
            Some((start, _)) if base.starts_line(start) => base.indent_at(start).to_string(),
            _ => format!("{outer}{}", style.unit),
        };
        let mut lines = String::new();
        self.render_items(path, items, &indent, style, &mut lines);
        if let Some((_, end)) = container.last_child {
            if !base.comma_after(end) {
                edits.push((end, ",".into()));
            }
        }
        let close = container.close;
        if base.starts_line(close) && base.line_of(close) > base.line_of(container.open) {
            // The closing bracket has its own line: the new lines go just above it.
            edits.push((base.line_start(close), lines));
        } else {
            edits.push((close, format!("{}{lines}{outer}", style.newline)));
        }
    }

    /// Renders items as whole lines at `indent`, each source's run under a `// from` line.
    fn render_items(
        &self,
        path: &[&'static str],
        items: &[Item],
        indent: &str,
        style: &Style,
        out: &mut String,
    ) {
        let nl = style.newline;
        let mut last_source: Option<&str> = None;
        for item in items {
            match item {
                Item::Chunk { source, chunk } => {
                    if last_source != Some(source.as_str()) {
                        let name = source.replace(['\n', '\r'], " ");
                        out.push_str(&format!("{indent}// from {name}{nl}"));
                        last_source = Some(source);
                    }
                    render_chunk(chunk, indent, style, out);
                }
                Item::NewContainer { name, kind } => {
                    last_source = None;
                    let (open, close) = match kind {
                        Kind::List => ('[', ']'),
                        Kind::Map | Kind::Struct => ('{', '}'),
                    };
                    let key = serde_json::Value::String((*name).to_string());
                    out.push_str(&format!("{indent}{key}: {open}{nl}"));
                    let child = child_path(path, name);
                    let inner = format!("{indent}{}", style.unit);
                    let child_items = self.pending.get(&child).map_or(&[][..], Vec::as_slice);
                    self.render_items(&child, child_items, &inner, style, out);
                    out.push_str(&format!("{indent}{close},{nl}"));
                }
            }
        }
    }
}

/// Walks a source's root (or `autoApprovers`) and lists what it adds, checking section types.
fn collect_ops(
    doc: &Doc<'_>,
    node: &Node,
    path: Path,
    source: &str,
    ops: &mut Vec<Op>,
) -> Result<(), ComposeError> {
    let props = node.props().unwrap_or_default();
    for (prop, chunk) in props.iter().zip(doc.chunks(node)) {
        let Some((name, kind)) = lookup(&path, &prop.key) else {
            ops.push(Op::AddSetting {
                path: path.clone(),
                key: prop.key.clone(),
                chunk,
            });
            continue;
        };
        let child = child_path(&path, name);
        ensure_kind(&prop.value, kind, source, &child)?;
        match kind {
            Kind::Struct => collect_ops(doc, &prop.value, child, source, ops)?,
            Kind::List => ops.extend(doc.chunks(&prop.value).into_iter().map(|chunk| Op::Append {
                path: child.clone(),
                chunk,
            })),
            Kind::Map => {
                let entries = prop.value.props().unwrap_or_default();
                for (entry, chunk) in entries.iter().zip(doc.chunks(&prop.value)) {
                    ops.push(Op::AddKey {
                        path: child.clone(),
                        key: entry.key.clone(),
                        chunk,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Indentation unit and newline of the Base, so inserted lines look like their neighbours.
struct Style {
    unit: String,
    newline: &'static str,
}

impl Style {
    fn of(base: &Doc<'_>) -> Style {
        let unit = base.unit.clone();
        let newline = if base.text.contains("\r\n") {
            "\r\n"
        } else {
            "\n"
        };
        Style { unit, newline }
    }
}

fn render_chunk(chunk: &Chunk, indent: &str, style: &Style, out: &mut String) {
    let nl = style.newline;
    for comment in &chunk.leading {
        out.push_str(&reindent(comment, indent, style));
        out.push_str(nl);
    }
    out.push_str(&reindent(&chunk.body, indent, style));
    out.push(',');
    if let Some(trailing) = &chunk.trailing {
        out.push(' ');
        out.push_str(trailing);
    }
    out.push_str(nl);
}

/// Moves a piece to `indent`, keeping the relative indentation of its later lines (converted
/// from the source's indentation unit to the Base's).
fn reindent(piece: &Piece, indent: &str, style: &Style) -> String {
    let mut lines = piece
        .text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut out = format!("{indent}{}", lines.next().unwrap_or_default());
    for line in lines {
        out.push_str(style.newline);
        if line.trim().is_empty() {
            continue;
        }
        out.push_str(indent);
        match line.strip_prefix(piece.indent.as_str()) {
            Some(mut rest) => {
                while let Some(deeper) = rest.strip_prefix(piece.unit.as_str()) {
                    out.push_str(&style.unit);
                    rest = deeper;
                }
                out.push_str(rest);
            }
            None => out.push_str(line.trim_start()),
        }
    }
    out
}
