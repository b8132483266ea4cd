//! One integration-test binary, one module per stage.

mod common;
mod demo_job;
mod dictionary_doc;
mod ingest_files;
mod ingest_rows;
mod ingest_safety;
mod ledger;
mod parquet_roundtrip;
mod privacy_analyser;
mod privacy_bounding;
mod privacy_functions;
mod privacy_mechanism;
mod privacy_release;
mod synth_data;
mod warehouse_status;
