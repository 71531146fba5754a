//! `tailnet-operator policy test|diff`: offline policy tools, no tailnet and no credentials.
//!
//! Both commands evaluate against [`offline_view`]: one device per user and per tag the
//! file(s) mention, since there is no tailnet to list devices from. The work is done by pure
//! functions returning a [`Report`] (stdout, stderr, exit code); [`run`] only reads the files
//! and prints.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::CliError;
use crate::policy::access::{Policy, TailnetView};
use crate::policy::checks::{CheckProblem, check_value, compile, offline_view};
use crate::policy::hujson::parse_strict;

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file and run its `tests` offline: strict HuJSON, undefined tags, groups
    /// and hosts, malformed rules, then each test in the local evaluator.
    #[command(after_help = TEST_HELP)]
    Test(TestArgs),
    /// Print the access two policy files differ by: `+ src -> dst proto:ports` gained,
    /// `- ...` lost.
    #[command(after_help = DIFF_HELP)]
    Diff(DiffArgs),
}

const TEST_HELP: &str = "\
Users and tags are those the file names (in acls, grants, tests, groups and tagOwners), one \
device each: a test's user must appear somewhere in the policy, as Tailscale requires the user \
to exist in the tailnet.

Exit status: 0 when the policy is valid and every test passes, 1 when a test fails or the \
policy is invalid (syntax errors give line and column).";

const DIFF_HELP: &str = "\
Without a tailnet, the devices are derived from the identities the two policies name: one \
device per user and one per tag (in acls, grants, tests, groups and tagOwners), without \
addresses, so IP, CIDR and hosts destinations appear as targets (e.g. `db`, `10.0.0.0/8`).

Exit status (as for `plan`): 0 no access changes, 2 access changes, 1 error (unreadable or \
invalid policy).";

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The policy file (HuJSON).
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The current policy file (HuJSON).
    pub old: PathBuf,
    /// The proposed policy file (HuJSON).
    pub new: PathBuf,
}

/// What a command prints and how it exits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

impl Report {
    fn out(&mut self, line: impl AsRef<str>) {
        self.stdout.push_str(line.as_ref());
        self.stdout.push('\n');
    }

    fn err(&mut self, line: impl AsRef<str>) {
        self.stderr.push_str(line.as_ref());
        self.stderr.push('\n');
    }
}

pub fn run(args: &PolicyArgs) -> Result<ExitCode, CliError> {
    let report = match &args.command {
        PolicyCommand::Test(a) => test_report(&a.file.display().to_string(), &read(&a.file)?),
        PolicyCommand::Diff(a) => diff_report(
            (&a.old.display().to_string(), &read(&a.old)?),
            (&a.new.display().to_string(), &read(&a.new)?),
        ),
    };
    super::write_stdout(&report.stdout)?;
    eprint!("{}", report.stderr);
    Ok(ExitCode::from(report.code))
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Io {
        context: format!("could not read the policy file {}", path.display()),
        source,
    })
}

/// `policy test`: problems and failing tests on stdout (by `src`, with each error).
pub fn test_report(label: &str, text: &str) -> Report {
    let mut report = Report::default();
    let Some(doc) = parse(label, text, &mut report, Report::out) else {
        return report;
    };
    let view = offline_view([&doc]);
    note_view(&view, "the file", &mut report);
    let outcome = check_value(&doc, &view);
    for warning in outcome.warnings() {
        report.err(format!("warning: {warning}"));
    }
    if outcome.policy.is_none() {
        for problem in &outcome.problems {
            report.out(format!("{label}: {problem}"));
        }
        report.out(format!("{label}: the policy is invalid; no test was run"));
        report.code = 1;
        return report;
    }
    let total = test_count(&doc);
    let mut failed = 0;
    for problem in &outcome.problems {
        let CheckProblem::TestFailed(failure) = problem else {
            report.out(format!("{label}: {problem}"));
            continue;
        };
        failed += 1;
        let src = if failure.src.is_empty() {
            "(test without src)"
        } else {
            &failure.src
        };
        report.out(format!("FAIL {src}"));
        for error in &failure.errors {
            report.out(format!("  {error}"));
        }
    }
    if outcome.is_ok() {
        match total {
            0 => report.out(format!("ok: {label} is valid; it has no tests")),
            n => report.out(format!("ok: {n} of {n} tests passed")),
        }
    } else {
        report.out(format!("{failed} of {total} tests failed"));
        report.code = 1;
    }
    report
}

/// `policy diff`: gained (`+`) and lost (`-`) pairs on stdout, errors on stderr.
pub fn diff_report(old: (&str, &str), new: (&str, &str)) -> Report {
    let mut report = Report::default();
    let (Some(old_doc), Some(new_doc)) = (
        parse(old.0, old.1, &mut report, Report::err),
        parse(new.0, new.1, &mut report, Report::err),
    ) else {
        return report;
    };
    let (Some(old_policy), Some(new_policy)) = (
        compiled(old.0, &old_doc, &mut report),
        compiled(new.0, &new_doc, &mut report),
    ) else {
        return report;
    };
    let view = offline_view([&old_doc, &new_doc]);
    note_view(&view, "the two policies", &mut report);
    let diff = old_policy.access_diff(&new_policy, &view);
    if diff.is_empty() {
        report.out("no access changes");
        return report;
    }
    for pair in &diff.gained {
        report.out(format!("+ {pair}"));
    }
    for pair in &diff.lost {
        report.out(format!("- {pair}"));
    }
    report.out(format!(
        "{} gained, {} lost",
        diff.gained.len(),
        diff.lost.len()
    ));
    report.code = 2;
    report
}

/// Strict parse; a syntax error is reported as `FILE:LINE:COLUMN: ...` with exit status 1.
fn parse(
    label: &str,
    text: &str,
    report: &mut Report,
    emit: fn(&mut Report, String),
) -> Option<Value> {
    match parse_strict(text) {
        Ok(doc) => Some(doc),
        Err(e) => {
            emit(
                report,
                format!(
                    "{label}:{}:{}: invalid HuJSON: {}",
                    e.line, e.column, e.message
                ),
            );
            report.code = 1;
            None
        }
    }
}

fn compiled(label: &str, doc: &Value, report: &mut Report) -> Option<Policy> {
    match compile(doc) {
        Ok(policy) => Some(policy),
        Err(problems) => {
            for problem in problems {
                report.err(format!("{label}: {problem}"));
            }
            report.code = 1;
            None
        }
    }
}

fn note_view(view: &TailnetView, from: &str, report: &mut Report) {
    let tagged = view.devices.iter().filter(|d| !d.tags.is_empty()).count();
    report.err(format!(
        "offline: evaluating {} users and {tagged} tags named in {from}, one device each",
        view.users.len()
    ));
}

fn test_count(doc: &Value) -> usize {
    doc.as_object()
        .and_then(|root| {
            root.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("tests"))
                .and_then(|(_, v)| v.as_array())
        })
        .map_or(0, Vec::len)
}
