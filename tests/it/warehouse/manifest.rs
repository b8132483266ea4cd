//! The manifest (`src/warehouse/manifest.rs`): it names every data file a fresh ingest writes
//! and the quarantine report, under the names the warehouse gives them; it records each data
//! file's size and SHA-256, and a manifest written before those fields still opens.

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use outreach_warehouse::dictionary::{EPOCH_DAYS_FROM_CE, epoch_days, from_epoch_days};
use outreach_warehouse::ingest::{FileOutcome, IngestOptions, ingest};
use outreach_warehouse::warehouse::{DatasetVersion, Warehouse, data_file_path, quarantine_path};

use crate::common::*;

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
