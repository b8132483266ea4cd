//! Ingest (`src/ingest`): the file-level refusals, row validation and its quarantine, direct
//! identifiers, loads that are all-or-nothing, and the Parquet a load writes.

mod files;
mod identifiers;
mod keys;
mod mapping;
mod parquet;
mod reexport;
mod rows;
mod safety;

use std::fs::File;
use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use outreach_warehouse::ingest::{FileOutcome, IngestOptions, ingest};
use outreach_warehouse::warehouse::Warehouse;

use crate::common::*;

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

/// Loads `bad` rows among 200 good ones (so the reject rate stays under the default limit)
/// and returns the quarantine rows.
fn quarantined(bad: &[String]) -> Vec<(u64, String, String)> {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let mut rows = bad.to_vec();
    rows.extend(events(400));
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let opts = IngestOptions {
        max_reject_rate: 0.05,
        ..opts()
    };
    let r = ingest(&wh, &[f], &opts).unwrap();
    match &r.files[0].outcome {
        FileOutcome::Loaded {
            rows_read,
            rows_loaded,
            rows_rejected,
            ..
        } => {
            assert_eq!(*rows_read, rows.len() as u64);
            assert_eq!(
                rows_loaded + rows_rejected,
                *rows_read,
                "no row is silently dropped"
            );
            assert_eq!(*rows_loaded, 400);
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 400);
    quarantine(&r)
}
