//! Named crash points for the crash-safety tests: when the environment variable
//! [`ENV`] names a point, the process aborts there, as a real crash would.
//!
//! Points: `after-staging` and `after-data-rename` (ingest), `ledger-before-commit` and
//! `ledger-after-debit` (a release). [`armed`] lets a release fail (not crash) after its
//! debit at `release-fail-after-debit`. Costs one environment look-up per point passed.

/// The environment variable that names the point to abort at.
pub const ENV: &str = "OUTREACH_FAIL_POINT";

/// Aborts the process when [`ENV`] names `point`.
pub fn hit(point: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == point) {
        eprintln!("fail point {point}: aborting");
        std::process::abort();
    }
}

/// Whether [`ENV`] names `point`: for injected failures that are errors, not crashes.
pub fn armed(point: &str) -> bool {
    std::env::var(ENV).is_ok_and(|v| v == point)
}
