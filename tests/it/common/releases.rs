//! A release over the privacy warehouse: a budget for it, a spec of persons per program and
//! quarter written as TOML, and the `outreach` binary with nothing inherited from the
//! environment that would change what it does or prints.

use std::path::Path;
use std::process::{Command, Output};

use outreach_warehouse::cli::WAREHOUSE_ENV;
use outreach_warehouse::failpoint;
use outreach_warehouse::ledger::{BudgetInit, Ledger, PrivacyConfig};

/// The binary, with nothing inherited that would change what it does or prints.
pub fn outreach() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outreach"));
    c.arg("--quiet")
        .env_remove("RUST_LOG")
        .env_remove(WAREHOUSE_ENV)
        .env_remove(failpoint::ENV);
    c
}

/// The stdout of a command that must have succeeded; its exit code and stderr otherwise.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A budget of ρ `total`, all of it in the allocation `std`.
pub fn budget(wh: &Path, total: f64) {
    let mut l = Ledger::init(
        wh,
        &BudgetInit {
            total_rho: total,
            total_delta: 0.0,
            horizon_days: 365,
            config: PrivacyConfig::default(),
        },
    )
    .unwrap();
    l.allocate("std", total).unwrap();
}

/// Every person with an event, per program and quarter.
pub const PERSONS_SQL: &str = "SELECT person_key, program_id, quarter_of(event_date) AS quarter, true AS persons FROM overdose_events";

/// The `persons` count statistic of [`PERSONS_SQL`], as TOML.
pub const PERSONS_STAT: &str = r#"
[[statistics]]
name = "persons"
kind = "count"
"#;

/// A spec per program and quarter of 2025's first half, with inline SQL and `statistics`.
pub fn spec_toml(k: u32, rho: f64, sql: &str, statistics: &str) -> String {
    format!(
        r#"name = "persons per program and quarter"
k = {k}
rho = {rho:?}
allocation = "std"

[[queries]]
sql = "{sql}"

[[cells]]
column = "program_id"
domain = "programs"

[[cells]]
column = "quarter"
domain = {{ quarters = {{ from = "2025Q1", to = "2025Q2" }} }}
{statistics}"#
    )
}
