//! Recovery and durability (`src/warehouse`): a warehouse is created only in an empty or new
//! folder; recovery refuses folders it does not recognise, moves only its own leftovers, into
//! a dated `trash/` folder, and never deletes; new folders are flushed before the manifest
//! names them, so a crash at any of those points leaves a warehouse the next load can use.

use std::path::Path;
use std::process::{Command, Output};

use outreach_warehouse::Fault;
use outreach_warehouse::ingest::{FAIL_POINT_ENV, IngestError, ingest};
use outreach_warehouse::warehouse::{
    DatasetVersion, Recovery, Warehouse, WarehouseError, create_dir_synced,
};

use crate::common::*;

/// Writes `bytes` at `rel` below `dir`, creating the folders.
fn put(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// Runs `outreach --quiet ingest --warehouse WH --max-date 2026-06-30 FILE` with the fail
/// point `point` armed.
fn ingest_crashing_at(wh: &Path, file: &Path, point: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["--quiet", "ingest", "--warehouse"])
        .arg(wh)
        .args(["--max-date", "2026-06-30"])
        .arg(file)
        .env(FAIL_POINT_ENV, point)
        .output()
        .unwrap()
}

/// Expects `outreach` to have aborted at `point`.
fn assert_crashed_at(out: &Output, point: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the process was meant to crash at {point}; stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("fail point {point}")),
        "{point}: {stderr}"
    );
}

#[test]
fn a_folder_with_a_stray_tables_folder_is_refused_and_its_files_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let stray = tmp.path().join("stray");
    put(
        &stray,
        "tables/overdose_events/quarter=2025Q1/v0001-00.parquet",
        b"somebody's data",
    );
    put(&stray, "tables/programs/v0001-00.parquet", b"more data");
    let before = tree(&stray);
    let programs = write(tmp.path(), "programs.csv", PROGRAMS);

    let err = ingest(&stray, std::slice::from_ref(&programs), &opts()).unwrap_err();
    assert!(
        matches!(err, IngestError::Warehouse(WarehouseError::NotEmpty(_))),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::BadInput);
    assert!(err.to_string().contains("no manifest.json"), "{err}");
    assert_eq!(tree(&stray), before, "the folder is left exactly as it was");

    // The same through the command line, which exits 2 (bad input).
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["--quiet", "ingest", "--warehouse"])
        .arg(&stray)
        .args(["--max-date", "2026-06-30"])
        .arg(&programs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no manifest.json"), "{stderr}");
    assert_eq!(tree(&stray), before);
}

#[test]
fn ingest_into_the_current_folder_is_refused_when_it_holds_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "programs.csv", PROGRAMS);
    put(&dir, "tables/programs/v0001-00.parquet", b"kept");
    let before = tree(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .current_dir(&dir)
        .args([
            "--quiet",
            "ingest",
            "--warehouse",
            ".",
            "--max-date",
            "2026-06-30",
            "programs.csv",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree(&dir), before);
}

#[test]
fn a_warehouse_whose_manifest_was_lost_is_refused_not_emptied() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    load(&wh, &events_file(tmp.path(), 30)).unwrap();
    std::fs::remove_file(wh.join("manifest.json")).unwrap();
    let before = tree(&wh);
    assert!(before.keys().any(|k| k.ends_with(".parquet")));
    let f = write(
        tmp.path(),
        "arrests.csv",
        csv(ARRESTS_HEADER, &[arrest("X1", "pk1", "2025-01-01")]),
    );
    let err = load(&wh, &f).unwrap_err();
    assert!(
        matches!(err, IngestError::Warehouse(WarehouseError::NotEmpty(_))),
        "{err}"
    );
    assert!(
        err.to_string().contains("restore that file from a backup"),
        "{err}"
    );
    assert_eq!(tree(&wh), before, "every data file survives");
}

#[test]
fn recovery_leaves_files_it_does_not_know_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    load(&wh, &events_file(tmp.path(), 30)).unwrap();
    let strays = [
        "notes.txt",
        "tables/README.md",
        "tables/overdose_events/notes.txt",
        "tables/overdose_events/quarter=2025Q1/export.parquet",
        "tables/overdose_events/quarter=2025Q1/v0002-00.parquet.bak",
        // A data file's name, but not where the warehouse puts a dated table's files.
        "tables/overdose_events/v0009-00.parquet",
        "tables/overdose_events/quarter=2025q1/v0009-00.parquet",
        "tables/overdose_events/2025Q1/v0009-00.parquet",
        // No table of the dictionary.
        "tables/overdoses/quarter=2025Q1/v0009-00.parquet",
        "tables/programs/extra/v0009-00.parquet",
    ];
    for (i, s) in strays.iter().enumerate() {
        put(&wh, s, format!("stray {i}").as_bytes());
    }
    let before = tree(&wh);
    let f = write(
        tmp.path(),
        "arrests.csv",
        csv(ARRESTS_HEADER, &[arrest("X1", "pk1", "2025-01-01")]),
    );
    let r = load(&wh, &f).unwrap();
    assert_eq!(r.version, Some(DatasetVersion(3)));
    assert_eq!((r.recovered_files, r.trash.clone()), (0, None));
    assert!(!r.to_string().contains("interrupted"), "{r}");
    assert!(!wh.join("trash").exists());
    let after = tree(&wh);
    for s in strays {
        assert_eq!(after.get(s), before.get(s), "{s} is left alone");
    }
}

#[test]
fn recovery_moves_its_own_leftovers_to_a_dated_trash_folder_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    load(&wh, &events_file(tmp.path(), 30)).unwrap();
    let leftovers = [
        "tables/overdose_events/quarter=2025Q1/v0009-00.parquet",
        "tables/programs/v0009-03.parquet",
        "tables/arrests/quarter=2024Q4/v0123-10.parquet",
    ];
    for (i, l) in leftovers.iter().enumerate() {
        put(&wh, l, format!("leftover {i}").as_bytes());
    }
    put(&wh, "tables/overdose_events/keep.txt", b"keep");
    let named_before: Vec<String> = Warehouse::open(&wh)
        .unwrap()
        .manifest()
        .unwrap()
        .all_data_files()
        .map(|f| f.path.clone())
        .collect();
    let before = tree(&wh);

    let f = write(
        tmp.path(),
        "arrests.csv",
        csv(ARRESTS_HEADER, &[arrest("X1", "pk1", "2025-01-01")]),
    );
    let r = load(&wh, &f).unwrap();
    assert_eq!(r.recovered_files, leftovers.len());
    let trash = r.trash.clone().expect("leftovers were moved");
    assert_eq!(trash.parent(), Some(wh.join("trash").as_path()));
    let text = r.to_string();
    assert!(
        text.contains(&format!(
            "Moved 3 files left by an interrupted earlier load to {}",
            trash.display()
        )),
        "{text}"
    );
    // Moved, not deleted: the same bytes under the same relative path.
    let kept = tree(&trash);
    assert_eq!(kept.len(), leftovers.len(), "{:?}", kept.keys());
    for l in leftovers {
        assert_eq!(kept.get(l), before.get(l), "{l}");
        assert!(!wh.join(l).exists(), "{l} left its place");
    }
    // What the manifest names, and what is not the warehouse's, is untouched.
    let after = tree(&wh);
    for p in named_before
        .iter()
        .map(String::as_str)
        .chain(["tables/overdose_events/keep.txt"])
    {
        assert_eq!(after.get(p), before.get(p), "{p}");
    }
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 30);

    // A second recovery in the same second gets a folder of its own.
    put(&wh, leftovers[0], b"again");
    let g = write(
        tmp.path(),
        "arrests-2.csv",
        csv(ARRESTS_HEADER, &[arrest("X2", "pk2", "2025-01-02")]),
    );
    let r2 = load(&wh, &g).unwrap();
    let trash2 = r2.trash.clone().expect("moved again");
    assert_ne!(trash2, trash);
    assert_eq!(
        tree(&trash).len(),
        leftovers.len(),
        "the first trash folder is kept"
    );
    assert_eq!(
        tree(&trash2).get(leftovers[0]).map(Vec::as_slice),
        Some(&b"again"[..])
    );
}

#[test]
fn the_command_that_creates_a_warehouse_recovers_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("wh");
    let leftover = "tables/arrests/quarter=2025Q1/v0001-00.parquet";
    let created = Warehouse::open_or_create(&root).unwrap();
    put(&root, leftover, b"written meanwhile");
    let lock = created.lock().unwrap();
    assert_eq!(created.recover(&lock).unwrap(), Recovery::default());
    assert!(root.join(leftover).exists());
    drop(lock);
    // A later command, which opens the warehouse, moves it out of the way.
    let opened = Warehouse::open(&root).unwrap();
    let lock = opened.lock().unwrap();
    let recovery = opened.recover(&lock).unwrap();
    assert_eq!(recovery.moved, 1);
    let trash = recovery.trash.expect("moved to trash");
    assert!(trash.join(leftover).is_file());
    assert!(!root.join(leftover).exists());
}

#[test]
fn new_folders_are_flushed_before_the_manifest_names_them() {
    for point in [
        "dir-synced:tables/overdose_events",
        "dir-synced:tables/overdose_events/quarter=2025Q1",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let wh = warehouse_with_programs(tmp.path());
        let f = events_file(tmp.path(), 20);
        let manifest = std::fs::read(wh.join("manifest.json")).unwrap();
        let out = ingest_crashing_at(&wh, &f, point);
        assert_crashed_at(&out, point);
        // The folder exists and was flushed (the point follows the flush), and the manifest
        // was not yet written.
        assert!(wh.join(point.strip_prefix("dir-synced:").unwrap()).is_dir());
        assert_eq!(std::fs::read(wh.join("manifest.json")).unwrap(), manifest);
        assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 0);
        // The next write loads the file once.
        let r = load(&wh, &f).unwrap();
        assert_eq!(r.version, Some(DatasetVersion(2)));
        assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 20);
    }
}

#[test]
fn the_quarantine_folder_is_flushed_before_the_manifest_names_its_report() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let mut rows = events(200);
    rows.push(event("E9", "pk9", "P404", "2025-01-01"));
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let manifest = std::fs::read(wh.join("manifest.json")).unwrap();
    let out = ingest_crashing_at(&wh, &f, "dir-synced:quarantine");
    assert_crashed_at(&out, "dir-synced:quarantine");
    assert!(wh.join("quarantine").is_dir());
    assert_eq!(std::fs::read(wh.join("manifest.json")).unwrap(), manifest);
}

#[test]
fn a_new_warehouse_folder_is_flushed_before_its_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("new").join("wh");
    let programs = write(tmp.path(), "programs.csv", PROGRAMS);
    let out = ingest_crashing_at(&wh, &programs, "dir-synced:.");
    assert_crashed_at(&out, "dir-synced:.");
    assert!(wh.is_dir());
    assert!(!wh.join("manifest.json").exists());
    assert!(tree(&wh).is_empty(), "{:?}", tree(&wh).keys());
    // The empty folder the crash left is still a place a warehouse can be created in.
    let r = load(&wh, &programs).unwrap();
    assert_eq!(r.version, Some(DatasetVersion(1)));
    assert_eq!(scalar(&wh, "SELECT count(*) FROM programs"), 3);
}

#[test]
fn create_dir_synced_creates_each_missing_folder_outermost_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("x").join("quarter=2025Q1").join("y");
    let made = create_dir_synced(&dir).unwrap();
    assert_eq!(
        made,
        [
            tmp.path().join("x"),
            tmp.path().join("x").join("quarter=2025Q1"),
            dir.clone()
        ]
    );
    assert!(dir.is_dir());
    assert!(create_dir_synced(&dir).unwrap().is_empty());
    assert_eq!(create_dir_synced(&dir.join("z")).unwrap(), [dir.join("z")]);
}
