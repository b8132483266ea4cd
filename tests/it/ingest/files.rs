//! File-level refusals (`src/ingest/source.rs`): each bad-input class gets its own clear
//! error, and nothing of the refused load reaches the warehouse; a quoted value with a line
//! break refuses the file naming the line; each refusal keeps its own report; a warehouse
//! path is read as written, never as a glob.

use std::collections::HashSet;
use std::path::PathBuf;

use outreach_warehouse::Fault;
use outreach_warehouse::ingest::{IngestError, IngestOptions, ingest};

use crate::common::*;

/// Loads `content` as overdose_events.csv into a warehouse with programs, expects a refusal,
/// checks the warehouse is byte-for-byte unchanged, and returns the error.
fn refused(content: impl AsRef<[u8]>) -> IngestError {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let before = snapshot(&wh);
    let f = write(tmp.path(), "overdose_events.csv", content);
    let err = load(&wh, &f).unwrap_err();
    assert_eq!(
        snapshot(&wh),
        before,
        "a refused load changed the warehouse: {err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("overdose_events.csv"),
        "the error names the file: {msg}"
    );
    err
}

#[test]
fn empty_file() {
    assert!(matches!(refused(""), IngestError::Empty { .. }));
    assert!(refused("\n\n").to_string().contains("the file is empty"));
}

#[test]
fn header_only() {
    let e = refused(format!("{EVENTS_HEADER}\n"));
    assert!(matches!(e, IngestError::HeaderOnly { .. }), "{e}");
    assert!(e.to_string().contains("header but no data rows"));
    assert!(matches!(
        refused(EVENTS_HEADER),
        IngestError::HeaderOnly { .. }
    ));
    assert!(matches!(
        refused(format!("{EVENTS_HEADER}\n\n  \n")),
        IngestError::HeaderOnly { .. }
    ));
}

#[test]
fn header_lists_missing_and_unknown_columns() {
    let header = EVENTS_HEADER
        .replace("source", "feed")
        .replace(",race_ethnicity", "");
    let e = refused(csv(&header, &events(3)));
    let msg = e.to_string();
    assert!(matches!(e, IngestError::Header { .. }));
    assert!(
        msg.contains("missing columns: source, race_ethnicity"),
        "{msg}"
    );
    assert!(msg.contains("unknown columns: feed"), "{msg}");
    assert!(
        msg.contains("Expected the columns event_id,person_key"),
        "{msg}"
    );
}

#[test]
fn repeated_columns() {
    let header = format!("{EVENTS_HEADER},sex");
    let msg = refused(csv(
        &header,
        &[format!("{},male", event("E1", "pk1", "P001", "2025-01-01"))],
    ))
    .to_string();
    assert!(msg.contains("repeated columns: sex"), "{msg}");
}

#[test]
fn wrong_delimiter() {
    let text = csv(
        &EVENTS_HEADER.replace(',', ";"),
        &[event("E1", "pk1", "P001", "2025-01-01").replace(',', ";")],
    );
    let e = refused(text);
    assert!(
        matches!(e, IngestError::Delimiter { found: ';', .. }),
        "{e}"
    );
    assert!(e.to_string().contains("separated by ';'"));
    let tabs = csv(&EVENTS_HEADER.replace(',', "\t"), &[]);
    assert!(
        refused(format!("{tabs}x\n"))
            .to_string()
            .contains("separated by '\\t'")
    );
}

#[test]
fn bad_encoding() {
    // Latin-1 'é' (0xE9) in a data row.
    let mut bytes = csv(EVENTS_HEADER, &events(5)).into_bytes();
    let mut row = event("E9", "pk9", "P001", "2025-01-01").into_bytes();
    row[1] = 0xE9;
    bytes.extend(row);
    bytes.push(b'\n');
    let e = refused(bytes);
    assert!(
        matches!(
            e,
            IngestError::Encoding {
                line: 7,
                byte: 0xE9,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("line 7: not valid UTF-8 (byte 0xE9)"),
        "{e}"
    );
}

#[test]
fn utf16() {
    let mut bytes = vec![0xFF, 0xFE];
    for u in csv(EVENTS_HEADER, &events(2)).encode_utf16() {
        bytes.extend(u.to_le_bytes());
    }
    assert!(matches!(refused(bytes), IngestError::Utf16 { .. }));
}

#[test]
fn truncated_last_line() {
    let mut text = csv(EVENTS_HEADER, &events(5));
    text.push_str("E9,pk9,P001,2025-01-");
    let e = refused(text);
    assert!(
        matches!(
            e,
            IngestError::Truncated {
                line: 7,
                fields: 4,
                expected: 11,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("looks cut off"));
}

#[test]
fn a_last_line_without_line_break_is_fine_when_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let text = format!(
        "{EVENTS_HEADER}\n{}",
        event("E1", "pk1", "P001", "2025-01-01")
    );
    let f = write(tmp.path(), "overdose_events.csv", text);
    assert_eq!(load(&wh, &f).unwrap().rows_loaded(), 1);
}

#[test]
fn overlong_line() {
    let mut text = csv(EVENTS_HEADER, &events(2));
    text.push_str(&"x".repeat(100_000));
    text.push('\n');
    let e = refused(text);
    assert!(
        matches!(e, IngestError::OverlongLine { line: 4, .. }),
        "{e}"
    );
}

#[test]
fn too_many_rejects_refuse_the_file_and_explain_why() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let before = snapshot(&wh);
    let mut rows = events(95);
    rows.extend((0..5).map(|i| event(&format!("X{i}"), "pkx", "P404", "2025-01-01")));
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let err = ingest(
        &wh,
        std::slice::from_ref(&f),
        &IngestOptions {
            max_reject_rate: 0.04,
            ..opts()
        },
    )
    .unwrap_err();
    let IngestError::TooManyRejects {
        rejected: 5,
        read: 100,
        quarantine,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(err.to_string().contains("5 of 100 rows (5.00%) failed validation, over the --max-reject-rate of 4.00%; nothing was loaded"), "{err}");
    let reasons = parse_quarantine(&std::fs::read_to_string(quarantine).unwrap());
    assert_eq!(reasons.len(), 5);
    assert_eq!(reasons[0].0, 97);
    assert_eq!(snapshot(&wh), before);
    // The same file passes under a looser limit.
    let r = ingest(
        &wh,
        &[f],
        &IngestOptions {
            max_reject_rate: 0.05,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(r.rows_loaded(), 95);
}

#[test]
fn unknown_table_and_bad_options() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "stuff.csv", "a,b\n1,2\n");
    let e = ingest(&tmp.path().join("wh"), std::slice::from_ref(&f), &opts()).unwrap_err();
    assert!(e.to_string().contains("cannot tell which table"), "{e}");
    let e = ingest(
        &tmp.path().join("wh"),
        std::slice::from_ref(&f),
        &IngestOptions {
            table: Some("nope".into()),
            ..opts()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("--table nope: no such table"), "{e}");
    let e = ingest(
        &tmp.path().join("wh"),
        &[f],
        &IngestOptions {
            max_reject_rate: 2.0,
            ..opts()
        },
    )
    .unwrap_err();
    assert!(matches!(e, IngestError::BadRejectRate(_)));
    let e = ingest(
        &tmp.path().join("wh"),
        &[tmp.path().join("missing.csv")],
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, IngestError::Missing(_)));
    assert!(
        !tmp.path().join("wh").exists(),
        "a refused command creates no warehouse"
    );
}

#[test]
fn table_is_told_from_the_file_name_or_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let a = write(
        tmp.path(),
        "overdose_events-2025Q1.csv",
        csv(EVENTS_HEADER, &events(2)),
    );
    assert_eq!(load(&wh, &a).unwrap().files[0].table, "overdose_events");
    let b = write(
        tmp.path(),
        "export.csv",
        "arrest_id,person_key,arrest_date,agency,charge\nA1,pk1,2025-01-01,sheriff,property\n",
    );
    let r = ingest(
        &wh,
        &[b],
        &IngestOptions {
            table: Some("arrests".into()),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(r.files[0].table, "arrests");
    assert_eq!(scalar(&wh, "SELECT count(*) FROM arrests"), 1);
}

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
