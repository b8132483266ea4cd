//! Safety of ingest: re-loads add nothing (but the same bytes forced into another table are
//! checked as that table), loads are all-or-nothing, a crash at any point leaves the warehouse
//! as it was, and one writer at a time.

use std::process::Command;

use outreach_warehouse::ingest::{FAIL_POINT_ENV, FileOutcome, IngestError, IngestOptions, ingest};
use outreach_warehouse::warehouse::{DatasetVersion, Warehouse};

use crate::common::*;

#[test]
fn reloading_the_same_file_adds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let f = events_file(tmp.path(), 20);
    let first = load(&wh, &f).unwrap();
    assert_eq!(first.version, Some(DatasetVersion(2)));
    let before = snapshot(&wh);
    // The same bytes under another name are the same file.
    let copy = write(
        tmp.path(),
        "overdose_events-copy.csv",
        std::fs::read(&f).unwrap(),
    );
    let again = ingest(&wh, &[f.clone(), copy], &opts()).unwrap();
    assert_eq!(again.version, None);
    assert_eq!(
        again.files[0].outcome,
        FileOutcome::AlreadyLoaded(DatasetVersion(2))
    );
    assert_eq!(
        again.files[1].outcome,
        FileOutcome::AlreadyLoaded(DatasetVersion(2))
    );
    assert!(
        again
            .to_string()
            .contains("already loaded in v2; nothing added")
    );
    assert_eq!(snapshot(&wh), before);
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 20);
}

#[test]
fn a_file_listed_twice_in_one_command_loads_once() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let f = events_file(tmp.path(), 20);
    let r = ingest(&wh, &[f.clone(), f], &opts()).unwrap();
    assert_eq!(r.files[1].outcome, FileOutcome::RepeatedInCommand);
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 20);
}

#[test]
fn one_refused_file_loads_nothing_of_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let before = snapshot(&wh);
    let good = events_file(tmp.path(), 20);
    let bad = write(
        tmp.path(),
        "arrests.csv",
        "arrest_id,person_key,arrest_date,agency\nA1,pk1,2025-01-01,sheriff\n",
    );
    let err = ingest(&wh, &[good, bad], &opts()).unwrap_err();
    assert!(err.to_string().contains("missing columns: charge"), "{err}");
    assert_eq!(snapshot(&wh), before);
    assert_eq!(
        Warehouse::open(&wh).unwrap().manifest().unwrap().version(),
        DatasetVersion(1)
    );
}

#[test]
fn programs_and_person_tables_load_together_in_one_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "overdose_events.csv", csv(EVENTS_HEADER, &events(10)));
    write(&dir, "programs.csv", PROGRAMS);
    let r = ingest(&tmp.path().join("wh"), &[dir], &opts()).unwrap();
    assert_eq!(r.version, Some(DatasetVersion(1)));
    assert_eq!(r.rows_loaded(), 13);
}

/// Runs `outreach ingest` as a separate process that aborts at `point`.
fn crash_at(point: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let f = events_file(tmp.path(), 500);
    let before = snapshot(&wh);
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["--quiet", "ingest", "--warehouse"])
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
    // Readers see the warehouse exactly as before the crash.
    let after_crash = snapshot(&wh);
    assert_eq!(
        after_crash.get("manifest.json"),
        before.get("manifest.json")
    );
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 0);
    assert_eq!(scalar(&wh, "SELECT count(*) FROM programs"), 3);
    // The next write moves what the crash left to trash/, says so, then loads the file once.
    let r = load(&wh, &f).unwrap();
    assert_eq!(r.version, Some(DatasetVersion(2)));
    let trash = r
        .trash
        .clone()
        .expect("the crash left files, moved to trash/");
    assert!(r.recovered_files > 0);
    assert!(trash.starts_with(wh.join("trash")), "{}", trash.display());
    assert!(
        r.to_string()
            .contains("left by an interrupted earlier load to"),
        "{r}"
    );
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 500);
    let manifest = Warehouse::open(&wh).unwrap().manifest().unwrap();
    let named: std::collections::BTreeSet<String> = ["programs", "overdose_events"]
        .iter()
        .flat_map(|t| {
            manifest
                .data_files(t)
                .map(|f| f.path.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    let on_disk: std::collections::BTreeSet<String> = snapshot(&wh)
        .into_keys()
        .filter(|k| k != "manifest.json" && !k.starts_with("trash"))
        .collect();
    assert_eq!(on_disk, named, "only the files the manifest names remain");
    // What the crash left was moved, not deleted: every file it wrote is in trash/, byte
    // for byte, under the same relative path.
    let left: std::collections::BTreeMap<String, Vec<u8>> = after_crash
        .into_iter()
        .filter(|(k, _)| !before.contains_key(k))
        .collect();
    assert!(!left.is_empty(), "the crash at {point} left no file");
    let kept = snapshot(&trash);
    assert_eq!(kept.len(), r.recovered_files, "{:?}", kept.keys());
    assert!(
        kept.keys().all(|k| k.ends_with(".parquet")),
        "{:?}",
        kept.keys()
    );
    assert_eq!(kept, left, "trash/ holds exactly what the crash left");
}

#[test]
fn crash_after_staging_leaves_the_warehouse_unchanged() {
    crash_at("after-staging");
}

#[test]
fn crash_after_moving_data_but_before_the_manifest_leaves_it_unchanged() {
    crash_at("after-data-rename");
}

#[test]
fn one_writer_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let w = Warehouse::open(&wh).unwrap();
    let _held = w.lock().unwrap();
    let f = events_file(tmp.path(), 5);
    let err = load(&wh, &f).unwrap_err();
    assert!(
        err.to_string().contains("another command is writing"),
        "{err}"
    );
    assert_eq!(err.fault(), outreach_warehouse::Fault::Busy);
}

/// A process forked by another thread holds a copy of every open descriptor until it
/// execs. A released write lock must not live on in such a copy: the next writer would be
/// told the warehouse is busy although nobody writes (this made ingest tests flaky while
/// other tests spawned processes). 3,000 lock/release rounds while a thread spawns
/// processes non-stop hit that window dozens of times when the lock is only closed.
#[test]
fn a_released_lock_is_free_while_other_threads_spawn_processes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let w = Warehouse::open(&wh).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut spawned = 0;
            while !stop.load(Ordering::Relaxed) {
                Command::new("true").status().unwrap();
                spawned += 1;
            }
            spawned
        })
    };
    let mut busy = 0;
    for _ in 0..3000 {
        match w.lock() {
            Ok(lock) => drop(lock),
            Err(_) => busy += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let spawned = spawner.join().unwrap();
    assert!(spawned > 0, "no process was spawned during the rounds");
    assert_eq!(
        busy, 0,
        "the lock was busy {busy} times with nobody holding it"
    );
}

#[test]
fn the_same_bytes_loaded_as_another_table_are_not_already_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let f = events_file(tmp.path(), 5);
    let first = load(&wh, &f).unwrap();
    let sha = first.files[0].sha256.clone();
    let manifest = Warehouse::open(&wh).unwrap().manifest().unwrap();
    assert!(manifest.load_of_file("overdose_events", &sha).is_some());
    assert!(manifest.load_of_file("arrests", &sha).is_none());
    // Forced into arrests, the file is checked as an arrests export (and fails its header),
    // not waved through as "already loaded".
    let r = ingest(
        &wh,
        std::slice::from_ref(&f),
        &IngestOptions {
            table: Some("arrests".into()),
            ..opts()
        },
    );
    match r {
        Err(IngestError::Header { table, .. }) => assert_eq!(table, "arrests"),
        other => panic!("{other:?}"),
    }
    // Into its own table, it is.
    assert_eq!(
        load(&wh, &f).unwrap().files[0].outcome,
        FileOutcome::AlreadyLoaded(DatasetVersion(2))
    );
}
