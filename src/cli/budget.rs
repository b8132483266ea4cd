//! `outreach budget`: the warehouse's privacy budget. `init` sets it with its period and
//! noise, `allocate` splits it into named allocations, `show` prints what is spent and what
//! is left, `renew` starts a new period, and `recover` starts a new ledger where the one the
//! warehouse names is truly lost, carrying its lifetime spend over.

use std::path::PathBuf;

use clap::Subcommand;

use super::WAREHOUSE_ENV;
use super::values::{
    parse_delta, parse_display_delta, parse_horizon_days, parse_rho, parse_rho_to_add, parse_scale,
};
use crate::Error;
use crate::ledger::{BudgetInit, Ledger, NoiseKind, PrivacyConfig};
use crate::present::tables::{self as report, Format};
use crate::warehouse::Warehouse;

#[derive(Subcommand)]
pub(super) enum BudgetCommand {
    /// Set the warehouse's privacy budget, its horizon and noise; creates the ledger and the secret.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach budget init --warehouse wh --total 5 --horizon 730\n",
        "  outreach budget init --warehouse wh --total 5 --horizon 730 --delta 1e-6 --display-delta 1e-7",
    ))]
    Init {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        #[command(flatten)]
        period: PeriodArgs,
    },
    /// Add rho (and delta) to a named allocation, such as standard-releases or researcher:ID.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach budget allocate --warehouse wh standard-releases 4.7\n",
        "  outreach budget allocate --warehouse wh researcher:rosa 0.2 --delta 1e-7",
    ))]
    Allocate {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// The allocation's name.
        name: String,
        /// Rho to add; 0 adds only delta to an existing allocation.
        #[arg(value_parser = parse_rho_to_add, allow_negative_numbers = true)]
        rho: f64,
        /// Delta to add, for private partition selection (an allocation without delta spends none).
        #[arg(long, default_value_t = 0.0,
            value_parser = parse_delta, allow_negative_numbers = true)]
        delta: f64,
    },
    /// Show the budget, what is spent and what is left, with epsilon at the configured delta.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach budget show --warehouse wh\n",
        "  outreach budget show --warehouse wh --format json",
    ))]
    Show {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Start a new budget period (a recorded steward action; lifetime loss grows with it).
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach budget renew --warehouse wh --why \"second funding period\"\n",
        "  outreach budget renew --warehouse wh --why \"new grant\" --total 8 --horizon 730",
    ))]
    Renew {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// Why the budget is renewed; recorded in the ledger.
        #[arg(long)]
        why: String,
        /// New total rho [default: the current one].
        #[arg(long, value_parser = parse_rho, allow_negative_numbers = true)]
        total: Option<f64>,
        /// New total delta [default: the current one].
        #[arg(long, value_parser = parse_delta, allow_negative_numbers = true)]
        delta: Option<f64>,
        /// New horizon in days [default: the current one].
        #[arg(long, value_parser = parse_horizon_days, allow_negative_numbers = true)]
        horizon: Option<u32>,
    },
    /// Start a new ledger where the warehouse's ledger is truly lost: its lifetime spend starts at the watermark's, and the loss is a public, recorded restart.
    #[command(after_help = concat!(
        "The lost ledger.sqlite must be gone (move an older or foreign copy aside first); the\n",
        "watermark (ledger-watermark.json) says what it spent. Takes the new period's settings,\n",
        "as budget init does. Quarters it had published are published again only by a new debit.\n\n",
        "Examples:\n",
        "  outreach budget recover --warehouse wh --why \"disk failed, no backup\" --total 5 --horizon 730\n",
        "  outreach budget recover --warehouse wh --why \"restore missed the ledger\" --total 5 --horizon 365 --delta 1e-6",
    ))]
    Recover {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// Why the ledger is recovered; recorded in the ledger and on the public chain.
        #[arg(long)]
        why: String,
        #[command(flatten)]
        period: PeriodArgs,
    },
}

/// A budget period's settings, as `budget init` and `budget recover` take them.
#[derive(clap::Args)]
pub(super) struct PeriodArgs {
    /// Total zCDP budget rho for the period.
    #[arg(long, value_parser = parse_rho, allow_negative_numbers = true)]
    total: f64,
    /// Length of the budget period in days.
    #[arg(long, value_parser = parse_horizon_days, allow_negative_numbers = true)]
    horizon: u32,
    /// Total delta for approximate releases (private partition selection).
    #[arg(long, default_value_t = 0.0,
        value_parser = parse_delta, allow_negative_numbers = true)]
    delta: f64,
    /// Noise for every release: gaussian (zCDP) or laplace (pure DP, debited as rho = eps^2/2).
    #[arg(long, default_value = "gaussian")]
    noise: NoiseKind,
    /// Delta at which rho is displayed as (epsilon, delta).
    #[arg(long, default_value_t = PrivacyConfig::default().display_delta,
        value_parser = parse_display_delta, allow_negative_numbers = true)]
    display_delta: f64,
    /// The smallest noise scale any release may use.
    #[arg(long, default_value_t = PrivacyConfig::default().min_scale,
        value_parser = parse_scale, allow_negative_numbers = true)]
    min_scale: f64,
}

impl PeriodArgs {
    fn budget_init(self) -> BudgetInit {
        BudgetInit {
            total_rho: self.total,
            total_delta: self.delta,
            horizon_days: self.horizon,
            config: PrivacyConfig {
                noise: self.noise,
                display_delta: self.display_delta,
                min_scale: self.min_scale,
            },
        }
    }
}

/// `outreach budget`.
pub(super) fn run_budget(command: BudgetCommand) -> Result<(), Error> {
    match command {
        BudgetCommand::Init { warehouse, period } => {
            Warehouse::open(&warehouse)?;
            let ledger = Ledger::init(&warehouse, &period.budget_init())?;
            super::out(&report::budget_table(&ledger.show()?))?;
        }
        BudgetCommand::Allocate {
            warehouse,
            name,
            rho,
            delta,
        } => {
            let mut ledger = Ledger::open(&warehouse)?;
            ledger.allocate_with_delta(&name, rho, delta)?;
            super::out(&report::budget_table(&ledger.show()?))?;
        }
        BudgetCommand::Show { warehouse, format } => {
            let view = Ledger::open(&warehouse)?.show()?;
            super::out(&report::budget(&view, format))?;
        }
        BudgetCommand::Renew {
            warehouse,
            why,
            total,
            delta,
            horizon,
        } => {
            let mut ledger = Ledger::open(&warehouse)?;
            ledger.renew(&why, total, delta, horizon)?;
            super::out(&report::budget_table(&ledger.show()?))?;
        }
        BudgetCommand::Recover {
            warehouse,
            why,
            period,
        } => {
            Warehouse::open(&warehouse)?;
            // The table shows the recovery: the lost ledger, the spend carried over, the
            // releases whose stored numbers were lost and the quarters it had published.
            let ledger = Ledger::recover(&warehouse, &why, &period.budget_init())?;
            let view = ledger.show()?;
            super::out(&report::budget_table(&view))?;
        }
    }
    Ok(())
}
