//! Ingest (`src/ingest`): the file-level refusals, row validation and its quarantine, direct
//! identifiers, loads that are all-or-nothing, and the Parquet a load writes.

mod files;
mod identifiers;
mod parquet;
mod rows;
mod safety;
