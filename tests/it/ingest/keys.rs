//! Unique keys (`src/ingest/keys.rs`): a key is admitted in line order, whatever its quarter,
//! within a file, across the chunks validated in parallel, across the files of one load and
//! against what the warehouse holds; every later repeat is quarantined and the first line kept.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use outreach_warehouse::ingest::{FileOutcome, IngestOptions, ingest};
use proptest::prelude::*;

use super::{quarantined, stored_column, stored_rows};
use crate::common::*;

/// A day in quarter `q` (0 is 2024Q1, 7 is 2025Q4), told apart by `d`.
fn day_in_quarter(q: u8, d: u8) -> String {
    let year = 2024 + u32::from(q / 4);
    let month = u32::from(q % 4) * 3 + 1 + u32::from(d % 3);
    format!("{year}-{month:02}-{:02}", d % 28 + 1)
}

#[test]
fn a_repeat_dated_in_an_earlier_quarter_than_the_rows_before_it_is_rejected() {
    // A Q2 row, then E2 dated in Q1, then E2 again dated in Q2. Keys bucketed by quarter would
    // admit the Q2 copy of E2 first and load both; in line order the second E2 is the repeat.
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
                    "arrest_id is already in an earlier file of this load".to_string()
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

#[test]
fn ids_must_be_unique_within_a_file() {
    let q = quarantined(&[event("E0005", "pk9", "P001", "2025-01-01")]);
    // The fixture's own E0005 comes later in the file (line 8) and repeats line 2.
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].0, 8);
    assert_eq!(q[0].1, "event_id");
    assert_eq!(q[0].2, "event_id repeats line 2");
}

#[test]
fn ids_must_be_unique_across_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let first = write(
        tmp.path(),
        "overdose_events-1.csv",
        csv(EVENTS_HEADER, &events(300)),
    );
    load(&wh, &first).unwrap();
    // Two stored ids again, with other values: without --corrections they are rejected.
    let mut rows = vec![
        event("E0000", "pkx", "P002", "2025-01-01"),
        event("E0001", "pkx", "P002", "2025-01-01"),
    ];
    rows.extend((0..300).map(|i| event(&format!("N{i}"), "pkx", "P002", "2025-01-01")));
    let second = write(
        tmp.path(),
        "overdose_events-2.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let r = load(&wh, &second).unwrap();
    let q = quarantine(&r);
    assert_eq!(q.len(), 2);
    assert_eq!(
        q[0].2,
        "event_id is already in the warehouse with other values; if this row corrects the stored one, load the file with --corrections"
    );
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 600);
}

#[test]
fn duplicates_across_chunks_keep_the_first_line() {
    // About 13 MB: the body is validated in 4 MiB chunks by parallel workers, so the
    // duplicates below land in different chunks, checked in any order.
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let mut rows: Vec<String> = (0..150_000)
        .map(|i| {
            event(
                &format!("E{i:07}"),
                &format!("pk{i:07}"),
                "P001",
                "2025-02-03",
            )
        })
        .collect();
    rows[149_000] = event("E0000005", "pkdup", "P001", "2025-02-03");
    rows[100_000] = event("E0000005", "pkdup", "P001", "2025-02-03");
    rows[60_000] = event("E0149999", "pkdup", "P001", "2025-02-03");
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let opts = IngestOptions {
        max_reject_rate: 0.01,
        ..opts()
    };
    let r = ingest(&wh, &[f], &opts).unwrap();
    let q = quarantine(&r);
    let lines: Vec<u64> = q.iter().map(|x| x.0).collect();
    // Data row i is on line i + 2. E0000005 first appears on line 7; E0149999 on line 60,002.
    assert_eq!(lines, [100_002, 149_002, 150_001]);
    assert!(q[0].2.contains("repeats line 7"), "{}", q[0].2);
    assert_eq!(q[2].2, "event_id repeats line 60002");
    assert_eq!(
        scalar(&wh, "SELECT count(*) FROM overdose_events"),
        150_000 - 3
    );
}

#[test]
fn many_repeats_of_stored_and_earlier_keys_are_all_caught() {
    // 80,000 repeats: more than the collector holds back at once, so the suspects are
    // settled several times while the file streams, against stored keys and earlier lines.
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let id = |i: usize| format!("E{i:07}");
    let stored: Vec<String> = (0..60_000)
        .map(|i| event(&id(i), "pk", "P001", "2025-02-03"))
        .collect();
    let first = write(
        tmp.path(),
        "overdose_events-1.csv",
        csv(EVENTS_HEADER, &stored),
    );
    load(&wh, &first).unwrap();
    // Row r of the second file: even rows are new ids 100,000 + r; odd rows repeat stored
    // id r / 2 when r < 120,000, and after that the new id of the row 40,000 rows earlier
    // (whose line is that row's + 40,000).
    let rows: Vec<String> = (0..160_000usize)
        .map(|r| {
            let i = match r {
                r if r % 2 == 0 => 100_000 + r,
                r if r < 120_000 => r / 2,
                r => 100_000 + r - 1 - 40_000,
            };
            event(&id(i), "pk", "P002", "2025-03-03")
        })
        .collect();
    let second = write(
        tmp.path(),
        "overdose_events-2.csv",
        csv(EVENTS_HEADER, &rows),
    );
    let opts = IngestOptions {
        max_reject_rate: 0.6,
        ..opts()
    };
    let r = ingest(&wh, &[second], &opts).unwrap();
    let q = quarantine(&r);
    assert_eq!(q.len(), 80_000);
    for (line, column, reason) in &q {
        let row = (*line - 2) as usize;
        assert_eq!(row % 2, 1, "only odd rows repeat: line {line}");
        assert_eq!(column, "event_id");
        if row < 120_000 {
            // Stored ids with other values (program and date), and no --corrections.
            assert_eq!(
                reason,
                "event_id is already in the warehouse with other values; if this row corrects the stored one, load the file with --corrections",
                "line {line}"
            );
        } else {
            let earlier = row - 1 - 40_000;
            assert_eq!(
                reason,
                &format!("event_id repeats line {}", earlier + 2),
                "line {line}"
            );
        }
    }
    assert_eq!(
        scalar(&wh, "SELECT count(*) FROM overdose_events"),
        60_000 + 80_000
    );
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM (SELECT event_id FROM overdose_events GROUP BY event_id HAVING count(*) > 1)"
        ),
        0
    );
}
