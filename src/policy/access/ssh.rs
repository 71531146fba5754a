//! Tailscale SSH: the policy's `ssh` rules and its `sshTests`.
//!
//! A rule `{"action": "accept"|"check", "src": [...], "dst": [...], "users": [...]}` lets a
//! source (users, groups, tags, `autogroup:member`, …) open SSH sessions to destination
//! devices (tags, `autogroup:self`, a user's devices, …) as one of the listed local users:
//! a name, `root`, `autogroup:nonroot` (any user but root) or `localpart:*@<domain>` (the
//! local part of the source user's login, when it is in that domain). Rules are tried in
//! order and the first that matches decides: `accept`, or `check` (the session needs a
//! recent re-authentication). No rule: denied.
//!
//! An `sshTests` entry `{"src", "dst": [hosts], "accept": [users], "check": [users], "deny":
//! [users]}` passes when, for every listed destination and local user, every source device
//! gets that outcome on every destination device.
//!
//! A rule the local evaluator cannot read (an unexpected selector) is not guessed at: it is
//! noted in the policy's warnings and the `sshTests` are then not run locally (Tailscale still
//! runs them on save), so a local gap never fails a test the API would pass.
use serde_json::{Map, Value};

use super::eval::{Atom, firsts};
use super::selector::{Position, Selector, parse_selector};
use super::{Defs, Endpoint, Policy, TailnetView, TestFailure};

/// What a matching rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshOutcome {
    Accept,
    Check,
    Deny,
}

impl SshOutcome {
    fn name(self) -> &'static str {
        match self {
            SshOutcome::Accept => "accept",
            SshOutcome::Check => "check",
            SshOutcome::Deny => "deny",
        }
    }
}

/// A local user pattern of a rule's `users`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalUser {
    Named(String),
    /// `autogroup:nonroot`
    NonRoot,
    /// `localpart:*@domain`
    LocalPart {
        domain: String,
    },
}

impl LocalUser {
    fn parse(text: &str) -> Result<LocalUser, String> {
        if text == "autogroup:nonroot" {
            return Ok(LocalUser::NonRoot);
        }
        if let Some(rest) = text.strip_prefix("localpart:") {
            return match rest.strip_prefix("*@") {
                Some(domain) if !domain.is_empty() => Ok(LocalUser::LocalPart {
                    domain: domain.to_owned(),
                }),
                _ => Err(format!("{text:?}: expected localpart:*@<domain>")),
            };
        }
        if text.starts_with("autogroup:") || text.is_empty() {
            return Err(format!("{text:?} is not a local user name"));
        }
        Ok(LocalUser::Named(text.to_owned()))
    }

    fn matches(&self, login: &str, src: &Atom) -> bool {
        match self {
            LocalUser::Named(name) => name == login,
            LocalUser::NonRoot => login != "root",
            LocalUser::LocalPart { domain } => src
                .user
                .as_deref()
                .and_then(|u| u.split_once('@'))
                .is_some_and(|(local, d)| local == login && d.eq_ignore_ascii_case(domain)),
        }
    }
}

/// One compiled `ssh` rule.
#[derive(Debug, Clone)]
pub(crate) struct SshRule {
    outcome: SshOutcome,
    src: Vec<Selector>,
    dst: Vec<Selector>,
    users: Vec<LocalUser>,
}

impl SshRule {
    fn matches(&self, src: &Atom, dst: &Atom, login: &str) -> bool {
        self.src.iter().any(|s| s.matches_src(src))
            && self.dst.iter().any(|d| d.matches_dst(src, dst))
            && self.users.iter().any(|u| u.matches(login, src))
    }
}

/// The compiled `ssh` section: the rules, or why it could not be read completely.
#[derive(Debug, Clone, Default)]
pub(crate) struct SshRules {
    rules: Vec<SshRule>,
    /// Rules left out (each `ssh[i]: why`); `sshTests` are not run locally when any is.
    unreadable: Vec<String>,
}

/// Compiles the `ssh` section. Never an error: what cannot be read is noted in `warnings`.
pub(crate) fn compile(
    section: Option<&Value>,
    defs: &Defs,
    warnings: &mut Vec<String>,
) -> SshRules {
    let mut out = SshRules::default();
    let Some(Value::Array(entries)) = section else {
        return out;
    };
    for (i, entry) in entries.iter().enumerate() {
        match compile_rule(entry, defs, warnings) {
            Ok(rule) => out.rules.push(rule),
            Err(why) => out.unreadable.push(format!("ssh[{i}]: {why}")),
        }
    }
    if !out.unreadable.is_empty() {
        warnings.push(format!(
            "ssh rules not evaluated locally ({}); sshTests are left to Tailscale",
            out.unreadable.join("; ")
        ));
    }
    out
}

fn compile_rule(entry: &Value, defs: &Defs, warnings: &mut Vec<String>) -> Result<SshRule, String> {
    let obj = entry.as_object().ok_or("must be an object")?;
    let outcome = match field(obj, "action").and_then(Value::as_str) {
        Some("accept") => SshOutcome::Accept,
        Some("check") => SshOutcome::Check,
        other => {
            return Err(format!(
                "action {other:?}: expected \"accept\" or \"check\""
            ));
        }
    };
    let strings = |name: &str| -> Result<Vec<&str>, String> {
        let items = field(obj, name)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{name:?} must be an array"))?;
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("{name:?}: {v} is not a string"))
            })
            .collect()
    };
    let mut selectors = |name: &str, position| -> Result<Vec<Selector>, String> {
        strings(name)?
            .into_iter()
            .map(|t| parse_selector(t, position, defs, warnings).map_err(|e| format!("{t:?}: {e}")))
            .collect()
    };
    let src = selectors("src", Position::Src)?;
    let dst = selectors("dst", Position::GrantDst)?;
    let users = strings("users")?
        .into_iter()
        .map(LocalUser::parse)
        .collect::<Result<_, _>>()?;
    Ok(SshRule {
        outcome,
        src,
        dst,
        users,
    })
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

impl Policy {
    /// The SSH outcome for `login` from `src` to `dst`: the first matching rule's action.
    fn ssh_outcome(&self, src: &Atom, dst: &Atom, login: &str) -> SshOutcome {
        self.ssh
            .rules
            .iter()
            .find(|r| r.matches(src, dst, login))
            .map_or(SshOutcome::Deny, |r| r.outcome)
    }

    /// Every source atom to every destination atom as `login`: the outcome if it is the same
    /// for all, else the first pair (in atom order) getting something other than `want`.
    fn ssh_check(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        login: &str,
        want: SshOutcome,
        view: &TailnetView,
    ) -> Result<Option<(SshOutcome, String, String)>, String> {
        let srcs = self.atoms(src, view)?;
        let dsts = self.atoms(dst, view)?;
        // Atoms every rule treats alike answer alike: one representative per class.
        let (src_reps, dst_reps) = self.ssh_representatives(&srcs, &dsts);
        for &s in &src_reps {
            for &d in &dst_reps {
                let got = self.ssh_outcome(&srcs[s], &dsts[d], login);
                if got != want {
                    return Ok(Some((got, srcs[s].label.clone(), dsts[d].label.clone())));
                }
            }
        }
        Ok(None)
    }

    fn ssh_representatives(&self, srcs: &[Atom], dsts: &[Atom]) -> (Vec<usize>, Vec<usize>) {
        let per_user = self.ssh.rules.iter().any(|r| {
            r.dst.iter().any(Selector::uses_self)
                || r.users
                    .iter()
                    .any(|u| matches!(u, LocalUser::LocalPart { .. }))
        });
        let user = |a: &Atom| if per_user { a.user.clone() } else { None };
        let src_key = |a: &Atom| -> (Vec<bool>, Option<String>) {
            let sig = self
                .ssh
                .rules
                .iter()
                .map(|r| r.src.iter().any(|s| s.matches_src(a)))
                .collect();
            (sig, user(a))
        };
        let dst_key = |a: &Atom| -> (Vec<bool>, Option<String>) {
            let sig = self
                .ssh
                .rules
                .iter()
                .flat_map(|r| r.dst.iter())
                .map(|d| !d.uses_self() && d.matches_dst(a, a))
                .collect();
            (sig, user(a))
        };
        (firsts(srcs, src_key), firsts(dsts, dst_key))
    }

    /// Runs the policy's `sshTests`. Empty when there are none, or when some `ssh` rule could
    /// not be read locally (see the module docs).
    pub(crate) fn run_ssh_tests(&self, view: &TailnetView) -> Vec<TestFailure> {
        let Some(Value::Array(tests)) = &self.ssh_tests else {
            return Vec::new();
        };
        if !self.ssh.unreadable.is_empty() {
            return Vec::new();
        }
        tests
            .iter()
            .enumerate()
            .filter_map(|(i, test)| self.run_ssh_test(i, test, view))
            .collect()
    }

    fn run_ssh_test(&self, i: usize, test: &Value, view: &TailnetView) -> Option<TestFailure> {
        let fail = |src: &str, errors: Vec<String>| {
            Some(TestFailure {
                src: src.to_owned(),
                errors,
            })
        };
        let Some(obj) = test.as_object() else {
            return fail("", vec![format!("sshTests[{i}]: must be an object")]);
        };
        let Some(src) = field(obj, "src").and_then(Value::as_str) else {
            return fail("", vec![format!("sshTests[{i}]: \"src\" must be a string")]);
        };
        let mut errors = Vec::new();
        let list = |name: &str, errors: &mut Vec<String>| -> Vec<String> {
            match field(obj, name) {
                None => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| {
                        let s = v.as_str().map(str::to_owned);
                        if s.is_none() {
                            errors.push(format!("sshTests[{i}].{name}: {v} is not a string"));
                        }
                        s
                    })
                    .collect(),
                Some(other) => {
                    errors.push(format!(
                        "sshTests[{i}].{name}: must be an array, found {other}"
                    ));
                    Vec::new()
                }
            }
        };
        let hosts = list("dst", &mut errors);
        let expectations: Vec<(String, SshOutcome)> = [
            ("accept", SshOutcome::Accept),
            ("check", SshOutcome::Check),
            ("deny", SshOutcome::Deny),
        ]
        .into_iter()
        .flat_map(|(name, want)| {
            list(name, &mut errors)
                .into_iter()
                .map(move |login| (login, want))
        })
        .collect();
        let source = match self.resolve_endpoint(src, view) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("src {src:?}: {e}"));
                return fail(src, errors);
            }
        };
        for host in &hosts {
            let target = match self.resolve_endpoint(host, view) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(format!("dst {host:?}: {e}"));
                    continue;
                }
            };
            for (login, want) in &expectations {
                match self.ssh_check(&source, &target, login, *want, view) {
                    Ok(None) => {}
                    Ok(Some((got, from, to))) => errors.push(format!(
                        "ssh as {login:?} to {host:?}: want: {}, got: {} from {from} to {to}",
                        want.name(),
                        got.name()
                    )),
                    Err(e) => errors.push(format!("dst {host:?}: {e}")),
                }
            }
        }
        if errors.is_empty() {
            None
        } else {
            fail(src, errors)
        }
    }
}
