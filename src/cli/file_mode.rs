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
    /// With `plan`: also list up to N individual `src -> dst proto:ports` pairs gained and N
    /// lost behind the policy's class lines (biggest class pairs first).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub show_pairs: usize,
    /// KeyRotationPolicies without a cluster: keep each credential in a file of DIR (one per
    /// policy, mode 0600, replaced by atomic rename) that `apply` mints, renews and revokes
    /// like the controller does with a Secret. Without it they are cluster-only.
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Loads PATH, connects, runs, prints; returns the exit code (plan: 0 no changes, 2 changes,
/// 1 error; apply: 0 all Ready, 1 otherwise).
pub async fn run(args: &FileArgs, mode: Mode) -> Result<std::process::ExitCode, super::CliError> {
    if args.show_pairs > 0 && !matches!(mode, Mode::Plan) {
        return Err(super::CliError::Usage(
            "--show-pairs lists the pairs a plan would change: use it with `plan`".into(),
        ));
    }
    let mut manifests = load(&args.path)?;
    manifests.secrets_dir = args.secrets_dir.clone();
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
    let steps = async {
        let mut report = file_mode::run_steps(&manifests, &snapshots, mode).await?;
        if args.show_pairs > 0 && manifests.documents_of("TailnetPolicy").next().is_some() {
            let pairs =
                file_mode::tailnet_policy::access_pairs(&manifests, &snapshots, args.show_pairs)
                    .await?;
            report.output.push_str(&pairs);
        }
        Ok::<_, super::CliError>(report)
    };
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
