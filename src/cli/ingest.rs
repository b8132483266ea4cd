//! Loading the warehouse: `outreach ingest` validates program exports and commits them as
//! one dataset version, `complete-through` declares how far a table's data is complete,
//! `status` shows the steward the exact contents, and `dictionary` prints the data
//! dictionary the exports are checked against.

use std::path::PathBuf;

use chrono::NaiveDate;

use super::WAREHOUSE_ENV;
use super::values::parse_share;
use crate::Error;
use crate::dictionary::Dictionary;
use crate::ingest::{DEFAULT_MAX_REJECT_RATE, DEFAULT_MAX_RETRACT_RATE, IngestOptions, ingest};
use crate::warehouse::{Warehouse, WarehouseError, status};

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach ingest --warehouse wh exports/\n",
    "  outreach ingest --warehouse wh --complete-through 2025-09-30 exports/\n",
    "  outreach ingest --warehouse wh --table overdose_events --max-reject-rate 0.05 march-events.csv\n",
    "  outreach ingest --warehouse wh --mapping police_incidents.toml police_incidents-2025-09.csv\n",
    "  outreach ingest --warehouse wh --corrections --snapshot monthly-export/\n",
    "  outreach ingest --warehouse wh --snapshot --max-retract-rate 0.1 overdose_events.csv",
))]
pub(super) struct IngestArgs {
    /// Warehouse folder; created if missing.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// Load every file into this table instead of telling it from the file name.
    #[arg(long)]
    table: Option<String>,
    /// Share of rows (0 to 1) that may fail validation before a file is refused.
    #[arg(long, default_value_t = DEFAULT_MAX_REJECT_RATE,
        value_parser = parse_share, allow_negative_numbers = true)]
    max_reject_rate: f64,
    /// Declare the loaded tables complete through this date (YYYY-MM-DD).
    #[arg(long)]
    complete_through: Option<NaiveDate>,
    /// Latest plausible date in the data [default: today].
    #[arg(long)]
    max_date: Option<NaiveDate>,
    /// A source mapping (TOML): files it recognises are read through it; see `mapping check`.
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// A row that changes the stored row under its key corrects it (the stored row is kept as
    /// history, never read) instead of being rejected.
    #[arg(long)]
    corrections: bool,
    /// Each table's files are the whole table of every program they name: stored rows of
    /// those programs that they do not hold are retracted (kept as history, never read).
    #[arg(long)]
    snapshot: bool,
    /// Share of a program's stored rows in a table (0 to 1) that a snapshot may retract
    /// before the load is refused.
    #[arg(long, default_value_t = DEFAULT_MAX_RETRACT_RATE, requires = "snapshot",
        conflicts_with = "force_retract",
        value_parser = parse_share, allow_negative_numbers = true)]
    max_retract_rate: f64,
    /// Retract whatever share of a program's stored rows the snapshot lacks.
    #[arg(long, requires = "snapshot")]
    force_retract: bool,
    /// CSV files, or folders of them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach complete-through --warehouse wh overdose_events 2025-09-30",
))]
pub(super) struct CompleteThroughArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    table: String,
    date: NaiveDate,
}

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach status --warehouse wh\n",
    "  outreach status --warehouse wh --verify",
))]
pub(super) struct StatusArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// First re-hash every data file against the SHA-256 its manifest records, list each one
    /// missing, truncated or changed, and exit 2 if any is (a scrub to run on a schedule).
    #[arg(long)]
    verify: bool,
}

/// `outreach ingest`.
pub(super) fn run_ingest(args: IngestArgs, progress: bool) -> Result<(), Error> {
    let IngestArgs {
        warehouse,
        table,
        max_reject_rate,
        complete_through,
        max_date,
        mapping,
        corrections,
        snapshot,
        max_retract_rate,
        force_retract,
        files,
    } = args;
    let mut opts = IngestOptions {
        table,
        max_reject_rate,
        complete_through,
        progress,
        mapping,
        corrections,
        snapshot,
        max_retract_rate,
        force_retract,
        ..IngestOptions::default()
    };
    if let Some(d) = max_date {
        opts.max_date = d;
    }
    // The load is committed before its report is printed.
    let report = ingest(&warehouse, &files, &opts)?;
    super::out(&report.to_string())
}

/// `outreach complete-through`.
pub(super) fn run_complete_through(args: CompleteThroughArgs) -> Result<(), Error> {
    let CompleteThroughArgs {
        warehouse,
        table,
        date,
    } = args;
    let wh = Warehouse::open(&warehouse)?;
    wh.declare_complete_through(&table, date)?;
    super::out(&format!("{table} is declared complete through {date}.\n"))
}

/// `outreach status`; with `--verify`, the scrub first (`Warehouse::scrub`): every damaged
/// data file on a line of its own on stderr and exit 2, or the status and how much was
/// checked.
pub(super) fn run_status(args: StatusArgs) -> Result<(), Error> {
    let wh = Warehouse::open(&args.warehouse)?;
    let scrub = if args.verify {
        let scrub = wh.scrub(&wh.manifest()?)?;
        if !scrub.damaged.is_empty() {
            // On stderr, with the error: a cut pipe must not hide a damaged file.
            for d in &scrub.damaged {
                super::note(&d.to_string());
            }
            return Err(WarehouseError::ScrubFailed {
                root: wh.root().to_path_buf(),
                damaged: scrub.damaged.len(),
                checked: scrub.files,
            }
            .into());
        }
        Some(scrub)
    } else {
        None
    };
    let s = super::runtime().block_on(status(&wh))?;
    super::out(&s.to_string())?;
    match scrub {
        Some(scrub) => super::out(&format!("\n{scrub}")),
        None => Ok(()),
    }
}

/// `outreach dictionary`.
pub(super) fn run_dictionary() -> Result<(), Error> {
    super::out(&Dictionary::builtin()?.to_markdown())
}
