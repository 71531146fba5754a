//! `tailnet-operator policy test|diff` end to end: files in a temporary directory, the real
//! binary, exit codes and output.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_tailnet-operator");

/// A fresh directory per test (no tempfile dependency); removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tailnet-operator-policy-cli-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn policy(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .arg("policy")
        .args(args)
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the binary runs")
}

fn run_test(file: &Path) -> Output {
    policy(&["test".as_ref(), file.as_os_str()])
}

fn run_diff(old: &Path, new: &Path) -> Output {
    policy(&["diff".as_ref(), old.as_os_str(), new.as_os_str()])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const POLICY: &str = r#"// The team's policy.
{
  "groups": {"group:eng": ["alice@example.com", "bob@example.com"]},
  "tagOwners": {"tag:web": ["group:eng"], "tag:db": ["group:eng"]},
  "hosts": {"db-primary": "100.64.0.10"},
  "grants": [
    {"src": ["group:eng"], "dst": ["tag:web"], "ip": ["tcp:443"]},
    {"src": ["tag:web"], "dst": ["tag:db"], "ip": ["tcp:5432"]},
  ],
  "tests": [
    {"src": "alice@example.com", "accept": ["tag:web:443"], "deny": ["tag:db:5432"]},
    {"src": "tag:web", "proto": "tcp", "accept": ["tag:db:5432"], "deny": ["tag:db:22"]},
  ],
}
"#;

#[test]
fn test_passes_with_exit_0() {
    let dir = TempDir::new();
    let output = run_test(&dir.file("policy.hujson", POLICY));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert_eq!(stdout(&output), "ok: 2 of 2 tests passed\n");
    assert!(stderr(&output).contains("offline: evaluating 2 users and 2 tags"));
}

#[test]
fn a_failing_test_exits_1_and_is_named_by_its_src() {
    let dir = TempDir::new();
    let failing = POLICY.replace(
        r#""tests": ["#,
        r#""tests": [
    {"src": "carol@example.com", "accept": ["tag:web:443"]},"#,
    );
    let output = run_test(&dir.file("policy.hujson", &failing));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "FAIL carol@example.com\n  address \"tag:web:443\": want: Accept, got: Drop\n1 of 3 tests failed\n"
    );
}

#[test]
fn a_syntax_error_exits_1_with_line_and_column() {
    let dir = TempDir::new();
    let file = dir.file(
        "broken.hujson",
        "{\n  \"acls\": [\n    {'action': 'accept'},\n  ],\n}\n",
    );
    let output = run_test(&file);
    assert_eq!(output.status.code(), Some(1));
    let expected = format!("{}:3:6: invalid HuJSON: ", file.display());
    assert!(
        stdout(&output).starts_with(&expected),
        "{}",
        stdout(&output)
    );
}

#[test]
fn an_invalid_policy_exits_1_with_an_actionable_message() {
    let dir = TempDir::new();
    let file = dir.file(
        "policy.hujson",
        r#"{"grants": [{"src": ["autogroup:member"], "dst": ["tag:web"], "ip": ["443"]}], "tests": [{"src": "tag:web", "deny": ["tag:web:22"]}]}"#,
    );
    let output = run_test(&file);
    assert_eq!(output.status.code(), Some(1));
    let label = file.display();
    assert_eq!(
        stdout(&output),
        format!(
            "{label}: tag \"tag:web\" is used in grants[0].dst[0] but not defined in tagOwners: add \
             it to tagOwners (e.g. \"tag:web\": [\"autogroup:admin\"]) in the Base TailnetPolicy or \
             a Fragment\n{label}: the policy is invalid; no test was run\n"
        )
    );
}

#[test]
fn a_policy_without_tests_passes() {
    let dir = TempDir::new();
    let output = run_test(&dir.file("p.hujson", r#"{"acls": []}"#));
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).ends_with("is valid; it has no tests\n"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn diff_without_changes_exits_0() {
    let dir = TempDir::new();
    let old = dir.file("old.hujson", POLICY);
    // Same access, different text: comments, order and an added test do not matter.
    let new = dir.file(
        "new.hujson",
        &POLICY
            .replace("// The team's policy.", "// Reformatted.")
            .replace(
                r#""tests": ["#,
                r#""tests": [{"src": "bob@example.com", "accept": ["tag:web:443"]},"#,
            ),
    );
    let output = run_diff(&old, &new);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert_eq!(stdout(&output), "no access changes\n");
}

#[test]
fn diff_with_changes_exits_2_and_lists_gained_and_lost_pairs() {
    let dir = TempDir::new();
    let old = dir.file("old.hujson", POLICY);
    let new = dir.file(
        "new.hujson",
        &POLICY
            .replace(r#""ip": ["tcp:443"]"#, r#""ip": ["tcp:443", "tcp:80"]"#)
            .replace(
                r#"{"src": ["tag:web"], "dst": ["tag:db"], "ip": ["tcp:5432"]},"#,
                r#"{"src": ["alice@example.com"], "dst": ["db-primary"], "ip": ["tcp:5432"]},"#,
            ),
    );
    let output = run_diff(&old, &new);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "+ alice@example.com -> db-primary tcp:5432\n\
         + alice@example.com -> tag:web tcp:80\n\
         + bob@example.com -> tag:web tcp:80\n\
         - tag:web -> tag:db tcp:5432\n\
         3 gained, 1 lost\n"
    );
    assert!(
        stderr(&output).contains("named in the two policies"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn diff_derives_identities_from_both_policies() {
    // carol only appears in the new policy: her gained access must still show.
    let dir = TempDir::new();
    let old = dir.file("old.hujson", r#"{"acls": []}"#);
    let new = dir.file(
        "new.hujson",
        r#"{"grants": [{"src": ["carol@example.com"], "dst": ["10.0.0.0/8"], "ip": ["tcp:22"]}]}"#,
    );
    let output = run_diff(&old, &new);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stdout(&output),
        "+ carol@example.com -> 10.0.0.0/8 tcp:22\n1 gained, 0 lost\n"
    );
}

#[test]
fn diff_of_an_invalid_policy_exits_1_naming_the_file() {
    let dir = TempDir::new();
    let old = dir.file("old.hujson", POLICY);
    let new = dir.file(
        "new.hujson",
        r#"{"grants": [{"src": ["group:ops"], "dst": ["*"], "ip": ["*"]}]}"#,
    );
    let output = run_diff(&old, &new);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains(&format!(
            "{}: group \"group:ops\" is used in grants[0].src[0]",
            new.display()
        )),
        "{}",
        stderr(&output)
    );
    let broken = dir.file("broken.hujson", "{\"acls\": [}");
    let output = run_diff(&old, &broken);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("{}:1:", broken.display())),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreadable_file_exits_1() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.hujson");
    let output = run_test(&missing);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("could not read the policy file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_documents_the_exit_codes_and_the_offline_view() {
    let diff = policy(&["diff".as_ref(), "--help".as_ref()]);
    let text = stdout(&diff);
    assert!(
        text.contains("0 no access changes, 2 access changes, 1 error"),
        "{text}"
    );
    assert!(
        text.contains("one device per user and one per tag"),
        "{text}"
    );
    let test = stdout(&policy(&["test".as_ref(), "--help".as_ref()]));
    assert!(
        test.contains("Exit status: 0 when the policy is valid and every test passes"),
        "{test}"
    );
}
