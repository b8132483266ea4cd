//! Releases of differentially private statistics: `outreach release` runs a release spec
//! (from a file, or written as flags) through the debit, bounding and noise, and
//! `outreach releases` lists and shows what was published, or, with `--steward`, the whole
//! record.

use std::path::PathBuf;

use clap::Subcommand;

use super::WAREHOUSE_ENV;
use super::values::{
    flag_form, parse_cell, parse_delta, parse_k, parse_named_scale, parse_ratio, parse_rho,
    parse_statistic,
};
use crate::Error;
use crate::ledger::Ledger;
use crate::present::snapshot::{ReleaseFilter, Snapshot};
use crate::present::tables::{self as report, Format};
use crate::privacy::release::PublicRelease;
use crate::privacy::spec::{CellSpec, QuerySpec, RatioSpec, StatisticSpec};
use crate::privacy::{ReleaseRequest, ReleaseSpec, release};
use crate::requests::Queue;

/// The flags of the release's flag form, by their ids: what a spec file gives instead, so
/// each is refused beside `--spec` (`--approver` and `--format` apply to both forms).
const SPEC_FLAGS: [&str; 11] = [
    "query",
    "cell",
    "stat",
    "exclusive",
    "ratio",
    "k",
    "rho",
    "delta",
    "scale",
    "allocation",
    "name",
];

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach release --warehouse wh --spec queries/persons_seen.toml\n",
    "  outreach release --warehouse wh --query queries/persons_seen.sql --cell program_id=programs --cell quarter=quarters:2025Q1..2025Q4 --stat persons:count --k 4 --rho 0.05 --allocation standard-releases",
))]
pub(super) struct ReleaseArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// A release spec (TOML or JSON). Or give the flags below, which a spec file replaces
    /// whole: none of them is taken beside --spec.
    #[arg(long, conflicts_with_all = SPEC_FLAGS)]
    spec: Option<PathBuf>,
    /// Person-level SQL file (repeat for several queries in one release).
    #[arg(long)]
    query: Vec<PathBuf>,
    /// Cell key and its domain: COLUMN=programs, COLUMN=quarters:2024Q3..2026Q2, COLUMN=dictionary:TABLE.COLUMN,
    /// or COLUMN=private (no public domain: private partition selection, needs --delta).
    #[arg(long, value_parser = flag_form(parse_cell))]
    cell: Vec<CellSpec>,
    /// Statistic: NAME:count or NAME:sum:LOWER:UPPER.
    #[arg(long, value_parser = flag_form(parse_statistic))]
    stat: Vec<StatisticSpec>,
    /// Exclusive group of count statistics, comma-separated.
    #[arg(long)]
    exclusive: Vec<String>,
    /// Ratio NAME=NUMERATOR/DENOMINATOR of two statistics.
    #[arg(long, value_parser = flag_form(parse_ratio))]
    ratio: Vec<RatioSpec>,
    /// Most cells one person may touch in the release.
    #[arg(long, value_parser = parse_k, allow_negative_numbers = true)]
    k: Option<u32>,
    /// Budget of the release (zCDP rho).
    #[arg(long, value_parser = parse_rho, allow_negative_numbers = true)]
    rho: Option<f64>,
    /// Delta that private partition selection may spend (with a COLUMN=private cell).
    #[arg(long, value_parser = parse_delta, allow_negative_numbers = true)]
    delta: Option<f64>,
    /// Noise scale of a statistic, NAME=SCALE (instead of, or agreeing with, --rho).
    #[arg(long, value_parser = flag_form(parse_named_scale))]
    scale: Vec<(String, f64)>,
    /// Allocation to debit.
    #[arg(long)]
    allocation: Option<String>,
    /// Name of the release.
    #[arg(long)]
    name: Option<String>,
    /// Who approved the release.
    #[arg(long, default_value = "steward")]
    approver: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Subcommand)]
pub(super) enum ReleasesCommand {
    /// List releases.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach releases list --warehouse wh\n",
        "  outreach releases list --warehouse wh --format csv\n",
        "  outreach releases list --warehouse wh --steward",
    ))]
    List {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Include failed and interrupted releases (steward only).
        #[arg(long)]
        steward: bool,
    },
    /// Show one release.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach releases show --warehouse wh 3\n",
        "  outreach releases show --warehouse wh 3 --format json\n",
        "  outreach releases show --warehouse wh 3 --steward",
    ))]
    Show {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        id: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Show the steward's record: status, error text and diagnostics (exact figures), as
        /// JSON, so --format is refused beside it.
        #[arg(long, conflicts_with = "format")]
        steward: bool,
    },
}

/// `outreach release`.
pub(super) fn run_release(args: ReleaseArgs) -> Result<(), Error> {
    let format = args.format;
    let warehouse = args.warehouse.clone();
    let spec = release_spec(args.spec.clone(), &args)?;
    let req = ReleaseRequest {
        spec,
        approver: args.approver.clone(),
    };
    // The release is committed (debited, run, stored) before anything is printed.
    let outcome = super::runtime().block_on(release(&warehouse, &req))?;
    if !outcome.fresh {
        super::note(&format!(
            "release {} already holds these numbers (same queries, declarations, rho and dataset version): nothing spent",
            outcome.id
        ));
    }
    print_release(&outcome.public, format)
}

/// `outreach releases`.
pub(super) fn run_releases(command: ReleasesCommand) -> Result<(), Error> {
    match command {
        ReleasesCommand::List {
            warehouse,
            format,
            steward,
        } => {
            if !steward {
                let rows =
                    public_snapshot(&warehouse)?.release_summaries(&ReleaseFilter::default());
                return super::out(&report::release_summaries(&rows, format));
            }
            let all = Ledger::open(&warehouse)?.releases()?;
            match format {
                Format::Table => super::out(&report::releases_table(&all, steward))?,
                Format::Csv => super::out(&report::releases_csv(&all, steward))?,
                Format::Json => {
                    // Names and specs are researchers' text: `json_for_terminal`.
                    let v: Vec<serde_json::Value> = all
                        .iter()
                        .map(|r| serde_json::to_value(r).expect("json"))
                        .collect();
                    super::out(&format!("{}\n", report::json_for_terminal(&v)))?;
                }
            }
        }
        ReleasesCommand::Show {
            warehouse,
            id,
            format,
            steward,
        } => {
            if steward {
                let stored = Ledger::open(&warehouse)?.release(id)?;
                super::out(&format!("{}\n", report::json_for_terminal(&stored)))?;
            } else {
                // What `/v1/releases/{id}` serves: a failed release, or a researcher's release
                // not made public, is answered like a missing one.
                let snapshot = public_snapshot(&warehouse)?;
                let Some(published) = snapshot.releases.get(&id) else {
                    return Err(Error::Ledger(crate::ledger::LedgerError::NoSuchRelease(id)));
                };
                super::out(&report::published_release(published, format))?;
            }
        }
    }
    Ok(())
}

/// What the public is shown of the warehouse, exactly as the API loads it
/// ([`Snapshot::load`]): its releases are those of `/v1/releases`, every release but a failed
/// one and a researcher's that the steward did not make public, which is public as spend
/// only (in the budget), never by its name, its requester or its numbers (privacy model
/// §10); their times are days.
fn public_snapshot(warehouse: &std::path::Path) -> Result<Snapshot, Error> {
    Snapshot::load(warehouse, &made_public(warehouse)?)
}

/// The researchers' releases that the steward made public (`requests approve --public`).
/// A warehouse without a requests file has none.
fn made_public(warehouse: &std::path::Path) -> Result<Vec<i64>, Error> {
    if !Queue::path_in(warehouse).exists() {
        return Ok(Vec::new());
    }
    Ok(Queue::open(warehouse)?.public_release_ids()?)
}

/// A release's public view, with its time cut to the day like every public time (the
/// steward's full record is `releases show --steward`). Names and cell values come from
/// specs that researchers write: every printer passes them through `report::terminal_safe`.
fn print_release(p: &PublicRelease, format: Format) -> Result<(), Error> {
    let p = crate::present::views::to_the_day(p.clone());
    super::out(&report::public_release(&p, format))
}

/// A flag of the release's flag form that is missing: the command line's fault, not a
/// release spec's.
fn bad_flag(message: String) -> Error {
    Error::Usage(message)
}

/// The release spec from `--spec`, or built from the flag form, whose values clap has
/// already read ([`super::values`]).
fn release_spec(path: Option<PathBuf>, a: &ReleaseArgs) -> Result<ReleaseSpec, Error> {
    if let Some(path) = path {
        return Ok(ReleaseSpec::from_file(&path)?);
    }
    if a.query.is_empty() {
        return Err(bad_flag(
            "give --spec FILE, or --query FILE with --cell, --stat, --k and --allocation".into(),
        ));
    }
    Ok(ReleaseSpec {
        name: a.name.clone().unwrap_or_else(|| {
            a.query
                .iter()
                .map(|q| q.display().to_string())
                .collect::<Vec<_>>()
                .join(" + ")
        }),
        queries: a
            .query
            .iter()
            .map(|q| QuerySpec {
                file: Some(q.clone()),
                sql: None,
            })
            .collect(),
        cells: a.cell.clone(),
        statistics: a.stat.clone(),
        exclusive: a
            .exclusive
            .iter()
            .map(|g| g.split(',').map(str::to_string).collect())
            .collect(),
        k: a.k.ok_or_else(|| {
            bad_flag("--k is required: the most cells one person may touch".into())
        })?,
        rho: a.rho,
        delta: a.delta,
        scales: a.scale.iter().cloned().collect(),
        allocation: a.allocation.clone().ok_or_else(|| {
            bad_flag("--allocation is required: the budget allocation to debit".into())
        })?,
        ratios: a.ratio.clone(),
    })
}
