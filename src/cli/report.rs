//! `tailnet-operator report [-f PATH]`: reads each area of the tailnet once
//! ([`crate::report::read`]) and writes the report as HTML or JSON. With `-f PATH`, each resource under
//! PATH is planned against the live tailnet (nothing is written) and shown desired against live.
use std::path::PathBuf;
use std::time::Duration;

use super::{CliError, within_deadline, write_stdout};
use crate::connection::{ConnectionArgs, connect};
use crate::file_mode;
use crate::snapshot::TailnetSnapshots;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Also plan the manifests of PATH (a YAML file or a directory) against the live tailnet and
    /// show each resource's state and drift (writes nothing).
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// `html` (one self-contained page) or `json`.
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Print the report's JSON Schema and exit (what docs/report.schema.json holds).
    #[arg(long)]
    pub schema: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Json,
}

pub async fn run(args: ReportArgs) -> Result<(), CliError> {
    if args.schema {
        let text = serde_json::to_string_pretty(&crate::report::schema()).unwrap_or_default();
        return write_stdout(&format!("{text}\n"));
    }
    // PATH is read and validated before anything connects: a typo fails fast.
    let manifests = match &args.path {
        Some(path) => {
            let manifests = file_mode::load(path)?;
            manifests.tailnet(path)?;
            for warning in file_mode::warnings(&manifests) {
                eprintln!("warning: {warning}");
            }
            Some((path, manifests))
        }
        None => None,
    };
    let connection = connect(&args.connection).await?;
    let snapshots = TailnetSnapshots::new(connection.client.clone(), Duration::from_secs(300));
    let build = async {
        let mut report = crate::report::read(&snapshots, connection.describe().to_owned()).await?;
        for note in &report.notes {
            eprintln!("warning: {note}");
        }
        if let Some((path, manifests)) = &manifests {
            let now = crate::resources::conditions::time_from(chrono::Utc::now());
            let resources = file_mode::with_status(manifests, &snapshots, &now).await?;
            let plan = file_mode::plan_manifests(manifests, &snapshots).await?;
            report.desired = Some(crate::report::desired(
                &path.display().to_string(),
                &resources,
                plan.output,
            ));
        }
        Ok::<_, CliError>(report)
    };
    let report = within_deadline(args.connection.deadline, connection.describe(), build).await?;
    let text = match args.format {
        ReportFormat::Html => crate::report::render_html(&report),
        ReportFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text).map_err(|source| CliError::Io {
            context: format!("could not write {}", path.display()),
            source,
        }),
        None => write_stdout(&text),
    }
}
