//! One JSONL line per tool call: time, client, tool, outcome and duration. Arguments and
//! results are left out on purpose: they may hold anything an assistant pasted, and the audit
//! log must never become a place secrets end up.
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

/// Who called: set by the HTTP layer from the peer address (never from a header the client
/// controls); `stdio` for the stdio transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity(pub String);

impl ClientIdentity {
    /// The identity the HTTP layer put in the request's extensions, which rmcp hands to tools
    /// as `http::request::Parts`; `stdio` when there is none.
    pub fn of(extensions: &rmcp::model::Extensions) -> ClientIdentity {
        extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<ClientIdentity>())
            .cloned()
            .unwrap_or_else(|| ClientIdentity("stdio".to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// The tool ran and reported an error (e.g. an invalid patch).
    Error,
    /// No such tool, or disabled (`--read-only`).
    Refused,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    client: &'a str,
    tool: &'a str,
    outcome: Outcome,
    duration_ms: u128,
}

/// Where the lines go.
#[derive(Clone)]
pub struct AuditLog {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl AuditLog {
    pub fn stderr() -> AuditLog {
        AuditLog {
            sink: Arc::new(Mutex::new(Box::new(std::io::stderr()))),
        }
    }

    /// Appends to `path` (created if missing).
    pub fn file(path: &Path) -> std::io::Result<AuditLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditLog {
            sink: Arc::new(Mutex::new(Box::new(file))),
        })
    }

    pub fn record(&self, client: &ClientIdentity, tool: &str, outcome: Outcome, took: Duration) {
        let line = Line {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            client: &client.0,
            tool,
            outcome,
            duration_ms: took.as_millis(),
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        // An audit line that cannot be written is reported, not fatal to the call.
        if let Err(err) = sink.write_all(text.as_bytes()).and_then(|()| sink.flush()) {
            tracing::warn!("could not write the MCP audit line: {err}");
        }
    }
}
