//! `outreach metrics`: the standard metrics in plain words, their Markdown explanation, or,
//! for the steward only, their exact counts on one quarter to check the SQL on known data.

use std::path::PathBuf;

use super::WAREHOUSE_ENV;
use crate::Error;
use crate::metrics::{self, Catalog};
use crate::present::tables::{self as report, Format};
use crate::quarter::Quarter;
use crate::warehouse::Warehouse;

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach metrics\n",
    "  outreach metrics --markdown > queries/README.md\n",
    "  outreach metrics --exact --warehouse wh --quarter 2025Q1 --format csv",
))]
pub(super) struct MetricsArgs {
    /// Print `queries/README.md`, the metrics explained for non-programmers (Markdown, so
    /// --format is refused beside it).
    #[arg(long, conflicts_with_all = ["exact", "format"])]
    markdown: bool,
    /// Exact counts per program for one quarter, to validate the queries on known data.
    /// Steward only: the figures carry no noise and are never published.
    #[arg(long, requires = "quarter")]
    exact: bool,
    /// Warehouse folder (only with --exact; without the flag, OUTREACH_WAREHOUSE).
    // Not `env = WAREHOUSE_ENV`: clap would count a variable set in the steward's shell as
    // the flag, and refuse every `outreach metrics` without --exact. `run_metrics` reads it.
    #[arg(long, requires = "exact")]
    warehouse: Option<PathBuf>,
    /// Quarter such as 2025Q3 (only with --exact).
    #[arg(long, requires = "exact")]
    quarter: Option<Quarter>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `outreach metrics`.
pub(super) fn run_metrics(args: MetricsArgs) -> Result<(), Error> {
    let MetricsArgs {
        markdown,
        exact,
        warehouse,
        quarter,
        format,
    } = args;
    let catalog = Catalog::standard()?;
    if markdown {
        super::out(&metrics::docs::to_markdown(&catalog))?;
    } else if exact {
        let Some(quarter) = quarter else {
            unreachable!("clap requires --quarter with --exact");
        };
        let warehouse = warehouse
            .or_else(|| std::env::var_os(WAREHOUSE_ENV).map(PathBuf::from))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--exact needs the warehouse: give --warehouse DIR or set {WAREHOUSE_ENV}"
                ))
            })?;
        let wh = Warehouse::open(&warehouse)?;
        let values = super::runtime().block_on(async {
            let ctx = crate::warehouse::open_session(&wh).await?;
            crate::privacy::functions::register(&ctx);
            metrics::exact::exact(&ctx, &catalog, quarter)
                .await
                .map_err(Error::from)
        })?;
        super::note(metrics::exact::BANNER);
        super::out(&report::exact_values(&values, format))?;
    } else {
        super::out(&report::metric_catalog(&catalog, format))?;
    }
    Ok(())
}
