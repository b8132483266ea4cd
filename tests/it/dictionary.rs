//! The data dictionary (`src/dictionary.rs`, `data-dictionary/`): its generated README, every
//! column documented, id patterns declared; a broken dictionary is a defect of the build in
//! every stage; references, start dates and table names come from it.

use outreach_warehouse::Fault;
use outreach_warehouse::dictionary::{Dictionary, DictionaryError};
use outreach_warehouse::ingest::{IngestError, ingest};
use outreach_warehouse::synth::SynthError;
use outreach_warehouse::warehouse::WarehouseError;

use crate::common::{
    EVENTS_HEADER, csv, event, file_quarantine, lenient, warehouse_with_programs, write,
};

#[test]
fn committed_readme_matches_the_dictionary() {
    let expected = Dictionary::builtin().unwrap().to_markdown();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data-dictionary/README.md");
    let committed = std::fs::read_to_string(path).expect("data-dictionary/README.md exists");
    assert!(
        committed == expected,
        "data-dictionary/README.md is stale: regenerate it with `cargo run --release -- dictionary > data-dictionary/README.md`"
    );
}

#[test]
fn markdown_documents_every_column() {
    let d = Dictionary::builtin().unwrap();
    let md = d.to_markdown();
    for t in d.tables() {
        assert!(md.contains(&format!("## {}", t.name)));
        for c in &t.columns {
            assert!(
                md.contains(&format!("| `{}` |", c.name)),
                "{}.{}",
                t.name,
                c.name
            );
        }
    }
    assert!(md.contains("`police_led`, `co_responder`, `public_health_led`, `peer_led`"));
}

#[test]
fn every_id_column_that_references_nothing_declares_its_pattern() {
    use outreach_warehouse::dictionary::{ColumnClass, ColumnType, IDENTIFIER_EXAMPLES, IdPattern};
    let d = Dictionary::builtin().unwrap();
    let md = d.to_markdown();
    for t in d.tables() {
        for c in &t.columns {
            if c.ty != ColumnType::Id || c.references.is_some() {
                continue;
            }
            let text = c
                .pattern
                .as_deref()
                .unwrap_or_else(|| panic!("{}.{} declares no pattern", t.name, c.name));
            let p = IdPattern::parse(text).unwrap();
            // No declared format lets a written SSN or phone number through.
            for e in IDENTIFIER_EXAMPLES {
                assert!(
                    !p.matches(e.as_bytes()),
                    "{}.{} accepts {e}",
                    t.name,
                    c.name
                );
            }
            assert!(
                md.contains(&format!("pattern `{}`", text.replace('|', "\\|"))),
                "{}.{}",
                t.name,
                c.name
            );
            // A pseudonymous key is a letter-first key or a digest, and no short raw number
            // passes as one (ingest rejects a longer one of digits only).
            if c.class == ColumnClass::PersonKey {
                assert!(p.matches(b"pk0123456789abcdef"));
                assert!(p.matches("0123456789abcdef".repeat(8).as_bytes()));
                assert!(p.matches(b"3fa85f64-5717-4562-b3fc-2c963f66afa6"));
                for raw in ["123456789", "0012345", "MRN:12345", "a.b", "_pk"] {
                    assert!(
                        !p.matches(raw.as_bytes()),
                        "{}.{} accepts {raw}",
                        t.name,
                        c.name
                    );
                }
            }
        }
    }
}

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
    // synth too: a broken dictionary is the build's fault, not bad input (exit code 2).
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
