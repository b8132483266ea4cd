//! Pseudonymisation at the program (`src/pseudonymize`, `outreach pseudonymize`): one
//! survivor written differently in two programs' exports gets one `person_key`, the output
//! holds no identifier the input held, errors name lines and columns and never a value, key
//! files are private and checked, and the warehouse's ingest takes every key it writes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use outreach_warehouse::ingest::identifier_value;
use outreach_warehouse::pseudonymize::{KEY_BYTES, LinkageKey};

use crate::common::releases::{ok, outreach};
use crate::common::{
    EVENTS_HEADER, PROGRAMS, csv, event, load, scalar, warehouse_with_programs, write,
};

/// The state's linkage config as every program holds it.
const CONFIG: &str = r#"
keep = ["event_id", "program_id", "event_date", "source", "fatal", "naloxone_administered",
        "transported_to_ed", "age_band", "sex", "race_ethnicity"]
drop = ["mrn", "phone", "person_key"]

[fields.last_name]
kind = "name"

[fields.first_name]
kind = "name"
nicknames = true

[fields.dob]
column = "DOB"
kind = "date"

[fields.sex]
kind = "sex"

[fields.initials]
kind = "name"

[[match_key]]
fields = ["last_name", "first_name", "dob"]

[[match_key]]
fields = ["initials", "dob", "sex"]

[nicknames]
bill = "william"
"#;

/// Program A's raw export: names as written at intake.
const PROGRAM_A: &str = "\
event_id,last_name,first_name,DOB,sex,mrn,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,race_ethnicity
EA0001,García-López,William,1980-03-12,male,MRN0012345,P001,2025-02-03,ems,false,true,true,45_54,hispanic
EA0002,Okonkwo,Adaeze,1992-11-30,female,MRN0098765,P001,2025-02-10,ems,false,true,false,25_34,nh_black
EA0003,Okonkwo,Adaeze,1992-11-30,female,MRN0098765,P001,2025-05-10,police,false,true,false,25_34,nh_black
";

/// Program B's raw export of the same survivors and one more: other column order, upper
/// case, no accents, a space for the hyphen, a nickname, a US date, spaces around a value.
const PROGRAM_B: &str = "\
first_name,DOB,event_id,program_id,last_name,sex,event_date,phone,source,fatal,naloxone_administered,transported_to_ed,age_band,race_ethnicity
\"  BILL \",03/12/1980,EB0001,P002,GARCIA LOPEZ,male,2025-02-20,617-555-0100,ems,false,true,true,45_54,hispanic
Chidinma,30 November 1992,EB0002,P002,okonkwo,female,2025-03-01,617-555-0199,ems,false,true,true,25_34,nh_black
";

/// Every identifier of the two exports, as written and in the forms normalisation makes.
const IDENTIFIERS: &[&str] = &[
    "García-López",
    "García",
    "Garcia",
    "López",
    "Lopez",
    "garcialopez",
    "William",
    "Bill",
    "Okonkwo",
    "Adaeze",
    "Chidinma",
    "1980-03-12",
    "03/12/1980",
    "19800312",
    "1992-11-30",
    "30 November 1992",
    "MRN0012345",
    "MRN0098765",
    "617-555-0100",
    "617-555-0199",
    "6175550100",
];

/// The key the tests use, fixed so that every run writes the same keys.
const KEY_HEX: &str = "5f3a9c0e1d2b4a6f8e7c9d0b1a2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a01";

fn key_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = write(dir, name, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn pseudonymize(key: &Path, config: &Path, input: &Path, out: &Path) -> Output {
    outreach()
        .arg("pseudonymize")
        .arg("--key-file")
        .arg(key)
        .arg("--config")
        .arg(config)
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// The output's rows as event_id → person_key.
fn keys_by_event(out: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(out).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (k, e) = (
        header.iter().position(|c| *c == "person_key").unwrap(),
        header.iter().position(|c| *c == "event_id").unwrap(),
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[e].to_string(), f[k].to_string())
        })
        .collect()
}

/// The names of the files in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Two programs' exports of the same survivors, written differently, give one key per
/// survivor; the outputs hold no identifier and load into the warehouse, where the survivor
/// seen by both programs is one person.
#[test]
fn one_survivor_written_differently_in_two_programs_gets_one_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key_file(tmp.path(), "state.key", &format!("{KEY_HEX}\n"), 0o600);
    let config = write(tmp.path(), "linkage.toml", CONFIG);
    let raw = tmp.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let (a_in, b_in) = (
        write(&raw, "a.csv", PROGRAM_A),
        write(&raw, "b.csv", PROGRAM_B),
    );
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let (a_out, b_out) = (
        a_dir.join("overdose_events.csv"),
        b_dir.join("overdose_events.csv"),
    );
    let said = ok(&pseudonymize(&key, &config, &a_in, &a_out));
    assert!(said.contains("3 rows, 2 distinct person keys"), "{said}");
    ok(&pseudonymize(&key, &config, &b_in, &b_out));

    let (a, b) = (keys_by_event(&a_out), keys_by_event(&b_out));
    assert_eq!(
        a["EA0001"], b["EB0001"],
        "Bill García López is one survivor"
    );
    assert_eq!(a["EA0002"], a["EA0003"], "one survivor, two events");
    assert_ne!(
        a["EA0002"], b["EB0002"],
        "another first name is another survivor"
    );
    assert_ne!(a["EA0001"], a["EA0002"]);
    for k in a.values().chain(b.values()) {
        assert!(k.starts_with("pk") && k.len() == 34, "{k}");
        assert_eq!(identifier_value(k.as_bytes(), true), None, "{k}");
    }

    // Every byte of each output, read in any case, holds none of the identifiers, and no
    // temporary file is left beside it.
    for out in [&a_out, &b_out] {
        let text = std::fs::read_to_string(out).unwrap().to_lowercase();
        for id in IDENTIFIERS {
            assert!(
                !text.contains(&id.to_lowercase()),
                "{} holds {id}",
                out.display()
            );
        }
        let header = text.lines().next().unwrap();
        for column in ["last_name", "first_name", "dob", "mrn", "phone"] {
            assert!(!header.split(',').any(|c| c == column), "{header}");
        }
        assert_eq!(names(out.parent().unwrap()), ["overdose_events.csv"]);
    }
    // The raw exports are as they were.
    assert_eq!(std::fs::read_to_string(&a_in).unwrap(), PROGRAM_A);

    // The warehouse takes both outputs: four events, three persons.
    let wh = tmp.path().join("wh");
    let programs = write(tmp.path(), "programs.csv", PROGRAMS);
    ok(&outreach()
        .args(["ingest", "--warehouse"])
        .arg(&wh)
        .arg(&programs)
        .arg(&a_out)
        .arg(&b_out)
        .output()
        .unwrap());
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM overdose_events"), 5);
    assert_eq!(
        scalar(
            &wh,
            "SELECT COUNT(DISTINCT person_key) FROM overdose_events"
        ),
        3
    );
    assert_eq!(
        scalar(
            &wh,
            "SELECT COUNT(*) FROM (SELECT person_key FROM overdose_events \
             GROUP BY person_key HAVING COUNT(DISTINCT program_id) > 1)"
        ),
        1
    );
}

/// Keys made under another key file never match: a rotation starts new persons.
#[test]
fn a_different_key_file_gives_different_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write(tmp.path(), "linkage.toml", CONFIG);
    let input = write(tmp.path(), "a.csv", PROGRAM_A);
    let one = key_file(tmp.path(), "one.key", KEY_HEX, 0o600);
    let other_hex: String = KEY_HEX.chars().rev().collect();
    let two = key_file(tmp.path(), "two.key", &other_hex, 0o400);
    let (o1, o2) = (tmp.path().join("o1.csv"), tmp.path().join("o2.csv"));
    ok(&pseudonymize(&one, &config, &input, &o1));
    ok(&pseudonymize(&two, &config, &input, &o2));
    let (k1, k2) = (keys_by_event(&o1), keys_by_event(&o2));
    for (event, k) in &k1 {
        assert_ne!(k, &k2[event], "{event}");
        assert!(!k2.values().any(|other| other == k));
    }
    // The same key file again gives the same keys.
    let o3 = tmp.path().join("o3.csv");
    ok(&pseudonymize(&one, &config, &input, &o3));
    assert_eq!(keys_by_event(&o3), k1);
}

/// Without a first name the row falls to the second match key (initials, date of birth,
/// sex), and two programs that hold only initials link the survivor; a program that holds
/// the whole name keys the same survivor by the first match key, which does not link to
/// them: each match key links only rows keyed by it.
#[test]
fn the_first_complete_match_key_keys_a_row() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key_file(tmp.path(), "state.key", KEY_HEX, 0o600);
    let config = write(tmp.path(), "linkage.toml", CONFIG);
    let header = "event_id,last_name,first_name,initials,DOB,sex,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,race_ethnicity";
    let tail = "P001,2025-02-03,ems,false,true,true,45_54,hispanic";
    let input = write(
        tmp.path(),
        "raw.csv",
        format!(
            "{header}\n\
             EI0001,Quiroga,,JQ,1975-07-04,male,{tail}\n\
             EI0002,,,j.q.,07/04/1975,male,{tail}\n\
             EI0003,Quiroga,Juan,JQ,1975-07-04,male,{tail}\n\
             EI0004,Quiroga,Juan,,1975-07-04,male,{tail}\n\
             EI0005,,,JQ,1975-07-04,female,{tail}\n"
        ),
    );
    let out = tmp.path().join("out.csv");
    let said = ok(&pseudonymize(&key, &config, &input, &out));
    assert!(
        said.contains("match key 1 (last_name, first_name, dob): 2 rows"),
        "{said}"
    );
    assert!(
        said.contains("match key 2 (initials, dob, sex): 3 rows"),
        "{said}"
    );
    let k = keys_by_event(&out);
    assert_eq!(k["EI0001"], k["EI0002"]);
    assert_eq!(k["EI0003"], k["EI0004"]);
    assert_ne!(k["EI0001"], k["EI0003"]);
    assert_ne!(k["EI0001"], k["EI0005"], "another sex is another survivor");
    let text = std::fs::read_to_string(&out).unwrap().to_lowercase();
    for id in ["quiroga", "juan", "jq", "1975"] {
        assert!(!text.contains(id), "{id}");
    }
}

/// A file with rows that cannot be keyed writes nothing, and its error names each line and
/// column and the forms expected, never a value; so does a column the config does not place.
#[test]
fn errors_name_lines_and_columns_never_a_value() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key_file(tmp.path(), "state.key", KEY_HEX, 0o600);
    let config = write(tmp.path(), "linkage.toml", CONFIG);
    let header = "event_id,last_name,first_name,DOB,sex,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,race_ethnicity";
    let tail = "P001,2025-02-03,ems,false,true,true,45_54,hispanic";
    let input = write(
        tmp.path(),
        "raw.csv",
        format!(
            "{header}\n\
             EX0001,Quartermaine,Zebulon,1970-01-31,male,{tail}\n\
             EX0002,Quartermaine,Zebulon,31/31/1970,male,{tail}\n\
             EX0003,,Zebulon,1970-01-31,male,{tail}\n\
             EX0004,Quartermaine,Zebulon,1/31/70,Mxyzptlk,{tail}\n"
        ),
    );
    let out = tmp.path().join("out.csv");
    let o = pseudonymize(&key, &config, &input, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for said in [
        "4 problem(s) in its rows, so nothing was written",
        "line 3: column `DOB` is no date",
        "line 4: has no complete match key (match key 1 lacks `last_name`; match key 2 lacks `initials`)",
        "line 5: column `DOB` is a date with a two-digit year",
        "line 5: column `sex` is no sex code",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
    for value in [
        "Quartermaine",
        "Zebulon",
        "1970",
        "31/31",
        "1/31/70",
        "Mxyzptlk",
        "EX000",
    ] {
        assert!(!err.contains(value), "{value} in: {err}");
    }
    assert_eq!(names(tmp.path()), ["linkage.toml", "raw.csv", "state.key"]);

    // A column that is neither kept, dropped nor a linkage field refuses the file.
    let extra = write(
        tmp.path(),
        "extra.csv",
        format!(
            "{header},street_address\nEX0001,Quartermaine,Zebulon,1970-01-31,male,{tail},12 Elm Street\n"
        ),
    );
    let o = pseudonymize(&key, &config, &extra, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "line 1: column `street_address` is neither kept, dropped nor a linkage field"
        ),
        "{err}"
    );
    assert!(!err.contains("Elm") && !out.exists(), "{err}");
}

/// The output is a new file: never the input, never an existing file, never inside a
/// warehouse; each is refused with exit 2 and nothing changes.
#[test]
fn the_output_never_replaces_a_file_or_lands_in_a_warehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key_file(tmp.path(), "state.key", KEY_HEX, 0o600);
    let config = write(tmp.path(), "linkage.toml", CONFIG);
    let input = write(tmp.path(), "a.csv", PROGRAM_A);
    let existing = write(tmp.path(), "b.csv", PROGRAM_B);
    let wh = warehouse_with_programs(tmp.path());
    for (out, says) in [
        (input.clone(), "is the input"),
        (existing.clone(), "exists already"),
        (wh.join("overdose_events.csv"), "is inside the warehouse"),
        (wh.join("tables").join("x.csv"), "is inside the warehouse"),
    ] {
        let o = pseudonymize(&key, &config, &input, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", out.display());
        assert!(err.contains(says), "{}: {err}", out.display());
    }
    assert_eq!(std::fs::read_to_string(&input).unwrap(), PROGRAM_A);
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), PROGRAM_B);
    assert!(!wh.join("overdose_events.csv").exists());
}

/// `--new-key-file` writes 32 random bytes in hex, mode 600, once; a key file that is
/// missing, readable by others, too short or not hex is refused, and no message quotes it.
#[test]
fn key_files_are_made_once_private_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state.key");
    ok(&outreach()
        .args(["pseudonymize", "--new-key-file"])
        .arg(&path)
        .output()
        .unwrap());
    let made = std::fs::read_to_string(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(made.len(), 65);
    assert!(made.trim_end().bytes().all(|b| b.is_ascii_hexdigit()) && made.ends_with('\n'));
    let again = tmp.path().join("again.key");
    ok(&outreach()
        .args(["pseudonymize", "--new-key-file"])
        .arg(&again)
        .output()
        .unwrap());
    assert_ne!(std::fs::read_to_string(&again).unwrap(), made);

    // Never overwritten.
    let o = outreach()
        .args(["pseudonymize", "--new-key-file"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), made);

    // --new-key-file goes alone.
    let o = outreach()
        .args(["pseudonymize", "--new-key-file"])
        .arg(tmp.path().join("third.key"))
        .arg("--key-file")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(!tmp.path().join("third.key").exists());

    let config = write(tmp.path(), "linkage.toml", CONFIG);
    let input = write(tmp.path(), "a.csv", PROGRAM_A);
    let out = tmp.path().join("out.csv");
    let secret = "0123456789abcdef".repeat(4);
    for (name, text, mode, says) in [
        ("open.key", secret.as_str(), 0o644, "chmod 600"),
        ("group.key", secret.as_str(), 0o640, "chmod 600"),
        (
            "short.key",
            &secret[..40],
            0o600,
            "holds 40 hexadecimal digits",
        ),
        (
            "text.key",
            "not a key at all",
            0o600,
            "other than hexadecimal digits",
        ),
        ("zero.key", &"0".repeat(64), 0o600, "zeros"),
    ] {
        let k = key_file(tmp.path(), name, text, mode);
        let o = pseudonymize(&k, &config, &input, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(says) && err.contains(name), "{name}: {err}");
        assert!(!err.contains(&secret[..16]), "{name}: {err}");
        assert!(!out.exists());
    }
    let o = pseudonymize(&tmp.path().join("missing.key"), &config, &input, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

/// Thousands of keys under several key files, over values that make digits in hex (dates,
/// numbers), pass the warehouse's own checks: the identifier scan finds no number in any,
/// and ingest loads every row with its `person_key`.
#[test]
fn every_key_passes_the_warehouses_ingest_checks() {
    let mut keys = Vec::new();
    for seed in 1..=4u8 {
        let mut bytes = [0u8; KEY_BYTES];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed
                .wrapping_mul(37)
                .wrapping_add((i as u8).wrapping_mul(11));
        }
        let key = LinkageKey::from_bytes(bytes);
        for i in 0..1000u32 {
            let dob = format!("19{:02}-{:02}-{:02}", i % 100, i % 12 + 1, i % 28 + 1);
            let name = format!("name{i}");
            keys.push(key.person_key(&[("last_name", &name), ("dob", &dob)]));
        }
    }
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), keys.len());
    for k in &keys {
        assert_eq!(identifier_value(k.as_bytes(), true), None, "{k}");
        assert!(!k.bytes().any(|b| b.is_ascii_digit()), "{k}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let rows: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| event(&format!("E{i:05}"), k, "P001", "2025-03-01"))
        .collect();
    let file = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let report = load(&wh, &file).unwrap();
    assert_eq!(report.rows_loaded(), keys.len() as u64, "{report}");
    assert_eq!(
        scalar(
            &wh,
            "SELECT COUNT(DISTINCT person_key) FROM overdose_events"
        ),
        keys.len() as i64
    );
}
