//! `proposal::manifest_patch` on the repository's own examples: the diff touches only what the
//! patch changes, and `git apply` takes it (when git is installed; the diff shape is checked
//! regardless).
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use tailnet_operator::proposal;

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_policy_patch_against_the_example_is_minimal_and_applies_with_git() {
    let text = example("policy-base.yaml");
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    let policy = doc["spec"]["policy"].as_str().unwrap();
    let new_policy = policy.replace(
        "\"group:sre\":    [\"bob@example.com\", \"dave@example.com\"],",
        "\"group:sre\":    [\"bob@example.com\", \"dave@example.com\", \"erin@example.com\"],",
    );
    assert_ne!(
        policy, new_policy,
        "the example changed; adjust the test's edit"
    );
    let patch = json!({"spec": {"policy": new_policy, "driftPolicy": "Report"}});
    let patched = proposal::apply_merge_patch(&doc, &patch);
    let diff = proposal::manifest_patch("examples/policy-base.yaml", &text, 0, &patched).unwrap();

    let removed: Vec<&str> = diff
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .collect();
    let added: Vec<&str> = diff
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .collect();
    assert_eq!(removed.len(), 2, "{diff}");
    assert_eq!(added.len(), 2, "{diff}");
    assert!(
        added.iter().any(|l| l.contains("erin@example.com")),
        "{diff}"
    );
    assert!(added.contains(&"+  driftPolicy: Report"), "{diff}");

    let dir =
        std::env::temp_dir().join(format!("tailnet-operator-git-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("examples")).unwrap();
    std::fs::write(dir.join("examples/policy-base.yaml"), &text).unwrap();
    std::fs::write(dir.join("change.patch"), &diff).unwrap();
    let git = Command::new("git")
        .args(["apply", "change.patch"])
        .current_dir(&dir)
        .output();
    if let Ok(out) = git {
        assert!(
            out.status.success(),
            "git apply: {}\n{diff}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied = std::fs::read_to_string(dir.join("examples/policy-base.yaml")).unwrap();
        let reparsed: Value = serde_saphyr::from_str(&applied).unwrap();
        assert_eq!(reparsed, patched);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
