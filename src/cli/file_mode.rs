//! `tailnet-operator plan -f PATH` and `apply -f PATH`: load PATH, connect, run every kind's
//! step ([`crate::file_mode`]), print, and exit with a code a CI pipeline can trust.
//!
//! The connection is the one `audit` uses (TS_* settings, else the embedded simulated tailnet,
//! said on stderr). One PATH manages one tailnet.
use std::path::PathBuf;
use std::time::Duration;

use crate::connection::{ConnectionArgs, connect};
use crate::file_mode::{self, Mode, load};
use crate::resources::ManagedTailnet;
use crate::snapshot::TailnetSnapshots;

/// Arguments of `plan` and `apply`.
#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// A YAML file, or a directory read recursively (*.yaml, *.yml).
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Loads PATH, connects, runs, prints; returns the exit code (plan: 0 no changes, 2 changes,
/// 1 error; apply: 0 all Ready, 1 otherwise).
pub async fn run(args: &FileArgs, mode: Mode) -> Result<std::process::ExitCode, super::CliError> {
    let mut manifests = load(&args.path)?;
    for warning in file_mode::warnings(&manifests) {
        eprintln!("warning: {warning}");
    }
    let tailnet = manifests.tailnet(&args.path)?;
    if manifests.apply_tailnet_suspension(&tailnet) {
        eprintln!(
            "ManagedTailnet/{tailnet} has spec.suspend: true: every resource of the tailnet is \
             observed and reported, nothing is written"
        );
    }
    for t in manifests.of::<ManagedTailnet>() {
        eprintln!(
            "ManagedTailnet/{}: file mode connects with the TS_* settings (or the embedded \
             simulated tailnet); the Secret references in its spec are used by the controller \
             only",
            t.metadata.name.as_deref().unwrap_or_default()
        );
    }
    let connection = connect(&args.connection).await?;
    let snapshots = TailnetSnapshots::new(connection.client.clone(), Duration::from_secs(300));
    let steps = async { Ok(file_mode::run_steps(&manifests, &snapshots, mode).await?) };
    let report =
        super::within_deadline(args.connection.deadline, connection.describe(), steps).await?;
    // The first line says which tailnet this ran against: never mistake the demo for yours.
    let first = format!("tailnet {tailnet}: {}", connection.describe());
    super::write_stdout(&format!("{first}\n{}", report.output))?;
    let code = match mode {
        _ if report.failed => 1,
        Mode::Plan if report.changes => 2,
        _ => 0,
    };
    Ok(std::process::ExitCode::from(code))
}
