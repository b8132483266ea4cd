//! The quarterly publication: `outreach publish` releases the standard metrics of one
//! quarter for every program, and `outreach plan` shows what that would cost and how
//! precise it would be, spending nothing.

use std::path::PathBuf;

use super::WAREHOUSE_ENV;
use super::values::{parse_halfwidth, parse_k, parse_scale, parse_survivors};
use crate::Error;
use crate::present::tables::{self as report, Format};
use crate::publication::{
    EQUITY_NOISE, PublishOptions, StandardNoise, plan_for_target, plan_with, publish,
};
use crate::quarter::Quarter;

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach publish --warehouse wh --quarter 2025Q3 --approver \"J. Steward\"\n",
    "  outreach publish --warehouse wh --quarter 2025Q3 --approver \"J. Steward\" --republish\n",
    "  outreach publish --warehouse wh --quarter 2025Q4 --approver \"J. Steward\" --allow-incomplete --format csv",
))]
pub(super) struct PublishArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// Quarter such as 2025Q3.
    #[arg(long)]
    quarter: Quarter,
    /// Who approves the publication (recorded with the release).
    #[arg(long)]
    approver: String,
    /// Publish a quarter again after new data: a new, debited release that supersedes
    /// the old one.
    #[arg(long)]
    republish: bool,
    /// Publish although some follow-up windows are not declared complete; those figures
    /// say so.
    #[arg(long)]
    allow_incomplete: bool,
    /// Noise scale σ of every count.
    #[arg(long, default_value_t = StandardNoise::default().sigma,
        value_parser = parse_scale, allow_negative_numbers = true)]
    sigma: f64,
    /// Most cohorts of one quarter a survivor counts in.
    #[arg(long, default_value_t = StandardNoise::default().k,
        value_parser = parse_k, allow_negative_numbers = true)]
    k: u32,
    /// Noise scale σ of every count of the equity breakdowns.
    #[arg(long, default_value_t = EQUITY_NOISE.sigma,
        value_parser = parse_scale, allow_negative_numbers = true)]
    equity_sigma: f64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach plan --warehouse wh --quarter 2025Q3\n",
    "  outreach plan --warehouse wh --quarter 2025Q3 --sigma 6 --equity-sigma 9 --at 100\n",
    "  outreach plan --warehouse wh --quarter 2025Q3 --target-halfwidth 0.08 --at 200",
))]
pub(super) struct PlanArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// Quarter such as 2025Q3.
    #[arg(long)]
    quarter: Quarter,
    /// Noise scale σ of every count.
    #[arg(long, default_value_t = StandardNoise::default().sigma,
        value_parser = parse_scale, allow_negative_numbers = true)]
    sigma: f64,
    /// Most cohorts of one quarter a survivor counts in.
    #[arg(long, default_value_t = StandardNoise::default().k,
        value_parser = parse_k, allow_negative_numbers = true)]
    k: u32,
    /// Noise scale σ of every count of the equity breakdowns.
    #[arg(long, default_value_t = EQUITY_NOISE.sigma, conflicts_with = "target_halfwidth",
        value_parser = parse_scale, allow_negative_numbers = true)]
    equity_sigma: f64,
    /// The denominator (survivors) at which rate half-widths are shown.
    #[arg(long, default_value_t = 200,
        value_parser = parse_survivors, allow_negative_numbers = true)]
    at: u64,
    /// Solve for the smallest budget whose every rate half-width at --at is within this,
    /// the equity rates' too (for --sigma and --equity-sigma).
    #[arg(long, conflicts_with = "sigma",
        value_parser = parse_halfwidth, allow_negative_numbers = true)]
    target_halfwidth: Option<f64>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `outreach publish`.
pub(super) fn run_publish(args: PublishArgs) -> Result<(), Error> {
    let PublishArgs {
        warehouse,
        quarter,
        approver,
        republish,
        allow_incomplete,
        sigma,
        k,
        equity_sigma,
        format,
    } = args;
    let opts = PublishOptions {
        quarter,
        approver,
        republish,
        allow_incomplete,
        noise: StandardNoise { k, sigma },
        equity_noise: StandardNoise {
            k: EQUITY_NOISE.k,
            sigma: equity_sigma,
        },
    };
    // Both releases are debited and the publication stored before anything is printed.
    let published = super::runtime().block_on(publish(&warehouse, &opts))?;
    super::out(&report::publication(&published, format))
}

/// `outreach plan`.
pub(super) fn run_plan(args: PlanArgs) -> Result<(), Error> {
    let PlanArgs {
        warehouse,
        quarter,
        sigma,
        k,
        equity_sigma,
        at,
        target_halfwidth,
        format,
    } = args;
    let plan = super::runtime().block_on(async {
        match target_halfwidth {
            Some(t) => plan_for_target(&warehouse, quarter, k, t, at).await,
            None => {
                plan_with(
                    &warehouse,
                    quarter,
                    StandardNoise { k, sigma },
                    StandardNoise {
                        k: EQUITY_NOISE.k,
                        sigma: equity_sigma,
                    },
                    at,
                )
                .await
            }
        }
    })?;
    super::out(&report::plan(&plan, format))
}
