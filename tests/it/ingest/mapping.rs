//! Source mappings (`ingest --mapping`, `mapping check`): the police-incident fixture loads
//! end to end through its mapping, each rule does what it says, the identifier scan reads the
//! columns the mapping leaves unused, re-loads are recognised by the file's and the mapping's
//! hashes, and `mapping check` reports without writing anything.

use std::path::{Path, PathBuf};

use outreach_warehouse::ingest::{FileOutcome, IngestError, IngestOptions, ingest};
use outreach_warehouse::warehouse::Warehouse;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{stored_column, stored_rows};
use crate::common::releases::{ok, outreach};
use crate::common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mappings");

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// The fixture export, edited by `edit`, written as `police_incidents_NAME.csv` into `dir`.
fn export(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(fixture("police_incidents.csv")).unwrap();
    write(dir, &format!("police_incidents_{name}.csv"), edit(text))
}

/// The fixture mapping, edited by `edit`, written into `dir`.
fn mapping(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(fixture("police_incidents.toml")).unwrap();
    write(dir, name, edit(text))
}

fn through(mapping: &Path) -> IngestOptions {
    IngestOptions {
        mapping: Some(mapping.to_path_buf()),
        ..opts()
    }
}

fn counts(report: &outreach_warehouse::ingest::IngestReport) -> Vec<(String, u64, u64, u64)> {
    report
        .files
        .iter()
        .map(|f| match &f.outcome {
            FileOutcome::Loaded {
                rows_read,
                rows_loaded,
                rows_rejected,
                ..
            } => (f.table.clone(), *rows_read, *rows_loaded, *rows_rejected),
            other => panic!("{}: {other:?}", f.table),
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn the_documented_mapping_is_the_fixtures() {
    let documented = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data-dictionary/mappings/police_incidents.toml"
    );
    assert_eq!(
        std::fs::read_to_string(documented).unwrap(),
        std::fs::read_to_string(fixture("police_incidents.toml")).unwrap()
    );
}

/// One source row feeds several tables, each under its condition; the first row of each key
/// is kept; ids are cleaned and prefixed; dates, codes and flags mapped; constants set.
#[test]
fn the_police_fixture_loads_end_to_end_and_reads_back_right() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let m = fixture("police_incidents.toml");
    let r = ingest(&wh, &[fixture("police_incidents.csv")], &through(&m)).unwrap();
    assert!(r.version.is_some());
    // 12 source rows: 6 survivors' events, 4 referrals, 2 arrests; the later rows of the same
    // survivor (another drug or dose) are dropped, neither read nor rejected.
    assert_eq!(
        counts(&r),
        [
            ("overdose_events".to_string(), 6, 6, 0),
            ("referrals".to_string(), 4, 4, 0),
            ("arrests".to_string(), 2, 2, 0),
        ]
    );
    assert_eq!(
        sorted(stored_column(&wh, "overdose_events", "event_id")),
        [
            "PD-1204377-1",
            "PD-1204377-2",
            "PD-1209005-1",
            "PD-1215440-1",
            "PD-1221918-1",
            "PD-998712-1"
        ]
    );
    let mut events = stored_rows(&wh, "overdose_events", &["person_key", "program_id"]);
    events.sort();
    assert_eq!(events[0], ["vk_a1", "P001"]);
    assert_eq!(
        sorted(stored_column(&wh, "referrals", "referral_id")),
        [
            "PDR-1204377-1",
            "PDR-1209005-1",
            "PDR-1221918-1",
            "PDR-998712-1"
        ]
    );
    assert_eq!(
        sorted(stored_column(&wh, "arrests", "person_key")),
        ["vk_b2", "vk_e5"]
    );
    let count = |sql: &str| scalar(&wh, sql);
    // Dates MM/DD/YYYY.
    assert_eq!(
        count("SELECT COUNT(*) FROM overdose_events WHERE event_date = DATE '2025-01-14'"),
        2
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM arrests WHERE arrest_date = DATE '2025-04-09'"),
        1
    );
    // Constants.
    assert_eq!(
        count("SELECT COUNT(*) FROM overdose_events WHERE source = 'police'"),
        6
    );
    // Y/N flags through a refusing map.
    assert_eq!(count("SELECT COUNT(*) FROM overdose_events WHERE fatal"), 1);
    assert_eq!(
        count("SELECT COUNT(*) FROM overdose_events WHERE NOT transported_to_ed"),
        3
    );
    // Codes, and unlisted codes taking the map's default.
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM overdose_events WHERE sex = 'unknown' AND race_ethnicity = 'unknown' AND age_band = 'unknown'"
        ),
        1
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM overdose_events WHERE age_band = '25_34' AND sex = 'male' AND race_ethnicity = 'nh_white'"
        ),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM referrals WHERE service = 'moud'"),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM referrals WHERE service = 'other'"),
        1
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM arrests WHERE charge = 'outstanding_warrant' AND agency = 'sheriff'"
        ),
        1
    );
}

#[test]
fn a_refusing_map_and_a_bad_date_quarantine_the_row_naming_source_line_column_and_mapped_column() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    // Line 10 (vk_d4): FATAL "Y" becomes "maybe"; line 13 (vk_f6): a date in another format.
    let file = export(tmp.path(), "fix", |t| {
        t.replace(
            "03/22/2025,SPD,FENTANYL,1,Y,Y,N",
            "03/22/2025,SPD,FENTANYL,1,Y,maybe,N",
        )
        .replace("05/30/2025", "2025-05-30")
    });
    let r = ingest(
        &wh,
        &[file],
        &IngestOptions {
            max_reject_rate: 1.0,
            ..through(&fixture("police_incidents.toml"))
        },
    )
    .unwrap();
    assert_eq!(counts(&r)[0], ("overdose_events".to_string(), 6, 4, 2));
    let q = file_quarantine(&r, 0);
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!((q[0].0, q[0].1.as_str()), (10, "fatal"));
    assert!(
        q[0].2
            .contains("police_incidents_fix.csv, column 'FATAL' mapped to fatal")
            && q[0].2.contains("'aaaaa'")
            && q[0].2.contains("map 'yes_no'"),
        "{q:?}"
    );
    assert_eq!((q[1].0, q[1].1.as_str()), (13, "event_date"));
    assert!(
        q[1].2
            .contains("column 'INCIDENT_DATE' mapped to event_date")
            && q[1]
                .2
                .contains("'9999-99-99' is not a date written %m/%d/%Y"),
        "{q:?}"
    );
    // No source value reaches the quarantine.
    assert!(
        !q.iter()
            .any(|(_, _, r)| r.contains("maybe") || r.contains("2025-05-30"))
    );
    // The referral of line 13 is refused for its date too; the arrests are untouched.
    assert_eq!(counts(&r)[1], ("referrals".to_string(), 4, 3, 1));
    assert_eq!(counts(&r)[2], ("arrests".to_string(), 2, 2, 0));
}

#[test]
fn without_first_per_key_a_survivors_later_rows_are_rejected_as_repeats() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let m = mapping(tmp.path(), "m.toml", |t| {
        t.replacen("first_per_key = true\n", "", 1)
    });
    let r = ingest(
        &wh,
        &[fixture("police_incidents.csv")],
        &IngestOptions {
            max_reject_rate: 1.0,
            ..through(&m)
        },
    )
    .unwrap();
    assert_eq!(counts(&r)[0], ("overdose_events".to_string(), 12, 6, 6));
    let q = file_quarantine(&r, 0);
    assert_eq!(q[0].0, 3);
    assert!(
        q[0].2
            .contains("mapped to event_id: event_id repeats line 2"),
        "{q:?}"
    );
}

#[test]
fn an_identifier_in_a_column_the_mapping_does_not_use_refuses_the_file_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let before = snapshot(&wh);
    let file = export(tmp.path(), "ssn", |t| {
        t.replace("Second occupant of the vehicle", "ssn 123-45-6789")
    });
    let e = ingest(&wh, &[file], &through(&fixture("police_incidents.toml"))).unwrap_err();
    assert!(matches!(e, IngestError::DirectIdentifier { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("column 'NARRATIVE' on line 6") && !text.contains("6789"),
        "{text}"
    );
    assert_eq!(snapshot(&wh), before, "nothing was loaded");
}

/// Stripping separators can make a direct identifier that no field of the source holds:
/// "123,456,789" is three numbers, and the event id made of it, PD-123456789-1, holds nine
/// digits in a row, as an SSN is written. Each mapped value is scanned as a dictionary file's
/// field is.
#[test]
fn an_identifier_made_by_stripping_separators_refuses_the_file_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let before = snapshot(&wh);
    let file = export(tmp.path(), "stripped", |t| {
        t.replacen("\"998,712\"", "\"123,456,789\"", 1)
    });
    let e = ingest(&wh, &[file], &through(&fixture("police_incidents.toml"))).unwrap_err();
    assert!(matches!(e, IngestError::DirectIdentifier { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("a value in column 'event_id' on line 13")
            && text.contains("social security number")
            && !text.contains("123456789")
            && !text.contains("123,456,789"),
        "{text}"
    );
    assert_eq!(snapshot(&wh), before, "nothing was loaded");
}

#[test]
fn an_identifier_column_the_mapping_does_not_use_refuses_the_file_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let file = export(tmp.path(), "dob", |t| t.replacen("OFFICER_BADGE", "DOB", 1));
    let e = ingest(&wh, &[file], &through(&fixture("police_incidents.toml"))).unwrap_err();
    assert!(
        matches!(&e, IngestError::DirectIdentifier { place, .. } if place == "column 'DOB'"),
        "{e}"
    );
}

#[test]
fn reloading_the_same_bytes_and_mapping_adds_nothing_and_a_changed_mapping_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let m = fixture("police_incidents.toml");
    let file = fixture("police_incidents.csv");
    let first = ingest(&wh, std::slice::from_ref(&file), &through(&m)).unwrap();
    let v = first.version.unwrap();
    let before = snapshot(&wh);
    let again = ingest(&wh, std::slice::from_ref(&file), &through(&m)).unwrap();
    assert_eq!(again.version, None);
    assert_eq!(again.files.len(), 3);
    assert!(
        again
            .files
            .iter()
            .all(|f| f.outcome == FileOutcome::AlreadyLoaded(v)),
        "{again:?}"
    );
    assert_eq!(snapshot(&wh), before);
    // The same bytes through a mapping that keys them otherwise are a new load.
    let changed = mapping(tmp.path(), "m2.toml", |t| {
        t.replace("prefix = \"PD", "prefix = \"SP")
    });
    let r = ingest(&wh, &[file], &through(&changed)).unwrap();
    assert!(r.version.unwrap() > v);
    assert_eq!(r.rows_loaded(), 12);
    assert_eq!(stored_column(&wh, "overdose_events", "event_id").len(), 12);
}

#[test]
fn the_manifest_records_the_mapping_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let m = fixture("police_incidents.toml");
    ingest(&wh, &[fixture("police_incidents.csv")], &through(&m)).unwrap();
    let expected: String = Sha256::digest(std::fs::read(&m).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = Warehouse::open(&wh).unwrap().manifest().unwrap();
    let load = manifest.loads.last().unwrap();
    assert_eq!(load.files.len(), 3);
    for f in &load.files {
        assert_eq!(
            f.mapping_sha256.as_deref(),
            Some(expected.as_str()),
            "{}",
            f.table
        );
    }
    // The programs loaded in the dictionary's form record none.
    assert_eq!(manifest.loads[0].files[0].mapping_sha256, None);
}

#[test]
fn a_bad_mapping_names_the_file_section_and_key_and_creates_no_warehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("wh");
    let cases = [
        (
            "table = \"arrests\"",
            "table = \"arrest\"",
            "[[feed]] 3 (police_incidents → arrest): key `table`",
        ),
        (
            "sex = { from = \"GENDER\", map = \"sex\" }",
            "gender = { from = \"GENDER\", map = \"sex\" }",
            "[[feed]] 1 (police_incidents → overdose_events): key `columns.gender`",
        ),
        (
            "M = \"male\"",
            "M = \"man\"",
            "[maps.sex]: 'man' is not a value of sex",
        ),
        (
            "date = \"%m/%d/%Y\"",
            "date = \"%m/%d\"",
            "key `columns.event_date`: `date = \"%m/%d\"`",
        ),
        (
            "person_key = \"VICTIM_KEY\"\nprogram_id = { value = \"P001\" }\nevent_date",
            "program_id = { value = \"P001\" }\nevent_date",
            "key `columns.person_key` is missing",
        ),
    ];
    for (from, to, expected) in cases {
        let m = mapping(tmp.path(), "bad.toml", |t| {
            assert!(t.contains(from), "{from}");
            t.replacen(from, to, 1)
        });
        let e = ingest(&wh, &[fixture("police_incidents.csv")], &through(&m)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}: ", m.display())) && text.contains(expected),
            "{text}"
        );
        assert_eq!(e.fault(), outreach_warehouse::Fault::BadInput);
        assert!(!wh.exists(), "a bad mapping creates nothing");
    }
    // A source column the file lacks names the file, the mapping's section and key.
    let file = export(tmp.path(), "renamed", |t| {
        t.replacen("VICTIM_KEY", "VICTIM", 1)
    });
    let e = ingest(&wh, &[file], &through(&fixture("police_incidents.toml"))).unwrap_err();
    assert!(
        e.to_string()
            .contains("the header has no column 'VICTIM_KEY'")
            && e.to_string().contains("key `columns.person_key`"),
        "{e}"
    );
}

#[test]
fn mapping_check_reports_unmapped_codes_unused_columns_and_refusals_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = export(tmp.path(), "check", |t| {
        t.replace(
            "03/22/2025,SPD,FENTANYL,1,Y,Y,N",
            "03/22/2025,SPD,FENTANYL,1,Y,maybe,N",
        )
    });
    let m = fixture("police_incidents.toml");
    let before = tree(tmp.path());
    let out = ok(&outreach()
        .args(["mapping", "check", "--format", "json", "--mapping"])
        .arg(&m)
        .arg(&file)
        .output()
        .unwrap());
    assert_eq!(tree(tmp.path()), before, "mapping check writes nothing");
    let v: Value = serde_json::from_str(&out).unwrap();
    let f = &v["files"][0];
    assert_eq!(f["rows"], 12);
    assert_eq!(
        f["unused_columns"],
        serde_json::json!(["DRUG", "NALOXONE_DOSE", "OFFICER_BADGE", "NARRATIVE"])
    );
    let events = &f["feeds"][0];
    assert_eq!(events["table"], "overdose_events");
    assert_eq!(events["rows_fed"], 12);
    assert_eq!(events["rows_folded"], 6);
    let unmapped: Vec<(String, String, u64)> = events["unmapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["column"].as_str().unwrap().to_string(),
                u["code"].as_str().unwrap().to_string(),
                u["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("sex", "U", 1),
        ("race_ethnicity", "X", 1),
        ("age_band", "UNK", 1),
        ("fatal", "maybe", 1),
    ] {
        assert!(
            unmapped.contains(&(expected.0.into(), expected.1.into(), expected.2)),
            "{expected:?} in {unmapped:?}"
        );
    }
    assert_eq!(events["rows_refused"], 1);
    assert_eq!(events["refused"][0]["column"], "fatal");
    assert_eq!(
        events["refused"][0]["rule"],
        "code not in map 'yes_no' (refuse)"
    );
    let referrals = &f["feeds"][1];
    assert_eq!(referrals["rows_fed"], 10);
    assert_eq!(referrals["unmapped"][0]["code"], "SHELTER");
    assert_eq!(referrals["unmapped"][0]["rows"], 2);
    assert_eq!(referrals["rows_refused"], 0);
    // The table names the same facts.
    let table = ok(&outreach()
        .args(["mapping", "check", "--mapping"])
        .arg(&m)
        .arg(&file)
        .output()
        .unwrap());
    assert!(
        table.contains("unused columns (scanned for identifiers, never stored): DRUG, NALOXONE_DOSE, OFFICER_BADGE, NARRATIVE")
            && table.contains("SHELTER")
            && table.contains("would be refused: 1 rows"),
        "{table}"
    );
    assert_eq!(tree(tmp.path()), before);
    // A bad mapping is a usage error naming its key.
    let bad = mapping(tmp.path(), "bad.toml", |t| {
        t.replacen("table = \"arrests\"", "table = \"x\"", 1)
    });
    let out = outreach()
        .args(["mapping", "check", "--mapping"])
        .arg(&bad)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key `table`"));
}

#[test]
fn ingest_through_a_mapping_from_the_command_line_loads_the_police_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let run = || {
        ok(&outreach()
            .args(["ingest", "--max-date", "2026-06-30", "--warehouse"])
            .arg(&wh)
            .arg("--mapping")
            .arg(fixture("police_incidents.toml"))
            .arg(fixture("police_incidents.csv"))
            .output()
            .unwrap())
    };
    let out = run();
    assert!(
        out.contains("overdose_events") && out.contains("arrests"),
        "{out}"
    );
    assert_eq!(stored_column(&wh, "referrals", "referral_id").len(), 4);
    // Without the mapping, the export is no dictionary file.
    let plain = outreach()
        .args(["ingest", "--warehouse"])
        .arg(&wh)
        .arg(fixture("police_incidents.csv"))
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(2));
    run();
    assert_eq!(stored_column(&wh, "referrals", "referral_id").len(), 4);
}
