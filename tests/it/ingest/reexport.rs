//! Full re-exports, corrections and retractions (`src/ingest/revision.rs`): a monthly export
//! of every row to date loads only what is new, a corrected row replaces the stored one
//! (kept as history, never read), a snapshot retracts what a program's file no longer holds,
//! a refused or crashed load changes nothing, and publish, plan and the API name the
//! published quarters a correction touched.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use datafusion::arrow::array::AsArray;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use outreach_warehouse::ingest::{
    FAIL_POINT_ENV, FileOutcome, IngestError, IngestOptions, IngestReport, RevisionError, ingest,
};
use outreach_warehouse::present::snapshot::Snapshot;
use outreach_warehouse::present::views;
use outreach_warehouse::publication::{PublicationError, StandardNoise, plan, publish};
use outreach_warehouse::warehouse::{DatasetVersion, Warehouse, status};

use super::stored_column;
use crate::common::fixture::{fixture_opts, fixture_warehouse, opts as publish_opts, q, rt};
use crate::common::releases::{ok, outreach};
use crate::common::*;

/// The counts of a report's file `i`: (read, loaded, rejected, unchanged, corrected).
fn counts(r: &IngestReport, i: usize) -> (u64, u64, u64, u64, u64) {
    match &r.files[i].outcome {
        FileOutcome::Loaded {
            rows_read,
            rows_loaded,
            rows_rejected,
            rows_unchanged,
            rows_corrected,
            ..
        } => (
            *rows_read,
            *rows_loaded,
            *rows_rejected,
            *rows_unchanged,
            *rows_corrected,
        ),
        o => panic!("file {i}: {o:?}"),
    }
}

/// A warehouse with the fixture programs and `events(300)` (E0000…E0299, all in P001, one a
/// day spread over 2025), committed as v2.
fn with_300_events(tmp: &Path) -> std::path::PathBuf {
    let wh = warehouse_with_programs(tmp);
    let f = write(
        tmp,
        "overdose_events-january.csv",
        csv(EVENTS_HEADER, &events(300)),
    );
    assert_eq!(load(&wh, &f).unwrap().version, Some(DatasetVersion(2)));
    wh
}

/// The `event_id`s of every row of one Parquet file of the warehouse.
fn ids_in_file(wh: &Path, rel: &str) -> Vec<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(wh.join(rel)).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let ids = b.column_by_name("event_id").unwrap().as_string::<i32>();
        out.extend(ids.iter().flatten().map(str::to_string));
    }
    out
}

fn manifest(wh: &Path) -> outreach_warehouse::warehouse::Manifest {
    Warehouse::open(wh).unwrap().manifest().unwrap()
}

fn corrections() -> IngestOptions {
    IngestOptions {
        corrections: true,
        ..opts()
    }
}

fn snapshot_opts() -> IngestOptions {
    IngestOptions {
        snapshot: true,
        ..opts()
    }
}

#[test]
fn a_full_re_export_loads_only_its_new_rows_and_reports_the_rest_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = with_300_events(tmp.path());
    // February's export: every stored row plus 100 new ones, in another order.
    let mut rows = events(300);
    rows.reverse();
    rows.extend((0..100).map(|i| {
        event(
            &format!("N{i:03}"),
            &format!("pkn{i:03}"),
            "P002",
            "2025-07-01",
        )
    }));
    rows.swap(10, 350);
    let f = write(
        tmp.path(),
        "overdose_events-february.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let r = load(&wh, &f).unwrap();
    assert_eq!(counts(&r, 0), (400, 100, 0, 300, 0), "{r}");
    assert_eq!(r.version, Some(DatasetVersion(3)));
    assert!(r.revisions.is_empty());
    let text = r.to_string();
    assert!(
        text.contains("unchanged") && text.contains("corrected"),
        "{text}"
    );
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 400);
    let mut ids = stored_column(&wh, "overdose_events", "event_id");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 400, "every row once");
    // Nothing is replaced by a re-export without corrections.
    assert!(manifest(&wh).every_data_file().all(|(_, d)| d.is_live()));

    // March's export holds nothing new: no new dataset version, nothing written.
    let before = snapshot(&wh);
    let mut same = rows.clone();
    same.rotate_left(7);
    let g = write(
        tmp.path(),
        "overdose_events-march.csv",
        csv(EVENTS_HEADER, &same),
    );
    let r = load(&wh, &g).unwrap();
    assert_eq!(counts(&r, 0), (400, 0, 0, 400, 0));
    assert_eq!(r.version, None);
    assert!(r.to_string().contains("Nothing new to load"), "{r}");
    assert_eq!(snapshot(&wh), before);
}

#[test]
fn unchanged_rows_are_neither_rejects_nor_the_base_of_the_reject_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = with_300_events(tmp.path());
    let before = snapshot(&wh);
    // Two bad rows among 100 new ones: 2% of what is judged, over the 1% default, although
    // they are under 1% of all 402 rows.
    let mut rows = events(300);
    rows.extend((0..98).map(|i| event(&format!("N{i:03}"), "pkn", "P002", "2025-07-01")));
    rows.push(event("B1", "pkb", "P002", "2025-13-01"));
    rows.push(event("B2", "pkb", "P009", "2025-07-01"));
    let f = write(
        tmp.path(),
        "overdose_events-bad.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let err = load(&wh, &f).unwrap_err();
    match &err {
        IngestError::TooManyRejects { rejected, read, .. } => {
            assert_eq!((*rejected, *read), (2, 100), "{err}");
        }
        e => panic!("{e}"),
    }
    assert_eq!(snapshot(&wh), before, "a refused load changes nothing");
}

#[test]
fn a_corrected_date_moves_a_survivors_quarter_and_queries_read_only_the_corrected_row() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = with_300_events(tmp.path());
    let q1_files: Vec<String> = manifest(&wh)
        .data_files("overdose_events")
        .filter(|d| d.path.contains("quarter=2025Q1"))
        .map(|d| d.path.clone())
        .collect();
    assert_eq!(q1_files.len(), 1);
    assert!(ids_in_file(&wh, &q1_files[0]).contains(&"E0000".to_string()));
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_date < DATE '2025-04-01'"
        ),
        75
    );
    // E0000 happened on 2025-05-01, not 2025-01-01: its survivor moves from 2025Q1 to 2025Q2.
    let mut rows = events(300);
    rows[0] = event("E0000", "pk0000", "P001", "2025-05-01");
    let f = write(
        tmp.path(),
        "overdose_events-corrected.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let r = ingest(&wh, &[f], &corrections()).unwrap();
    assert_eq!(counts(&r, 0), (300, 1, 0, 299, 1), "{r}");
    assert_eq!(r.version, Some(DatasetVersion(3)));
    assert_eq!(r.revisions.len(), 1);
    assert_eq!(r.revisions[0].table, "overdose_events");
    assert_eq!((r.revisions[0].corrected, r.revisions[0].retracted), (1, 0));
    assert_eq!(r.revisions[0].quarters, ["2025Q1", "2025Q2"]);

    // Queries read the corrected row only.
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 300);
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_id = 'E0000'"
        ),
        1
    );
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_id = 'E0000' AND event_date = DATE '2025-05-01'"
        ),
        1
    );
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_date < DATE '2025-04-01'"
        ),
        74
    );
    // The old row is kept in a history file: the replaced Q1 file, on disk and named, never read.
    let m = manifest(&wh);
    let replaced: Vec<_> = m
        .every_data_file()
        .filter(|(_, d)| !d.is_live())
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].path, q1_files[0]);
    assert_eq!(replaced[0].replaced_in, Some(DatasetVersion(3)));
    assert!(ids_in_file(&wh, &replaced[0].path).contains(&"E0000".to_string()));
    assert!(
        m.data_files("overdose_events")
            .all(|d| d.path != q1_files[0])
    );
    let live_q1: Vec<String> = m
        .data_files("overdose_events")
        .filter(|d| d.path.contains("quarter=2025Q1"))
        .flat_map(|d| ids_in_file(&wh, &d.path))
        .collect();
    assert_eq!(live_q1.len(), 74);
    assert!(!live_q1.contains(&"E0000".to_string()));
    // The steward's status counts the correction.
    let s = rt()
        .block_on(status(&Warehouse::open(&wh).unwrap()))
        .unwrap();
    let events_status = s
        .tables
        .iter()
        .find(|t| t.table == "overdose_events")
        .unwrap();
    assert_eq!(
        (
            events_status.rows,
            events_status.corrected,
            events_status.retracted
        ),
        (300, 1, 0)
    );
    assert!(s.to_string().contains("corrected"), "{s}");
    // The same correction again is unchanged now.
    let again = write(
        tmp.path(),
        "overdose_events-corrected-again.csv",
        csv(EVENTS_HEADER, &rows[..10]),
    );
    let r = ingest(&wh, &[again], &corrections()).unwrap();
    assert_eq!(counts(&r, 0), (10, 0, 0, 10, 0));
    assert_eq!(r.version, None);
}

#[test]
fn without_corrections_a_changed_row_is_rejected_with_the_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = with_300_events(tmp.path());
    let mut rows = events(300);
    rows[4] = event("E0004", "pk0004", "P001", "2025-05-20");
    let f = write(
        tmp.path(),
        "overdose_events-changed.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let r = ingest(&wh, std::slice::from_ref(&f), &lenient()).unwrap();
    assert_eq!(counts(&r, 0), (300, 0, 1, 299, 0), "{r}");
    assert_eq!(
        quarantine(&r),
        [(
            6,
            "event_id".to_string(),
            "event_id is already in the warehouse with other values; if this row corrects the stored one, load the file with --corrections".to_string()
        )]
    );
    // The stored row stands; the reject names the line, never the id.
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_id = 'E0004' AND event_date = DATE '2025-05-05'"
        ),
        1
    );
    // Under the default reject rate the one changed row is all that is judged: the same
    // rows in another order (other bytes, so not a re-load) are refused whole.
    rows.reverse();
    let g = write(
        tmp.path(),
        "overdose_events-changed-2.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let err = ingest(&wh, &[g], &opts()).unwrap_err();
    assert!(matches!(err, IngestError::TooManyRejects { .. }), "{err}");
}

#[test]
fn repeated_keys_inside_one_re_export_are_still_rejected_whatever_the_order() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = with_300_events(tmp.path());
    // E0007 twice (a stored key: the first line re-sends it, the second repeats that line),
    // and a new key twice, the repeat first in line order wins.
    let mut rows = events(300);
    rows.push(event("E0007", "pk0007", "P001", "2025-08-08"));
    rows.push(event("N1", "pkn1", "P002", "2025-07-01"));
    rows.insert(0, event("N1", "pkn1", "P002", "2025-07-02"));
    let f = write(
        tmp.path(),
        "overdose_events-twice.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let r = ingest(
        &wh,
        &[f],
        &IngestOptions {
            corrections: true,
            ..lenient()
        },
    )
    .unwrap();
    // 303 rows: N1 on line 2, the 300 stored ones unchanged (E0007 on line 10), then E0007
    // again on line 303 and N1 again on line 304, both rejected.
    assert_eq!(counts(&r, 0), (303, 1, 2, 300, 0), "{r}");
    let q = quarantine(&r);
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(
        q[0],
        (303, "event_id".into(), "event_id repeats line 10".into())
    );
    assert_eq!(
        q[1],
        (304, "event_id".into(), "event_id repeats line 2".into())
    );
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_id = 'N1' AND event_date = DATE '2025-07-02'"
        ),
        1
    );
    assert!(manifest(&wh).every_data_file().all(|(_, d)| d.is_live()));
}

/// 300 events in P001 (as [`with_300_events`]) and 50 in P002.
fn two_programs(tmp: &Path) -> std::path::PathBuf {
    let wh = with_300_events(tmp);
    let p2: Vec<String> = (0..50)
        .map(|i| {
            event(
                &format!("Q{i:03}"),
                &format!("pkq{i:03}"),
                "P002",
                "2025-03-03",
            )
        })
        .collect();
    let f = write(tmp, "overdose_events-p2.csv", csv(EVENTS_HEADER, &p2));
    load(&wh, &f).unwrap();
    wh
}

#[test]
fn a_snapshot_missing_a_row_retracts_it_and_another_programs_rows_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = two_programs(tmp.path());
    // P001's whole table, without E0005 (1 of 300, under the default 5%).
    let rows: Vec<String> = events(300)
        .into_iter()
        .filter(|r| !r.starts_with("E0005,"))
        .collect();
    let f = write(
        tmp.path(),
        "overdose_events-p1.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let r = ingest(&wh, &[f], &snapshot_opts()).unwrap();
    assert_eq!(counts(&r, 0), (299, 0, 0, 299, 0), "{r}");
    assert_eq!(r.version, Some(DatasetVersion(4)));
    assert_eq!((r.revisions[0].corrected, r.revisions[0].retracted), (0, 1));
    assert_eq!(r.revisions[0].quarters, ["2025Q2"]);
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 349);
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_id = 'E0005'"
        ),
        0
    );
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE program_id = 'P002'"
        ),
        50
    );
    // The retracted row is history: in the replaced file, never read.
    let m = manifest(&wh);
    let history: Vec<String> = m
        .every_data_file()
        .filter(|(_, d)| !d.is_live())
        .flat_map(|(_, d)| ids_in_file(&wh, &d.path))
        .collect();
    assert!(history.contains(&"E0005".to_string()));
    assert_eq!(m.revised_rows("overdose_events"), (0, 1));
    let s = rt()
        .block_on(status(&Warehouse::open(&wh).unwrap()))
        .unwrap();
    let t = s
        .tables
        .iter()
        .find(|t| t.table == "overdose_events")
        .unwrap();
    assert_eq!(
        (t.rows, t.files, t.retracted),
        (349, m.data_files("overdose_events").count(), 1)
    );
    // The row sent again later loads as new: a retraction is not a ban.
    let back = write(
        tmp.path(),
        "overdose_events-back.csv",
        csv(EVENTS_HEADER, &events(300)[5..6]),
    );
    let r = load(&wh, &back).unwrap();
    assert_eq!(counts(&r, 0), (1, 1, 0, 0, 0));
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 350);
}

#[test]
fn a_snapshot_over_the_retract_threshold_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = two_programs(tmp.path());
    let before = snapshot(&wh);
    let manifest_before = std::fs::read(wh.join("manifest.json")).unwrap();
    // P001's export lost a third of its rows: more likely cut short than retracted.
    let f = write(
        tmp.path(),
        "overdose_events-short.csv",
        csv(EVENTS_HEADER, &events(300)[..200]),
    );
    let err = ingest(&wh, std::slice::from_ref(&f), &snapshot_opts()).unwrap_err();
    match &err {
        IngestError::Revision(RevisionError::TooManyRetractions {
            table,
            scope,
            retracted,
            stored,
            ..
        }) => {
            assert_eq!(
                (table.as_str(), scope.as_str(), *retracted, *stored),
                ("overdose_events", "program 'P001'", 100, 300)
            );
        }
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains("--force-retract"), "{err}");
    assert_eq!(err.fault(), outreach_warehouse::Fault::BadInput);
    assert_eq!(
        std::fs::read(wh.join("manifest.json")).unwrap(),
        manifest_before
    );
    assert_eq!(snapshot(&wh), before);
    // A snapshot whose rows fail validation cannot say what it lacks: refused, nothing changes.
    let mut rows = events(300);
    rows[3] = event("E0003", "pk0003", "P001", "2025-02-30");
    let bad = write(
        tmp.path(),
        "overdose_events-invalid.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let err = ingest(
        &wh,
        &[bad],
        &IngestOptions {
            snapshot: true,
            ..lenient()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::Revision(RevisionError::InvalidRowsInSnapshot { invalid: 1, .. })
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(wh.join("manifest.json")).unwrap(),
        manifest_before
    );
    // Forced, the retraction goes through, and P002 stays whole.
    let forced = IngestOptions {
        force_retract: true,
        ..snapshot_opts()
    };
    let r = ingest(&wh, &[f], &forced).unwrap();
    assert_eq!(r.revisions[0].retracted, 100);
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 250);
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE program_id = 'P002'"
        ),
        50
    );
}

/// Runs `outreach ingest --corrections --snapshot` on `file` as a process that aborts at
/// `point`.
fn crash_while_revising(point: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let wh = with_300_events(tmp.path());
    let before = snapshot(&wh);
    // E0000 corrected into 2025Q2, E0005 retracted.
    let mut rows = events(300);
    rows[0] = event("E0000", "pk0000", "P001", "2025-05-01");
    rows.remove(5);
    let f = write(
        tmp.path(),
        "overdose_events-revised.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args([
            "--quiet",
            "ingest",
            "--corrections",
            "--snapshot",
            "--warehouse",
        ])
        .arg(&wh)
        .args(["--max-date", "2026-06-30"])
        .arg(&f)
        .env(FAIL_POINT_ENV, point)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the process was meant to crash at {point}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("fail point {point}")));
    // The previous version is whole: the same manifest, the old rows read.
    let after = snapshot(&wh);
    assert_eq!(after.get("manifest.json"), before.get("manifest.json"));
    for (path, bytes) in &before {
        assert_eq!(after.get(path), Some(bytes), "{path} changed");
    }
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 300);
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_id = 'E0000' AND event_date = DATE '2025-01-01'"
        ),
        1
    );
    // The next ingest moves what the crash left to trash/ and makes the revision once.
    let r = ingest(
        &wh,
        &[f],
        &IngestOptions {
            corrections: true,
            snapshot: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(r.trash.is_some() && r.recovered_files > 0, "{r}");
    assert_eq!(counts(&r, 0), (299, 1, 0, 298, 1));
    assert_eq!((r.revisions[0].corrected, r.revisions[0].retracted), (1, 1));
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 299);
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_id = 'E0000' AND event_date = DATE '2025-05-01'"
        ),
        1
    );
    // Every file the manifest names, live or history, is on disk; nothing else is.
    let m = manifest(&wh);
    for (_, d) in m.every_data_file() {
        assert!(wh.join(&d.path).is_file(), "{}", d.path);
    }
    let named: std::collections::BTreeSet<String> =
        m.every_data_file().map(|(_, d)| d.path.clone()).collect();
    let on_disk: std::collections::BTreeSet<String> = snapshot(&wh)
        .into_keys()
        .filter(|k| k.ends_with(".parquet") && !k.starts_with("trash"))
        .collect();
    assert_eq!(on_disk, named);
}

#[test]
fn a_crash_after_staging_a_revision_leaves_the_previous_version_whole() {
    crash_while_revising("after-staging");
}

#[test]
fn a_crash_after_the_revisions_data_renames_leaves_the_previous_version_whole() {
    crash_while_revising("after-data-rename");
}

#[test]
fn ingest_takes_corrections_snapshots_and_the_retract_threshold_from_its_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = with_300_events(tmp.path());
    let run = |args: &[&str], file: &Path| {
        outreach()
            .args(["ingest", "--max-date", "2026-06-30", "--warehouse"])
            .arg(&wh)
            .args(args)
            .arg(file)
            .output()
            .unwrap()
    };
    // --corrections: a changed row corrects the stored one.
    let mut rows = events(300);
    rows[1] = event("E0001", "pk0001", "P001", "2025-02-03");
    let corrected = write(
        tmp.path(),
        "overdose_events-c.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let out = ok(&run(&["--corrections"], &corrected));
    assert!(
        out.contains("overdose_events: 1 stored rows superseded by corrections and 0 retracted"),
        "{out}"
    );
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE event_id = 'E0001' AND event_date = DATE '2025-02-03'"
        ),
        1
    );
    // --snapshot with the default threshold refuses a file that lacks a third.
    let short = write(
        tmp.path(),
        "overdose_events-s.csv",
        csv(EVENTS_HEADER, &rows[..200]),
    );
    let refused = run(&["--snapshot"], &short);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--max-retract-rate"));
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 300);
    // --max-retract-rate 0.5 lets it through.
    ok(&run(&["--snapshot", "--max-retract-rate", "0.5"], &short));
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 200);
    // --force-retract takes any share.
    let shorter = write(
        tmp.path(),
        "overdose_events-t.csv",
        csv(EVENTS_HEADER, &rows[..20]),
    );
    assert_eq!(
        run(&["--snapshot", "--max-retract-rate", "0.5"], &shorter)
            .status
            .code(),
        Some(2)
    );
    ok(&run(&["--snapshot", "--force-retract"], &shorter));
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 20);
    // The parser refuses what cannot apply: a threshold or a force without a snapshot, and
    // both together.
    for (args, named) in [
        (&["--max-retract-rate", "0.1"][..], "--snapshot"),
        (&["--force-retract"][..], "--snapshot"),
        (
            &["--snapshot", "--force-retract", "--max-retract-rate", "0.1"][..],
            "--force-retract",
        ),
        (
            &["--snapshot", "--max-retract-rate", "1.5"][..],
            "--max-retract-rate",
        ),
    ] {
        let out = run(args, &shorter);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{args:?}: {err}");
    }
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 20);
}

#[test]
fn publish_plan_and_the_api_name_the_quarter_a_correction_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let first = rt()
        .block_on(publish(&wh, &publish_opts("2025Q1")))
        .unwrap();
    assert!(first.corrected.is_empty());
    let shown = |wh: &Path| -> Vec<serde_json::Value> {
        let snap = Snapshot::load(wh, &[]).unwrap();
        snap.quarters
            .values()
            .map(|p| serde_json::to_value(views::quarter(p)).unwrap())
            .collect()
    };
    assert_eq!(shown(&wh)[0]["corrected_after_publication"], false);
    // A supplier corrects a 2025Q1 event's date (still in 2025Q1).
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/overdose_events.csv"),
    )
    .unwrap();
    let corrected = text.replacen("E0101,K01,P1,2025-01-06,", "E0101,K01,P1,2025-01-07,", 1);
    assert_ne!(corrected, text);
    let f = write(tmp.path(), "overdose_events.csv", corrected);
    let r = ingest(
        &wh,
        &[f],
        &IngestOptions {
            corrections: true,
            ..fixture_opts("2025-12-31")
        },
    )
    .unwrap();
    assert_eq!(r.revisions[0].quarters, ["2025Q1"]);
    // publish says why the quarter needs --republish.
    let err = rt()
        .block_on(publish(&wh, &publish_opts("2025Q1")))
        .unwrap_err();
    assert!(
        matches!(err, PublicationError::AlreadyPublished { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("Rows of 2025Q1 were corrected or retracted after that publication (in v2)"),
        "{err}"
    );
    // Publishing another quarter, and planning one, name it too.
    let q2 = rt()
        .block_on(publish(&wh, &publish_opts("2025Q2")))
        .unwrap();
    let named: Vec<(&str, &str, &str)> = q2
        .corrected
        .iter()
        .map(|c| {
            (
                c.quarter.as_str(),
                c.published_from.as_str(),
                c.corrected_in.as_str(),
            )
        })
        .collect();
    assert_eq!(named, [("2025Q1", "v1", "v2")]);
    let p = rt()
        .block_on(plan(&wh, q("2025Q3"), StandardNoise::default(), 200))
        .unwrap();
    assert_eq!(p.corrected, q2.corrected);
    // The API says the quarter's data were corrected after publication, and nothing more.
    let quarters = shown(&wh);
    let q1 = quarters.iter().find(|v| v["quarter"] == "2025Q1").unwrap();
    let q2v = quarters.iter().find(|v| v["quarter"] == "2025Q2").unwrap();
    assert_eq!(q1["corrected_after_publication"], true);
    assert_eq!(q2v["corrected_after_publication"], false);
    let body = serde_json::to_string(q1).unwrap();
    for steward_only in ["E0101", "K01", "corrected_in", "v2\"", "retracted"] {
        assert!(!body.contains(steward_only), "{steward_only}: {body}");
    }
    // Republished (a new debit), the quarter is no longer marked.
    let mut again = publish_opts("2025Q1");
    again.republish = true;
    let republished = rt().block_on(publish(&wh, &again)).unwrap();
    assert!(republished.fresh);
    assert!(republished.corrected.is_empty());
    let quarters = shown(&wh);
    assert!(
        quarters
            .iter()
            .all(|v| v["corrected_after_publication"] == false)
    );
}
