//! Named crash points for the crash-safety tests: when the environment variable
//! [`ENV`] names a point, the process aborts there, as a real crash would.
//!
//! Points: `after-staging`, `after-data-rename` and `dir-synced:<folder>` (ingest; the last
//! follows each new folder's fsync, so a test can crash right after it), `ledger-before-commit` and
//! `ledger-after-debit` (a release), and `ledger-before-watermark` (after every committed
//! write of the ledger, before its watermark is written). [`armed`] lets a release fail (not crash) after its
//! debit at `release-fail-after-debit`, or panic inside its bounding tasks at
//! `release-panic-after-debit`, and `outreach report`'s template fail at `report-template`.
//! Costs one environment look-up per point passed.
//!
//! **Hooks.** A test that must change the warehouse at an exact moment of another command
//! (an ingest between a publication's snapshot of the manifest and its releases) registers
//! a function with [`set_hook`] for a point and a warehouse folder; the command calls
//! [`hook`] there, which runs it once. Keyed by the folder, so tests running at once in one
//! process never run each other's hooks. Points: `publish-after-snapshot` (publish, right
//! after it read the manifest) and `release-between` (after each release of a group paid
//! together, before the next is run).
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
//! (`tests/it/privacy/release.rs`) checks that the feature is on in the tests, so the crash
//! tests cannot pass by testing nothing.

/// The environment variable that names the point to abort at.
pub const ENV: &str = "OUTREACH_FAIL_POINT";

/// Whether fail points are compiled in (the `failpoints` feature).
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Aborts the process when [`ENV`] names `point`.
#[cfg(feature = "failpoints")]
pub fn hit(point: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == point) {
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("fail point {point}: aborting\n"),
        );
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

/// A function a test runs at a point ([`set_hook`]).
#[cfg(feature = "failpoints")]
type Hook = Box<dyn FnOnce() + Send>;

/// The registered hooks: (point, warehouse folder, function).
#[cfg(feature = "failpoints")]
static HOOKS: std::sync::Mutex<Vec<(String, std::path::PathBuf, Hook)>> =
    std::sync::Mutex::new(Vec::new());

/// Registers `f` to run once, the next time this process passes `point` while working on
/// the warehouse at `warehouse` (the path as the command was given it). Tests only.
#[cfg(feature = "failpoints")]
pub fn set_hook(point: &str, warehouse: &std::path::Path, f: impl FnOnce() + Send + 'static) {
    HOOKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push((
            point.to_string(),
            warehouse.to_path_buf(),
            Box::new(f) as Hook,
        ));
}

/// Runs (and forgets) the hook registered for `point` and `warehouse`, if any.
#[cfg(feature = "failpoints")]
pub fn hook(point: &str, warehouse: &std::path::Path) {
    let found = {
        let mut hooks = HOOKS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = hooks
            .iter()
            .position(|(p, w, _)| p == point && w == warehouse);
        at.map(|i| hooks.remove(i).2)
    };
    if let Some(f) = found {
        f();
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hook(_point: &str, _warehouse: &std::path::Path) {}
