//! The hand-made fixture of `tests/fixtures/metrics/` (whose person-level answers
//! `tests/slt/*.slt` check, and whose survivors `CASES.md` lists): its files, the options
//! that load it, the fixture warehouse with a budget, and the options that publish a quarter.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use outreach_warehouse::ingest::{IngestOptions, ingest};
use outreach_warehouse::ledger::{BudgetInit, Ledger, PrivacyConfig};
use outreach_warehouse::publication::{
    EQUITY_NOISE, PublishOptions, STANDARD_ALLOCATION, StandardNoise,
};
use outreach_warehouse::quarter::Quarter;

/// The fixture's CSV exports, sorted by name.
pub fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    files
}

/// Options that load the fixture with no rejects allowed, every table declared complete
/// through `through`.
pub fn fixture_opts(through: &str) -> IngestOptions {
    IngestOptions {
        max_reject_rate: 0.0,
        complete_through: Some(through.parse::<NaiveDate>().unwrap()),
        max_date: NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
        ..IngestOptions::default()
    }
}

/// The fixture warehouse, every table declared complete through `through`, with a budget.
pub fn fixture_warehouse(tmp: &Path, through: &str) -> PathBuf {
    fixture_warehouse_with(tmp, through, 10.0, PrivacyConfig::default())
}

/// The fixture warehouse with `standard_rho` in `standard-releases` (of a total ρ of 10)
/// and the privacy configuration `config`.
pub fn fixture_warehouse_with(
    tmp: &Path,
    through: &str,
    standard_rho: f64,
    config: PrivacyConfig,
) -> PathBuf {
    fixture_budgeted(tmp, through, 10.0, standard_rho, config)
}

/// The fixture warehouse in `tmp/wh`, every table declared complete through `through`, with
/// a ledger of total ρ `total_rho`, `standard_rho` of it in `standard-releases`, and the
/// privacy configuration `config`.
pub fn fixture_budgeted(
    tmp: &Path,
    through: &str,
    total_rho: f64,
    standard_rho: f64,
    config: PrivacyConfig,
) -> PathBuf {
    let wh = tmp.join("wh");
    ingest(&wh, &fixture_files(), &fixture_opts(through)).expect("the fixture loads");
    let mut l = Ledger::init(
        &wh,
        &BudgetInit {
            total_rho,
            total_delta: 0.0,
            horizon_days: 365,
            config,
        },
    )
    .unwrap();
    l.allocate(STANDARD_ALLOCATION, standard_rho).unwrap();
    wh
}

/// A runtime for the tests that are not async.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// The quarter written `s`, such as `2025Q1`.
pub fn q(s: &str) -> Quarter {
    s.parse().unwrap()
}

/// Options that publish `quarter` with the standard noise, approved by `steward`.
pub fn opts(quarter: &str) -> PublishOptions {
    PublishOptions {
        quarter: q(quarter),
        approver: "steward".into(),
        republish: false,
        allow_incomplete: false,
        noise: StandardNoise::default(),
        equity_noise: EQUITY_NOISE,
    }
}
