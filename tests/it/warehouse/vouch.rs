//! The warehouse vouches for its data files (`src/warehouse/vouch.rs`): a data file that is
//! missing, truncated or replaced by another valid Parquet file of its table, or a table's
//! folder moved away, is refused with exit 2, by name, by every command that reads the data,
//! before anything is spent; `status --verify` re-hashes every file and names each damaged
//! one.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use outreach_warehouse::api::app;
use outreach_warehouse::ledger::{Ledger, PrivacyConfig};
use outreach_warehouse::publication::publish;
use outreach_warehouse::requests::{Queue, RequestState};
use outreach_warehouse::warehouse::{DataFile, Warehouse};

use crate::common::fixture::{fixture_budgeted, opts};
use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, outreach, spec_toml};
use crate::common::server::{Served, published, roomy, submission, submit_id, with_researcher};
use crate::common::write;

/// The fixture warehouse in `dir/wh`, complete through 2025, with `standard-releases` for
/// `publish` and an allocation `std` for the release spec of [`spec`].
fn warehouse(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let wh = fixture_budgeted(dir, "2025-12-31", 20.0, 10.0, PrivacyConfig::default());
    Ledger::open(&wh).unwrap().allocate("std", 5.0).unwrap();
    wh
}

/// A release spec of persons per program and quarter from `std`, written into `dir`.
fn spec(dir: &Path) -> PathBuf {
    write(
        dir,
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    )
}

/// The `overdose_events` data files as the manifest records them, the one with the most
/// rows first.
fn events_files(wh: &Path) -> Vec<DataFile> {
    let m = Warehouse::open(wh).unwrap().manifest().unwrap();
    let mut files: Vec<DataFile> = m.data_files("overdose_events").cloned().collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.rows));
    assert!(
        files.len() >= 2,
        "the fixture has events in several quarters"
    );
    files
}

/// What the ledger has spent and recorded: period ρ and δ spent, lifetime ρ, releases.
fn spent(wh: &Path) -> (f64, f64, f64, usize) {
    let l = Ledger::open(wh).unwrap();
    let b = l.show().unwrap();
    (
        b.spent_rho,
        b.spent_delta,
        b.lifetime_rho,
        l.releases().unwrap().len(),
    )
}

/// `outreach ARGS --warehouse WH`.
fn run(wh: &Path, args: &[&str]) -> Output {
    outreach()
        .args(args)
        .arg("--warehouse")
        .arg(wh)
        .output()
        .unwrap()
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

/// How a data file is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Deleted.
    Missing,
    /// Cut to half its size.
    Truncated,
    /// Another valid Parquet file of the same table copied over it.
    Replaced,
    /// The table's whole folder moved out of the warehouse.
    FolderMoved,
}

impl Damage {
    /// Damages `target` (or its table's folder) in `wh`, with `other` a second data file of
    /// the same table; returns what the refusals must name.
    fn apply(self, wh: &Path, target: &DataFile, other: &DataFile) -> Vec<String> {
        let path = wh.join(&target.path);
        match self {
            Damage::Missing => std::fs::remove_file(&path).unwrap(),
            Damage::Truncated => {
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(target.bytes / 2).unwrap();
            }
            Damage::Replaced => {
                assert!(
                    (other.rows, other.bytes) != (target.rows, target.bytes),
                    "the replacement must differ from the file it replaces"
                );
                std::fs::copy(wh.join(&other.path), &path).unwrap();
            }
            Damage::FolderMoved => {
                std::fs::rename(
                    wh.join("tables/overdose_events"),
                    wh.with_file_name("overdose_events-moved-away"),
                )
                .unwrap();
                return vec!["tables/overdose_events/".into(), "missing".into()];
            }
        }
        vec![target.path.clone(), "overdose_events".into()]
    }
}

#[test]
fn a_damaged_data_file_is_refused_by_name_before_any_debit() {
    let tmp = tempfile::tempdir().unwrap();
    for damage in [
        Damage::Missing,
        Damage::Truncated,
        Damage::Replaced,
        Damage::FolderMoved,
    ] {
        let dir = tmp.path().join(format!("{damage:?}"));
        let wh = warehouse(&dir);
        let spec = spec(&dir);
        let spec = spec.to_str().unwrap();
        let files = events_files(&wh);
        let (target, other) = (&files[0], &files[1]);
        let original = std::fs::read(wh.join(&target.path)).unwrap();
        let before = spent(&wh);
        let names = damage.apply(&wh, target, other);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();

        for (what, args) in [
            ("release", vec!["release", "--spec", spec]),
            (
                "publish",
                vec!["publish", "--quarter", "2025Q1", "--approver", "steward"],
            ),
            ("plan", vec!["plan", "--quarter", "2025Q1"]),
            (
                "metrics --exact",
                vec!["metrics", "--exact", "--quarter", "2025Q1"],
            ),
            ("status", vec!["status"]),
        ] {
            let what = format!("{damage:?}: {what}");
            let out = run(&wh, &args);
            refused(&out, &what, &names);
            assert!(out.stdout.is_empty(), "{what} printed {:?}", out.stdout);
            assert_eq!(spent(&wh), before, "{what} spent");
        }
        assert!(
            Ledger::open(&wh)
                .unwrap()
                .current_publication("2025Q1")
                .unwrap()
                .is_none(),
            "{damage:?}: a publication was stored"
        );

        // The scrub names the damaged file (every file of a table moved away).
        let out = run(&wh, &["status", "--verify"]);
        let mut all = names.clone();
        if matches!(damage, Damage::FolderMoved) {
            all.extend(files.iter().map(|f| f.path.as_str()));
        }
        refused(&out, &format!("{damage:?}: status --verify"), &all);

        // Put back, the same commands run and the release spends: the refusal was the damage.
        match damage {
            Damage::FolderMoved => std::fs::rename(
                wh.with_file_name("overdose_events-moved-away"),
                wh.join("tables/overdose_events"),
            )
            .unwrap(),
            _ => std::fs::write(wh.join(&target.path), &original).unwrap(),
        }
        let out = run(&wh, &["status", "--verify"]);
        assert!(
            out.status.success(),
            "{damage:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&wh, &["release", "--spec", spec]);
        assert!(
            out.status.success(),
            "{damage:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(spent(&wh).3, before.3 + 1, "{damage:?}");
    }
}

#[test]
fn status_verify_checks_every_file_of_an_untouched_warehouse_and_finds_changed_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse(tmp.path());
    let m = Warehouse::open(&wh).unwrap().manifest().unwrap();
    let (count, bytes) = m
        .all_data_files()
        .fold((0usize, 0u64), |(n, b), f| (n + 1, b + f.bytes));
    assert!(count > 6, "{count}");
    let out = run(&wh, &["status", "--verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Dataset version v1"), "{stdout}");
    assert!(
        stdout.contains(&format!("Verified {count} data files ({bytes} bytes)")),
        "{stdout}"
    );

    // One byte of a data page changed: the size and the footer still hold, so the cheap check
    // that every reader runs passes, and the scrub names the file.
    let files = events_files(&wh);
    let target = &files[0];
    let path = wh.join(&target.path);
    let mut data = std::fs::read(&path).unwrap();
    data[4] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    let out = run(&wh, &["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&wh, &["status", "--verify"]);
    refused(
        &out,
        "status --verify",
        &[&target.path, "changed", "SHA-256"],
    );
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("1 of the {count} data files")),
        "{stderr}"
    );
}

/// Waits up to a minute for `outreach serve` to exit; a server still running then started
/// on the damaged warehouse, and is stopped.
fn serve_exit(wh: &Path) -> Output {
    let mut child = outreach()
        .args(["serve", "--addr", "127.0.0.1:0", "--warehouse"])
        .arg(wh)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve started on a damaged warehouse: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_report_and_requests_approve_refuse_a_damaged_warehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "nell", 0.5, roomy()).await;
    let id = submit_id(&app(st), &token, &submission(0.1)).await;
    let target = events_files(&wh)[0].clone();
    let original = std::fs::read(wh.join(&target.path)).unwrap();
    std::fs::remove_file(wh.join(&target.path)).unwrap();
    let before = spent(&wh);
    let names = [target.path.as_str(), "overdose_events", "missing"];

    let out = run(&wh, &["requests", "approve", &id]);
    refused(&out, "requests approve", &names);
    assert_eq!(spent(&wh), before, "requests approve spent");
    let state = Queue::open(&wh).unwrap().get(&id).unwrap().state;
    assert_eq!(
        state,
        RequestState::Pending,
        "the request stays to be decided"
    );

    let html = tmp.path().join("report.html");
    let out = outreach()
        .args(["report", "--quarter", "2025Q1", "--warehouse"])
        .arg(&wh)
        .arg("--out")
        .arg(&html)
        .output()
        .unwrap();
    refused(&out, "report", &names);
    assert!(!html.exists() && !html.with_extension("csv").exists());

    let out = serve_exit(&wh);
    refused(&out, "serve", &names);
    assert!(out.stdout.is_empty(), "serve printed {:?}", out.stdout);

    // A publish that would spend nothing (the quarter's dataset version is published) is
    // refused too: it reads the data.
    let out = run(
        &wh,
        &["publish", "--quarter", "2025Q1", "--approver", "steward"],
    );
    refused(&out, "publish again", &names);

    // Put back, the server starts and the request runs.
    std::fs::write(wh.join(&target.path), &original).unwrap();
    drop(Served::start(&wh, false));
    let out = run(&wh, &["requests", "approve", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(spent(&wh).3, before.3 + 1);
}

/// The in-process path that `publish` and the release engine share refuses too, with the
/// warehouse error that names the file (not only the binary's exit code).
#[tokio::test(flavor = "multi_thread")]
async fn publish_in_process_refuses_with_the_warehouse_error() {
    use outreach_warehouse::publication::PublicationError;
    use outreach_warehouse::warehouse::WarehouseError;
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse(tmp.path());
    let target = events_files(&wh)[0].clone();
    std::fs::remove_file(wh.join(&target.path)).unwrap();
    let before = spent(&wh);
    let err = publish(&wh, &opts("2025Q1")).await.unwrap_err();
    assert!(
        matches!(
            err,
            PublicationError::Warehouse(WarehouseError::DamagedData { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&target.path), "{err}");
    assert_eq!(spent(&wh), before);
}
