//! Policies several tests share: a Base for the simulated demo tailnet (its users, tags and a
//! test that passes) and a team Fragment that composes with it.
#![allow(dead_code)]

/// A Base policy of the demo tailnet: two teams, owned tags, grants and a passing test.
pub const BASE: &str = r#"// Base policy of the demo tailnet (test fixture).
{
  // Teams, by login name.
  "groups": {
    "group:eng": ["alice@example.com", "carol@example.com"],
    "group:sre": ["bob@example.com", "dave@example.com"],
  },
  "tagOwners": {
    "tag:server": ["group:sre"],
    "tag:prod":   ["group:sre"],
    "tag:ci":     ["group:eng"],
  },
  "hosts": {
    "db-primary": "10.10.1.20",
  },
  "grants": [
    {"src": ["group:sre"], "dst": ["tag:prod", "tag:server"], "ip": ["*"]},
    {"src": ["group:eng"], "dst": ["tag:server"], "ip": ["tcp:443"]},
  ],
  "tests": [
    {"src": "carol@example.com", "accept": ["tag:server:443"], "deny": ["tag:prod:5432"]},
  ],
}
"#;

/// A Fragment of the data team: a group, a grant to the databases and its test.
pub const TEAM_DATA: &str = r#"{
  // The data team reaches the databases.
  "groups": {"group:data": ["erin@example.com"]},
  "grants": [{"src": ["group:data"], "dst": ["tag:prod"], "ip": ["tcp:5432"]}],
  "tests": [{"src": "erin@example.com", "accept": ["tag:prod:5432"]}],
}"#;
