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
pub(super) struct MetricsArgs {
    /// Print `queries/README.md`, the metrics explained for non-programmers.
    #[arg(long, conflicts_with = "exact")]
    markdown: bool,
    /// Exact counts per program for one quarter, to validate the queries on known data.
    /// Steward only: the figures carry no noise and are never published.
    #[arg(long, requires_all = ["warehouse", "quarter"])]
    exact: bool,
    /// Warehouse folder (with --exact).
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: Option<PathBuf>,
    /// Quarter such as 2025Q3 (with --exact).
    #[arg(long)]
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
        let (Some(warehouse), Some(quarter)) = (warehouse, quarter) else {
            unreachable!("clap requires --warehouse and --quarter with --exact");
        };
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
