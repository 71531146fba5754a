//! Adopting a console edit of a policy composed from a Base, Fragments and contributions: each
//! changed entry of the live file is given to the source that owns it, and that source's text
//! is edited in place (the live entry's text spliced in, every other byte kept).
//!
//! - A map section's key (`groups`, `tagOwners`, `hosts`, `postures`, `ipsets`) belongs to
//!   the source defining it: a Fragment's group changed in the console stays in the Fragment.
//!   A key added in the console goes to the Base, and so does a whole section added there. A
//!   key removed, or one a contribution of another kind owns, is refused with the reason.
//! - Any other section changed in the console (`acls`, `grants`, ...) belongs to the one
//!   source that has it; a section several sources compose into is refused (nothing says which
//!   entry came from where once edited).
//! - One proposal changes one resource: edits that belong to several sources are refused,
//!   naming each.
//!
//! The caller recomposes with the edited text and proposes only when the result reproduces the
//! live file exactly (by fingerprint): anything else the console changed (a comment, an order)
//! makes the adoption refuse rather than silently revert it.
use serde_json::Value;

use crate::policy::hujson::{self, insert_member, value_span};

/// Map sections whose keys each belong to one source (as the composer merges them).
const MAP_SECTIONS: [&str; 5] = ["groups", "tagOwners", "hosts", "postures", "ipsets"];

/// A source of the composition: its name and text.
pub(super) struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
    pub base: bool,
}

/// Which source the console's edits belong to, and its text with them.
#[derive(Debug)]
pub(super) struct Attributed {
    pub source: usize,
    pub text: String,
    /// What moved, e.g. `groups.group:data`.
    pub entries: Vec<String>,
}

fn section<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The edits turning `composed` into `live`, attributed to `sources` (see the module docs).
pub(super) fn attribute(
    live: &str,
    composed: &str,
    sources: &[Source<'_>],
) -> Result<Attributed, String> {
    let parse = |what: &str, text: &str| {
        hujson::parse_strict(text).map_err(|e| format!("{what} does not parse: {e}"))
    };
    let live_doc = parse("the live policy", live)?;
    let composed_doc = parse("the composed policy", composed)?;
    let docs: Vec<Value> = sources
        .iter()
        .map(|s| parse(s.name, s.text))
        .collect::<Result<_, _>>()?;
    let base = sources
        .iter()
        .position(|s| s.base)
        .ok_or("no Base among the sources")?;
    let mut texts: Vec<String> = sources.iter().map(|s| s.text.to_owned()).collect();
    let mut touched: Vec<Vec<String>> = vec![Vec::new(); sources.len()];
    let live_text =
        |path: &[&str]| value_span(live, path).map(|span| live[span.start..span.end].to_owned());

    let mut names: Vec<String> = Vec::new();
    for doc in [&live_doc, &composed_doc] {
        for key in doc.as_object().into_iter().flat_map(|o| o.keys()) {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(key)) {
                names.push(key.clone());
            }
        }
    }
    for name in &names {
        let (lv, cv) = (section(&live_doc, name), section(&composed_doc, name));
        if lv == cv {
            continue;
        }
        let is_map = MAP_SECTIONS.iter().any(|m| m.eq_ignore_ascii_case(name));
        match (is_map, lv, cv) {
            (true, Some(Value::Object(live_map)), Some(Value::Object(composed_map))) => {
                for (key, value) in live_map {
                    if composed_map.get(key) == Some(value) {
                        continue;
                    }
                    let owner = docs
                        .iter()
                        .position(|d| section(d, name).and_then(|s| s.get(key)).is_some());
                    let entry = format!("{name}.{key}");
                    let new_text = live_text(&[name, key])
                        .ok_or_else(|| format!("{entry}: not found in the live text"))?;
                    let edited = match (owner, composed_map.contains_key(key)) {
                        (Some(i), _) => {
                            let span = value_span(&texts[i], &[name, key]).ok_or_else(|| {
                                format!("{entry}: not found in {}", sources[i].name)
                            })?;
                            texts[i].replace_range(span.start..span.end, &new_text);
                            i
                        }
                        (None, true) => {
                            return Err(format!(
                                "{entry} is contributed by another kind (e.g. a \
                                 TailscaleService or FunnelExposure): change that resource"
                            ));
                        }
                        (None, false) => {
                            texts[base] = insert_member(&texts[base], &[name], key, &new_text)
                                .ok_or_else(|| {
                                    format!(
                                        "{entry} was added in the console, and the Base has no \
                                         {name} section to add it to: add it by hand"
                                    )
                                })?;
                            base
                        }
                    };
                    touched[edited].push(entry);
                }
                if let Some(key) = composed_map.keys().find(|k| !live_map.contains_key(*k)) {
                    return Err(format!(
                        "{name}.{key} was removed in the console: remove it from its source by \
                         hand"
                    ));
                }
            }
            // A whole section added in the console goes to the Base.
            (_, Some(_), None) => {
                let new_text = live_text(&[name])
                    .ok_or_else(|| format!("section {name:?}: not found in the live text"))?;
                texts[base] = insert_member(&texts[base], &[], name, &new_text)
                    .ok_or_else(|| format!("section {name:?} could not be added to the Base"))?;
                touched[base].push(name.clone());
            }
            _ => {
                let owners: Vec<usize> = (0..docs.len())
                    .filter(|i| section(&docs[*i], name).is_some())
                    .collect();
                let owner = match owners.as_slice() {
                    [one] if section(&composed_doc, name) == section(&docs[*one], name) => *one,
                    [] | [_] => {
                        return Err(format!(
                            "section {name:?} changed, and it is (also) contributed by another \
                             kind: change that resource"
                        ));
                    }
                    many => {
                        let names: Vec<&str> = many.iter().map(|i| sources[*i].name).collect();
                        return Err(format!(
                            "section {name:?} changed, and it is composed from {}: which \
                             entry belongs where cannot be told; edit them by hand",
                            names.join(", ")
                        ));
                    }
                };
                let new_text = live_text(&[name]).ok_or_else(|| {
                    format!("section {name:?} was removed in the console: remove it by hand")
                })?;
                let span = value_span(&texts[owner], &[name]).ok_or_else(|| {
                    format!("section {name:?} not found in {}", sources[owner].name)
                })?;
                texts[owner].replace_range(span.start..span.end, &new_text);
                touched[owner].push(name.clone());
            }
        }
    }
    let edited: Vec<usize> = (0..sources.len())
        .filter(|i| !touched[*i].is_empty())
        .collect();
    match edited.as_slice() {
        [] => Err(
            "no entry differs: only comments or formatting changed in the console; \
                   adopt by editing the Base's text by hand"
                .into(),
        ),
        [one] => Ok(Attributed {
            source: *one,
            text: texts[*one].clone(),
            entries: touched[*one].clone(),
        }),
        many => {
            let parts: Vec<String> = many
                .iter()
                .map(|i| format!("{}: {}", sources[*i].name, touched[*i].join(", ")))
                .collect();
            Err(format!(
                "the console's edits belong to several sources ({}); a proposal changes one \
                 resource: propose each change with propose_patch",
                parts.join("; ")
            ))
        }
    }
}
