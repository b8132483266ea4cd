//! Hardening of ingest (issue 9, items 4, 5, 6 and the ingest part of 8): keys are admitted
//! in line order whatever their quarters, recovery never deletes what it does not know,
//! new folders are flushed before the manifest names them, every line is scanned for direct
//! identifiers whatever its shape, quarantine never holds a raw value, and the smaller
//! refusals (paths, re-loads, line breaks in values, refusal reports) behave.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::AsArray;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use outreach_warehouse::Fault;
use outreach_warehouse::dictionary::{
    Dictionary, DictionaryError, EPOCH_DAYS_FROM_CE, epoch_days, from_epoch_days,
};
use outreach_warehouse::ingest::{
    FAIL_POINT_ENV, FileOutcome, IngestError, IngestOptions, IngestReport, ingest,
};
use outreach_warehouse::synth::SynthError;
use outreach_warehouse::warehouse::{
    DatasetVersion, Recovery, Warehouse, WarehouseError, create_dir_synced, data_file_path,
    quarantine_path,
};
use proptest::prelude::*;

use crate::common::*;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An arrests row. Arrests reference no program, so a new warehouse takes them as they are.
fn arrest(id: &str, person: &str, date: &str) -> String {
    format!("{id},{person},{date},sheriff,property")
}

/// A day in quarter `q` (0 is 2024Q1, 7 is 2025Q4), told apart by `d`.
fn day_in_quarter(q: u8, d: u8) -> String {
    let year = 2024 + u32::from(q / 4);
    let month = u32::from(q % 4) * 3 + 1 + u32::from(d % 3);
    format!("{year}-{month:02}-{:02}", d % 28 + 1)
}

/// Options that never refuse a file for its rejects.
fn lenient() -> IngestOptions {
    IngestOptions {
        max_reject_rate: 1.0,
        ..opts()
    }
}

/// The quarantine rows of file `i` of a report; none when it has no quarantine file.
fn file_quarantine(report: &IngestReport, i: usize) -> Vec<(u64, String, String)> {
    match &report.files[i].outcome {
        FileOutcome::Loaded {
            quarantine: Some(q),
            ..
        } => parse_quarantine(&std::fs::read_to_string(q).unwrap()),
        _ => Vec::new(),
    }
}

/// The values of the string columns `columns` of every stored row of `table`, read from the
/// Parquet files the manifest names.
fn stored_rows(wh: &Path, table: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let manifest = Warehouse::open(wh).unwrap().manifest().unwrap();
    let mut out = Vec::new();
    for f in manifest.data_files(table) {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(wh.join(&f.path)).unwrap())
                .unwrap()
                .build()
                .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let arrays: Vec<_> = columns
                .iter()
                .map(|c| batch.column_by_name(c).unwrap().as_string::<i32>().clone())
                .collect();
            for i in 0..batch.num_rows() {
                out.push(arrays.iter().map(|a| a.value(i).to_string()).collect());
            }
        }
    }
    out
}

/// One string column of every stored row of `table`.
fn stored_column(wh: &Path, table: &str, column: &str) -> Vec<String> {
    stored_rows(wh, table, &[column])
        .into_iter()
        .map(|mut r| r.remove(0))
        .collect()
}

/// Every file below `dir` (dot files, quarantine and lock included), with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

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

/// Loads `content` as overdose_events.csv into a warehouse with programs, expects a refusal
/// for a direct identifier, checks nothing was written (not even quarantine), and returns
/// the message.
fn refused_for_identifier(content: String) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let before = tree(&wh);
    let f = write(tmp.path(), "overdose_events.csv", content);
    let err = load(&wh, &f).unwrap_err();
    assert!(matches!(err, IngestError::DirectIdentifier { .. }), "{err}");
    assert_eq!(err.fault(), Fault::BadInput);
    let msg = err.to_string();
    assert!(msg.contains("refused whole, nothing was loaded"), "{msg}");
    assert_eq!(tree(&wh), before, "{msg}");
    assert!(!wh.join("quarantine").exists(), "{msg}");
    msg
}

// ---------------------------------------------------------------------------------------
// 4. Duplicate keys: admitted in line order, whatever the quarters
// ---------------------------------------------------------------------------------------

#[test]
fn a_repeat_dated_in_an_earlier_quarter_than_the_rows_before_it_is_rejected() {
    // The file: a Q2 row, then E2 dated in Q1, then E2 again dated in Q2. Bucketed
    // by quarter, the Q2 copy of E2 was admitted first and both copies loaded.
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let rows = vec![
        event("E1", "pk1", "P001", "2025-05-10"),
        event("E2", "pk2", "P001", "2025-02-10"),
        event("E2", "pk3", "P001", "2025-05-11"),
    ];
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let r = ingest(&wh, &[f], &lenient()).unwrap();
    assert_eq!(
        file_quarantine(&r, 0),
        [(
            4,
            "event_id".to_string(),
            "event_id repeats line 3".to_string()
        )]
    );
    let mut stored = stored_rows(&wh, "overdose_events", &["event_id", "person_key"]);
    stored.sort();
    // The first line of E2 is the one kept.
    assert_eq!(
        stored,
        [
            vec!["E1".to_string(), "pk1".to_string()],
            vec!["E2".to_string(), "pk2".to_string()]
        ]
    );
}

#[test]
fn repeats_keep_the_first_line_for_every_pair_of_quarters() {
    // Every order of quarters for a key's first line and its repeat, behind rows of other
    // quarters, in one file (one chunk): only the repeat is rejected.
    for first_q in 0..4u8 {
        for repeat_q in 0..4u8 {
            let tmp = tempfile::tempdir().unwrap();
            let wh = tmp.path().join("wh");
            let rows = vec![
                arrest("A0", "pk0", &day_in_quarter(3 - first_q, 1)),
                arrest("A1", "pk1", &day_in_quarter(4, 2)),
                arrest("K", "pk2", &day_in_quarter(first_q, 3)),
                arrest("A2", "pk3", &day_in_quarter(first_q, 4)),
                arrest("K", "pk4", &day_in_quarter(repeat_q, 5)),
                arrest("A3", "pk5", &day_in_quarter(7 - repeat_q, 6)),
                arrest("K", "pk6", &day_in_quarter(7, 7)),
            ];
            let f = write(tmp.path(), "arrests.csv", csv(ARRESTS_HEADER, &rows));
            let r = ingest(&wh, &[f], &lenient()).unwrap();
            let expected = [
                (
                    6,
                    "arrest_id".to_string(),
                    "arrest_id repeats line 4".to_string(),
                ),
                (
                    8,
                    "arrest_id".to_string(),
                    "arrest_id repeats line 4".to_string(),
                ),
            ];
            assert_eq!(
                file_quarantine(&r, 0),
                expected,
                "Q{first_q} then Q{repeat_q}"
            );
            let mut stored = stored_rows(&wh, "arrests", &["arrest_id", "person_key"]);
            stored.sort();
            let ids: Vec<&str> = stored.iter().map(|r| r[0].as_str()).collect();
            assert_eq!(
                ids,
                ["A0", "A1", "A2", "A3", "K"],
                "Q{first_q} then Q{repeat_q}"
            );
            assert_eq!(stored[4][1], "pk2", "the first line of K is the one kept");
        }
    }
}

#[test]
fn repeats_in_earlier_quarters_are_caught_within_and_across_chunks() {
    // About 11 MB: three 4 MiB chunks validated in parallel. Quarters run backwards every
    // eight rows, so a repeat a few lines later usually lands in an earlier quarter.
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("wh");
    let n = 240_000usize;
    let quarter = |i: usize| 7 - (i % 8) as u8;
    let mut ids: Vec<String> = (0..n).map(|i| format!("X{i:07}")).collect();
    // (first, repeat): the same chunk, an earlier quarter; a third copy; neighbours; across
    // chunks, later and same quarter.
    let pairs = [
        (1_000, 1_003),
        (1_000, 1_005),
        (50_000, 50_001),
        (120_000, 120_007),
        (7, 150_002),
        (9, 230_001),
    ];
    for (first, repeat) in pairs {
        ids[repeat] = ids[first].clone();
    }
    assert!(quarter(1_003) < quarter(1_000) && quarter(120_007) < quarter(120_000));
    let rows: Vec<String> = (0..n)
        .map(|i| {
            arrest(
                &ids[i],
                &format!("pk{i}"),
                &day_in_quarter(quarter(i), (i % 90) as u8),
            )
        })
        .collect();
    let f = write(tmp.path(), "arrests.csv", csv(ARRESTS_HEADER, &rows));
    let r = ingest(&wh, &[f], &opts()).unwrap();
    let mut expected: Vec<(u64, String, String)> = pairs
        .iter()
        .map(|(first, repeat)| {
            (
                *repeat as u64 + 2,
                "arrest_id".to_string(),
                format!("arrest_id repeats line {}", first + 2),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(file_quarantine(&r, 0), expected);
    let stored = stored_column(&wh, "arrests", "arrest_id");
    assert_eq!(stored.len(), n - pairs.len());
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "a key is stored twice");
}

/// One generated row: key, quarter (0 to 7), day.
type GenRow = (u8, u8, u8);

/// Loads `files` (arrests, one command) into a new warehouse and checks the result against
/// a plain `HashSet` model that reads the rows in line order, file after file.
fn check_against_model(files: &[Vec<GenRow>]) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("wh");
    let texts: Vec<String> = files
        .iter()
        .map(|rows| {
            let rows: Vec<String> = rows
                .iter()
                .enumerate()
                .map(|(i, (k, q, d))| {
                    arrest(&format!("K{k}"), &format!("pk{i}"), &day_in_quarter(*q, *d))
                })
                .collect();
            csv(ARRESTS_HEADER, &rows)
        })
        .collect();
    let paths: Vec<PathBuf> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| write(tmp.path(), &format!("arrests-{i}.csv"), t))
        .collect();
    let report = ingest(&wh, &paths, &lenient()).unwrap();

    // The model: the first line of each key is kept, every later one is rejected.
    let mut seen: HashSet<String> = HashSet::new();
    let mut first_line: HashMap<String, (usize, u64)> = HashMap::new();
    let mut kept: Vec<String> = Vec::new();
    for (fi, rows) in files.iter().enumerate() {
        if texts[..fi].contains(&texts[fi]) {
            prop_assert_eq!(&report.files[fi].outcome, &FileOutcome::RepeatedInCommand);
            continue;
        }
        let mut rejects = Vec::new();
        for (i, (k, _, _)) in rows.iter().enumerate() {
            let line = i as u64 + 2;
            let id = format!("K{k}");
            if seen.insert(id.clone()) {
                first_line.insert(id.clone(), (fi, line));
                kept.push(id);
            } else {
                let (f0, l0) = first_line[&id];
                let reason = if f0 == fi {
                    format!("arrest_id repeats line {l0}")
                } else {
                    "arrest_id is already in the warehouse or an earlier file of this load"
                        .to_string()
                };
                rejects.push((line, "arrest_id".to_string(), reason));
            }
        }
        match &report.files[fi].outcome {
            FileOutcome::Loaded {
                rows_read,
                rows_loaded,
                rows_rejected,
                ..
            } => {
                prop_assert_eq!(*rows_read, rows.len() as u64);
                prop_assert_eq!(*rows_rejected, rejects.len() as u64);
                prop_assert_eq!(*rows_loaded, (rows.len() - rejects.len()) as u64);
            }
            o => prop_assert!(false, "file {}: {:?}", fi, o),
        }
        prop_assert_eq!(file_quarantine(&report, fi), rejects, "file {}", fi);
    }
    let mut stored = stored_column(&wh, "arrests", "arrest_id");
    let distinct: HashSet<&String> = stored.iter().collect();
    prop_assert_eq!(
        distinct.len(),
        stored.len(),
        "a key stored twice: {:?}",
        stored
    );
    stored.sort();
    kept.sort();
    prop_assert_eq!(stored, kept);
    Ok(())
}

fn gen_rows() -> impl Strategy<Value = Vec<GenRow>> {
    proptest::collection::vec((0u8..10, 0u8..8, 0u8..90), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Loaded keys are unique, and the rejected rows are exactly the later repeats by line
    /// order, whatever the mix of quarters and the order of the rows.
    #[test]
    fn loaded_keys_match_a_hash_set_model(a in gen_rows(), b in gen_rows()) {
        check_against_model(&[a, b])?;
    }
}

// ---------------------------------------------------------------------------------------
// 5. Recovery: refuses strange folders, moves only its own leftovers, into trash/
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// 6. Durability: new folders are flushed before the manifest names them
// ---------------------------------------------------------------------------------------

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
fn a_fresh_ingest_creates_and_names_every_folder_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("a").join("b").join("wh");
    let programs = write(tmp.path(), "programs.csv", PROGRAMS);
    let mut rows = events(40);
    rows.push(event("E9", "pk9", "P404", "2025-01-01"));
    let events = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let r = ingest(
        &wh,
        &[events.clone(), programs],
        &IngestOptions {
            max_reject_rate: 0.05,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(r.version, Some(DatasetVersion(1)));
    assert_eq!(r.rows_loaded(), 43);
    let manifest = Warehouse::open(&wh).unwrap().manifest().unwrap();
    // Every file the manifest names exists, and every data file on disk is named.
    let named: std::collections::BTreeSet<String> =
        manifest.all_data_files().map(|f| f.path.clone()).collect();
    let on_disk: std::collections::BTreeSet<String> = tree(&wh)
        .into_keys()
        .filter(|k| k.starts_with("tables/"))
        .collect();
    assert_eq!(on_disk, named);
    // Events of 2025 in four quarters, programs in one file, named as the warehouse names
    // them: programs are staged first, so the events are file 01.
    assert!(named.contains(&data_file_path("programs", None, DatasetVersion(1), 0)));
    for q in ["2025Q1", "2025Q2", "2025Q3", "2025Q4"] {
        let p = data_file_path(
            "overdose_events",
            Some(q.parse().unwrap()),
            DatasetVersion(1),
            1,
        );
        assert!(named.contains(&p), "{p}: {named:?}");
    }
    // The quarantine report is where the manifest says, under its one name.
    let events_report = r
        .files
        .iter()
        .position(|f| f.table == "overdose_events")
        .unwrap();
    let expected = quarantine_path(DatasetVersion(1), 1, &events);
    assert_eq!(expected, "quarantine/v0001-01-overdose_events.csv");
    match &r.files[events_report].outcome {
        FileOutcome::Loaded {
            quarantine: Some(q),
            ..
        } => assert_eq!(q, &wh.join(&expected)),
        o => panic!("{o:?}"),
    }
    assert!(wh.join(&expected).is_file());
    let loaded = manifest
        .loads
        .iter()
        .flat_map(|l| &l.files)
        .find(|f| f.table == "overdose_events")
        .unwrap();
    assert_eq!(loaded.quarantine.as_deref(), Some(expected.as_str()));
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

// ---------------------------------------------------------------------------------------
// 6. Identifiers: every line scanned first, values normalised, quarantine redacted
// ---------------------------------------------------------------------------------------

#[test]
fn an_identifier_on_a_line_that_is_no_row_refuses_the_file() {
    // Rows with the wrong field count or broken quotes are not rows, but they are still
    // scanned: one such line among 300 good ones used to load under the reject rate.
    let wide = format!(
        "{},123-45-6789,extra",
        event("E9", "pk9", "P001", "2025-01-01")
    );
    let short = "E9,123-45-6789".to_string();
    let broken_quote =
        "E9,\"pk9\"x,P001,2025-01-01,ems,false,true,true,25_34,617-555-0100,nh_white".to_string();
    let quote_in_field =
        "E9,pk\"9,P001,2025-01-01,ems,false,true,true,25_34,male, jane.doe@example.org "
            .to_string();
    let open_quote = "E9,\"pk9,P001,2025-01-01,(617) 555-0100".to_string();
    for (bad, kind) in [
        (wide, "a social security number"),
        (short, "a social security number"),
        (broken_quote, "a phone number"),
        (quote_in_field, "an email address"),
        (open_quote, "a phone number"),
    ] {
        let mut rows = events(300);
        rows.push(bad.clone());
        rows.extend((0..5).map(|i| event(&format!("F{i}"), "pk8", "P001", "2025-02-01")));
        let msg = refused_for_identifier(csv(EVENTS_HEADER, &rows));
        assert!(msg.contains("a value on line 302"), "{bad}: {msg}");
        assert!(msg.contains(kind), "{bad}: {msg}");
    }
}

#[test]
fn numbers_written_any_way_refuse_the_file() {
    for (value, kind) in [
        ("6175550100", "a phone number"),
        ("1-617-555-0100", "a phone number"),
        ("617-5550100", "a phone number"),
        ("617 555-0100", "a phone number"),
        ("+1 617 555 0100", "a phone number"),
        ("123.45.6789", "a social security number"),
        ("123456789", "a social security number"),
    ] {
        // In an id column (whose pattern does not accept it) and in an enum column.
        let as_id = event(value, "pk9", "P001", "2025-01-01");
        let as_enum = format!("E9,pk9,P001,2025-01-01,ems,false,true,true,25_34,male,{value}");
        for (row, column) in [(as_id, "event_id"), (as_enum, "race_ethnicity")] {
            let mut rows = events(300);
            rows.push(row);
            let msg = refused_for_identifier(csv(EVENTS_HEADER, &rows));
            assert!(
                msg.contains(&format!("a value in column '{column}' on line 302")),
                "{value}: {msg}"
            );
            assert!(msg.contains(kind), "{value}: {msg}");
        }
    }
}

#[test]
fn quarantine_shows_line_column_rule_and_a_redacted_value_never_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    // Near-misses of identifiers, which pass the identifier scan but fail their column.
    let bad = [
        // person_key: not an id (a space), then not of person_key's format.
        (
            event("E9001", "617 555-01", "P001", "2025-01-01"),
            "617 555-01",
            "person_key",
            "'999 999-99' is not an id",
        ),
        (
            event("E9002", "Jane.Doe", "P001", "2025-01-01"),
            "Jane.Doe",
            "person_key",
            "'Aaaa.Aaa' is no pseudonymous key: person_key takes",
        ),
        (
            event("E9003", "MRN:0012345", "P001", "2025-01-01"),
            "MRN:0012345",
            "person_key",
            "'AAA:9999999' is no pseudonymous key: person_key takes",
        ),
        // An unknown program, an enum value, a date.
        (
            event("E9004", "pk9004", "Jane-Doe", "2025-01-01"),
            "Jane-Doe",
            "program_id",
            "program_id 'Aaaa-Aaa' is not in the programs table",
        ),
        (
            "E9005,pk9005,P001,2025-01-01,ems,false,true,true,25_34,Jane Doe,nh_white".to_string(),
            "Jane Doe",
            "sex",
            "'Aaaa Aaa' is not one of",
        ),
        (
            event("E9006", "pk9006", "P001", "12/03/1980"),
            "12/03/1980",
            "event_date",
            "'99/99/9999' is not a date written YYYY-MM-DD",
        ),
    ];
    let mut rows: Vec<String> = bad.iter().map(|b| b.0.clone()).collect();
    rows.extend(events(20));
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let r = ingest(&wh, &[f], &lenient()).unwrap();
    let q = file_quarantine(&r, 0);
    assert_eq!(q.len(), bad.len(), "{q:?}");
    let text = std::fs::read_to_string(wh.join(quarantine_path(
        DatasetVersion(2),
        0,
        Path::new("overdose_events.csv"),
    )))
    .unwrap();
    for (i, (_, raw, column, reason)) in bad.iter().enumerate() {
        assert_eq!(q[i].0, i as u64 + 2);
        assert_eq!(q[i].1, *column);
        assert!(q[i].2.contains(reason), "line {}: {}", q[i].0, q[i].2);
        assert!(
            !text.contains(raw),
            "{raw} was copied into the quarantine: {text}"
        );
    }
    // Free text: a program name over its limit is reported by its length, not its words.
    let long_name = format!("Jane Doe 617 555 01 {}", "x".repeat(120));
    let programs = write(
        tmp.path(),
        "programs-2.csv",
        format!(
            "{}P009,{long_name},Western,peer_led,never,none,2024-01-01,\nP010,Fine,Western,peer_led,never,none,2024-01-01,\n",
            PROGRAMS.lines().next().unwrap().to_string() + "\n"
        ),
    );
    let r = ingest(&wh, &[programs], &lenient()).unwrap();
    let q = file_quarantine(&r, 0);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!((q[0].0, q[0].1.as_str()), (2, "program_name"));
    assert!(q[0].2.contains("characters long"), "{}", q[0].2);
    let FileOutcome::Loaded {
        quarantine: Some(path),
        ..
    } = &r.files[0].outcome
    else {
        panic!("{:?}", r.files[0].outcome)
    };
    let text = std::fs::read_to_string(path).unwrap();
    assert!(!text.contains("Jane"), "{text}");
    assert!(!text.contains("617"), "{text}");
}

#[test]
fn a_near_miss_that_is_a_phone_number_refuses_the_file_and_reaches_no_quarantine() {
    // `617 555-0100` in an id column was quarantined verbatim; its digits make it a phone
    // number, so the file is refused and nothing is written anywhere.
    let mut rows = events(300);
    rows.push(event("E9", "617 555-0100", "P001", "2025-01-01"));
    let msg = refused_for_identifier(csv(EVENTS_HEADER, &rows));
    assert!(msg.contains("column 'person_key' on line 302"), "{msg}");
    assert!(
        !msg.contains("555-0100"),
        "the message names the place, not the value: {msg}"
    );
}

#[test]
fn case_numbers_as_record_systems_write_them_load() {
    // Issue 26: numbers were told by their count of digits once separators were stripped, so
    // `2024-12345` in arrest_id was refused as an SSN (nine digits), `E-2025-000123` in
    // event_id as a phone number (ten) and `odin-10000-7881` as an SSN, each refusing its
    // whole file. Their groups form no written SSN or phone number: they are ids.
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let rows = vec![
        arrest("2024-1234", "pk1", "2025-01-01"),
        arrest("2025-1", "pk2", "2025-02-01"),
        arrest("AR0000001", "pk3", "2025-03-01"),
        arrest("2024-12345", "pk4", "2025-03-01"),
        arrest("2024-12345678", "pk5", "2025-03-01"),
    ];
    let f = write(tmp.path(), "arrests.csv", csv(ARRESTS_HEADER, &rows));
    assert_eq!(load(&wh, &f).unwrap().rows_loaded(), 5);
    let mut ids = stored_column(&wh, "arrests", "arrest_id");
    ids.sort();
    assert_eq!(
        ids,
        [
            "2024-1234",
            "2024-12345",
            "2024-12345678",
            "2025-1",
            "AR0000001"
        ]
    );
    let ids = [
        "E-2025-000123",
        "odin-10000-7881",
        "INC-2025-04-12345",
        "OD10000-7881",
    ];
    let rows: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, &format!("pk{i}"), "P001", "2025-01-01"))
        .collect();
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    assert_eq!(load(&wh, &f).unwrap().rows_loaded(), ids.len() as u64);
    let mut stored = stored_column(&wh, "overdose_events", "event_id");
    stored.sort();
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(stored, expected);
}

#[test]
fn written_ssns_and_phone_numbers_refuse_the_file_in_a_case_number_column() {
    for (id, kind) in [
        ("123-45-6789", "a social security number"),
        ("123456789", "a social security number"),
        ("INC-123-45-6789", "a social security number"),
        ("2025-123-45-6789", "a social security number"),
        ("617-555-0100", "a phone number"),
        ("617-5550100", "a phone number"),
        ("6175550100", "a phone number"),
        ("1-6175550100", "a phone number"),
        ("+44 20 7946 0958", "a phone number"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let g = write(
            tmp.path(),
            "arrests.csv",
            csv(ARRESTS_HEADER, &[arrest(id, "pk1", "2025-01-01")]),
        );
        let err = load(&tmp.path().join("wh"), &g).unwrap_err();
        assert!(
            matches!(err, IngestError::DirectIdentifier { .. }),
            "{id}: {err}"
        );
        assert!(err.to_string().contains(kind), "{id}: {err}");
    }
}

/// The backticked values of the README's sentence that starts with `opening`, up to the
/// next sentence that starts a line.
fn readme_examples(opening: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find(opening)
        .unwrap_or_else(|| panic!("README.md has no sentence starting '{opening}'"));
    let text = &readme[start + opening.len()..];
    let end = text.find(".\n").expect("the sentence ends");
    let values: Vec<String> = text[..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(values.len() >= 5, "{opening}: {values:?}");
    values
}

#[test]
fn the_readme_examples_of_refused_numbers_and_loaded_ids_hold() {
    // Issue 26: the README named `2024-12345` as accepted while the scan refused it. Its
    // examples are now loaded here, so the docs and the rules cannot drift apart.
    let refused = readme_examples("Refused as an SSN or a phone number, in any column:");
    for value in &refused {
        let mut rows = events(3);
        rows.push(event(value, "pk9", "P001", "2025-01-01"));
        let msg = refused_for_identifier(csv(EVENTS_HEADER, &rows));
        assert!(
            msg.contains("column 'event_id' on line 5"),
            "{value}: {msg}"
        );
    }
    let loaded = readme_examples("Loaded as record ids,");
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let rows: Vec<String> = loaded
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, &format!("pk{i}"), "P001", "2025-01-01"))
        .collect();
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let report = load(&wh, &f).unwrap();
    assert_eq!(report.rows_loaded(), loaded.len() as u64, "{loaded:?}");
}

/// Every way to write `digits` with one `-` inside it.
fn split_once_everywhere(digits: &str) -> Vec<String> {
    (1..digits.len())
        .map(|i| format!("{}-{}", &digits[..i], &digits[i..]))
        .collect()
}

#[test]
fn no_declared_pattern_accepts_an_ssn_or_phone_written_as_one() {
    use outreach_warehouse::dictionary::IdPattern;
    use outreach_warehouse::ingest::identifier_value;
    let d = Dictionary::builtin().unwrap();
    let written = [
        "123456789",
        "123-45-6789",
        "123 45 6789",
        "6175550100",
        "617-555-0100",
        "617-5550100",
        "(617) 555-0100",
        "16175550100",
        "1-617-555-0100",
        "1-6175550100",
        "+1 617 555 0100",
    ];
    for n in written {
        assert!(
            identifier_value(n.as_bytes(), true).is_some(),
            "{n} is not flagged"
        );
        for t in d.tables() {
            for c in &t.columns {
                let Some(text) = &c.pattern else { continue };
                let p = IdPattern::parse(text).unwrap();
                assert!(
                    !p.matches(n.as_bytes()),
                    "{}.{} accepts {n}",
                    t.name,
                    c.name
                );
            }
        }
    }
    // Of the other ways to put one `-` in those digits, only the written shapes and the ones
    // that keep nine to eleven digits in a row are refused: `1234-56789` is an id to the scan
    // (issue 26's trade-off, said in the README).
    let in_a_row = |g: &str| matches!(g.len(), 9 | 10) || (g.len() == 11 && g.starts_with('1'));
    for digits in ["123456789", "6175550100", "16175550100"] {
        for n in split_once_everywhere(digits) {
            let (a, b) = n.split_once('-').unwrap();
            assert_eq!(
                identifier_value(n.as_bytes(), true).is_some(),
                written.contains(&n.as_str()) || in_a_row(a) || in_a_row(b),
                "{n}"
            );
        }
    }
}

#[test]
fn numbers_behind_a_label_refuse_the_file() {
    // Letter-prefixed numbers passed the scan (it stopped at the first letter), and the id
    // patterns `[A-Za-z][A-Za-z0-9_.:-]{0,63}` accepted them, which exempted them too.
    for (value, kind) in [
        ("SSN-123-45-6789", "a social security number"),
        ("ssn:123456789", "a social security number"),
        ("SSN#123-45-6789", "a social security number"),
        ("tel:6175550100", "a phone number"),
        ("tel:+1-617-555-0100", "a phone number"),
        ("Tel.617.555.0100", "a phone number"),
        ("ph6175550100", "a phone number"),
        ("x6175550100", "a phone number"),
        ("E617-555-0100", "a phone number"),
        ("ID123-45-6789", "a social security number"),
    ] {
        for (row, column) in [
            (event(value, "pk9", "P001", "2025-01-01"), "event_id"),
            (event("E9", value, "P001", "2025-01-01"), "person_key"),
            (
                format!("E9,pk9,P001,2025-01-01,ems,false,true,true,25_34,male,{value}"),
                "race_ethnicity",
            ),
        ] {
            let mut rows = events(300);
            rows.push(row);
            let msg = refused_for_identifier(csv(EVENTS_HEADER, &rows));
            assert!(
                msg.contains(&format!("a value in column '{column}' on line 302")),
                "{value}: {msg}"
            );
            assert!(msg.contains(kind), "{value}: {msg}");
        }
    }
    // With a space after the label, in a text column.
    for (value, kind) in [
        ("ssn 123456789", "a social security number"),
        ("SSN: 123 45 6789", "a social security number"),
        ("Tel. (617) 555-0100", "a phone number"),
        ("call 617-555-0100 x12", "a phone number"),
        ("Dr Jane Roe 617.555.0100", "a phone number"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let f = write(
            tmp.path(),
            "programs.csv",
            format!(
                "{}P009,{value},Western,peer_led,never,none,2024-01-01,\n",
                PROGRAMS.lines().next().unwrap().to_string() + "\n"
            ),
        );
        let err = load(&tmp.path().join("wh"), &f).unwrap_err();
        assert!(
            matches!(err, IngestError::DirectIdentifier { .. }),
            "{value}: {err}"
        );
        assert!(err.to_string().contains(kind), "{value}: {err}");
        assert!(
            err.to_string().contains("column 'program_name'"),
            "{value}: {err}"
        );
    }
}

#[test]
fn ids_made_of_letters_and_digits_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let ids = [
        "OD000012301",
        "E000012345",
        "OA123456701",
        "RF1234567-01",
        "E-2025-0001",
        "case:2024:17",
        "pk_3fa85f6457174562",
    ];
    let rows: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, &format!("pk{i}"), "P001", "2025-01-01"))
        .collect();
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    assert_eq!(load(&wh, &f).unwrap().rows_loaded(), ids.len() as u64);
    // Synthetic person keys are `pk` and 16 hex digits, which may all be decimal digits.
    let rows = [event("E1", "pk0123456789012345", "P001", "2025-01-01")];
    let f = write(
        tmp.path(),
        "overdose_events-2.csv",
        csv(EVENTS_HEADER, &rows),
    );
    assert_eq!(load(&wh, &f).unwrap().rows_loaded(), 1);
}

#[test]
fn numbers_written_with_any_separator_refuse_the_file() {
    for (value, kind) in [
        ("123/45/6789", "a social security number"),
        ("123_45_6789", "a social security number"),
        ("617/555/0100", "a phone number"),
        ("617_555_0100", "a phone number"),
        // Hyphen, non-breaking hyphen, figure, en and em dashes, minus, small and full-width
        // hyphen-minus.
        ("617\u{2010}555\u{2010}0100", "a phone number"),
        ("123\u{2011}45\u{2011}6789", "a social security number"),
        ("617\u{2012}555\u{2012}0100", "a phone number"),
        ("617\u{2013}555\u{2013}0100", "a phone number"),
        ("123\u{2014}45\u{2014}6789", "a social security number"),
        ("617\u{2212}555\u{2212}0100", "a phone number"),
        ("617\u{fe63}555\u{fe63}0100", "a phone number"),
        ("617\u{ff0d}555\u{ff0d}0100", "a phone number"),
        // No-break and narrow no-break spaces.
        ("617\u{a0}555\u{a0}0100", "a phone number"),
        ("(617)\u{202f}555-0100", "a phone number"),
        ("123\u{a0}45\u{a0}6789", "a social security number"),
        // Emails written the ways mail programs copy them.
        ("mailto:jane.doe@example.org", "an email address"),
        ("<jane.doe@example.org>", "an email address"),
        ("Jane Doe <jane.doe@example.org>", "an email address"),
        ("o'brien@example.org", "an email address"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let f = write(
            tmp.path(),
            "programs.csv",
            format!(
                "{}P009,\"{value}\",Western,peer_led,never,none,2024-01-01,\n",
                PROGRAMS.lines().next().unwrap().to_string() + "\n"
            ),
        );
        let err = load(&tmp.path().join("wh"), &f).unwrap_err();
        assert!(
            matches!(err, IngestError::DirectIdentifier { .. }),
            "{value}: {err}"
        );
        assert!(err.to_string().contains(kind), "{value}: {err}");
    }
}

#[test]
fn the_header_line_is_scanned_for_identifiers() {
    // A header cell holding a value (an export whose first row lost its header, or a
    // spreadsheet's stray cell) refuses the file like any other line.
    for (header_extra, kind) in [
        ("123-45-6789", "a social security number"),
        ("jane.doe@example.org", "an email address"),
        ("tel:6175550100", "a phone number"),
    ] {
        let header = format!("{EVENTS_HEADER},{header_extra}");
        let mut rows = events(5);
        for r in &mut rows {
            r.push(',');
        }
        let msg = refused_for_identifier(csv(&header, &rows));
        assert!(msg.contains("header"), "{header_extra}: {msg}");
        assert!(msg.contains(kind), "{header_extra}: {msg}");
        assert!(!msg.contains(header_extra), "{msg}");
    }
    // A headerless export whose first row holds an SSN.
    let rows = events(5);
    let first = "E9,pk9,P001,2025-01-01,ems,false,true,true,25_34,male,123-45-6789";
    let msg = refused_for_identifier(csv(first, &rows));
    assert!(msg.contains("a social security number"), "{msg}");
    assert!(!msg.contains("6789"), "{msg}");
}

#[test]
fn a_headerless_export_is_refused_without_printing_its_first_row() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let first = "E9001,pk90017,P001,2025-01-01,ems,false,true,true,25_34,female,Rosalind Quux";
    let f = write(tmp.path(), "overdose_events.csv", csv(first, &events(5)));
    let err = load(&wh, &f).unwrap_err();
    assert!(matches!(err, IngestError::Header { .. }), "{err}");
    let msg = err.to_string();
    for raw in [
        "E9001",
        "pk90017",
        "2025-01-01",
        "Rosalind",
        "Quux",
        "female",
    ] {
        assert!(!msg.contains(raw), "{raw} printed: {msg}");
    }
    assert!(msg.contains("header"), "{msg}");
    // A header with one odd name among the right ones: the odd one is shown by its shape,
    // unless it is written like a column name.
    let header = format!("{EVENTS_HEADER},Rosalind Quux,evnt_notes");
    let mut rows = events(5);
    for r in &mut rows {
        r.push_str(",,");
    }
    let f = write(tmp.path(), "overdose_events-2.csv", csv(&header, &rows));
    let msg = load(&wh, &f).unwrap_err().to_string();
    assert!(!msg.contains("Rosalind"), "{msg}");
    assert!(msg.contains("'Aaaaaaaa Aaaa'"), "{msg}");
    assert!(msg.contains("evnt_notes"), "{msg}");
}

#[test]
fn person_key_has_a_declared_format() {
    let d = Dictionary::builtin().unwrap();
    for t in d.tables() {
        for c in &t.columns {
            if c.name == "person_key" {
                assert!(c.pattern.is_some(), "{}.person_key", t.name);
            }
        }
    }
    // Raw numbers and marked-up ids are not pseudonymous keys: quarantined, not loaded.
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("wh");
    let rows = vec![
        arrest("X1", "pk1", "2025-01-01"),
        arrest("X2", "12345678", "2025-01-01"),
        arrest("X3", "MRN:123", "2025-01-01"),
        arrest("X4", "_pk4", "2025-01-01"),
    ];
    let f = write(tmp.path(), "arrests.csv", csv(ARRESTS_HEADER, &rows));
    let r = ingest(&wh, &[f], &lenient()).unwrap();
    let q = file_quarantine(&r, 0);
    let lines: Vec<(u64, &str)> = q.iter().map(|x| (x.0, x.1.as_str())).collect();
    assert_eq!(
        lines,
        [(3, "person_key"), (4, "person_key"), (5, "person_key")]
    );
    // The reason names the forms a pseudonymous key takes (issue 18).
    assert!(
        q.iter()
            .all(|x| x.2.contains(
                "is no pseudonymous key: person_key takes a key that starts with a letter"
            ) && x.2.contains("a hex digest of 32 to 128 digits")),
        "{q:?}"
    );
    assert_eq!(stored_column(&wh, "arrests", "person_key"), ["pk1"]);
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Unpadded base64url of `bytes` (RFC 4648 §5), as JWT-style tools write digests.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A UUID laid out from 16 bytes.
fn uuid(bytes: &[u8]) -> String {
    let h = hex(&bytes[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[test]
fn the_test_encoders_write_what_the_standards_say() {
    assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64url(b"fooba"), "Zm9vYmE");
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    assert_eq!(uuid(&[0x12; 16]), "12121212-1212-1212-1212-121212121212");
}

#[test]
fn pseudonymous_keys_as_pseudonymisation_tools_write_them_load() {
    use sha2::{Digest, Sha256, Sha512};
    // Issue 18: person_key had to start with a letter, so a program that writes SHA-256 hex
    // digests had about 5 rows in 8 quarantined, and a real export lost 62% of its rows.
    let mut keys = Vec::new();
    for i in 0..200 {
        let d = Sha256::digest(format!("survivor-{i}").as_bytes());
        keys.push(hex(&d));
    }
    let starts_with_digit = keys
        .iter()
        .filter(|k| k.as_bytes()[0].is_ascii_digit())
        .count();
    assert!(starts_with_digit > 100, "{starts_with_digit}");
    let d = Sha256::digest(b"one");
    keys.extend([
        hex(&d[..16]),                                  // MD5's length
        hex(&d[..20]),                                  // SHA-1's
        hex(&d).to_uppercase(),                         // SHA-256, upper case
        hex(&Sha512::digest(b"one")),                   // SHA-512: 128 hex digits
        "0123456789abcdef".repeat(4),                   // 64 hex digits, a digit first
        "abcdefabcdefabcdefabcdefabcdefab".to_string(), // hex letters only
        "3fa85f64-5717-4562-b3fc-2c963f66afa6".to_string(),
        uuid(&d),
        base64url(&d),                      // SHA-256, 43 characters
        base64url(&d[..16]),                // 22 characters
        base64url(&Sha512::digest(b"one")), // 86 characters
        "pk1".to_string(),
        "survivor_0042-b".to_string(),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("wh");
    let rows: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| arrest(&format!("AR{i}"), k, "2025-01-01"))
        .collect();
    let f = write(tmp.path(), "arrests.csv", csv(ARRESTS_HEADER, &rows));
    let report = load(&wh, &f).unwrap();
    assert_eq!(report.rows_loaded(), keys.len() as u64);
    let mut stored = stored_column(&wh, "arrests", "person_key");
    stored.sort();
    keys.sort();
    assert_eq!(stored, keys);
}

#[test]
fn raw_numbers_are_never_pseudonymous_keys() {
    // Raw numbers of 6 to 20 digits, and digests that happen to be digits only: each is
    // either refused with its file (the identifier scan: nine, ten or eleven digits) or
    // quarantined with a reason that names the forms a key takes.
    let mut numbers: Vec<String> = (6..=20).map(|n| "4".repeat(n)).collect();
    numbers.push("1".repeat(32));
    numbers.push("7".repeat(64));
    for n in numbers {
        let tmp = tempfile::tempdir().unwrap();
        let wh = tmp.path().join("wh");
        let rows = vec![
            arrest("X1", "pk1", "2025-01-01"),
            arrest("X2", &n, "2025-01-01"),
        ];
        let f = write(tmp.path(), "arrests.csv", csv(ARRESTS_HEADER, &rows));
        match ingest(&wh, &[f], &lenient()) {
            Err(IngestError::DirectIdentifier { .. }) => {
                assert!((9..=11).contains(&n.len()), "{n}");
            }
            Ok(r) => {
                let q = file_quarantine(&r, 0);
                assert_eq!(q.len(), 1, "{n}: {q:?}");
                assert_eq!((q[0].0, q[0].1.as_str()), (3, "person_key"), "{n}");
                assert!(q[0].2.contains("person_key takes"), "{n}: {}", q[0].2);
                if n.len() >= 22 {
                    assert!(q[0].2.contains("digits only"), "{n}: {}", q[0].2);
                }
                assert_eq!(stored_column(&wh, "arrests", "person_key"), ["pk1"], "{n}");
            }
            Err(e) => panic!("{n}: {e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    /// Random digests of every length a tool writes, as hex (either case), base64url and
    /// UUIDs: the identifier scan finds nothing in them and the key pattern accepts them.
    #[test]
    fn random_digests_of_each_length_are_keys(
        bytes in proptest::collection::vec(any::<u8>(), 64),
        len in proptest::sample::select(vec![16usize, 20, 28, 32, 48, 64]),
        form in 0usize..4,
    ) {
        use outreach_warehouse::dictionary::IdPattern;
        use outreach_warehouse::ingest::identifier_value;
        let d = Dictionary::builtin().unwrap();
        let column = d.table("arrests").unwrap().column("person_key").unwrap();
        let pattern = IdPattern::parse(column.pattern.as_deref().unwrap()).unwrap();
        let key = match form {
            0 => hex(&bytes[..len]),
            1 => hex(&bytes[..len]).to_uppercase(),
            2 => base64url(&bytes[..len]),
            _ => uuid(&bytes),
        };
        prop_assume!(!key.bytes().all(|b| b.is_ascii_digit()));
        prop_assert!(key.len() <= column.max_len(), "{}", key);
        prop_assert!(pattern.matches(key.as_bytes()), "{}", key);
        prop_assert_eq!(identifier_value(key.as_bytes(), true), None, "{}", key);
    }
}

// ---------------------------------------------------------------------------------------
// 6. Other refusals: paths, re-loads, line breaks in values, refusal reports
// ---------------------------------------------------------------------------------------

#[test]
fn a_warehouse_path_with_glob_characters_is_read_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    // Read as a glob, `wh [1]*?` matches `wh 1xy` and not itself.
    let wh = tmp.path().join("wh [1]*?");
    let decoy = tmp.path().join("wh 1xy");
    let programs = write(tmp.path(), "programs.csv", PROGRAMS);
    ingest(&decoy, std::slice::from_ref(&programs), &opts()).unwrap();
    load(&decoy, &events_file(tmp.path(), 7)).unwrap();
    ingest(&wh, &[programs], &opts()).unwrap();
    let dir = tmp.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    load(&wh, &events_file(&dir, 20)).unwrap();
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 20);
    assert_eq!(scalar(&wh, "SELECT count(*) FROM programs"), 3);
    assert_eq!(scalar(&decoy, "SELECT count(*) FROM overdose_events"), 7);
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

#[test]
fn a_quoted_value_with_a_line_break_refuses_the_file_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let before = tree(&wh);
    let mut rows = events(300);
    rows.push("E9,pk9,P001,2025-01-01,ems,false,true,true,25_34,male,\"nh\nwhite\"".into());
    rows.extend(events(5).into_iter().map(|r| r.replacen('E', "F", 1)));
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let err = load(&wh, &f).unwrap_err();
    assert!(
        matches!(err, IngestError::MultilineField { line: 302, .. }),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::BadInput);
    let msg = err.to_string();
    assert!(msg.contains("overdose_events.csv, line 302"), "{msg}");
    assert!(msg.contains("line breaks"), "{msg}");
    assert_eq!(tree(&wh), before, "nothing written, not even quarantine");
}

#[test]
fn two_refusals_in_one_second_keep_both_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let mut rows = events(10);
    rows.push(event("X1", "pkx", "P404", "2025-01-01"));
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    // Three refusals in quick succession: at least two fall in the same second.
    let mut reports = Vec::new();
    for _ in 0..3 {
        match load(&wh, &f) {
            Err(IngestError::TooManyRejects { quarantine, .. }) => reports.push(quarantine),
            other => panic!("{other:?}"),
        }
    }
    let distinct: HashSet<&PathBuf> = reports.iter().collect();
    assert_eq!(distinct.len(), 3, "{reports:?}");
    for r in &reports {
        let q = parse_quarantine(&std::fs::read_to_string(r).unwrap());
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].0, q[0].1.as_str()), (12, "program_id"));
    }
    let on_disk = std::fs::read_dir(wh.join("quarantine"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("refused-")
        })
        .count();
    assert_eq!(on_disk, 3);
}

// ---------------------------------------------------------------------------------------
// 8. Dictionary failures, one home for shared helpers, names from the dictionary
// ---------------------------------------------------------------------------------------

#[test]
fn a_broken_dictionary_is_an_internal_error_everywhere() {
    let e: &'static DictionaryError = Box::leak(Box::new(
        Dictionary::parse(&[("t.toml", "name = [broken")]).unwrap_err(),
    ));
    let ingest_err = IngestError::Dictionary(e);
    let warehouse_err = WarehouseError::Dictionary(e);
    let synth_err = SynthError::Dictionary(e);
    assert_eq!(ingest_err.fault(), Fault::Internal);
    assert_eq!(warehouse_err.fault(), Fault::Internal);
    assert_eq!(
        IngestError::from(WarehouseError::Dictionary(e)).fault(),
        Fault::Internal
    );
    // synth used to call it bad input: exit code 2.
    assert_eq!(synth_err.fault(), Fault::Internal);
    assert_eq!(outreach_warehouse::Error::from(e).fault(), Fault::Internal);
    for msg in [
        ingest_err.to_string(),
        warehouse_err.to_string(),
        synth_err.to_string(),
    ] {
        assert!(msg.contains("defect of this build"), "{msg}");
        assert!(!msg.contains("manifest"), "{msg}");
        assert!(!msg.contains("restore"), "{msg}");
    }
}

#[test]
fn a_future_complete_through_date_is_refused_by_the_one_check() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let f = events_file(tmp.path(), 5);
    let future = chrono::Utc::now().date_naive() + chrono::Days::new(2);
    let err = ingest(
        &wh,
        std::slice::from_ref(&f),
        &IngestOptions {
            complete_through: Some(future),
            ..opts()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::Warehouse(WarehouseError::FutureCompleteThrough { .. })
        ),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::BadInput);
    let direct = Warehouse::open(&wh)
        .unwrap()
        .declare_complete_through("overdose_events", future)
        .unwrap_err();
    assert_eq!(err.to_string(), direct.to_string());
}

#[test]
fn dates_and_report_names_have_one_home() {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    assert_eq!(EPOCH_DAYS_FROM_CE, epoch.num_days_from_ce());
    let d = NaiveDate::from_ymd_opt(2025, 3, 31).unwrap();
    assert_eq!(epoch_days(d), outreach_warehouse::ingest::epoch_days(d));
    assert_eq!(from_epoch_days(epoch_days(d)), d);
    assert_eq!(
        quarantine_path(
            DatasetVersion(3),
            2,
            Path::new("/x/overdose_events-2025Q1.csv")
        ),
        "quarantine/v0003-02-overdose_events-2025Q1.csv"
    );
    assert_eq!(
        data_file_path(
            "overdose_events",
            Some("2025Q1".parse().unwrap()),
            DatasetVersion(3),
            2
        ),
        "tables/overdose_events/quarter=2025Q1/v0003-02.parquet"
    );
}

#[test]
fn references_and_start_dates_come_from_the_dictionary() {
    let d = Dictionary::builtin().unwrap();
    let programs = d.table("programs").unwrap();
    assert_eq!(programs.start_column.as_deref(), Some("start_date"));
    assert!(d.is_referenced("programs"));
    for t in d.tables() {
        if let Some((ci, referenced)) = t.reference() {
            assert_eq!(referenced, "programs", "{}", t.name);
            assert_eq!(
                t.columns[ci].references.as_deref(),
                Some("programs.program_id")
            );
        }
    }
    // The messages name the dictionary's columns.
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let f = write(
        tmp.path(),
        "overdose_events.csv",
        csv(
            EVENTS_HEADER,
            &[
                event("E1", "pk1", "P002", "2024-05-31"),
                event("E2", "pk2", "P002", "2024-06-01"),
            ],
        ),
    );
    let r = ingest(&wh, &[f], &lenient()).unwrap();
    assert_eq!(
        file_quarantine(&r, 0),
        [(
            2,
            "event_date".to_string(),
            "'9999-99-99' is before the start_date 2024-06-01 of program_id 'P002'".to_string()
        )]
    );
}

// ---------------------------------------------------------------------------------------
// The content hash binds what was stored
// ---------------------------------------------------------------------------------------

#[test]
fn data_files_are_recorded_with_their_size_and_sha256() {
    use sha2::{Digest, Sha256};
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    load(&wh, &events_file(tmp.path(), 40)).unwrap();
    let text = std::fs::read_to_string(wh.join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut seen = 0;
    for load in m["loads"].as_array().unwrap() {
        for file in load["files"].as_array().unwrap() {
            for d in file["data_files"].as_array().unwrap() {
                let bytes = std::fs::read(wh.join(d["path"].as_str().unwrap())).unwrap();
                let sha: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(d["sha256"].as_str(), Some(sha.as_str()), "{d}");
                assert_eq!(d["bytes"].as_u64(), Some(bytes.len() as u64), "{d}");
                seen += 1;
            }
        }
    }
    assert!(seen >= 2, "{text}");
}

#[test]
fn a_manifest_written_before_data_files_had_hashes_still_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    load(&wh, &events_file(tmp.path(), 10)).unwrap();
    // Strip the fields that older manifests lack.
    let path = wh.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for load in m["loads"].as_array_mut().unwrap() {
        for file in load["files"].as_array_mut().unwrap() {
            for d in file["data_files"].as_array_mut().unwrap() {
                let d = d.as_object_mut().unwrap();
                d.remove("sha256");
                d.remove("bytes");
            }
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let w = Warehouse::open(&wh).unwrap();
    let manifest = w.manifest().unwrap();
    assert_eq!(manifest.version(), DatasetVersion(2));
    assert_eq!(manifest.content_hash().len(), 64);
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 10);
    // And a later load still commits on top of it.
    let f = write(
        tmp.path(),
        "overdose_events-2.csv",
        csv(EVENTS_HEADER, &[event("E9", "pk9", "P001", "2025-01-01")]),
    );
    assert_eq!(load(&wh, &f).unwrap().rows_loaded(), 1);
}

#[test]
fn the_privacy_engine_calls_a_broken_dictionary_internal_and_reads_its_table_names_from_it() {
    // The privacy engine calls a broken dictionary a defect of the build (internal, not bad
    // input), and reads the `programs` domain's table from the dictionary, never by name.
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "src/privacy/release/mod.rs",
        "src/privacy/release/plan.rs",
        "src/privacy/release/rows.rs",
        "src/privacy/release/result.rs",
        "src/privacy/release/panic_guard.rs",
        "src/privacy/analyser.rs",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !code.contains("Dictionary::builtin()"),
            "{file} reads the built-in dictionary itself instead of through warehouse::dictionary()"
        );
        assert!(
            !code.contains("FROM programs"),
            "{file} names the programs table instead of reading it from the dictionary"
        );
    }
    let e: &'static DictionaryError = Box::leak(Box::new(
        Dictionary::parse(&[("t.toml", "name = [broken")]).unwrap_err(),
    ));
    let privacy_err =
        outreach_warehouse::privacy::PrivacyError::from(WarehouseError::Dictionary(e));
    assert_eq!(privacy_err.fault(), Fault::Internal);
    assert!(privacy_err.to_string().contains("defect of this build"));
}
