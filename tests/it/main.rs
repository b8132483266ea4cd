//! One integration-test binary, one module per stage.

mod api;
mod browser;
mod common;
mod dashboard;
mod demo_job;
mod dictionary_doc;
mod engine_hardening;
mod exit_codes;
mod ingest_files;
mod ingest_hardening;
mod ingest_rows;
mod ingest_safety;
mod ledger;
mod metrics;
mod metrics_utility;
mod parquet_roundtrip;
mod privacy_allowlist_audit;
mod privacy_analyser;
mod privacy_bounding;
mod privacy_dp_inequality;
mod privacy_functions;
mod privacy_mechanism;
mod privacy_release;
mod synth_data;
mod warehouse_status;
