//! Named crash points for the crash-safety tests: when the environment variable
//! [`ENV`] names a point, the process aborts there, as a real crash would.
//!
//! Points: `after-staging`, `after-data-rename` and `dir-synced:<folder>` (ingest; the last
//! follows each new folder's fsync, so a test can crash right after it), `ledger-before-commit` and
//! `ledger-after-debit` (a release). [`armed`] lets a release fail (not crash) after its
//! debit at `release-fail-after-debit`, or panic inside its bounding tasks at
//! `release-panic-after-debit`, and `outreach report`'s template fail at `report-template`.
//! Costs one environment look-up per point passed.
//!
//! **Why a cargo feature.** A fail point spends privacy budget on purpose (a release that
//! fails after its debit stays spent) or crashes the warehouse mid-write. Read from the
//! environment at run time, a stray `OUTREACH_FAIL_POINT` on a production host would do
//! that, silently. So the points exist only when the crate is compiled with the
//! `failpoints` feature, which is off by default: without it [`hit`] and [`armed`] are empty
//! inline functions (the callers in `ingest` and `ledger` keep their calls, and the optimizer
//! removes them), and the variable means nothing. The tests turn the feature on through a
//! dev-dependency of the crate on itself (`Cargo.toml`), which changes this crate only: the
//! dependency tree is compiled once for the tests, the benchmarks and the binary. A test
//! (`tests/it/engine_hardening.rs`) checks that the feature is on in the tests, so the crash
//! tests cannot pass by testing nothing.

/// The environment variable that names the point to abort at.
pub const ENV: &str = "OUTREACH_FAIL_POINT";

/// Whether fail points are compiled in (the `failpoints` feature).
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Aborts the process when [`ENV`] names `point`.
#[cfg(feature = "failpoints")]
pub fn hit(point: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == point) {
        eprintln!("fail point {point}: aborting");
        std::process::abort();
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_point: &str) {}

/// Whether [`ENV`] names `point`: for injected failures that are errors, not crashes.
#[cfg(feature = "failpoints")]
pub fn armed(point: &str) -> bool {
    std::env::var(ENV).is_ok_and(|v| v == point)
}

/// Without the `failpoints` feature: never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn armed(_point: &str) -> bool {
    false
}
