//! The budget ledger: overspend is refused, also under concurrent releases from threads and
//! processes; it is append-only; a crash at any point leaves it consistent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};

use outreach_warehouse::Fault;
use outreach_warehouse::ledger::{
    Begin, BudgetInit, Ledger, LedgerError, PrivacyConfig, ReleaseStart,
};

use crate::common::privacy_warehouse;

fn init(dir: &Path, total: f64) -> Ledger {
    Ledger::init(
        dir,
        &BudgetInit {
            total_rho: total,
            total_delta: 0.0,
            horizon_days: 365,
            config: PrivacyConfig::default(),
        },
    )
    .unwrap()
}

fn start(key: &str, allocation: &str, rho: f64) -> ReleaseStart {
    ReleaseStart {
        idempotency_key: key.into(),
        name: format!("release {key}"),
        allocation: allocation.into(),
        spec_json: "{}".into(),
        query_hashes: vec!["abc".into()],
        dataset_version: "v1".into(),
        measure: "zCDP".into(),
        d_in_json: "{}".into(),
        d_out_json: "{}".into(),
        rho,
        delta: 0.0,
        approver: "test".into(),
    }
}

#[test]
fn overspend_is_refused_for_the_allocation_and_the_total() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = init(tmp.path(), 1.0);
    l.allocate("standard-releases", 0.7).unwrap();
    l.allocate("researcher:7", 0.3).unwrap();
    let e = l.allocate("more", 0.01).unwrap_err();
    assert!(matches!(e, LedgerError::OverBudget { .. }), "{e}");
    assert!(matches!(
        l.begin_release(&start("a", "standard-releases", 0.5))
            .unwrap(),
        Begin::Fresh(_)
    ));
    let e = l
        .begin_release(&start("b", "standard-releases", 0.25))
        .unwrap_err();
    assert!(matches!(e, LedgerError::OverBudget { .. }), "{e}");
    assert_eq!(e.fault(), Fault::BudgetExhausted);
    assert!(e.to_string().contains("standard-releases"), "{e}");
    // The rest of the allocation is still usable, exactly.
    assert!(matches!(
        l.begin_release(&start("c", "standard-releases", 0.2))
            .unwrap(),
        Begin::Fresh(_)
    ));
    let e = l.begin_release(&start("d", "nobody", 0.01)).unwrap_err();
    assert!(
        e.to_string().contains("unknown allocation") && e.to_string().contains("researcher:7"),
        "{e}"
    );
    let view = l.show().unwrap();
    assert!((view.spent_rho - 0.7).abs() < 1e-12);
    assert_eq!(view.allocations.len(), 2);
    assert!(l.check().unwrap().is_empty());
}

#[test]
fn the_ledger_is_append_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = init(tmp.path(), 1.0);
    l.allocate("a", 1.0).unwrap();
    l.begin_release(&start("k", "a", 0.1)).unwrap();
    drop(l);
    let conn = rusqlite::Connection::open(Ledger::path_in(tmp.path())).unwrap();
    for sql in [
        "UPDATE debits SET rho = 0",
        "DELETE FROM debits",
        "DELETE FROM releases",
        "UPDATE budgets SET total_rho = 100",
        "UPDATE allocations SET rho = 100",
        "DELETE FROM secret",
    ] {
        let e = conn.execute(sql, []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
}

#[test]
fn renewal_is_recorded_and_lifetime_loss_grows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = init(tmp.path(), 1.0);
    l.allocate("a", 1.0).unwrap();
    l.begin_release(&start("x", "a", 1.0)).unwrap();
    assert!(l.begin_release(&start("y", "a", 0.1)).is_err());
    assert!(
        l.renew("  ", None, None).is_err(),
        "a renewal needs a reason"
    );
    let p = l.renew("new fiscal year", None, None).unwrap();
    assert_eq!(p.why, "new fiscal year");
    assert!(matches!(
        l.begin_release(&start("y", "a", 0.1)).unwrap(),
        Begin::Fresh(_)
    ));
    let v = l.show().unwrap();
    assert_eq!(v.periods, 2);
    assert!((v.spent_rho - 0.1).abs() < 1e-12);
    assert!((v.lifetime_rho - 1.1).abs() < 1e-12);
}

#[test]
fn an_idempotency_key_already_released_spends_nothing_but_a_failed_one_is_a_new_debit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = init(tmp.path(), 1.0);
    l.allocate("a", 1.0).unwrap();
    let Begin::Fresh(first) = l.begin_release(&start("same", "a", 0.2)).unwrap() else {
        panic!()
    };
    l.finish_failed(first, "disk full").unwrap();
    let Begin::Fresh(second) = l.begin_release(&start("same", "a", 0.2)).unwrap() else {
        panic!("a retry after a failure must draw (and debit) afresh")
    };
    l.finish_released(second, &serde_json::json!({}), &serde_json::json!({}))
        .unwrap();
    let Begin::Existing(again) = l.begin_release(&start("same", "a", 0.2)).unwrap() else {
        panic!("a released key must return the stored release")
    };
    assert_eq!(again, second);
    assert!((l.show().unwrap().spent_rho - 0.4).abs() < 1e-12);
    // An outcome is written once.
    assert!(
        l.finish_released(second, &serde_json::json!({}), &serde_json::json!({}))
            .is_err()
    );
}

#[test]
fn a_hundred_concurrent_threads_never_overspend() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = init(tmp.path(), 1.0);
    l.allocate("a", 1.0).unwrap();
    drop(l);
    let dir = tmp.path().to_path_buf();
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let dir = dir.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut l = Ledger::open(&dir).unwrap();
                barrier.wait();
                match l.begin_release(&start(&format!("t{i}"), "a", 0.03)) {
                    Ok(Begin::Fresh(_)) => true,
                    Err(LedgerError::OverBudget { .. }) => false,
                    other => panic!("thread {i}: {other:?}"),
                }
            })
        })
        .collect();
    let granted = handles
        .into_iter()
        .filter_map(|h| h.join().ok())
        .filter(|x| *x)
        .count();
    // 100 × 0.03 = 3 > 1: exactly ⌊1 / 0.03⌋ = 33 fit.
    assert_eq!(granted, 33);
    let l = Ledger::open(&dir).unwrap();
    assert!(l.show().unwrap().spent_rho <= 1.0);
    assert!(l.check().unwrap().is_empty());
}

fn outreach() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outreach"));
    c.arg("--quiet");
    c
}

/// `outreach release --warehouse WH --spec SPEC`, ready to run.
fn release_cmd(wh: &Path, spec: &Path) -> Command {
    let mut c = outreach();
    c.args(["release", "--warehouse"])
        .arg(wh)
        .arg("--spec")
        .arg(spec);
    c
}

/// A warehouse with a ledger (total ρ `total`, allocation `std` of all of it) and a spec
/// writer: each spec asks for its own ρ, so its idempotency key differs.
fn release_warehouse(tmp: &Path, total: f64) -> PathBuf {
    let wh = privacy_warehouse(tmp);
    let out = outreach()
        .args(["budget", "init", "--warehouse"])
        .arg(&wh)
        .args(["--total", &total.to_string(), "--horizon", "365"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = outreach()
        .args(["budget", "allocate", "--warehouse"])
        .arg(&wh)
        .args(["std", &total.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wh
}

pub fn spec_file(dir: &Path, name: &str, rho: f64) -> PathBuf {
    // Each spec has its own query file: other processes may be reading another one.
    let sql = dir.join(format!("{name}.sql"));
    std::fs::write(
        &sql,
        "SELECT person_key, program_id, quarter_of(event_date) AS quarter, true AS persons FROM overdose_events",
    )
    .unwrap();
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"name = "persons per program and quarter"
k = 2
rho = {rho}
allocation = "std"

[[queries]]
file = "{name}.sql"

[[cells]]
column = "program_id"
domain = "programs"

[[cells]]
column = "quarter"
domain = {{ quarters = {{ from = "2025Q1", to = "2025Q2" }} }}

[[statistics]]
name = "persons"
kind = "count"
"#
        ),
    )
    .unwrap();
    p
}

#[test]
fn twenty_concurrent_processes_never_overspend() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = release_warehouse(tmp.path(), 1.0);
    let children: Vec<_> = (0..20)
        .map(|i| {
            let spec = spec_file(tmp.path(), &format!("p{i}"), 0.08 + i as f64 * 1e-4);
            release_cmd(&wh, &spec)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut granted = 0;
    let mut refused = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => granted += 1,
            Some(4) => {
                assert!(String::from_utf8_lossy(&out.stderr).contains("over budget"));
                refused += 1
            }
            other => panic!("{other:?}: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    // About 0.08 each against 1.0: twelve fit, whatever the order.
    assert_eq!(granted, 12, "granted {granted}, refused {refused}");
    let l = Ledger::open(&wh).unwrap();
    let v = l.show().unwrap();
    assert!(v.spent_rho <= 1.0, "{}", v.spent_rho);
    assert_eq!(l.releases().unwrap().len(), granted);
    assert!(l.check().unwrap().is_empty());
}

#[test]
fn killing_releases_at_random_points_leaves_the_ledger_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = release_warehouse(tmp.path(), 100.0);
    // A deterministic pseudo-random schedule of kill delays (not privacy noise).
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // One whole release first, to spread the kills over its duration.
    let t0 = std::time::Instant::now();
    let out = release_cmd(&wh, &spec_file(tmp.path(), "timing", 0.05))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let span = (t0.elapsed().as_millis() as u64 * 6 / 5).max(20);
    let mut debits_before = 1usize;
    let mut interrupted = 0;
    for i in 0..32 {
        let spec = spec_file(tmp.path(), &format!("k{i}"), 0.1 + i as f64 * 1e-4);
        let mut child = release_cmd(&wh, &spec)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = next() % span;
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let l = Ledger::open(&wh).expect("the store opens cleanly after a kill");
        let problems = l.check().unwrap();
        assert!(
            problems.is_empty(),
            "after kill {i} at {delay} ms: {problems:?}"
        );
        let all = l.releases().unwrap();
        assert!(all.len() >= debits_before, "a debit was lost");
        debits_before = all.len();
        interrupted += all.iter().filter(|r| r.status == "interrupted").count();
        for r in &all {
            assert!(r.debit_rho > 0.0);
            if r.status == "released" {
                assert!(r.result.is_some());
            }
        }
    }
    // Some kills land before the debit, some after it, some after the release: the schedule
    // must have exercised at least the middle case for the test to mean anything.
    assert!(
        interrupted > 0 || debits_before > 1,
        "no kill landed after a debit: the schedule exercised nothing"
    );
    // And the ledger still works.
    let spec = spec_file(tmp.path(), "last", 0.5);
    let out = release_cmd(&wh, &spec).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_crash_right_after_the_debit_keeps_the_budget_spent_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = release_warehouse(tmp.path(), 1.0);
    let spec = spec_file(tmp.path(), "crash", 0.25);
    let out = release_cmd(&wh, &spec)
        .env(outreach_warehouse::failpoint::ENV, "ledger-after-debit")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let l = Ledger::open(&wh).unwrap();
    let all = l.releases().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, "interrupted");
    assert!((l.show().unwrap().spent_rho - 0.25).abs() < 1e-12);
    // A crash before the commit spends nothing.
    let out = release_cmd(&wh, &spec)
        .env(outreach_warehouse::failpoint::ENV, "ledger-before-commit")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let l = Ledger::open(&wh).unwrap();
    assert_eq!(l.releases().unwrap().len(), 1);
    assert!(l.check().unwrap().is_empty());
}
