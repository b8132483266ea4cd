//! Row-level validation: each rule quarantines the row with its line, column and reason, and
//! the valid rows still load.

use outreach_warehouse::ingest::{FileOutcome, IngestOptions, ingest};

use super::quarantined;
use crate::common::*;

fn one(bad: String) -> (u64, String, String) {
    let q = quarantined(&[bad]);
    assert_eq!(q.len(), 1, "{q:?}");
    q.into_iter().next().unwrap()
}

#[test]
fn bad_types_and_enums_are_quarantined_with_line_and_column() {
    let q = quarantined(&[
        "E9001,pk9001,P001,2025-01-05,ems,maybe,true,true,25_34,male,nh_white".into(),
        "E9002,pk9002,P001,2025-01-05,helicopter,false,true,true,25_34,male,nh_white".into(),
        "E9003,pk9003,P001,05/01/2025,ems,false,true,true,25_34,male,nh_white".into(),
        "E9004,pk9004,P001,2025-01-05,ems,false,true,true,25-34,Male,nh_white".into(),
    ]);
    // The header is line 1, so the first data row is line 2.
    assert_eq!(q[0].0, 2);
    assert_eq!(q[0].1, "fatal");
    // Values are shown redacted: their shape, not their letters and digits.
    assert!(
        q[0].2.contains("'aaaaa' is not true or false"),
        "{}",
        q[0].2
    );
    assert_eq!((q[1].0, q[1].1.as_str()), (3, "source"));
    assert!(
        q[1].2
            .contains("'aaaaaaaaaa' is not one of ems, police, fire, hospital_ed, other")
    );
    assert_eq!((q[2].0, q[2].1.as_str()), (4, "event_date"));
    assert!(
        q[2].2
            .contains("'99/99/9999' is not a date written YYYY-MM-DD"),
        "{}",
        q[2].2
    );
    // Every failing field of a row is reported, not just the first.
    let line5: Vec<&str> = q
        .iter()
        .filter(|r| r.0 == 5)
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(line5, ["age_band", "sex"]);
}

#[test]
fn required_fields_must_be_present() {
    let (line, col, reason) =
        one("E9001,,P001,2025-01-05,ems,false,true,true,25_34,male,nh_white".into());
    assert_eq!((line, col.as_str()), (2, "person_key"));
    assert!(reason.contains("required"));
}

#[test]
fn optional_fields_may_be_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let f = write(
        tmp.path(),
        "referrals.csv",
        "referral_id,person_key,program_id,attempt_id,referral_date,service\nR1,pk1,P001,,2025-02-01,moud\nR2,pk2,P001,A7,2025-02-02,housing\n",
    );
    let r = load(&wh, &f).unwrap();
    assert_eq!(r.rows_loaded(), 2);
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM referrals WHERE attempt_id IS NULL"
        ),
        1
    );
}

#[test]
fn dates_must_be_plausible() {
    let q = quarantined(&[
        event("E9001", "pk9001", "P001", "1999-12-31"),
        event("E9002", "pk9002", "P001", "2026-07-01"),
    ]);
    // 1999 is also before P001 started, but the plausibility check comes first.
    // The date itself is shown by its shape only: it may be a date of birth typed into the
    // wrong column.
    assert_eq!((q[0].0, q[0].1.as_str()), (2, "event_date"));
    assert!(
        q[0].2
            .contains("'9999-99-99' is before 2000-01-01, the earliest plausible date"),
        "{}",
        q[0].2
    );
    assert!(!q[0].2.contains("1999"), "{}", q[0].2);
    assert_eq!((q[1].0, q[1].1.as_str()), (3, "event_date"));
    assert!(
        q[1].2
            .contains("'9999-99-99' is after 2026-06-30, the latest plausible date"),
        "{}",
        q[1].2
    );
    assert!(!q[1].2.contains("2026-07-01"), "{}", q[1].2);
}

#[test]
fn a_date_of_birth_in_a_date_column_never_reaches_the_quarantine() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let mut rows = vec![
        event("E9001", "pk9001", "P001", "1985-03-14"),
        event("E9002", "pk9002", "P001", "2031-07-04"),
        // After the plausible minimum but before the program started.
        event("E9003", "pk9003", "P002", "2003-11-09"),
    ];
    rows.extend(events(20));
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let opts = IngestOptions {
        max_reject_rate: 1.0,
        ..opts()
    };
    let r = ingest(&wh, &[f], &opts).unwrap();
    let q = quarantine(&r);
    assert_eq!(q.len(), 3, "{q:?}");
    let FileOutcome::Loaded {
        quarantine: Some(path),
        ..
    } = &r.files[0].outcome
    else {
        panic!("{:?}", r.files[0].outcome)
    };
    let text = std::fs::read_to_string(path).unwrap();
    for raw in ["1985", "03-14", "2031", "07-04", "2003", "11-09"] {
        assert!(!text.contains(raw), "{raw} reached the quarantine: {text}");
    }
    assert!(
        q[2].2
            .contains("'9999-99-99' is before the start_date 2024-06-01 of program_id 'P002'"),
        "{}",
        q[2].2
    );
}

#[test]
fn program_must_exist() {
    let (line, col, reason) = one(event("E9001", "pk9", "P999", "2025-01-01"));
    assert_eq!((line, col.as_str()), (2, "program_id"));
    // An unknown value could be anything: it is shown redacted.
    assert!(
        reason.contains("program_id 'A999' is not in the programs table"),
        "{reason}"
    );
}

#[test]
fn no_dates_before_the_program_started() {
    let (line, col, reason) = one(event("E9001", "pk9", "P002", "2024-05-31"));
    assert_eq!((line, col.as_str()), (2, "event_date"));
    assert!(
        reason.contains("'9999-99-99' is before the start_date 2024-06-01 of program_id 'P002'"),
        "{reason}"
    );
    // The day the program started is fine.
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let f = write(
        tmp.path(),
        "overdose_events.csv",
        csv(
            EVENTS_HEADER,
            &[event("E9001", "pk9", "P002", "2024-06-01")],
        ),
    );
    assert_eq!(load(&wh, &f).unwrap().rows_loaded(), 1);
}

#[test]
fn programs_are_checked_too() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "programs.csv",
        format!(
            "{}P004,Bad Dates,Western,peer_led,never,none,2025-01-01,2024-01-01\nP005,Bad Model,Western,sheriff_led,never,none,2025-01-01,\n",
            PROGRAMS
        ),
    );
    let opts = IngestOptions {
        max_reject_rate: 1.0,
        ..opts()
    };
    let r = ingest(&tmp.path().join("wh"), &[f], &opts).unwrap();
    let q = quarantine(&r);
    assert_eq!(
        q[0],
        (
            5,
            "end_date".into(),
            "2024-01-01 is before the start_date 2025-01-01".into()
        )
    );
    assert_eq!((q[1].0, q[1].1.as_str()), (6, "team_model"));
    assert_eq!(r.rows_loaded(), 3);
}

#[test]
fn wrong_field_counts_and_quotes_are_row_errors() {
    // A quote left open is a file error (see `files`); other broken quotes are rows.
    let q = quarantined(&[
        "E9001,pk9001,P001,2025-01-05,ems,false,true".into(),
        "E9002,pk9002,P001,2025-01-05,ems,false,true,true,25_34,male,nh_white,extra".into(),
        "\"E9003\"x,pk9003,P001,2025-01-05,ems,false,true,true,25_34,male,nh_white".into(),
    ]);
    assert_eq!(
        q[0],
        (2, String::new(), "has 7 fields, the header has 11".into())
    );
    assert_eq!(
        q[1],
        (3, String::new(), "has 12 fields, the header has 11".into())
    );
    assert_eq!(q[2].0, 4);
    assert!(
        q[2].2.contains("text follows a closing quote"),
        "{}",
        q[2].2
    );
}

#[test]
fn overlong_and_malformed_ids_are_row_errors() {
    let long = "x".repeat(65);
    let q = quarantined(&[
        event(&long, "pk1", "P001", "2025-01-01"),
        event("E 1", "pk1", "P001", "2025-01-01"),
    ]);
    assert_eq!((q[0].0, q[0].1.as_str()), (2, "event_id"));
    assert!(
        q[0].2.contains("is 65 characters long; at most 64"),
        "{}",
        q[0].2
    );
    assert!(q[1].2.contains("is not an id"), "{}", q[1].2);
}

#[test]
fn quoted_fields_crlf_bom_and_column_order_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    // Columns in another order, CRLF line ends, a UTF-8 byte-order mark and quoted values.
    let text = "\u{feff}person_key,event_id,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,sex,race_ethnicity\r\n\
                \"pk1\",E1,P001,2025-03-01,ems,TRUE,0,1,25_34,female,hispanic\r\n";
    let f = write(tmp.path(), "overdose_events.csv", text);
    assert_eq!(load(&wh, &f).unwrap().rows_loaded(), 1);
    assert_eq!(
        scalar(
            &wh,
            "SELECT count(*) FROM overdose_events WHERE person_key = 'pk1' AND fatal AND NOT naloxone_administered AND sex = 'female'"
        ),
        1
    );
}
