//! Source mappings: `outreach mapping check` reads source exports through a mapping and
//! reports what `ingest --mapping` would do with them (unmapped codes with their counts,
//! source columns left unused, the rows that would be refused and why), without loading
//! anything or creating a warehouse.

use std::path::PathBuf;

use crate::Error;
use crate::ingest::{Mapping, check_mapping};

#[derive(clap::Subcommand)]
pub(super) enum MappingCommand {
    /// Check a mapping against the dictionary and report what it makes of source files;
    /// loads nothing.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach mapping check --mapping police_incidents.toml police_incidents-2025-09.csv\n",
        "  outreach mapping check --mapping police_incidents.toml --format json exports/",
    ))]
    Check(CheckArgs),
}

/// How `mapping check` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum CheckFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
pub(super) struct CheckArgs {
    /// The mapping file (TOML).
    #[arg(long)]
    mapping: PathBuf,
    #[arg(long, value_enum, default_value_t = CheckFormat::Table)]
    format: CheckFormat,
    /// Source CSV files, or folders of them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// `outreach mapping …`.
pub(super) fn run_mapping(command: MappingCommand) -> Result<(), Error> {
    match command {
        MappingCommand::Check(args) => {
            let mapping = Mapping::load(&args.mapping)?;
            let report = check_mapping(&mapping, &args.files)?;
            match args.format {
                CheckFormat::Table => super::out(&report.to_string()),
                CheckFormat::Json => super::out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&report)
                        .map_err(|e| Error::Internal(format!("cannot write JSON: {e}")))?
                )),
            }
        }
    }
}
