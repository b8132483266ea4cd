//! `outreach report`: the quarterly report for funders, a self-contained HTML file of a
//! published quarter, with the CSV of every figure beside it.

use std::path::PathBuf;

use super::WAREHOUSE_ENV;
use crate::Error;
use crate::quarter::Quarter;

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach report --warehouse wh --quarter 2025Q3 --out report-2025Q3.html",
))]
pub(super) struct ReportArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// A published quarter, such as 2025Q3.
    #[arg(long)]
    quarter: Quarter,
    /// The HTML file to write; the CSV goes beside it with the extension .csv.
    #[arg(long)]
    out: PathBuf,
}

/// `outreach report`.
pub(super) fn run_report(args: ReportArgs) -> Result<(), Error> {
    let ReportArgs {
        warehouse,
        quarter,
        out,
    } = args;
    crate::warehouse::Warehouse::open(&warehouse)?.vouched_manifest()?;
    let written =
        super::runtime().block_on(crate::present::quarterly::write(&warehouse, quarter, &out))?;
    super::out(&format!(
        "Wrote {} and {}.\n",
        written.html.display(),
        written.csv.display()
    ))
}
