//! The Parquet that ingest writes has the dictionary's logical types, zstd compression, one
//! folder per quarter, and the exact values of the export.

use std::fs::File;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int32Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use outreach_warehouse::dictionary::Dictionary;
use outreach_warehouse::ingest::from_epoch_days;
use outreach_warehouse::warehouse::Warehouse;

use crate::common::*;

#[test]
fn parquet_round_trips_with_the_dictionary_types() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let text = "attempt_id,person_key,program_id,event_id,attempt_date,method,outcome,police_present,peer_present,clinician_present,naloxone_provided,test_strips_provided\n\
                A1,pk1,P001,E1,2025-03-31,home_visit,engaged_survivor,true,false,true,true,false\n\
                A2,pk2,P002,,2025-04-01,phone,no_answer,false,false,false,false,false\n\
                A3,pk1,P001,E1,2025-04-02,text,declined,true,true,false,false,true\n";
    let f = write(tmp.path(), "outreach_attempts.csv", text);
    load(&wh, &f).unwrap();

    let table = Dictionary::builtin()
        .unwrap()
        .table("outreach_attempts")
        .unwrap();
    let manifest = Warehouse::open(&wh).unwrap().manifest().unwrap();
    let files: Vec<_> = manifest.data_files("outreach_attempts").collect();
    // One file per quarter, in a quarter=... folder.
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths[0].contains("/quarter=2025Q1/"), "{paths:?}");
    assert!(paths[1].contains("/quarter=2025Q2/"), "{paths:?}");
    assert_eq!(files.iter().map(|f| f.rows).collect::<Vec<_>>(), [1, 2]);

    let mut rows = Vec::new();
    for f in &files {
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(File::open(wh.join(&f.path)).unwrap())
                .unwrap();
        let meta = builder.metadata().clone();
        for rg in meta.row_groups() {
            for c in rg.columns() {
                assert!(
                    matches!(c.compression(), Compression::ZSTD(_)),
                    "{:?}",
                    c.compression()
                );
            }
        }
        let schema = builder.schema().clone();
        assert_eq!(schema.fields().len(), table.columns.len());
        for (field, col) in schema.fields().iter().zip(&table.columns) {
            assert_eq!(field.name(), &col.name);
            assert_eq!(field.data_type(), &col.arrow_type(), "{}", col.name);
            assert_eq!(field.is_nullable(), !col.required, "{}", col.name);
        }
        assert_eq!(
            schema.field_with_name("attempt_date").unwrap().data_type(),
            &DataType::Date32
        );
        for batch in builder.build().unwrap() {
            let b = batch.unwrap();
            let ids = b.column(0).as_string::<i32>();
            let event = b.column(3).as_string::<i32>();
            let date = b.column(4).as_primitive::<Date32Type>();
            let outcome = b.column(6).as_dictionary::<Int32Type>();
            let outcome_values = outcome.values().as_string::<i32>();
            let police = b.column(7).as_boolean();
            for i in 0..b.num_rows() {
                rows.push((
                    ids.value(i).to_string(),
                    (!event.is_null(i)).then(|| event.value(i).to_string()),
                    from_epoch_days(date.value(i)).to_string(),
                    outcome_values
                        .value(outcome.keys().value(i) as usize)
                        .to_string(),
                    police.value(i),
                ));
            }
        }
    }
    assert_eq!(
        rows,
        [
            (
                "A1".into(),
                Some("E1".into()),
                "2025-03-31".into(),
                "engaged_survivor".into(),
                true
            ),
            (
                "A2".into(),
                None,
                "2025-04-01".into(),
                "no_answer".into(),
                false
            ),
            (
                "A3".into(),
                Some("E1".into()),
                "2025-04-02".into(),
                "declined".into(),
                true
            ),
        ]
    );
}
