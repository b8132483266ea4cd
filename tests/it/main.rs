//! One integration-test binary, one module per stage of the pipeline, named after the stage
//! it tests (`src/<stage>`): a stage with several test files is a folder. Shared set-up is
//! in `common`; the Chromium tests are `browser`, ignored by default.

mod common;

mod api;
mod architecture;
mod browser;
mod cli;
mod demo;
mod dictionary;
mod ingest;
mod ledger;
mod metrics;
mod present;
mod privacy;
mod pseudonymize;
mod publication;
mod site;
mod synth;
mod verify;
mod warehouse;
