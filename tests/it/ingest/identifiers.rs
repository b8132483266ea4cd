//! Direct identifiers (`src/ingest/identifiers.rs`): a column named like an identifier, or a
//! value shaped like an SSN, a phone number or an email address, on any line (header and
//! lines that are no row included) and written any way, refuses the file whole and writes
//! nothing; record ids and pseudonymous keys as tools write them still load; person_key has a
//! declared format; and the quarantine names the line, column and rule with a redacted value,
//! never the value.

use std::path::Path;

use outreach_warehouse::Fault;
use outreach_warehouse::dictionary::Dictionary;
use outreach_warehouse::ingest::{FileOutcome, IngestError, ingest};
use outreach_warehouse::warehouse::{DatasetVersion, quarantine_path};
use proptest::prelude::*;

use super::stored_column;
use crate::common::*;

fn identifier_refused(content: String, expect_place: &str, expect_kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let before = snapshot(&wh);
    let f = write(tmp.path(), "overdose_events.csv", content);
    let err = load(&wh, &f).unwrap_err();
    assert!(matches!(err, IngestError::DirectIdentifier { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("refused whole, nothing was loaded"), "{msg}");
    assert!(msg.contains(expect_place), "{msg}");
    assert!(msg.contains(expect_kind), "{msg}");
    assert!(msg.contains("de-identify"), "{msg}");
    assert_eq!(snapshot(&wh), before);
    // Not even a quarantine report: an identifier must not be copied anywhere.
    assert!(!wh.join("quarantine").exists());
}

#[test]
fn identifier_columns_refuse_the_file() {
    for (col, kind) in [
        ("first_name", "a person's name"),
        ("DOB", "a date of birth"),
        ("ssn", "a social security number"),
        ("street_address", "a street address"),
        ("phone", "a phone number"),
        ("email", "an email address"),
        ("MRN", "a medical record number"),
        ("client_id", "a raw person identifier beside person_key"),
    ] {
        let header = format!("{EVENTS_HEADER},{col}");
        let rows = vec![format!("{},x", event("E1", "pk1", "P001", "2025-01-01"))];
        identifier_refused(csv(&header, &rows), &format!("column '{col}'"), kind);
    }
}

#[test]
fn identifier_values_refuse_the_file() {
    let mut rows = events(50);
    rows.push(event("E9", "jane.doe@example.org", "P001", "2025-01-01"));
    identifier_refused(
        csv(EVENTS_HEADER, &rows),
        "a value in column 'person_key' on line 52",
        "an email address",
    );
    let rows = vec![event("E1", "123-45-6789", "P001", "2025-01-01")];
    identifier_refused(
        csv(EVENTS_HEADER, &rows),
        "column 'person_key' on line 2",
        "a social security number",
    );
    let rows = vec![event("617-555-0100", "pk1", "P001", "2025-01-01")];
    identifier_refused(
        csv(EVENTS_HEADER, &rows),
        "column 'event_id' on line 2",
        "a phone number",
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

#[test]
fn an_identifier_on_a_line_that_is_no_row_refuses_the_file() {
    // Rows with the wrong field count or broken quotes are not rows, but they are still
    // scanned: one such line among 300 good ones refuses the file, where a quarantined row
    // would load under the reject rate.
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
    // `617 555-0100` in an id column is no id, and its digits make it a phone number: the file
    // is refused and nothing is written anywhere, the quarantine included.
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
    // Numbers are not told by their count of digits once separators are stripped:
    // `2024-12345` in arrest_id has nine digits, `E-2025-000123` in event_id ten and
    // `odin-10000-7881` nine, but their groups form no written SSN or phone number: they are
    // ids, and load.
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
    // The README's examples of refused numbers and of loaded ids are loaded here, so the docs
    // and the rules cannot drift apart.
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
    // (a trade-off the README states).
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
    // The reason names the forms a pseudonymous key takes.
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
    // Keys load as pseudonymisation tools write them, also those that start with a digit:
    // about 5 SHA-256 hex digests in 8 do.
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
