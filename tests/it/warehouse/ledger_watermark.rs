//! The warehouse vouches for its ledger (`src/ledger/watermark.rs`): with `ledger.sqlite`
//! moved away, an older copy put back or another warehouse's ledger in its place, `release`,
//! `publish`, `requests approve` and `budget init` refuse with exit 2, naming the ledger and
//! the watermark, and spend nothing; `budget recover` starts a new ledger whose lifetime
//! spend starts at the lost one's, and a quarter published before is published again only by
//! a new debit; a crash between the ledger's commit and its watermark leaves the ledger
//! ahead, which the next command accepts.

use std::path::{Path, PathBuf};
use std::process::Output;

use outreach_warehouse::api::app;
use outreach_warehouse::failpoint;
use outreach_warehouse::ledger::{Ledger, WATERMARK_FILE, Watermark, read_watermark};
use outreach_warehouse::publication::publish;
use outreach_warehouse::requests::{Queue, RequestState};
use outreach_warehouse::warehouse::Warehouse;

use crate::common::fixture::opts;
use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, outreach, spec_toml};
use crate::common::server::{budgeted, published, roomy, submission, submit_id, with_researcher};
use crate::common::write;

/// `outreach ARGS --warehouse WH`.
fn run(wh: &Path, args: &[&str]) -> Output {
    outreach()
        .args(args)
        .arg("--warehouse")
        .arg(wh)
        .output()
        .unwrap()
}

/// The stdout of `outreach ARGS --warehouse WH`, which must succeed.
fn run_ok(wh: &Path, args: &[&str]) -> String {
    let out = run(wh, args);
    assert!(
        out.status.success(),
        "outreach {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that `out` is a refusal with exit 2 whose stderr names every one of `names`.
fn refused(out: &Output, what: &str, names: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    for name in names {
        assert!(
            stderr.contains(name),
            "{what}: {name} not named in {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

/// A release spec of persons per program and quarter from `std`, written into `dir`.
fn spec(dir: &Path) -> PathBuf {
    write(
        dir,
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    )
}

fn watermark(wh: &Path) -> Watermark {
    read_watermark(wh)
        .unwrap()
        .expect("the warehouse has a watermark")
}

/// Moves `ledger.sqlite` and its SQLite side files from `wh` into `to` (created).
fn move_ledger(wh: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = wh.join(format!("ledger.sqlite{suffix}"));
        if from.exists() {
            std::fs::rename(&from, to.join(format!("ledger.sqlite{suffix}"))).unwrap();
        }
    }
}

/// Copies the ledger of `wh` (no writer is running) into `to` (created).
fn copy_ledger(wh: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for suffix in ["", "-wal"] {
        let from = wh.join(format!("ledger.sqlite{suffix}"));
        if from.exists() {
            std::fs::copy(&from, to.join(format!("ledger.sqlite{suffix}"))).unwrap();
        }
    }
}

/// Puts the copy in `from` back as the ledger of `wh`, replacing the current one.
fn put_back(from: &Path, wh: &Path) {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(wh.join(format!("ledger.sqlite{suffix}")));
    }
    copy_ledger(from, wh);
}

/// A ledger's lifetime ρ and number of releases.
fn lifetime(wh: &Path) -> (f64, usize) {
    let l = Ledger::open(wh).unwrap();
    (l.show().unwrap().lifetime_rho, l.releases().unwrap().len())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_ledger_moved_away_release_publish_requests_approve_and_budget_init_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    Ledger::open(&wh).unwrap().allocate("std", 1.0).unwrap();
    let (st, token) = with_researcher(&wh, "nell", 0.5, roomy()).await;
    let id = submit_id(&app(st), &token, &submission(0.1)).await;
    let w = watermark(&wh);
    let manifest = Warehouse::open(&wh).unwrap().manifest().unwrap();
    assert_eq!(
        manifest.ledger_id.as_deref(),
        Some(w.ledger_id.as_str()),
        "the manifest records the ledger's id"
    );
    assert_eq!(
        w.ledger_id.len(),
        32,
        "a 128-bit id in hex: {}",
        w.ledger_id
    );
    assert!(w.lifetime_rho > 0.0 && w.entries > 0);
    assert_eq!(w.published_quarters, ["2025Q1", "2025Q2"]);

    move_ledger(&wh, &tmp.path().join("elsewhere"));
    let ledger = wh.join("ledger.sqlite");
    let names = [
        ledger.to_str().unwrap(),
        w.ledger_id.as_str(),
        WATERMARK_FILE,
        "missing",
    ];
    let spec = spec(tmp.path());
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("release", vec!["release", "--spec", spec.to_str().unwrap()]),
        (
            "publish",
            vec!["publish", "--quarter", "2025Q1", "--approver", "steward"],
        ),
        ("requests approve", vec!["requests", "approve", &id]),
        ("budget show", vec!["budget", "show"]),
    ];
    for (what, args) in commands {
        refused(&run(&wh, &args), what, &names);
        assert!(!ledger.exists(), "{what} created a new ledger");
    }
    let state = Queue::open(&wh).unwrap().get(&id).unwrap().state;
    assert_eq!(state, RequestState::Pending, "the request stays to decide");
    // `budget init` would start again from zero: refused, naming the ledger it would replace.
    let out = run(&wh, &["budget", "init", "--total", "5", "--horizon", "365"]);
    refused(&out, "budget init", &names[..3]);
    assert!(!ledger.exists(), "budget init created a new ledger");
    assert_eq!(watermark(&wh), w, "nothing moved the watermark");

    // Put back, everything runs again.
    move_ledger(&tmp.path().join("elsewhere"), &wh);
    run_ok(&wh, &["requests", "approve", &id]);
    assert!(watermark(&wh).entries > w.entries);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_copy_of_the_ledger_put_back_is_refused_by_every_command_and_by_budget_init() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = budgeted(tmp.path(), "2025-12-31");
    publish(&wh, &opts("2025Q1")).await.unwrap();
    Ledger::open(&wh).unwrap().allocate("std", 1.0).unwrap();
    let (st, token) = with_researcher(&wh, "nell", 0.5, roomy()).await;
    let id = submit_id(&app(st), &token, &submission(0.1)).await;
    // A copy after one publication; then another quarter is published.
    let copy = tmp.path().join("copy");
    copy_ledger(&wh, &copy);
    let (old_rho, old_releases) = lifetime(&wh);
    run_ok(
        &wh,
        &["publish", "--quarter", "2025Q2", "--approver", "steward"],
    );
    let w = watermark(&wh);
    assert!(w.lifetime_rho > old_rho);
    put_back(&copy, &wh);

    let entries = w.entries.to_string();
    let names = [
        "ledger.sqlite",
        w.ledger_id.as_str(),
        WATERMARK_FILE,
        entries.as_str(),
        "behind",
    ];
    let spec = spec(tmp.path());
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("release", vec!["release", "--spec", spec.to_str().unwrap()]),
        // The quarter the copy does not know: published again, it would be a second loss.
        (
            "publish",
            vec!["publish", "--quarter", "2025Q2", "--approver", "steward"],
        ),
        ("requests approve", vec!["requests", "approve", &id]),
    ];
    for (what, args) in commands {
        refused(&run(&wh, &args), what, &names);
    }
    let out = run(&wh, &["budget", "init", "--total", "5", "--horizon", "365"]);
    refused(
        &out,
        "budget init",
        &["ledger.sqlite", w.ledger_id.as_str(), WATERMARK_FILE],
    );
    // Nothing was written to the copy: it still holds what it held.
    let conn = rusqlite::Connection::open(wh.join("ledger.sqlite")).unwrap();
    let releases: i64 = conn
        .query_row("SELECT count(*) FROM releases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(releases as usize, old_releases);
    drop(conn);
    assert_eq!(watermark(&wh), w, "nothing moved the watermark back");
}

#[test]
fn another_warehouses_ledger_is_refused_naming_both_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let a = budgeted(&tmp.path().join("a"), "2025-12-31");
    let b = budgeted(&tmp.path().join("b"), "2025-12-31");
    let (wa, wb) = (watermark(&a), watermark(&b));
    assert_ne!(wa.ledger_id, wb.ledger_id, "each ledger has its own id");
    move_ledger(&b, &tmp.path().join("b-ledger"));
    copy_ledger(&a, &b);
    let out = run(
        &b,
        &["publish", "--quarter", "2025Q1", "--approver", "steward"],
    );
    refused(
        &out,
        "publish",
        &[
            "ledger.sqlite",
            wa.ledger_id.as_str(),
            wb.ledger_id.as_str(),
            "another",
        ],
    );
    assert_eq!(Ledger::open(&a).unwrap().releases().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn budget_recover_carries_the_lost_spend_over_and_a_quarter_published_again_debits_anew() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (lost_rho, lost_releases) = lifetime(&wh);
    let w = watermark(&wh);
    move_ledger(&wh, &tmp.path().join("gone"));

    // Without a reason, or over a ledger still in place, there is no recovery.
    let out = run(
        &wh,
        &[
            "budget",
            "recover",
            "--why",
            " ",
            "--total",
            "20",
            "--horizon",
            "365",
        ],
    );
    refused(&out, "recover without a reason", &["--why"]);
    let out = run_ok(
        &wh,
        &[
            "budget",
            "recover",
            "--why",
            "the disk failed and the backup missed the ledger",
            "--total",
            "20",
            "--horizon",
            "365",
            "--delta",
            "1e-6",
            "--noise",
            "gaussian",
            "--display-delta",
            "1e-6",
            "--min-scale",
            "2",
        ],
    );
    assert!(out.contains("the disk failed"), "{out}");
    let again = run(
        &wh,
        &[
            "budget",
            "recover",
            "--why",
            "twice",
            "--total",
            "20",
            "--horizon",
            "365",
        ],
    );
    refused(&again, "recover over a ledger", &["ledger.sqlite", "aside"]);

    let l = Ledger::open(&wh).unwrap();
    let view = l.show().unwrap();
    assert!(
        (view.lifetime_rho - lost_rho).abs() <= 1e-12 * lost_rho,
        "the lifetime spend starts at the lost ledger's {lost_rho}, not {}",
        view.lifetime_rho
    );
    assert_eq!(view.spent_rho, 0.0, "the new period has spent nothing");
    assert_eq!(view.period.total_delta, 1e-6);
    assert_eq!(view.config.display_delta, 1e-6);
    assert_eq!(view.config.min_scale, 2.0);
    let r = view
        .recovered_from
        .clone()
        .expect("the recovery is recorded");
    assert_eq!(r.lost_ledger_id, w.ledger_id);
    assert_eq!(r.lost_entries, w.entries);
    assert_eq!(r.lost_chain_head, w.chain_head);
    assert_eq!(r.releases_lost as usize, lost_releases);
    assert_eq!(r.published_quarters, ["2025Q1", "2025Q2"]);
    assert!(
        view.period.why.contains("the disk failed"),
        "{}",
        view.period.why
    );
    // On the public chain: a genesis that says so, then the recovery citing the lost head.
    let chain = l.chain().unwrap();
    assert_eq!(chain[1].kind, "recovery");
    let body: serde_json::Value = serde_json::from_str(&chain[1].body).unwrap();
    assert_eq!(body["lost_ledger_id"], w.ledger_id.as_str());
    assert_eq!(body["lost_chain_head"], w.chain_head.as_str());
    assert_eq!(body["lost_entries"], w.entries);
    let new_id = l.ledger_id().unwrap().unwrap();
    assert_ne!(new_id, w.ledger_id, "a new ledger has a new id");
    drop(l);
    let manifest = Warehouse::open(&wh).unwrap().manifest().unwrap();
    assert_eq!(manifest.ledger_id.as_deref(), Some(new_id.as_str()));
    assert_eq!(watermark(&wh).ledger_id, new_id);

    // `budget show` starts from the lost spend and shows the reason, the releases whose
    // stored numbers were lost and the quarters published.
    let table = run_ok(&wh, &["budget", "show"]);
    let expected = [
        "the disk failed".to_string(),
        w.ledger_id.clone(),
        format!("releases 1 to {lost_releases}"),
        "2025Q1, 2025Q2".to_string(),
        format!("{lost_rho:.6}"),
    ];
    for shown in &expected {
        assert!(table.contains(shown.as_str()), "{shown} not in {table}");
    }
    let shown = run_ok(&wh, &["budget", "show", "--format", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let text = shown.to_string();
    assert!(text.contains("the disk failed"), "{text}");
    assert!(text.contains(&w.ledger_id), "{text}");

    // A quarter the lost ledger published is published again only by a new debit, and both
    // losses count in the lifetime total.
    run_ok(&wh, &["budget", "allocate", "standard-releases", "10"]);
    run_ok(
        &wh,
        &["publish", "--quarter", "2025Q1", "--approver", "steward"],
    );
    let view = Ledger::open(&wh).unwrap().show().unwrap();
    assert!(view.spent_rho > 0.0, "publishing again debited anew");
    assert!(
        (view.lifetime_rho - (lost_rho + view.spent_rho)).abs() <= 1e-9,
        "lifetime {} = lost {lost_rho} + new {}",
        view.lifetime_rho,
        view.spent_rho
    );
    // And the recovered ledger is the one the warehouse vouches for: init is refused.
    let out = run(&wh, &["budget", "init", "--total", "5", "--horizon", "365"]);
    refused(&out, "budget init", &[new_id.as_str()]);
}

#[test]
fn budget_recover_needs_the_watermark_and_never_starts_from_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = budgeted(tmp.path(), "2025-12-31");
    move_ledger(&wh, &tmp.path().join("gone"));
    std::fs::remove_file(wh.join(WATERMARK_FILE)).unwrap();
    let out = run(
        &wh,
        &[
            "budget",
            "recover",
            "--why",
            "lost",
            "--total",
            "20",
            "--horizon",
            "365",
        ],
    );
    refused(&out, "recover without a watermark", &[WATERMARK_FILE]);
    assert!(!wh.join("ledger.sqlite").exists());
    // The manifest still names the lost ledger: init is refused too.
    let out = run(&wh, &["budget", "init", "--total", "5", "--horizon", "365"]);
    refused(&out, "budget init", &["manifest"]);
}

#[test]
fn a_crash_between_the_ledger_commit_and_the_watermark_leaves_the_ledger_ahead_and_it_is_accepted()
{
    const {
        assert!(
            failpoint::ENABLED,
            "the crash test needs the failpoints feature"
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let wh = budgeted(tmp.path(), "2025-12-31");
    let before = watermark(&wh);
    let out = outreach()
        .env(failpoint::ENV, "ledger-before-watermark")
        .args(["budget", "allocate", "extra", "1", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fail point did not crash it");
    // The allocation committed; the watermark is where it was: the ledger is ahead.
    assert_eq!(watermark(&wh), before);
    let ledger_entries = {
        let conn = rusqlite::Connection::open(wh.join("ledger.sqlite")).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM public_chain", [], |r| r.get(0))
            .unwrap();
        n as u64
    };
    assert!(ledger_entries > before.entries);
    // The next command accepts it and writes the watermark again.
    let out = run_ok(&wh, &["budget", "show"]);
    assert!(out.contains("extra"), "{out}");
    let after = watermark(&wh);
    assert_eq!(after.entries, ledger_entries);
    assert_eq!(after, Ledger::open(&wh).unwrap().watermark_state().unwrap());
}
