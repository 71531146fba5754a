//! Loading PATH: every YAML document under it, dispatched by `kind` through the one list of
//! kinds ([`crate::resources::kinds`]), each checked against its Rust type as it is read.
//!
//! - PATH is a YAML file or a directory read recursively (`*.yaml`, `*.yml`, sorted by path);
//!   files may hold several documents.
//! - Documents of the operator's kinds (apiVersion `tailnet.ops.dev/...`) are kept; `ConfigMap`s
//!   (apiVersion `v1`) are the sources of `policyFrom.configMapKeyRef`; other kinds of the
//!   operator's group are skipped with a warning ("not supported yet in file mode"); anything
//!   else is an error naming the file, the document and the kinds it knows.
//! - Every document of the operator's kinds is validated as the API server would validate it
//!   (its CRD's schema with unknown fields as errors, with a "did you mean" for a near miss; its
//!   CEL rules; its Rust type), before anything connects or writes: one invalid document fails
//!   the run naming the file, the document and the field paths.
//! - One PATH manages one tailnet: the `tailnetRef`s of its tailnet-scoped documents agree.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resources::common::{DEFAULT_TAILNET_REF, GROUP};
use crate::resources::{KindRow, kinds};

/// Why PATH cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileModeError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid YAML: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("{}: refused: {why}", path.display())]
    Refused { path: PathBuf, why: String },
    #[error(
        "{}: document {index} has no `kind`: every document needs apiVersion and kind",
        path.display()
    )]
    NoKind { path: PathBuf, index: usize },
    #[error(
        "{}: document {index} is kind {kind:?} (apiVersion {api_version:?}), which file mode \
         does not know: use {known} (apiVersion {GROUP}/v1alpha1) or ConfigMap (v1)",
        path.display()
    )]
    UnknownKind {
        path: PathBuf,
        index: usize,
        kind: String,
        api_version: String,
        /// The operator's kinds, from the registry.
        known: String,
    },
    #[error("{}: {kind} document {index} does not match its schema: {message}", path.display())]
    Invalid {
        path: PathBuf,
        index: usize,
        kind: String,
        message: String,
    },
    #[error(
        "{}: no *.yaml or *.yml file with a resource that belongs to a tailnet ({known})",
        path.display()
    )]
    NothingToDo { path: PathBuf, known: String },
    #[error(
        "the resources under {} name several tailnets ({}): file mode manages one \
         tailnet per run; split them into one directory per tailnet",
        path.display(),
        tailnets.join(", ")
    )]
    SeveralTailnets {
        path: PathBuf,
        tailnets: Vec<String>,
    },
}

/// One document of the operator's kinds, as read (already checked against its Rust type).
#[derive(Debug, Clone)]
pub struct Document {
    pub kind: String,
    pub file: PathBuf,
    /// 1-based position in its file.
    pub index: usize,
    pub value: Value,
}

/// The documents found under PATH.
#[derive(Debug, Default, Clone)]
pub struct Manifests {
    /// Documents of the operator's kinds, in file order.
    pub documents: Vec<Document>,
    pub config_maps: Vec<ConfigMap>,
    /// Documents skipped, each naming its file and kind.
    pub warnings: Vec<String>,
    /// `--secrets-dir`: where KeyRotationPolicies keep their credentials without a cluster.
    pub secrets_dir: Option<PathBuf>,
}

/// The largest file read (a manifest is kilobytes; a policy with thousands of rules is well
/// under this). Bigger files are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads every YAML document under `path`.
pub fn load(path: &Path) -> Result<Manifests, FileModeError> {
    let rows = kinds();
    let mut manifests = Manifests::default();
    for file in yaml_files(path)? {
        let text = std::fs::read_to_string(&file).map_err(|source| FileModeError::Io {
            path: file.clone(),
            source,
        })?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| FileModeError::Yaml {
                path: file.clone(),
                message: yaml_error(&e.to_string()),
            })?;
        let sources = document_sources(&text);
        for (i, doc) in docs.into_iter().enumerate() {
            let source = sources
                .get(i)
                .map_or(("", 1), |(text, line)| (text.as_str(), *line));
            dispatch(&rows, &file, i + 1, doc, source, &mut manifests)?;
        }
    }
    Ok(manifests)
}

/// A YAML error without the source lines the parser quotes: those may be anything the file
/// holds (a symlink to `/proc/self/environ` would print the environment's secrets). Only the
/// first line is kept (position and kind), with quoted text elided.
fn yaml_error(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let mut out = String::new();
    let mut quoted = None;
    for c in first.chars() {
        match quoted {
            Some(close) if c == close => {
                quoted = None;
                out.push('…');
                out.push(c);
            }
            Some(_) => {}
            None => {
                out.push(c);
                quoted = match c {
                    '`' => Some('\''),
                    '"' => Some('"'),
                    _ => None,
                };
            }
        }
    }
    out
}

/// The YAML files under `path` (or `path` itself), sorted. Only regular files inside `path`
/// are read: a symlink leading out of it, and special files (devices, FIFOs, `/proc`, `/sys`,
/// `/dev`), are refused, as are files over [`MAX_FILE_BYTES`].
pub fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, FileModeError> {
    let io = |source| FileModeError::Io {
        path: path.to_owned(),
        source,
    };
    let root = path.canonicalize().map_err(io)?;
    if !root.is_dir() {
        check_file(path, &root, None)?;
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry_path = entry.map_err(io)?.path();
            let yaml = entry_path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml");
            let real = entry_path
                .canonicalize()
                .map_err(|source| FileModeError::Io {
                    path: entry_path.clone(),
                    source,
                })?;
            if !real.starts_with(&root) {
                if yaml || real.is_dir() {
                    return Err(refused(
                        &entry_path,
                        "it is a symlink that leads out of PATH",
                    ));
                }
                continue;
            }
            if real.is_dir() {
                // A symlink to a directory inside PATH would be read twice, or loop.
                if entry_path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    dirs.push(entry_path);
                }
            } else if yaml {
                check_file(&entry_path, &real, Some(&root))?;
                files.push(entry_path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn refused(path: &Path, why: &str) -> FileModeError {
    FileModeError::Refused {
        path: path.to_owned(),
        why: why.to_owned(),
    }
}

/// A file is read only when it is a regular file (not a device or FIFO, not under `/proc`,
/// `/sys` or `/dev`), inside `root` when there is one, and at most [`MAX_FILE_BYTES`].
fn check_file(path: &Path, real: &Path, root: Option<&Path>) -> Result<(), FileModeError> {
    if root.is_some_and(|root| !real.starts_with(root)) {
        return Err(refused(path, "it is a symlink that leads out of PATH"));
    }
    if ["/proc", "/sys", "/dev"]
        .iter()
        .any(|p| real.starts_with(p))
    {
        return Err(refused(path, "it leads to a system file, not a manifest"));
    }
    let metadata = std::fs::metadata(real).map_err(|source| FileModeError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !metadata.is_file() {
        return Err(refused(
            path,
            "not a regular file (a device, FIFO or socket)",
        ));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(refused(
            path,
            &format!(
                "{} bytes, over the {MAX_FILE_BYTES}-byte limit for a manifest file",
                metadata.len()
            ),
        ));
    }
    Ok(())
}

/// Each document's text and the file line it starts on, split at `---` lines as YAML does (text
/// before the first `---` is a document only when it holds something). Used to point a schema
/// problem at its line.
fn document_sources(text: &str) -> Vec<(String, usize)> {
    let mut documents: Vec<(String, usize)> = Vec::new();
    let mut current = (String::new(), 1);
    let mut separated = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") {
            let meaningful = current
                .0
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            if separated || meaningful {
                documents.push(std::mem::take(&mut current));
            }
            current = (String::new(), i + 2);
            separated = true;
            continue;
        }
        current.0.push_str(line);
        current.0.push('\n');
    }
    documents.push(current);
    documents
}

/// The line (in the file) of the field at `path` (`spec.splitDNS.x`, `spec.routes[1]`) in a
/// document's `source` starting at `first_line`: each key is looked for below its parent, more
/// indented. `None` when it cannot be placed (flow style, quoted keys).
fn field_line(source: &str, first_line: usize, path: &str) -> Option<usize> {
    let lines: Vec<&str> = source.lines().collect();
    let (mut from, mut indent) = (0, None::<usize>);
    let mut found = None;
    for key in path.split('.').map(|k| k.split('[').next().unwrap_or(k)) {
        let at = (from..lines.len()).find(|&i| {
            let line = lines[i];
            let depth = line.len() - line.trim_start().len();
            indent.is_none_or(|d| depth > d) && line.trim_start().starts_with(&format!("{key}:"))
        })?;
        indent = Some(lines[at].len() - lines[at].trim_start().len());
        from = at + 1;
        found = Some(at);
    }
    found.map(|at| first_line + at)
}

/// `problem` (`spec.x: what is wrong`) with the line of its field in front, when found.
fn with_line(problem: &str, source: (&str, usize)) -> String {
    let path = problem.split_once(':').map_or("", |(p, _)| p.trim());
    match field_line(source.0, source.1, path) {
        Some(line) => format!("line {line}: {problem}"),
        None => problem.to_owned(),
    }
}

fn dispatch(
    rows: &[KindRow],
    file: &Path,
    index: usize,
    doc: Value,
    source: (&str, usize),
    manifests: &mut Manifests,
) -> Result<(), FileModeError> {
    if doc.is_null() {
        return Ok(()); // an empty document (`---` at the end of a file)
    }
    let text = |key: &str| doc.get(key).and_then(Value::as_str).unwrap_or_default();
    let (kind, api_version) = (text("kind").to_owned(), text("apiVersion").to_owned());
    if kind.is_empty() {
        return Err(FileModeError::NoKind {
            path: file.to_owned(),
            index,
        });
    }
    let invalid = |message: String| FileModeError::Invalid {
        path: file.to_owned(),
        index,
        kind: kind.clone(),
        message,
    };
    if kind == "ConfigMap" && api_version == "v1" {
        let map = serde_json::from_value(doc).map_err(|e| invalid(e.to_string()))?;
        manifests.config_maps.push(map);
        return Ok(());
    }
    let ours = api_version.starts_with(&format!("{GROUP}/"));
    let row = rows.iter().find(|r| ours && r.kind() == kind);
    if ours && row.is_none() {
        // A kind of the design this build does not serve yet (issue 11 decides whether that
        // should fail the run).
        manifests.warnings.push(format!(
            "{}: document {index}: kind {kind} is not supported yet in file mode; skipped",
            file.display()
        ));
        return Ok(());
    }
    let Some(row) = row else {
        return Err(FileModeError::UnknownKind {
            path: file.to_owned(),
            index,
            kind,
            api_version,
            known: known_kinds(rows),
        });
    };
    // As the API server would (`kubectl apply --validate=strict`): schema with unknown fields
    // as errors, CEL rules, the Rust type. Every document is checked before the first write.
    let problems = match crate::proposal::kinds::lookup(&kind) {
        Ok(entry) => crate::proposal::validate_new(entry, &doc),
        Err(_) => (row.typed)(&doc).err().into_iter().collect(),
    };
    if !problems.is_empty() {
        let located: Vec<String> = problems.iter().map(|p| with_line(p, source)).collect();
        return Err(invalid(located.join("; ")));
    }
    manifests.documents.push(Document {
        kind,
        file: file.to_owned(),
        index,
        value: doc,
    });
    Ok(())
}

/// The operator's kinds, for messages: `A, B, C`.
fn known_kinds(rows: &[KindRow]) -> String {
    rows.iter()
        .map(|r| r.kind().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Manifests {
    /// The documents of kind `K`, typed (they were checked against `K` when read).
    pub fn of<K: Resource<DynamicType = ()> + DeserializeOwned>(&self) -> Vec<K> {
        let kind = K::kind(&());
        self.documents
            .iter()
            .filter(|d| d.kind == kind)
            .filter_map(|d| serde_json::from_value(d.value.clone()).ok())
            .collect()
    }

    /// A ManagedTailnet's `spec.suspend` suspends every resource of that tailnet, as in a
    /// cluster: when the ManagedTailnet document named `tailnet` has `suspend: true`, every
    /// tailnet-scoped document gets `spec.suspend: true` (observe and report, write nothing).
    /// Returns whether it did.
    pub fn apply_tailnet_suspension(&mut self, tailnet: &str) -> bool {
        let suspended = self.documents_of("ManagedTailnet").any(|d| {
            d.value.pointer("/metadata/name").and_then(Value::as_str) == Some(tailnet)
                && d.value.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true)
        });
        if !suspended {
            return false;
        }
        let rows = kinds();
        for document in &mut self.documents {
            let scoped = rows
                .iter()
                .any(|r| r.kind() == document.kind && r.tailnet_scoped());
            if let (true, Some(spec)) = (scoped, document.value.get_mut("spec")) {
                spec["suspend"] = Value::Bool(true);
            }
        }
        true
    }

    /// The documents of `kind`.
    pub fn documents_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Document> {
        self.documents.iter().filter(move |d| d.kind == kind)
    }

    /// The tailnet the resources manage (their `tailnetRef`), one per PATH. A document belongs
    /// to a tailnet when its kind's schema has `spec.tailnetRef`.
    pub fn tailnet(&self, path: &Path) -> Result<String, FileModeError> {
        let rows = kinds();
        let scoped: BTreeSet<&str> = rows
            .iter()
            .filter(|r| r.tailnet_scoped())
            .map(KindRow::kind)
            .collect();
        let refs: BTreeSet<String> = self
            .documents
            .iter()
            .filter(|d| scoped.contains(d.kind.as_str()))
            .map(|d| {
                d.value
                    .pointer("/spec/tailnetRef")
                    .and_then(Value::as_str)
                    .unwrap_or(DEFAULT_TAILNET_REF)
                    .to_owned()
            })
            .collect();
        match refs.len() {
            0 => Err(FileModeError::NothingToDo {
                path: path.to_owned(),
                known: scoped.into_iter().collect::<Vec<_>>().join(", "),
            }),
            1 => Ok(refs.into_iter().next().unwrap_or_default()),
            _ => Err(FileModeError::SeveralTailnets {
                path: path.to_owned(),
                tailnets: refs.into_iter().collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# two documents\n---\napiVersion: v1\nkind: ConfigMap\n---\n\
        apiVersion: tailnet.ops.dev/v1alpha1\nkind: DNSConfig\nmetadata:\n  name: d\nspec:\n  \
        magicDns: true\n  splitDNS:\n    corp.example.com:\n      - address: x\n";

    #[test]
    fn documents_are_split_at_their_separators_with_their_first_line() {
        let docs = document_sources(FILE);
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert_eq!(docs[0].1, 3);
        assert_eq!(docs[1].1, 6);
        assert!(docs[1].0.starts_with("apiVersion: tailnet.ops.dev"));
        assert_eq!(document_sources("a: 1\n").len(), 1);
    }

    #[test]
    fn a_field_path_points_at_its_line() {
        let docs = document_sources(FILE);
        let (text, first) = (docs[1].0.as_str(), docs[1].1);
        assert_eq!(field_line(text, first, "spec.magicDns"), Some(11));
        assert_eq!(
            field_line(text, first, "spec.splitDNS.corp.example.com"),
            None
        );
        assert_eq!(field_line(text, first, "spec.splitDNS"), Some(12));
        assert_eq!(
            with_line("spec.magicDns: unknown field", (text, first)),
            "line 11: spec.magicDns: unknown field"
        );
        assert_eq!(
            with_line("spec.nothere: x", (text, first)),
            "spec.nothere: x"
        );
    }
}
