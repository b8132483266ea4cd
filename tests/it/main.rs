//! One integration-test binary, one module per stage.

mod common;
mod dictionary_doc;
mod ingest_files;
mod ingest_rows;
mod ingest_safety;
mod parquet_roundtrip;
mod synth_data;
mod warehouse_status;
